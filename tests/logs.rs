//! The daemon's JSON logs: every line is one JSON object, and every line about a job carries
//! its job id, pipeline and stage, inside a job span and a stage span.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::daemon::{Daemon, pipeline_yaml};
use common::fixture;
use serde_json::Value;

/// The lines of a JSON log that are about job `id`.
fn lines_about<'a>(log: &'a [Value], id: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|line| line["span"]["job_id"] == id)
        .collect()
}

/// `(stage, message)` of each line, in order.
fn story(lines: &[&Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|line| {
            (
                line["span"]["stage"].as_str().unwrap_or("?").to_string(),
                line["fields"]["message"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(s, m)| (s.to_string(), m.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_follow_a_job_through_its_stages() {
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("pagemill.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let daemon = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &["--log-format", "json"],
        Stdio::from(log_file),
    );
    let good = daemon.submit("default", &fixture("phototest.tif")).await;
    let broken = log_dir.path().join("broken.pdf");
    std::fs::write(&broken, b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n").unwrap();
    let bad = daemon.submit("default", &broken).await;
    assert_eq!(daemon.wait_final(&good).await["state"], "done");
    assert_eq!(daemon.wait_final(&bad).await["state"], "failed");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let text = std::fs::read_to_string(&log_path).unwrap();
    let log: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        log.iter().any(|l| l["fields"]["message"] == "listening"),
        "{text}"
    );
    for line in &log {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }

    for id in [&good, &bad] {
        let lines = lines_about(&log, id);
        assert!(!lines.is_empty(), "no line about job {id}:\n{text}");
        for line in &lines {
            let span = &line["span"];
            assert_eq!(span["pipeline"], "default", "{line}");
            assert!(span["stage"].is_string(), "{line}");
            // The stage span sits inside the job's span.
            let spans = line["spans"].as_array().expect("span list");
            assert_eq!(spans.len(), 2, "{line}");
            assert_eq!(spans[0]["name"], "job", "{line}");
            assert_eq!(spans[0]["job_id"], *id, "{line}");
            assert_eq!(spans[1]["name"], "stage", "{line}");
        }
    }

    assert_eq!(
        story(&lines_about(&log, &good)),
        pairs(&[
            ("ingest", "job queued"),
            ("ingest", "document opened"),
            ("summarize", "summary written"),
            ("save", "job finished"),
        ])
    );
    let good_end = lines_about(&log, &good).last().copied().unwrap();
    assert_eq!(good_end["level"], "INFO");
    assert_eq!(good_end["fields"]["outcome"], "done");
    assert_eq!(good_end["fields"]["pages"], 1);

    let bad_lines = lines_about(&log, &bad);
    assert_eq!(
        story(&bad_lines),
        pairs(&[
            ("ingest", "job queued"),
            ("ingest", "document refused"),
            ("save", "job finished"),
        ])
    );
    let refused = bad_lines[1];
    assert_eq!(refused["level"], "WARN");
    assert!(refused["fields"]["code"].is_string(), "{refused}");
    assert_eq!(bad_lines[2]["fields"]["outcome"], "failed");
}
