//! Pipeline configuration: the YAML a user writes, parsed and validated into domain types.
//!
//! Parsing happens in two steps. `serde-saphyr` reads the YAML into [`RawPipeline`], which
//! mirrors the file (every struct rejects unknown keys, values keep their location). Then
//! [`RawPipeline::validate`] checks every value and collects *all* problems, each with file,
//! line and column, before building a [`Pipeline`]. Syntax and type errors stop the YAML parser
//! at each error; then the node the error is in is blanked out and the file parsed again, so
//! that the errors after it are found too. Unknown keys are all found by a separate walk. A
//! file with several mistakes is reported in one go.
//!
//! Each section of the file has its module here, holding its raw struct, its domain struct,
//! its named defaults and its checks: `pool_limits`, `render`, `preprocess`, `ocr`,
//! `summarize`, `save`, and `flow` (edges, admission, supervisor). This module parses the file
//! and assembles them. The sections live beside each other rather than in the stage folders:
//! their checks share the position-keeping [`check`] helpers, and stages depend on
//! configuration, never the reverse.

mod check;
mod cluster;
pub mod env;
mod flow;
mod keys;
mod ocr;
mod pool_limits;
mod preprocess;
mod render;
mod save;
mod summarize;

use check::Checker;
pub use check::{ConfigError, ConfigIssue};
pub use cluster::{ClusterConfig, RawCluster};
pub use flow::{
    AdmissionConfig, EdgesConfig, RawAdmission, RawEdges, RawSupervisor, SupervisorConfig,
};
pub use ocr::{OcrConfig, OrientationMode, RawOcr};
pub use pool_limits::{LimitsConfig, PoolConfig, RawLimits, RawPool};
pub use preprocess::{Binarize, PreprocessConfig, RawPreprocess};
pub use render::{RawRender, RenderConfig, TextLayerMode};
pub use save::{
    OutputFormat, PostgresSinkConfig, RawPostgresSink, RawSave, RawSqliteSink, RawWebhook,
    SaveConfig, SqliteSinkConfig, WebhookConfig,
};
pub use summarize::{
    ExtractConfig, LlmConfig, LlmFallback, RawLlm, RawLlmConcurrency, RawLlmExtract, RawSummarize,
    SummarizeConfig, SummarizeEngineKind,
};

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// The only pipeline format version this build understands.
pub const PIPELINE_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------
// The file as written.

/// A pipeline file as written. Field docs are the user documentation of each key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Format version of this file; must be 1.
    pub version: Spanned<u32>,
    /// Pipeline name; defaults to the file's stem.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// The shared CPU pool that renders and OCRs pages.
    #[serde(default)]
    pub pool: RawPool,
    /// Limits checked before any expensive work.
    #[serde(default)]
    pub limits: RawLimits,
    /// Turning PDF pages into images.
    #[serde(default)]
    pub render: RawRender,
    /// Image cleanup before OCR.
    #[serde(default)]
    pub preprocess: RawPreprocess,
    /// Tesseract settings.
    #[serde(default)]
    pub ocr: RawOcr,
    /// Summary of each document.
    #[serde(default)]
    pub summarize: RawSummarize,
    /// Where results are written.
    #[serde(default)]
    pub save: RawSave,
    /// Capacities of the bounded edges between stages.
    #[serde(default)]
    pub edges: RawEdges,
    /// How much work the daemon accepts into this pipeline before answering 429.
    #[serde(default)]
    pub admission: RawAdmission,
    /// Restart policy of the stage supervisor.
    #[serde(default)]
    pub supervisor: RawSupervisor,
    /// How big documents are shared by the nodes of a cluster.
    #[serde(default)]
    pub cluster: RawCluster,
}

// ---------------------------------------------------------------------------------------------
// The validated pipeline.

/// A validated pipeline, ready to build.
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub name: String,
    pub pool: PoolConfig,
    pub limits: LimitsConfig,
    pub render: RenderConfig,
    pub preprocess: PreprocessConfig,
    pub ocr: OcrConfig,
    pub summarize: SummarizeConfig,
    pub save: SaveConfig,
    pub edges: EdgesConfig,
    pub admission: AdmissionConfig,
    pub supervisor: SupervisorConfig,
    pub cluster: ClusterConfig,
}

impl Pipeline {
    /// The built-in default pipeline, identical to the shipped `pipelines/default.yaml`.
    pub fn embedded_default() -> Pipeline {
        parse_pipeline(Path::new("default.yaml"), DEFAULT_PIPELINE_YAML)
            .expect("the embedded default pipeline is valid")
    }
}

/// The shipped default pipeline, compiled in so the daemon runs without any file.
pub const DEFAULT_PIPELINE_YAML: &str = include_str!("../../pipelines/default.yaml");

