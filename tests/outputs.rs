//! The files beside a result (`save.formats`): plain text, hOCR read by hocr-tools (a real
//! hOCR consumer), ALTO parsed by lxml and validated against the published ALTO 4 schema
//! (`tests/fixtures/alto-4-3.xsd`), the per-word TSV, and the searchable PDF read by
//! poppler's `pdftotext` and `pdfinfo`, all against the result JSON.
//! The Python tools live in `target/test-venv`, which `scripts/setup.sh` installs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pagemill::eval::word_match;
use pagemill::model::result::{JobResult, PageSource};
use serde_json::Value;

fn venv_tool(name: &str) -> PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-venv/bin")
        .join(name);
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/setup.sh --install-only",
        tool.display()
    );
    tool
}

fn run(tool: &Path, args: &[&Path]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The ALTO checker: schema validation plus pagemill's own rules.
fn check_alto() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/check_alto.py")
}

fn beside(result_json: &Path, extension: &str) -> PathBuf {
    let stem = result_json.file_stem().unwrap().to_string_lossy();
    result_json.with_file_name(format!("{stem}.{extension}"))
}

/// Checks every format written for one result.
fn check_formats(json: &Path, result: &JobResult) {
    let name = &result.source.name;
    let ocr_words: Vec<(u32, String)> = result
        .pages
        .iter()
        .filter(|p| p.source == PageSource::Ocr)
        .flat_map(|p| p.words.iter().map(move |w| (p.number, w.text.clone())))
        .collect();

    // Plain text: the result's text, byte for byte.
    let txt = std::fs::read_to_string(beside(json, "txt")).unwrap();
    assert_eq!(txt, result.text, "{name}: txt");

    // TSV: a header, then one row per OCRed word with its page and box.
    let tsv = std::fs::read_to_string(beside(json, "tsv")).unwrap();
    let mut rows = tsv.lines();
    assert_eq!(
        rows.next(),
        Some("page\tleft\ttop\tright\tbottom\tconfidence\ttext")
    );
    let tsv_words: Vec<(u32, String)> = rows
        .map(|row| {
            let cols: Vec<&str> = row.split('\t').collect();
            assert_eq!(cols.len(), 7, "{name}: {row}");
            (cols[0].parse().unwrap(), cols[6].to_string())
        })
        .collect();
    assert_eq!(tsv_words, ocr_words, "{name}: tsv words");

    // hOCR: hocr-check finds no fault, and hocr-lines reads back the OCRed text. hocr-check
    // compares line boxes across the whole file rather than per page (its XPath starts at
    // the root), so a document of several similar pages is checked without that test.
    let hocr = beside(json, "hocr");
    let mut check = Command::new(venv_tool("hocr-check"));
    if result.pages.len() > 1 {
        check.arg("--nooverlap");
    }
    let report = check.arg(&hocr).output().unwrap();
    // hocr-check writes its TAP report to stderr and exits 0 either way.
    let report = String::from_utf8_lossy(&report.stderr).into_owned()
        + &String::from_utf8_lossy(&report.stdout);
    assert!(report.contains("ok 3 - has a page"), "{name}: {report}");
    assert!(!report.contains("not ok"), "{name}: hocr-check: {report}");
    // hocr-lines reads `ocr_line` elements only (not Tesseract's `ocr_header` or
    // `ocr_textfloat` lines), so every word it reads must be an OCRed word, and it must read
    // most of them.
    let lines = run(&venv_tool("hocr-lines"), &[&hocr]);
    let ocr_text: Vec<&str> = ocr_words.iter().map(|(_, w)| w.as_str()).collect();
    let matched = word_match(&lines, &ocr_text.join(" "));
    assert_eq!(
        matched.common, matched.ocr,
        "{name}: hOCR words not in the result"
    );
    assert!(
        matched.common * 2 >= ocr_words.len(),
        "{name}: hocr-lines read {} of {} words",
        matched.common,
        ocr_words.len()
    );

    // ALTO: valid against the ALTO 4 schema, unique IDs, one Page per page, the same words.
    let alto = run(
        &venv_tool("python"),
        &[&check_alto(), &beside(json, "alto.xml")],
    );
    let alto: Value = serde_json::from_str(&alto).unwrap();
    assert_eq!(alto["pages"], result.pages.len(), "{name}: ALTO pages");
    let alto_words: Vec<(u32, String)> = alto["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w[0].as_u64().unwrap() as u32,
                w[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(alto_words, ocr_words, "{name}: ALTO words");

    // Searchable PDF: one page per result page, and pdftotext reads the result's words.
    let pdf = beside(json, "pdf");
    let info = run(Path::new("pdfinfo"), &[&pdf]);
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["Pages:", &result.pages.len().to_string()]),
        "{name}: {info}"
    );
    let text = run(Path::new("pdftotext"), &[&pdf, Path::new("-")]);
    let f1 = word_match(&text, &result.text).f1();
    assert!(f1 >= 0.9, "{name}: pdftotext words F1 {f1:.3}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_output_format_agrees_with_the_result() {
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(
        out.path(),
        &[("formats: []", "formats: [txt, hocr, alto, tsv, pdf]")],
    );
    let mut files = vec![fixture("phototest.tif"), fixture("tagged.pdf")];
    match corpus("every_output_format_agrees_with_the_result (4-page rotated scan)") {
        Some(corpus) => files.push(corpus.join("linn-cardinal.pdf")),
        None => eprintln!("*** the four-page document is skipped; fixtures only ***"),
    }
    let events = run_files(p, &files, None).await;
    for event in &events {
        assert!(event.error.is_none(), "{}: {:?}", event.name, event.error);
        let json = event.result_path.as_ref().unwrap();
        let result = read_result(json);
        check_formats(json, &result);
    }
    // The text-layer PDF has pages but no OCR words; the scans have many.
    let words = |i: usize| -> usize {
        read_result(events[i].result_path.as_ref().unwrap())
            .pages
            .iter()
            .map(|p| p.words.len())
            .sum()
    };
    assert!(words(0) > 50);
    assert_eq!(words(1), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_extra_files_unless_asked() {
    // By default: the result and the folder of its pages' previews (for the web page).
    let out = tempfile::tempdir().unwrap();
    let events = run_files(pipeline(out.path(), &[]), &[fixture("phototest.tif")], None).await;
    assert!(events[0].error.is_none());
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with(".json"), "{names:?}");
    assert!(names[1].ends_with(".previews"), "{names:?}");

    // Without previews: the result alone.
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(out.path(), &[("preview_max_px: 1600", "preview_max_px: 0")]);
    let events = run_files(p, &[fixture("phototest.tif")], None).await;
    assert!(events[0].error.is_none());
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".json"));
}

