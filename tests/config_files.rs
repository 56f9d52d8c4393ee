//! Shipped pipelines validate; broken ones are reported with every error and its line.

use std::path::Path;
use std::process::Command;

use pagemill::config::{load_pipeline, parse_pipeline};

fn shipped_pipelines() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_pipeline_is_valid() {
    let files = shipped_pipelines();
    assert!(files.len() >= 2);
    for file in files {
        load_pipeline(&file).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn default_yaml_is_the_embedded_default() {
    let p = pagemill::config::Pipeline::embedded_default();
    assert_eq!(p.name, "default");
    assert_eq!(p.render.dpi, 300);
    assert_eq!(p.ocr.languages, "eng");
}

const BROKEN: &str = "\
version: 1
render:
  dpi: 20
  text_layr: auto
ocr:
  languages: [eng, xx_not_installed]
edges:
  ocr_pages: 0
";

#[test]
fn broken_pipeline_reports_every_error_with_its_line() {
    let err = parse_pipeline(Path::new("broken.yaml"), BROKEN).unwrap_err();
    let text = err.to_string();
    let lines: Vec<u64> = err.issues.iter().map(|i| i.line).collect();
    // The unknown key is found by the key walk; the value errors after it by validation.
    assert!(lines.contains(&4), "{text}");
    assert!(
        text.contains("broken.yaml:4:3: unknown key `render.text_layr`"),
        "{text}"
    );
    assert!(text.contains("did you mean `text_layer`"), "{text}");
}

#[test]
fn value_errors_are_all_reported_with_their_lines() {
    let yaml = BROKEN.replace("  text_layr: auto\n", "  text_layer: auto\n");
    let err = parse_pipeline(Path::new("broken.yaml"), &yaml).unwrap_err();
    let lines: Vec<u64> = err.issues.iter().map(|i| i.line).collect();
    assert_eq!(lines, vec![3, 6, 8], "{err}");
    assert!(
        err.to_string().contains("tesseract-ocr-xx-not-installed"),
        "{err}"
    );
}

#[test]
fn syntax_errors_name_their_line() {
    let err =
        parse_pipeline(Path::new("s.yaml"), "version: 1\nrender:\n  dpi: [300\n").unwrap_err();
    assert_eq!(err.issues.len(), 1);
    assert!(err.issues[0].line >= 3, "{err}");
}

/// Type and syntax errors stop a YAML parser; each is reported, and so are the errors after
/// it, each on its own line, while the rest of the file still gets its value checks.
const SEVERAL_PARSE_ERRORS: &str = "\
version: 1
pool:
  threads: many
render:
  dpi: 300
  text_layer: [auto
ocr:
  languages: [eng]
  page_segmentation_mode: three
edges:
  ocr_pages: 0
";

#[test]
fn type_and_syntax_errors_are_all_reported_in_one_go() {
    let err = parse_pipeline(Path::new("p.yaml"), SEVERAL_PARSE_ERRORS).unwrap_err();
    let lines: Vec<u64> = err.issues.iter().map(|i| i.line).collect();
    // Line 3: a word where a number goes; line 6: an unclosed flow sequence (the parser
    // notices it on the next line); line 9: a word again; line 11: a value out of range.
    assert_eq!(lines.first(), Some(&3), "{err}");
    assert!(lines.iter().any(|&l| l == 6 || l == 7), "{err}");
    assert!(lines.contains(&9), "{err}");
    assert!(lines.contains(&11), "{err}");
    assert!(err.to_string().contains("p.yaml:3:"), "{err}");
    assert!(lines.len() <= 5, "no cascade of follow-on errors: {err}");
}

#[test]
fn validate_command_exits_non_zero_and_prints_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, BROKEN).unwrap();
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .arg("validate")
        .arg(&good)
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.yaml:4:3"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("default.yaml: ok"), "{stdout}");

    let ok = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .arg("validate")
        .arg(&good)
        .status()
        .unwrap();
    assert!(ok.success());
}
