//! Bounded disk: with `--retain-finished-jobs`, a daemon forgets finished jobs (journal rows
//! and result files) after the retention, so its journal stays the same size however many
//! jobs pass through; without it, the journal keeps every job.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;

use crate::common::daemon::*;
use crate::common::fixture;

const JOBS: usize = 2000;
const MEASURE_AT: [usize; 3] = [500, 1000, 2000];
const AT_ONCE: usize = 16;

/// The journal's size once its write-ahead log is checkpointed into it, in bytes.
fn journal_bytes(dir: &Path) -> u64 {
    let path = dir.join("data/journal.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    std::fs::metadata(&path).unwrap().len()
}

fn result_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("results/default"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Runs `JOBS` one-page text-layer jobs through a daemon started with `args`, `AT_ONCE` at a
/// time; returns the journal's size and the result files after each of `MEASURE_AT` jobs.
async fn journal_growth(args: &[&str]) -> Vec<(usize, u64, usize)> {
    let d = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        args,
        std::process::Stdio::inherit(),
    );
    let document = std::fs::read(fixture("tagged.pdf")).unwrap();
    let mut sizes = Vec::new();
    let mut done = 0;
    for target in MEASURE_AT {
        futures_util::stream::iter(done..target)
            .for_each_concurrent(AT_ONCE, |_| {
                let d = &d;
                let document = document.clone();
                async move {
                    let response = d
                        .http
                        .post(d.url("/v1/pipelines/default/jobs"))
                        .body(document)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                    let body: serde_json::Value = response.json().await.unwrap();
                    let status = d.wait_final(body["id"].as_str().unwrap()).await;
                    assert_eq!(status["state"], "done", "{status}");
                }
            })
            .await;
        done = target;
        // Give the pruner a moment past the retention to catch up.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sizes.push((
            target,
            journal_bytes(d.dir.path()),
            result_files(d.dir.path()),
        ));
    }
    sizes
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_stays_the_same_size_with_a_retention_and_grows_without() {
    let kept = journal_growth(&["--retain-finished-jobs", "1s"]).await;
    let forever = journal_growth(&[]).await;
    for ((jobs, with, with_files), (_, without, without_files)) in kept.iter().zip(&forever) {
        eprintln!(
            "after {jobs} jobs: journal {with} bytes and {with_files} result files with a 1 s retention, {without} bytes and {without_files} result files without"
        );
    }
    let (first, last) = (kept[0].1, kept[kept.len() - 1].1);
    assert!(
        last <= first + first / 2,
        "with a retention the journal stays flat: {kept:?}"
    );
    assert!(
        kept[kept.len() - 1].2 < JOBS / 10,
        "results past the retention are removed: {kept:?}"
    );
    let (first, last) = (forever[0].1, forever[forever.len() - 1].1);
    assert!(
        last >= first * 2,
        "without a retention the journal keeps every job: {forever:?}"
    );
    assert_eq!(forever[forever.len() - 1].2, JOBS, "{forever:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_job_leaves_no_row_no_result_and_no_listing() {
    let d = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &["--retain-finished-jobs", "500ms"],
        std::process::Stdio::inherit(),
    );
    let id = d.submit("default", &fixture("tagged.pdf")).await;
    assert_eq!(d.wait_final(&id).await["state"], "done");
    let result = d.dir.path().join(format!("results/default/{id}.json"));
    assert!(result.is_file());
    // An OCRed job leaves page previews beside its result; they go with it.
    let scan = d.submit("default", &fixture("phototest.tif")).await;
    assert_eq!(d.wait_final(&scan).await["state"], "done");
    let scan_result = d.dir.path().join(format!("results/default/{scan}.json"));
    let previews = d
        .dir
        .path()
        .join(format!("results/default/{scan}.previews"));
    // The spool keeps no bytes of a finished job.
    let spool = d.dir.path().join("data/spool");
    let mut left = vec![()];
    for _ in 0..50 {
        left = std::fs::read_dir(&spool)
            .map(|entries| entries.flatten().map(|_| ()).collect())
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "the finished job's upload left the spool");
    let journal = d.dir.path().join("data/journal.sqlite");
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rows: i64 = rusqlite::Connection::open(&journal)
            .unwrap()
            .query_row("SELECT count(*) FROM jobs WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
        if rows == 0 && !result.exists() && !scan_result.exists() && !previews.exists() {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "the jobs' journal rows, result files and previews are removed"
    );
    // The journal lists it no more.
    let listed: serde_json::Value = d.get_json("/v1/jobs").await;
    assert!(
        !listed.to_string().contains(&id),
        "a forgotten job is not listed: {listed}"
    );
}
