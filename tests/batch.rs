//! `pagemill run` takes its files through intake, as the daemon takes uploads: what an upload
//! would be refused for is refused with the same code (and the file left alone), and a batch
//! larger than the admission budget waits for room instead of failing.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::fixture;

fn run(out: &Path, extra: &[&str], files: &[&Path]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .arg("run")
        .arg("--out")
        .arg(out)
        .args(extra)
        .args(files)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, said)
}

fn result_files(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_batch_refuses_what_an_upload_would_be_refused_for_and_leaves_the_file_alone() {
    let inputs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let notes = inputs.path().join("notes.pdf");
    std::fs::write(&notes, "not a document at all, whatever its name says\n").unwrap();
    let empty = inputs.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let scan = fixture("phototest.tif");

    let (output, said) = run(out.path(), &[], &[&notes, &scan, &empty]);

    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("failed notes.pdf") && said.contains("(unsupported_media_type)"),
        "{said}"
    );
    assert!(
        said.contains("failed empty.png") && said.contains("(empty_document)"),
        "{said}"
    );
    assert!(said.contains("done   phototest.tif"), "{said}");
    assert!(said.contains("1 of 3 documents done, 2 failed"), "{said}");
    // Refused at intake: no job, so no result; the files refused are the user's and stay.
    assert_eq!(result_files(out.path()).len(), 1, "{said}");
    assert!(notes.is_file() && empty.is_file());
}

#[test]
fn a_batch_larger_than_the_admission_budget_waits_for_room() {
    let inputs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let pipeline = inputs.path().join("one-at-a-time.yaml");
    std::fs::write(
        &pipeline,
        "version: 1\nname: one-at-a-time\nadmission:\n  max_pages_in_system: 1\n",
    )
    .unwrap();
    let mut files = Vec::new();
    for i in 1..=3 {
        let file = inputs.path().join(format!("tagged-{i}.pdf"));
        std::fs::copy(fixture("tagged.pdf"), &file).unwrap();
        files.push(file);
    }
    let files: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();

    let (output, said) = run(
        out.path(),
        &["--pipeline", pipeline.to_str().unwrap()],
        &files,
    );

    assert!(output.status.success(), "{said}");
    assert!(said.contains("3 of 3 documents done, 0 failed"), "{said}");
    // Admitted one at a time: each job's id (a UUIDv7, made at admission) is no older than
    // the result of the job before it.
    let mut jobs: Vec<(u64, u64)> = result_files(out.path())
        .iter()
        .map(|name| {
            let path = out.path().join(name);
            let result = crate::common::read_result(&path);
            let (secs, nanos) = uuid::Uuid::parse_str(&result.id)
                .unwrap()
                .get_timestamp()
                .expect("a UUIDv7 job id")
                .to_unix();
            let admitted_ms = secs * 1000 + u64::from(nanos) / 1_000_000;
            let saved = std::fs::metadata(&path).unwrap().modified().unwrap();
            let saved_ms = saved
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            (admitted_ms, saved_ms)
        })
        .collect();
    assert_eq!(jobs.len(), 3, "{said}");
    jobs.sort();
    for pair in jobs.windows(2) {
        let ((_, saved), (admitted_next, _)) = (pair[0], pair[1]);
        assert!(
            admitted_next >= saved,
            "a job was admitted at {admitted_next} ms while the one before it, saved at {saved} ms, held the budget: {jobs:?}"
        );
    }
}