/// Reads and validates one pipeline file.
pub fn load_pipeline(path: &Path) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        issues: vec![ConfigIssue {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read file: {e}"),
        }],
    })?;
    parse_pipeline(path, &text)
}

/// Parses and validates pipeline YAML; `file` names it in errors and gives the default name.
pub fn parse_pipeline(file: &Path, text: &str) -> Result<Pipeline, ConfigError> {
    let interpolated = crate::config::env::interpolate(text, |name| std::env::var(name).ok());
    let text = match &interpolated {
        Ok(text) => text.as_str(),
        Err(unset) => {
            return Err(ConfigError {
                issues: unset
                    .iter()
                    .map(|u| ConfigIssue {
                        file: file.to_path_buf(),
                        line: u.line as u64,
                        column: u.column as u64,
                        message: format!(
                            "environment variable {} is not set and has no default (write ${{{}:-default}})",
                            u.name, u.name
                        ),
                    })
                    .collect(),
            });
        }
    };
    // Unknown keys: all of them, from a walk over the YAML tree.
    let mut issues = crate::config::keys::unknown_keys(file, text);
    let walk_found_unknown_keys = !issues.is_empty();
    let (raw, parse_issues) = parse_recovering(file, text);
    for issue in parse_issues {
        // The walk already reported unknown keys precisely; the parser's word on them adds
        // nothing.
        if !walk_found_unknown_keys || !issue.message.contains("unknown field") {
            issues.push(issue);
        }
    }
    if let Some(raw) = raw {
        if issues.is_empty() {
            return raw.validate(file);
        }
        // Also report the value problems of everything that did parse.
        if let Err(e) = raw.validate(file) {
            issues.extend(e.issues);
        }
    }
    issues.sort_by_key(|i| (i.line, i.column));
    issues.dedup();
    Err(ConfigError { issues })
}

/// Most parser errors reported for one file (each costs one more parse).
const MAX_PARSE_ERRORS: usize = 25;

/// Parses `text`, and after an error goes on past it: the node the error points at (its line
/// and the more indented lines under it) is blanked out, as if it were not written, and the
/// file is parsed again, until it parses or an error comes at or before the last one (the
/// blanking itself caused it, so it is not reported). Line numbers do not move, so every
/// error is reported where the user wrote it. Returns the parsed pipeline when the file,
/// minus the blanked nodes, parses.
fn parse_recovering(file: &Path, text: &str) -> (Option<RawPipeline>, Vec<ConfigIssue>) {
    let original: Vec<&str> = text.split('\n').collect();
    let mut lines = original.clone();
    let mut issues = Vec::new();
    let mut last_line = 0;
    loop {
        let current = lines.join("\n");
        let error = match serde_saphyr::from_str::<RawPipeline>(&current) {
            Ok(raw) => return (Some(raw), issues),
            Err(e) => e,
        };
        let (line, column) = error
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let mut message = parser_message(&error.to_string());
        if let Some(written) = original.get((line as usize).wrapping_sub(1))
            && !written.trim().is_empty()
        {
            message = format!("{message}: `{}`", written.trim());
        }
        let caused_by_blanking = !issues.is_empty()
            && (line <= last_line || missing_key_was_blanked(&message, &original, &lines));
        if caused_by_blanking {
            return (None, issues);
        }
        issues.push(ConfigIssue {
            file: file.to_path_buf(),
            line,
            column,
            message,
        });
        let index = line as usize;
        if index == 0 || index > lines.len() || issues.len() >= MAX_PARSE_ERRORS {
            return (None, issues);
        }
        blank_node(&mut lines, index - 1);
        last_line = line;
    }
}

/// Blanks line `index` (0-based) and the lines below it that are indented deeper (its
/// children), up to the next line at its own depth or shallower; then its parent key, if
/// that is left without children (an empty `pool:` is not a section).
fn blank_node(lines: &mut [&str], index: usize) {
    let depth = indent(lines[index]);
    lines[index] = "";
    for line in lines.iter_mut().skip(index + 1) {
        if is_content(line) && indent(line) <= depth {
            break;
        }
        *line = "";
    }
    let parent = (0..index)
        .rev()
        .find(|&i| is_content(lines[i]) && indent(lines[i]) < depth);
    if let Some(parent) = parent {
        let has_children = lines[parent + 1..]
            .iter()
            .find(|line| is_content(line))
            .is_some_and(|next| indent(next) > indent(lines[parent]));
        if lines[parent].trim_end().ends_with(':') && !has_children {
            blank_node(lines, parent);
        }
    }
}

