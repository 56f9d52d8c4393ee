//! API keys and tenants, black-box: `pagemill keys` on the command line, a daemon that lets in
//! only keys with the route's scope, tenants that see only their own jobs, keys that change
//! without a restart, a per-tenant admission share, and a daemon that will not serve a
//! network address without keys unless told to.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pagemill::service::keys::{KeysFile, Scope};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::daemon::*;
use crate::common::{first_line, fixture, http_client};

fn keys_command(file: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .arg("keys")
        .args(args)
        .arg("--keys")
        .arg(file)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_string())
}

async fn post(client: &reqwest::Client, d: &Daemon, file: &Path) -> reqwest::Response {
    client
        .post(d.url("/v1/pipelines/default/jobs"))
        .header("x-filename", file.file_name().unwrap().to_str().unwrap())
        .body(std::fs::read(file).unwrap())
        .send()
        .await
        .unwrap()
}

async fn submitted(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

#[test]
fn keys_are_made_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");

    let (code, key, said) = keys_command(&file, &["add", "acme", "--scope", "submit,read"]);
    assert_eq!(code, Some(0), "{said}");
    let key = key.trim().to_string();
    assert!(key.starts_with("pm_") && key.len() >= 3 + 32, "{key}");
    let (code, _, said) = keys_command(&file, &["add", "ops", "--scope", "admin"]);
    assert_eq!(code, Some(0), "{said}");

    let (code, listed, _) = keys_command(&file, &["list"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("acme\tsubmit,read\t"), "{listed}");
    assert!(lines[1].starts_with("ops\tadmin\t"), "{listed}");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!listed.contains(&key) && !stored.contains(&key));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (code, _, said) = keys_command(&file, &["add", "acme"]);
    assert_eq!(code, Some(1), "a name is one key");
    assert!(said.contains("exists already"), "{said}");
    let (code, _, _) = keys_command(&file, &["revoke", "acme"]);
    assert_eq!(code, Some(0));
    let (_, listed, _) = keys_command(&file, &["list"]);
    assert!(
        listed.starts_with("ops\t") && listed.lines().count() == 1,
        "{listed}"
    );
    let (code, _, said) = keys_command(&file, &["revoke", "acme"]);
    assert_eq!(code, Some(1));
    assert!(said.contains("no key named"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_keys_with_the_routes_scope_get_in_and_keys_are_never_logged() {
    let logs = tempfile::NamedTempFile::new().unwrap();
    let (d, keys) = Daemon::start_with_keys(
        &[("default", pipeline_yaml("default", &[]))],
        &[
            ("reader", &[Scope::Read]),
            ("writer", &[Scope::Submit, Scope::Read]),
        ],
        &["--log-level", "debug"],
        Stdio::from(logs.reopen().unwrap()),
    );
    let (reader, writer) = (
        Daemon::client_with_key(&keys[0]),
        Daemon::client_with_key(&keys[1]),
    );
    let anonymous = http_client();

    // No key, a key that is not one, a malformed header: 401 with the challenge.
    let wrong = Daemon::client_with_key("pm_not-a-key");
    for client in [&anonymous, &wrong] {
        let response = client.get(d.url("/v1/jobs")).send().await.unwrap();
        assert_eq!(
            response.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer"
        );
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into())
        );
    }
    let response = anonymous
        .get(d.url("/v1/jobs"))
        .header("authorization", format!("Basic {}", keys[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = post(&anonymous, &d, &fixture("phototest.tif")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A key without the scope: 403.
    let response = post(&reader, &d, &fixture("phototest.tif")).await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    let response = reader
        .delete(d.url("/v1/jobs/no-such-job"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // With the scope: in.
    let id = submitted(post(&writer, &d, &fixture("phototest.tif")).await).await;
    let response = reader.get(d.url("/v1/pipelines")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Health, readiness, the OpenAPI document, the web page and (by default) metrics stay open.
    for path in [
        "/healthz",
        "/readyz",
        "/v1/openapi.json",
        "/metrics",
        "/",
        "/web/app.js",
    ] {
        let response = anonymous.get(d.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = anonymous
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // The writer's job is done; nothing anywhere holds a key.
    let state = d.wait_final_as(&writer, &id).await;
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["tenant"], "writer", "{state}");
    let result = writer
        .get(d.url(&format!("/v1/jobs/{id}/result")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logged = std::fs::read_to_string(logs.path()).unwrap();
    assert!(logged.contains("job finished"), "the log is captured");
    for key in &keys {
        let secret = &key[3..];
        assert!(!logged.contains(secret), "a key in the log");
        assert!(!metrics.contains(secret), "a key in the metrics");
        assert!(!result.contains(secret), "a key in the result");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_see_and_cancel_only_their_own_jobs() {
    let sqlite = "sqlite:\n    path: data/results.sqlite";
    let (d, keys) = Daemon::start_with_keys(
        &[(
            "default",
            pipeline_yaml("default", &[("sqlite:\n    path: \"\"", sqlite)]),
        )],
        &[
            ("tenant-a", &[Scope::Submit, Scope::Read]),
            ("tenant-b", &[Scope::Submit, Scope::Read]),
            ("operator", &[Scope::Admin]),
        ],
        &[],
        Stdio::inherit(),
    );
    let (a, b, admin) = (
        Daemon::client_with_key(&keys[0]),
        Daemon::client_with_key(&keys[1]),
        Daemon::client_with_key(&keys[2]),
    );
    let a_id = submitted(post(&a, &d, &fixture("phototest.tif")).await).await;
    let b_id = submitted(post(&b, &d, &fixture("tagged.pdf")).await).await;

    // B cannot see, follow or cancel A's job: it is as unknown as a job that does not exist.
    for (method, path) in [
        ("GET", format!("/v1/jobs/{a_id}")),
        ("GET", format!("/v1/jobs/{a_id}/result")),
        ("GET", format!("/v1/jobs/{a_id}/events")),
        ("DELETE", format!("/v1/jobs/{a_id}")),
        ("GET", "/v1/jobs/no-such-job".to_string()),
    ] {
        let request = match method {
            "GET" => b.get(d.url(&path)),
            _ => b.delete(d.url(&path)),
        };
        let response = request.send().await.unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::NOT_FOUND, "unknown_job".into()),
            "{method} {path}"
        );
    }

    // A's job was not cancelled by B, and finishes.
    let a_status = d.wait_final_as(&a, &a_id).await;
    assert_eq!(a_status["state"], "done", "{a_status}");
    assert_eq!(a_status["tenant"], "tenant-a");

    // Listings: each tenant its own; the admin key every job.
    let ids = |list: Value| -> Vec<String> {
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    let listed = |client: reqwest::Client| {
        let url = d.url("/v1/jobs");
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(ids(listed(a.clone()).await), vec![a_id.clone()]);
    assert_eq!(ids(listed(b.clone()).await), vec![b_id.clone()]);
    let mut all = ids(listed(admin.clone()).await);
    all.sort();
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(all, both);
    let response = admin
        .get(d.url(&format!("/v1/jobs/{a_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The tenant is in the result, the journal and the sink's row.
    let result: Value = a
        .get(d.url(&format!("/v1/jobs/{a_id}/result")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["source"]["tenant"], "tenant-a");
    let journal = rusqlite::Connection::open(d.dir.path().join("data/journal.sqlite")).unwrap();
    let tenant: String = journal
        .query_row("SELECT tenant FROM jobs WHERE id = ?1", [&a_id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tenant, "tenant-a");
    let mut row_tenant = None;
    for _ in 0..100 {
        let rows =
            rusqlite::Connection::open(d.dir.path().join("data/results.sqlite")).and_then(|c| {
                c.query_row("SELECT tenant FROM results WHERE id = ?1", [&a_id], |r| {
                    r.get::<_, Option<String>>(0)
                })
            });
        if let Ok(t) = rows {
            row_tenant = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(row_tenant.as_deref(), Some("tenant-a"));

    // Idempotency keys are per tenant: the same key names one job for A and another for B.
    let keyed = |client: &reqwest::Client, file: &Path| {
        client
            .post(d.url("/v1/pipelines/default/jobs"))
            .header("idempotency-key", "order-17")
            .body(std::fs::read(file).unwrap())
            .send()
    };
    let a_first = submitted(keyed(&a, &fixture("tagged.pdf")).await.unwrap()).await;
    let b_first = submitted(keyed(&b, &fixture("phototest.tif")).await.unwrap()).await;
    assert_ne!(a_first, b_first);
    let again = keyed(&a, &fixture("tagged.pdf")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], a_first.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_added_or_revoked_takes_effect_without_a_restart() {
    let (d, keys) = Daemon::start_with_keys(
        &[("default", pipeline_yaml("default", &[]))],
        &[("first", &[Scope::Read])],
        &[],
        Stdio::inherit(),
    );
    let file = d
        .dir
        .path()
        .join(pagemill::service::keys::DEFAULT_KEYS_FILE);
    let status_with = |key: String| {
        let url = d.url("/v1/jobs");
        async move {
            Daemon::client_with_key(&key)
                .get(url)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let wait_for = |key: String, wanted: StatusCode| {
        let status_with = &status_with;
        async move {
            for _ in 0..50 {
                if status_with(key.clone()).await == wanted {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert_eq!(status_with(keys[0].clone()).await, StatusCode::OK);

    // Added: in within a few seconds, the daemon still the same process.
    let mut stored = KeysFile::read(&file).unwrap();
    let second = stored.add("second", &[Scope::Read]).unwrap();
    stored.write(&file).unwrap();
    assert!(wait_for(second.clone(), StatusCode::OK).await);

    // Revoked: out.
    stored.revoke("first").unwrap();
    stored.write(&file).unwrap();
    assert!(wait_for(keys[0].clone(), StatusCode::UNAUTHORIZED).await);

    // SIGHUP reads the file at once, even when its time stamp did not move.
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let third = stored.add("third", &[Scope::Read]).unwrap();
    stored.write(&file).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status_with(third.clone()).await,
        StatusCode::UNAUTHORIZED,
        "an unchanged time stamp is not noticed without the signal"
    );
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    assert!(wait_for(third, StatusCode::OK).await);
    assert_eq!(status_with(second).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_past_its_share_waits_while_others_are_admitted() {
    let (d, keys) = Daemon::start_with_keys(
        &[(
            "default",
            pipeline_yaml(
                "default",
                &[("max_pages_per_tenant: 500", "max_pages_per_tenant: 1")],
            ),
        )],
        &[
            ("busy", &[Scope::Submit, Scope::Read]),
            ("other", &[Scope::Submit, Scope::Read]),
        ],
        &[],
        Stdio::inherit(),
    );
    let (busy, other) = (
        Daemon::client_with_key(&keys[0]),
        Daemon::client_with_key(&keys[1]),
    );
    // A 12-page scan holds busy's share for seconds.
    let big = d.dir.path().join("big.tif");
    crate::fairness::multi_page_tiff(&big, 12);
    let first = submitted(post(&busy, &d, &big).await).await;

    let refused = post(&busy, &d, &fixture("phototest.tif")).await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "admission_full", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("busy"),
        "{body}"
    );

    // Another tenant is admitted meanwhile.
    submitted(post(&other, &d, &fixture("phototest.tif")).await).await;

    // Once busy's job is over, busy is admitted again.
    d.wait_final_as(&busy, &first).await;
    submitted(post(&busy, &d, &fixture("phototest.tif")).await).await;
}

#[test]
fn without_keys_a_network_address_needs_an_explicit_choice() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--allow-unauthenticated"), "{said}");

    let mut open = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .args(["serve", "--listen", "0.0.0.0:0", "--allow-unauthenticated"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_line(&mut open, "pagemill serve --allow-unauthenticated");
    assert!(line.starts_with("pagemill listening on"), "{line}");
    let _ = open.kill();
    let _ = open.wait();
    let mut logged = String::new();
    std::io::Read::read_to_string(&mut open.stderr.take().unwrap(), &mut logged).unwrap();
    assert!(logged.contains("serving without API keys"), "{logged}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_an_admin_key_when_the_daemon_is_told_so() {
    let (d, keys) = Daemon::start_with_keys(
        &[("default", pipeline_yaml("default", &[]))],
        &[("reader", &[Scope::Read]), ("ops", &[Scope::Admin])],
        &["--metrics-require-key"],
        Stdio::inherit(),
    );
    let metrics = |client: reqwest::Client| {
        let url = d.url("/metrics");
        async move { client.get(url).send().await.unwrap().status() }
    };
    assert_eq!(metrics(http_client()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        metrics(Daemon::client_with_key(&keys[0])).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        metrics(Daemon::client_with_key(&keys[1])).await,
        StatusCode::OK
    );
    // Health and readiness stay open.
    for path in ["/healthz", "/readyz"] {
        let status = http_client()
            .get(d.url(path))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}
