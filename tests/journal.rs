//! The journal keeps the 202 promise: jobs accepted before a `kill -9` finish after the
//! restart with exactly one result each; `Idempotency-Key` maps a resubmission to its job,
//! across restarts too; `GET /v1/jobs` lists jobs from the journal.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::daemon::*;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// A delay in `0..max_ms` that differs from run to run, from the clock's nanoseconds.
fn random_delay(max_ms: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(nanos % max_ms)
}

async fn post(d: &Daemon, file: &PathBuf, key: Option<&str>) -> reqwest::Result<reqwest::Response> {
    let mut request = d
        .http
        .post(d.url("/v1/pipelines/default/jobs"))
        .header("x-filename", file.file_name().unwrap().to_str().unwrap())
        .body(std::fs::read(file).unwrap());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_accepted_before_kill_9_all_finish_after_restart_with_one_result_each() {
    // Two sinks: the results directory, and an SQLite table (an upsert keyed by job id).
    let sqlite = (
        "sqlite:\n    path: \"\"",
        "sqlite:\n    path: data/results.sqlite",
    );
    let mut d = Daemon::start(&[("default", pipeline_yaml("default", &[sqlite]))]);
    let files = [fixture("phototest.tif"), fixture("tagged.pdf")];
    let mut accepted = BTreeSet::new();
    let mut interrupted = 0;
    let results = d.dir.path().join("results/default");
    let saved = |dir: &std::path::Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        let name = e.unwrap().file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".json").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for round in 0..5 {
        // Ten submissions at once; the daemon is killed while they are in flight or being
        // worked on. Only those answered 202 were promised.
        let mut submissions = Vec::new();
        for i in 0..10 {
            let (http, url, file) = (
                d.http.clone(),
                d.url("/v1/pipelines/default/jobs"),
                files[i % files.len()].clone(),
            );
            submissions.push(tokio::spawn(async move {
                http.post(url)
                    .header("x-filename", file.file_name().unwrap().to_str().unwrap())
                    .body(std::fs::read(&file).unwrap())
                    .send()
                    .await
            }));
        }
        tokio::time::sleep(random_delay(1500)).await;
        d.child.kill().unwrap();
        let saved_before_kill = saved(&results);
        d.kill_and_restart();
        let mut promised = 0;
        for submission in submissions {
            if let Ok(Ok(response)) = submission.await
                && response.status() == StatusCode::ACCEPTED
            {
                let body: Value = response.json().await.unwrap();
                let id = body["id"].as_str().unwrap().to_string();
                if !saved_before_kill.contains(&id) {
                    interrupted += 1;
                }
                accepted.insert(id);
                promised += 1;
            }
        }
        eprintln!("round {round}: {promised} of 10 accepted before the kill");
    }
    assert!(!accepted.is_empty(), "no submission was ever accepted");
    eprintln!("{interrupted} accepted jobs had no result when the daemon was killed");
    assert!(
        interrupted > 0,
        "every job finished before its kill: nothing was tested"
    );

    for id in &accepted {
        let status = d.wait_final(id).await;
        assert_eq!(status["state"], "done", "{id}: {status}");
        let result = d.get(&format!("/v1/jobs/{id}/result")).await;
        assert_eq!(result.status(), StatusCode::OK, "{id}");
    }
    // A job the daemon took on (journaled) whose 202 the kill cut off was never promised, yet
    // it runs to the end like the others.
    let listed = d.get_json("/v1/jobs?limit=1000").await;
    let journaled: BTreeSet<String> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_string())
        .collect();
    assert!(accepted.is_subset(&journaled), "{listed}");
    let unanswered: Vec<String> = journaled.difference(&accepted).cloned().collect();
    for id in &unanswered {
        let status = d.wait_final(id).await;
        assert_eq!(
            status["state"], "done",
            "{id}, taken on unanswered: {status}"
        );
    }
    eprintln!(
        "{} jobs taken on whose answer the kill cut off",
        unanswered.len()
    );
    // Exactly one complete result per job taken on, and nothing half-written.
    let mut names: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Beside the results: each job's page previews, every one whole (a preview is written to
    // a `.part` file and renamed, so a kill leaves at most a `.part`, never served).
    let previews: Vec<String> = accepted
        .iter()
        .chain(&unanswered)
        .map(|id| format!("{id}.previews"))
        .collect();
    let leftovers: Vec<&String> = names
        .iter()
        .filter(|n| !n.ends_with(".json") && !previews.contains(n))
        .collect();
    assert!(leftovers.is_empty(), "partial files: {leftovers:?}");
    for dir in names.iter().filter(|n| previews.contains(n)) {
        for entry in std::fs::read_dir(results.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".png") {
                image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            } else {
                assert!(name.ends_with(".png.part"), "{}", path.display());
            }
        }
    }
    for id in &accepted {
        let path = results.join(format!("{id}.json"));
        let result = read_result(&path);
        assert_eq!(&result.id, id);
        assert!(result.error.is_none());
    }
    // The SQLite sink holds one row per result file, each for a job that finished.
    let rows: Vec<(String, String)> =
        rusqlite::Connection::open(d.dir.path().join("data/results.sqlite"))
            .unwrap()
            .prepare("SELECT id, state FROM results ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let row_ids: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(row_ids, saved(&results), "a row for each result file");
    assert!(accepted.is_subset(&row_ids));
    assert!(rows.iter().all(|(_, state)| state == "done"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_returns_the_same_job_even_after_a_restart() {
    let mut d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let (a, b) = (fixture("phototest.tif"), fixture("tagged.pdf"));

    let first = post(&d, &a, Some("order-17")).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();

    let again = post(&d, &a, Some("order-17")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());

    let other = post(&d, &b, Some("order-17")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["error"]["code"], "idempotency_key_reused");

    d.wait_final(&id).await;
    d.kill_and_restart();
    let after = post(&d, &a, Some("order-17")).await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["id"], id.as_str());
    assert_eq!(after["state"], "done");

    let listed = d.get_json("/v1/jobs").await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_listed_from_the_journal_with_filters_and_paging() {
    let d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(d.submit("default", &fixture("tagged.pdf")).await);
    }
    let broken = d.dir.path().join("broken.pdf");
    std::fs::write(&broken, b"%PDF-1.7\nnot really\n").unwrap();
    let failed = d.submit("default", &broken).await;
    for id in ids.iter().chain([&failed]) {
        d.wait_final(id).await;
    }

    let page1 = d.get_json("/v1/jobs?state=done&limit=2").await;
    let page1_ids: Vec<&str> = page1["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(page1_ids, [ids[0].as_str(), ids[1].as_str()]);
    let next = page1["next"].as_str().expect("a next cursor");
    let page2 = d
        .get_json(&format!("/v1/jobs?state=done&limit=2&after={next}"))
        .await;
    assert_eq!(page2["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page2["jobs"][0]["id"], ids[2].as_str());
    assert!(page2["next"].is_null());

    let failures = d.get_json("/v1/jobs?state=failed").await;
    assert_eq!(failures["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(failures["jobs"][0]["id"], failed.as_str());
    assert!(failures["jobs"][0]["error"]["code"].is_string());

    let none = d.get_json("/v1/jobs?pipeline=other").await;
    assert!(none["jobs"].as_array().unwrap().is_empty());
    let future = d.get_json("/v1/jobs?since=2999-01-01T00:00:00Z").await;
    assert!(future["jobs"].as_array().unwrap().is_empty());
    let past = d.get_json("/v1/jobs?since=2000-01-01T00:00:00Z").await;
    assert_eq!(past["jobs"].as_array().unwrap().len(), 4);
    let bad = d.get("/v1/jobs?since=yesterday").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

/// A TIFF of `pages` copies of phototest.tif, in `dir`.
fn many_page_tiff(dir: &std::path::Path, pages: usize) -> PathBuf {
    use tiff::encoder::{Rational, TiffEncoder, colortype::Gray8};
    use tiff::tags::ResolutionUnit;
    let page = image::open(fixture("phototest.tif")).unwrap().into_luma8();
    let path = dir.join(format!("{pages}-pages.tif"));
    let mut file = std::fs::File::create(&path).unwrap();
    let mut encoder = TiffEncoder::new(&mut file).unwrap();
    for _ in 0..pages {
        let mut tiff = encoder
            .new_image::<Gray8>(page.width(), page.height())
            .unwrap();
        tiff.resolution(ResolutionUnit::Inch, Rational { n: 200, d: 1 });
        tiff.write_data(page.as_raw()).unwrap();
    }
    path
}

/// The sum of a counter's samples whose labels contain `labels`.
fn counter(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_job_does_not_ocr_its_checkpointed_pages_again() {
    const PAGES: usize = 24;
    let mut d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let tiff = many_page_tiff(d.dir.path(), PAGES);
    let id = d.submit("default", &tiff).await;
    // Kill once a few pages are done, long before all are.
    for _ in 0..600 {
        let status = d.get_json(&format!("/v1/jobs/{id}")).await;
        if status["pages"]["ocred"].as_u64().unwrap() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.kill_and_restart();

    let status = d.wait_final(&id).await;
    assert_eq!(status["state"], "done", "{status}");
    let metrics = d.get("/metrics").await.text().await.unwrap();
    let restored = counter(&metrics, "pagemill_pages_total", "outcome=\"restored\"");
    let ocred = counter(&metrics, "pagemill_pages_total", "outcome=\"ocr\"");
    eprintln!("after the restart: {restored} pages restored, {ocred} OCRed");
    assert!(
        restored >= 3.0,
        "checkpointed pages were restored: {restored}"
    );
    // Every page was either restored or OCRed by the new process, never both.
    assert_eq!(restored + ocred, PAGES as f64);

    let result = read_result(&d.dir.path().join(format!("results/default/{id}.json")));
    assert_eq!(result.pages.len(), PAGES);
    let gt = std::fs::read_to_string(fixture("phototest.tif.gt.txt")).unwrap();
    for page in &result.pages {
        assert!(cer(&page.text, &gt) <= 0.02, "page {}", page.number);
    }
}

/// A small tmpfs, mounted for one test and unmounted (lazily) when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (and a loud note) where mounting is not permitted.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("*** SKIPPED: cannot mount a tmpfs here (needs root) ***");
            return None;
        }
        Some(SmallDisk { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_answers_507_leaves_no_partial_files_and_recovers() {
    let Some(disk) = SmallDisk::mount("2m") else {
        return;
    };
    let spool = disk.path.join("spool");
    let journal = disk.path.join("journal.sqlite");
    let d = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &[
            "--spool",
            spool.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
        ],
        std::process::Stdio::inherit(),
    );
    // A document of ~600 KB, and a filler that leaves less room than that.
    let big = many_page_tiff(d.dir.path(), 2);
    let accepted = d.submit("default", &fixture("tagged.pdf")).await;
    d.wait_final(&accepted).await;
    let filler = disk.path.join("filler");
    let free = {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&disk.path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    std::fs::write(&filler, vec![0u8; (free - 200_000) as usize]).unwrap();

    let refused = post(&d, &big, None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = refused.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap();
    assert!(
        ["spool_unwritable", "journal_unwritable"].contains(&code),
        "{body}"
    );
    let spooled: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        spooled.iter().all(|n| !n.ends_with(".part")),
        "partial upload left: {spooled:?}"
    );
    assert_eq!(
        d.get("/healthz").await.status(),
        StatusCode::OK,
        "still serving"
    );

    // Space comes back: the same daemon accepts and finishes the document.
    std::fs::remove_file(&filler).unwrap();
    let id = d.submit("default", &big).await;
    assert_eq!(d.wait_final(&id).await["state"], "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_journal_entry_is_quarantined_and_startup_continues() {
    use pagemill::service::journal::{Journal, JournalJob, now_ms};
    // A journal left by an earlier run: one good unfinished job, one damaged entry.
    let state = tempfile::tempdir().unwrap();
    let (spool, journal_path) = (state.path().join("spool"), state.path().join("j.sqlite"));
    std::fs::create_dir(&spool).unwrap();
    let upload = spool.join("01good");
    std::fs::copy(fixture("tagged.pdf"), &upload).unwrap();
    {
        let journal = Journal::open(&journal_path).unwrap();
        journal
            .accept(&JournalJob {
                id: "01good".into(),
                pipeline: "default".into(),
                name: "tagged.pdf".into(),
                spool_path: upload.to_string_lossy().into_owned(),
                bytes: std::fs::metadata(&upload).unwrap().len(),
                sha256: "x".into(),
                idempotency_key: None,
                tenant: None,
                state: "accepted".into(),
                submitted_at_ms: now_ms(),
                finished_at_ms: None,
                error_code: None,
                result_path: None,
            })
            .unwrap();
    }
    rusqlite::Connection::open(&journal_path)
        .unwrap()
        .execute(
            "INSERT INTO jobs (id, pipeline, name, spool_path, bytes, sha256, state, submitted_at_ms)
             VALUES ('00bad', 'default', 'x', 's', x'00ff', 'x', 'accepted', 'garbage')",
            [],
        )
        .unwrap();

    let log_path = state.path().join("log.json");
    let d = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &[
            "--spool",
            spool.to_str().unwrap(),
            "--journal",
            journal_path.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        std::process::Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    assert_eq!(d.wait_final("01good").await["state"], "done");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("quarantined an unreadable journal entry")),
        "{log}"
    );
    let state_of_bad: String = rusqlite::Connection::open(&journal_path)
        .unwrap()
        .query_row("SELECT state FROM jobs WHERE id = '00bad'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(state_of_bad, "quarantined");
}