/// Whether `message` says a key is missing that was written but blanked out.
fn missing_key_was_blanked(message: &str, original: &[&str], lines: &[&str]) -> bool {
    let Some(key) = message
        .split("missing field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    else {
        return false;
    };
    original
        .iter()
        .zip(lines)
        .any(|(was, now)| now.is_empty() && was.trim_start().starts_with(&format!("{key}:")))
}

/// The parser's message without its own position prefix ("error: line 3 column 12: "),
/// which the issue already carries.
fn parser_message(message: &str) -> String {
    let first = first_line(message);
    let rest = first.strip_prefix("error: ").unwrap_or(&first);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((position, text)) if position.contains(" column ") => text.to_string(),
        _ => rest.to_string(),
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Whether a line holds YAML (not blank, not only a comment).
fn is_content(line: &str) -> bool {
    let content = line.trim();
    !content.is_empty() && !content.starts_with('#')
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

impl RawPipeline {
    /// Checks every value, collecting all problems, and builds the domain pipeline.
    pub fn validate(self, file: &Path) -> Result<Pipeline, ConfigError> {
        let mut c = Checker {
            file,
            issues: Vec::new(),
        };
        if self.version.value != PIPELINE_VERSION {
            c.push(
                &self.version,
                format!(
                    "unsupported version {}: this pagemill reads version {PIPELINE_VERSION}",
                    self.version.value
                ),
            );
        }
        let name = match &self.name {
            Some(n) if !is_valid_name(&n.value) => {
                c.push(
                    n,
                    format!(
                        "name {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
                        n.value
                    ),
                );
                String::new()
            }
            Some(n) => n.value.clone(),
            None => file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "default".into()),
        };

        let (pool, limits) = pool_limits::validate(&mut c, &self.pool, &self.limits);
        let render = render::validate(&mut c, &self.render);
        let save = save::validate(&mut c, &self.save);
        let ocr = ocr::validate(&mut c, &self.ocr, &save);
        let preprocess = preprocess::validate(&mut c, &self.preprocess);
        let summarize = summarize::validate(&mut c, &self.summarize);
        let (edges, admission, supervisor) = flow::validate(
            &mut c,
            &self.edges,
            &self.admission,
            &self.supervisor,
            limits.max_document_bytes,
        );

        if !c.issues.is_empty() {
            c.issues.sort_by_key(|i| (i.line, i.column));
            return Err(ConfigError { issues: c.issues });
        }
        Ok(Pipeline {
            name,
            pool,
            limits,
            render,
            preprocess,
            ocr,
            summarize,
            save,
            edges,
            admission,
            supervisor,
            cluster: self.cluster.validate(),
        })
    }
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Pipeline, ConfigError> {
        parse_pipeline(Path::new("t.yaml"), text)
    }

    /// Every key of a JSON value with its value, as `a.b.c = value` lines.
    fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    flatten(&format!("{prefix}{key}."), v, out);
                }
            }
            other => out.push(format!("{} = {other}", prefix.trim_end_matches('.'))),
        }
    }

    #[test]
    fn the_shipped_default_pipeline_says_what_the_built_in_defaults_are() {
        // Every setting left out of a file takes its built-in default; the shipped default
        // pipeline writes every setting out. The two must agree key for key, or a user reading
        // `pipelines/default.yaml` is told a default that is not the one in force.
        let shipped = Pipeline::embedded_default();
        let built_in = parse_pipeline(Path::new("default.yaml"), "version: 1\n").unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flatten("", &serde_json::to_value(&shipped).unwrap(), &mut a);
        flatten("", &serde_json::to_value(&built_in).unwrap(), &mut b);
        let only_shipped: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_built_in: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
        assert!(
            only_shipped.is_empty() && only_built_in.is_empty(),
            "pipelines/default.yaml says {only_shipped:#?}\nthe built-in defaults are {only_built_in:#?}"
        );
    }

    #[test]
    fn minimal_file_gets_defaults_and_name_from_stem() {
        let p = parse("version: 1\n").unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.render.dpi, render::DEFAULT_DPI);
        assert_eq!(p.ocr.languages, "eng");
    }

    #[test]
    fn value_errors_are_all_reported_with_lines() {
        let err = parse("version: 2\nrender:\n  dpi: 5\nedges:\n  ocr_pages: 0\n").unwrap_err();
        let lines: Vec<u64> = err.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![1, 3, 5], "{err}");
    }

    #[test]
    fn sizes_and_durations_are_typed() {
        let p = parse(
            "version: 1\nlimits:\n  max_document_bytes: 2MiB\nsupervisor:\n  restart_backoff_initial: 250ms\n",
        )
        .unwrap();
        assert_eq!(p.limits.max_document_bytes, 2 * 1024 * 1024);
        assert_eq!(
            p.supervisor.restart_backoff_initial,
            Duration::from_millis(250)
        );
    }
}
