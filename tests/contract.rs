//! Contract fuzzing: Schemathesis (pinned in tests/requirements.txt) runs against a live
//! daemon's `/v1/openapi.json`, with a valid admin key and without one: every operation, every
//! check (settings and the reasons for them in tests/schemathesis.toml), its stateful phase
//! following the document's links from a submission to the job's status, result, events and
//! cancellation. Any failure fails the test, with Schemathesis' report.

use std::path::Path;
use std::process::{Command, Stdio};

use pagemill::service::keys::Scope;

use crate::common::daemon::*;

/// Examples per operation and phase: enough to find what the first runs found, in seconds.
const EXAMPLES: &str = "100";

fn schemathesis(d: &Daemon, key: Option<&str>) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = root.join("target/test-venv/bin/st");
    assert!(
        st.is_file(),
        "{} is missing: run scripts/setup.sh --install-only",
        st.display()
    );
    // Schemathesis keeps a cache in its working directory: a scratch one, not the checkout.
    let scratch = tempfile::tempdir().unwrap();
    let mut command = Command::new(st);
    command
        .current_dir(scratch.path())
        .arg("--config-file")
        .arg(root.join("tests/schemathesis.toml"))
        .arg("run")
        .arg(d.url("/v1/openapi.json"))
        .args(["--checks", "all", "--exclude-checks", "use_after_free"])
        .args(["--max-examples", EXAMPLES, "--seed", "1"])
        .arg("--no-color")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = key {
        command.args(["--header", &format!("Authorization: Bearer {key}")]);
    }
    let output = command.output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_keeps_its_openapi_contract_under_schemathesis() {
    let (d, keys) = Daemon::start_with_keys(
        &[("default", pipeline_yaml("default", &[]))],
        &[("fuzzer", &[Scope::Admin])],
        &[],
        Stdio::inherit(),
    );
    for (who, key) in [
        ("with a key", Some(keys[0].as_str())),
        ("without a key", None),
    ] {
        let (passed, report) = tokio::task::block_in_place(|| schemathesis(&d, key));
        let summary: Vec<&str> = report
            .lines()
            .filter(|l| l.contains("generated") || l.contains("failures") || l.contains("passed"))
            .collect();
        eprintln!("schemathesis {who}: {}", summary.join(" | "));
        assert!(passed, "schemathesis {who} found failures:\n{report}");
        let selected = report
            .lines()
            .find_map(|l| l.trim().strip_prefix("Selected: "))
            .unwrap_or_else(|| panic!("no operation count:\n{report}"));
        let (tested, total) = selected.split_once('/').unwrap();
        assert_eq!(tested, total, "every operation is tested:\n{report}");
        assert!(
            report.contains("Stateful (in"),
            "the stateful phase ran:\n{report}"
        );
    }
    // The daemon is still healthy after the fuzzing.
    assert_eq!(d.get("/healthz").await.status(), reqwest::StatusCode::OK);
}
