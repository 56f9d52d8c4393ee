//! A full disk: with the spool and journal on a small tmpfs, a submission that cannot be
//! stored answers 507 (`spool_unwritable` or `journal_unwritable`), the job accepted before is
//! neither lost nor damaged, and the daemon accepts again once space is freed. Mounting needs
//! root; without it the test says loudly that it skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::daemon::*;
use crate::common::fixture;

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the disk is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let small = vec![0u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_with_507_loses_nothing_and_recovers() {
    let base = tempfile::tempdir().unwrap();
    let disk_dir = base.path().join("disk");
    let Some(disk) = SmallDisk::mount(&disk_dir, "4m") else {
        eprintln!(
            "SKIPPED a_full_disk_refuses_with_507_loses_nothing_and_recovers: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    let spool = disk.0.join("spool");
    let journal = disk.0.join("journal.sqlite");
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

    let before = d.submit("default", &fixture("tagged.pdf")).await;
    assert_eq!(d.wait_final(&before).await["state"], "done");

    let filler = fill(&disk.0);
    let response = d.post_file("default", &fixture("phototest.tif")).await;
    assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = response.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap().to_string();
    assert!(
        ["spool_unwritable", "journal_unwritable"].contains(&code.as_str()),
        "{body}"
    );
    eprintln!("on a full disk the submission was refused with {code}");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "no partial upload left: {left:?}");

    // The daemon still serves; the job accepted before is intact.
    assert_eq!(d.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(
        d.get_json(&format!("/v1/jobs/{before}")).await["state"],
        "done"
    );
    let result = d.get(&format!("/v1/jobs/{before}/result")).await;
    assert_eq!(result.status(), StatusCode::OK);

    // Space freed: accepted again, and done.
    std::fs::remove_file(filler).unwrap();
    let after = d.submit("default", &fixture("phototest.tif")).await;
    assert_eq!(d.wait_final(&after).await["state"], "done");

    let conn = rusqlite::Connection::open(&journal).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let states: Vec<String> = conn
        .prepare("SELECT state FROM jobs ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(states, ["done", "done"]);
    drop(d);
}
