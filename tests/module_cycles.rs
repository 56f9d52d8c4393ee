//! No module of `src` imports, directly or through others, a module that imports it back.
//!
//! Modules are the top-level ones, with the packages (`model`, `pipeline`, `stages`,
//! `service`, `http`, `runtime`, `cli`, `llm`) split into their children: `stages::ocr` and
//! `stages::render` are two modules, `config` and its private helpers one. A module uses
//! another when its code (outside `#[cfg(test)]`) names a path `crate::other…`, lists one in
//! `use crate::{…}`, or reaches a sibling through `super::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const PACKAGES: [&str; 8] = [
    "model", "pipeline", "stages", "service", "http", "runtime", "cli", "llm",
];

/// The module a path (`["stages", "ocr", "tess"]`) belongs to.
fn module_of(parts: &[&str]) -> Option<String> {
    let first = *parts.first()?;
    if PACKAGES.contains(&first) && parts.len() > 1 && parts[1] != "mod" {
        Some(format!("{first}::{}", parts[1]))
    } else {
        Some(first.to_string())
    }
}

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every identifier path that follows `prefix` in `code`, split at `::`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    code.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            rest[..end].split("::").filter(|p| !p.is_empty()).collect()
        })
        .collect()
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let mut modules = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        modules.insert(parts, code);
    }
    let known: BTreeSet<String> = modules
        .keys()
        .filter_map(|p| module_of(&p.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (parts, code) in &modules {
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let from = module_of(&parts).unwrap();
        let mut targets = Vec::new();
        for path in paths_after(code, "crate::") {
            targets.push(module_of(&path));
        }
        for (i, _) in code.match_indices("use crate::{") {
            let list = &code[i + "use crate::{".len()..];
            let list = &list[..list.find("};").unwrap_or(list.len())];
            for item in list.split(',') {
                let path: Vec<&str> = item
                    .split('{')
                    .next()
                    .unwrap()
                    .split("::")
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .collect();
                targets.push(module_of(&path));
            }
        }
        let parent = &parts[..parts.len().saturating_sub(1)];
        for path in paths_after(code, "super::") {
            let mut full = parent.to_vec();
            full.extend(path.first());
            targets.push(module_of(&full));
        }
        let uses = graph.entry(from.clone()).or_default();
        for target in targets.into_iter().flatten() {
            if target != from && known.contains(&target) {
                uses.insert(target);
            }
        }
    }
    graph
}

/// A cycle through `start`, if any: the modules along it.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = import_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 30, "the modules of src were found");
    assert!(
        graph["stages::ocr"].contains("pipeline::messages"),
        "imports are read"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    graph.entry("d".into()).or_default().insert("a".into());
    assert_eq!(
        cycle_through(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(cycle_through(&graph, "d"), None);
}
