//! Finds every unknown key in a pipeline file in one pass, with its line and column.
//!
//! serde stops at the first unknown field; users fixing a file want them all. The set of known
//! keys is the set of keys in the shipped default pipeline, which writes out every setting with
//! its default (a test keeps the two in step with the config structs).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use serde_saphyr::granit_parser::{Event, Parser};

use crate::config::{ConfigIssue, DEFAULT_PIPELINE_YAML};

/// A mapping key with the dotted path of the mapping it belongs to.
#[derive(Debug)]
struct KeyAt {
    path: String,
    line: usize,
    column: usize,
}

enum Frame {
    Mapping {
        path: String,
        next_is_key: bool,
        key: String,
    },
    Sequence {
        path: String,
    },
}

/// Every mapping key of a YAML document, as dotted paths. Stops quietly at a syntax error:
/// the YAML parser reports those.
fn walk_keys(text: &str) -> Vec<KeyAt> {
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        // The path of the node this event starts, and whether it is a key.
        let mut node_path = String::new();
        let mut is_key = false;
        let starts_node = matches!(
            event,
            Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(_)
        );
        if starts_node {
            match stack.last_mut() {
                Some(Frame::Mapping {
                    path,
                    next_is_key,
                    key,
                }) => {
                    if *next_is_key {
                        is_key = true;
                        if let Event::Scalar(v, ..) = &event {
                            *key = v.to_string();
                            let full = join(path, key);
                            out.push(KeyAt {
                                path: full,
                                line: span.start.line(),
                                column: span.start.col() + 1,
                            });
                        }
                    } else {
                        node_path = join(path, key);
                    }
                    *next_is_key = !*next_is_key;
                }
                Some(Frame::Sequence { path }) => node_path = format!("{path}[]"),
                None => {}
            }
        }
        match event {
            Event::MappingStart(..) if !is_key => stack.push(Frame::Mapping {
                path: node_path,
                next_is_key: true,
                key: String::new(),
            }),
            Event::SequenceStart(..) if !is_key => stack.push(Frame::Sequence { path: node_path }),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Keys a pipeline file may contain: those of the shipped default.
fn known_keys() -> &'static BTreeSet<String> {
    static KNOWN: OnceLock<BTreeSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut keys: BTreeSet<String> = walk_keys(DEFAULT_PIPELINE_YAML)
            .into_iter()
            .map(|k| k.path)
            .collect();
        // Optional keys that have no default value to write out.
        keys.insert("name".into());
        keys
    })
}

/// Settings whose value is a document of its own (a JSON Schema), with keys of their own.
const FREE_FORM: &[&str] = &["summarize.llm.extract.schema."];

/// One issue per key that no pipeline setting has, with a hint when a close key exists.
pub fn unknown_keys(file: &Path, text: &str) -> Vec<ConfigIssue> {
    let known = known_keys();
    walk_keys(text)
        .into_iter()
        .filter(|k| !known.contains(&k.path))
        .filter(|k| !FREE_FORM.iter().any(|f| k.path.starts_with(f)))
        .map(|k| {
            let parent = k.path.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            let leaf = k.path.rsplit_once('.').map(|(_, l)| l).unwrap_or(&k.path);
            let siblings: Vec<&str> = known
                .iter()
                .filter_map(|p| {
                    let (pp, l) = p.rsplit_once('.').unwrap_or(("", p));
                    (pp == parent).then_some(l)
                })
                .collect();
            let hint = siblings
                .iter()
                .filter(|s| strsim_close(s, leaf))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .next()
                .unwrap_or_default();
            ConfigIssue {
                file: file.to_path_buf(),
                line: k.line as u64,
                column: k.column as u64,
                message: format!(
                    "unknown key `{}`{hint}; expected one of: {}",
                    k.path,
                    siblings.join(", ")
                ),
            }
        })
        .collect()
}

/// Whether two keys differ only a little (a typo), by shared-prefix length.
fn strsim_close(a: &str, b: &str) -> bool {
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    common >= 3 && common * 2 >= a.len().min(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_key_is_reported_with_its_position() {
        let text =
            "version: 1\nrender:\n  dpii: 300\nocr:\n  languages: [eng]\n  bogus: 1\ncolour: red\n";
        let issues = unknown_keys(Path::new("x.yaml"), text);
        let at: Vec<(u64, u64)> = issues.iter().map(|i| (i.line, i.column)).collect();
        assert_eq!(at, vec![(3, 3), (6, 3), (7, 1)], "{issues:?}");
        assert!(issues[0].message.contains("did you mean `dpi`"));
    }

    #[test]
    fn default_pipeline_has_no_unknown_keys() {
        assert!(unknown_keys(Path::new("d.yaml"), DEFAULT_PIPELINE_YAML).is_empty());
    }
}
