//! A stage that panics in the middle of a job loses no job (`src/pipeline/recovery.rs`).
//!
//! Built only with the `fault-injection` feature (`scripts/test.sh` turns it on), which lets
//! `PAGEMILL_FAULT` make the assemble stage panic when a chosen page of a chosen document
//! arrives. The documents are four scanned pages made from `tests/fixtures/phototest.tif`, so
//! every page goes through real rendering and Tesseract.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, pipeline_yaml};
use common::{fixture, metric, scanned_pdf, wait_exit};

/// The page on which the assemble stage panics: the third to arrive, so two are checkpointed.
const CRASH_AT_ARRIVAL: u32 = 3;
const PAGES: u32 = 4;

fn fault(document: &str, times: u32) -> String {
    format!("assemble:{document}:{CRASH_AT_ARRIVAL}:{times}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_stage_loses_no_job_and_a_job_that_always_crashes_fails() {
    let inputs = tempfile::tempdir().unwrap();
    let (once, always) = (
        inputs.path().join("crash-once.pdf"),
        inputs.path().join("crash-always.pdf"),
    );
    scanned_pdf(PAGES, &once);
    std::fs::copy(&once, &always).unwrap();
    let faults = format!(
        "{},{}",
        fault("crash-once.pdf", 1),
        fault("crash-always.pdf", 99)
    );
    let d = Daemon::start_with_env(
        &[
            ("once", pipeline_yaml("once", &[])),
            ("always", pipeline_yaml("always", &[])),
        ],
        &[],
        &[("PAGEMILL_FAULT", faults.as_str())],
        Stdio::inherit(),
    );
    let once_id = d.submit("once", &once).await;
    let always_id = d.submit("always", &always).await;
    // A job that never crashes anything, inside the pipeline while it crashes twice.
    let bystander_id = d.submit("always", &fixture("phototest.tif")).await;

    let status = d.wait_final(&once_id).await;
    assert_eq!(status["state"], "done", "{status}");
    let result = d.get_json(&format!("/v1/jobs/{once_id}/result")).await;
    let pages = result["pages"].as_array().unwrap();
    assert_eq!(pages.len(), PAGES as usize);
    for page in pages {
        assert!(
            page["text"].as_str().unwrap().contains("quick brown dog"),
            "every page is read: {page}"
        );
    }

    let status = d.wait_final(&always_id).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["error"]["code"], "internal", "{status}");
    let message = status["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("crashed 2 times") && message.contains("fault injected in assemble"),
        "the error names the crashes and the panic: {message}"
    );
    let status = d.wait_final(&bystander_id).await;
    assert_eq!(
        status["state"], "done",
        "a job that crashed nothing: {status}"
    );

    let text = d.get("/metrics").await.text().await.unwrap();
    let pages_total = |pipeline: &str, outcome: &str| {
        metric(
            &text,
            "pagemill_pages_total",
            &[
                &format!("pipeline=\"{pipeline}\""),
                &format!("outcome=\"{outcome}\""),
            ],
        )
    };
    // Before the crash: two pages checkpointed, the third OCRed and lost with the stage.
    // After: the two come back from the journal and only the other two are OCRed again.
    assert_eq!(pages_total("once", "restored"), 2.0);
    assert_eq!(pages_total("once", "ocr"), 3.0 + 2.0);
    let restarts = |pipeline: &str| {
        metric(
            &text,
            "pagemill_stage_restarts_total",
            &[&format!("pipeline=\"{pipeline}\""), "stage=\"assemble\""],
        )
    };
    assert_eq!(restarts("once"), 1.0);
    assert_eq!(restarts("always"), 2.0, "max_job_crashes defaults to 2");
    for pipeline in ["once", "always"] {
        let in_system = metric(
            &text,
            "pagemill_admission_pages_in_system",
            &[&format!("pipeline=\"{pipeline}\"")],
        );
        assert_eq!(in_system, 0.0, "{pipeline}: the admission budget is back");
    }

    // Nothing is left inside: SIGTERM ends the daemon at once, not at its shutdown timeout
    // (60 s in these tests).
    let sent = Instant::now();
    // SAFETY: sends SIGTERM to the daemon child this test started.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGTERM) };
    let exit = tokio::task::spawn_blocking(move || {
        let mut d = d;
        (wait_exit(&mut d.child, "the daemon after SIGTERM"), d)
    })
    .await
    .unwrap();
    let took = sent.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(exit.0.success(), "{:?}", exit.0);
    assert!(
        took < Duration::from_secs(30),
        "shutdown waited for jobs that were never going to finish: {took:?}"
    );
}