#[test]
fn the_alto_check_rejects_what_the_schema_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let document = |string: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>pixel</MeasurementUnit></Description>
  <Layout>
    <Page ID="p1" PHYSICAL_IMG_NR="1" WIDTH="100" HEIGHT="50">
      <PrintSpace HPOS="0" VPOS="0" WIDTH="100" HEIGHT="50">
        <TextBlock ID="b1" HPOS="0" VPOS="0" WIDTH="100" HEIGHT="50">
          <TextLine ID="l1" HPOS="0" VPOS="0" WIDTH="100" HEIGHT="50">{string}</TextLine>
        </TextBlock>
      </PrintSpace>
    </Page>
  </Layout>
</alto>
"#
        )
    };
    let check = |name: &str, string: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, document(string)).unwrap();
        Command::new(venv_tool("python"))
            .arg(check_alto())
            .arg(&path)
            .output()
            .unwrap()
    };
    let valid = check(
        "valid.xml",
        r#"<String ID="s1" CONTENT="word" HPOS="0" VPOS="0" WIDTH="40" HEIGHT="20"/>"#,
    );
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );
    // Well-formed XML with the boxes the checker's own rules ask for, but a String must have
    // CONTENT and may not carry attributes ALTO does not define: only the schema says so.
    let invalid = check(
        "invalid.xml",
        r#"<String ID="s1" TEXT="word" HPOS="0" VPOS="0" WIDTH="40" HEIGHT="20"/>"#,
    );
    assert!(!invalid.status.success());
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(stderr.contains("schema:"), "{stderr}");
}