#[test]
fn pagemill_run_reruns_a_crashed_job_and_exits_1_naming_one_that_always_crashes() {
    let inputs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (once, always) = (
        inputs.path().join("crash-once.pdf"),
        inputs.path().join("crash-always.pdf"),
    );
    scanned_pdf(PAGES, &once);
    std::fs::copy(&once, &always).unwrap();
    let run = |files: &[&Path]| {
        Command::new(env!("CARGO_BIN_EXE_pagemill"))
            .arg("run")
            .arg("--out")
            .arg(out.path())
            .args(files)
            .env(
                "PAGEMILL_FAULT",
                format!(
                    "{},{}",
                    fault("crash-once.pdf", 1),
                    fault("crash-always.pdf", 99)
                ),
            )
            .output()
            .unwrap()
    };

    let output = run(&[&once]);
    assert!(
        output.status.success(),
        "a job that crashed a stage once runs again and is done: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = run(&[&always, &fixture("phototest.tif")]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("failed crash-always.pdf") && said.contains("(internal)"),
        "{said}"
    );
    assert!(said.contains("done   phototest.tif"), "{said}");
}

/// Runs `pagemill run` on a scanned 4-page `name` with the fault `fault`; returns the exit
/// code, what it printed, and the result record.
fn run_with_fault(
    name: &str,
    fault: &str,
) -> (Option<i32>, String, pagemill::model::result::JobResult) {
    let inputs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let document = inputs.path().join(name);
    scanned_pdf(PAGES, &document);
    let output = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .arg("run")
        .arg("--out")
        .arg(out.path())
        .arg(&document)
        .env("PAGEMILL_FAULT", fault)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    let result_file = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap_or_else(|| panic!("a result file: {said}"));
    (
        output.status.code(),
        said,
        common::read_result(&result_file),
    )
}

#[test]
fn a_panic_while_rendering_a_page_reaches_its_job() {
    // Render prepares each page in a task on the CPU pool, which turns a panic into an error.
    let (code, said, result) = run_with_fault("crash-render.pdf", "render:crash-render.pdf:3:1");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("failed crash-render.pdf") && said.contains("(internal)"),
        "{said}"
    );
    assert_eq!(result.pages.len(), 4);
    let failed: Vec<u32> = result
        .pages
        .iter()
        .filter(|p| p.error.as_ref().is_some_and(|e| e.code == "internal"))
        .map(|p| p.number)
        .collect();
    assert_eq!(failed, [3], "{said}");
}

#[test]
fn a_panic_while_recognizing_a_page_reaches_its_job() {
    // The OCR stage recognizes each page in a task of its own; a panic there is not the
    // actor's, and must still reach the job rather than leave it waiting for the page: the
    // job ends at once, failed with the page's error.
    let (code, said, result) = run_with_fault("crash-ocr.pdf", "ocr:crash-ocr.pdf:2:1");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("failed crash-ocr.pdf")
            && said.contains("recognizing page 2 panicked")
            && said.contains("(internal)"),
        "{said}"
    );
    assert_eq!(
        result.error.as_ref().map(|e| e.code.as_str()),
        Some("internal")
    );
    // The other pages were read.
    assert_eq!(result.pages.len(), 4);
    for page in &result.pages {
        match page.number {
            2 => {
                let error = page.error.as_ref().expect("page 2 failed");
                assert_eq!(error.code, "internal");
            }
            _ => assert!(
                page.error.is_none(),
                "page {}: {:?}",
                page.number,
                page.error
            ),
        }
    }
}
