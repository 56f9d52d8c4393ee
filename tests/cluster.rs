//! Cluster mode against a real `nats-server -js` on loopback (no mock broker): two nodes share
//! one NATS server; a job submitted on one is stored in the cluster and has a status on the
//! other; an existing stream with other settings stops a node from starting, naming the
//! setting; a full queue answers 429 and NATS down answers 503, both with `Retry-After`.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::daemon::{Daemon, pipeline_yaml};
use crate::common::fixture;
use crate::common::nats::NatsServer;

/// A cluster node on `nats`, named `name`, with extra arguments.
fn node(nats: &NatsServer, name: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--cluster", nats.url.as_str(), "--node-name", name];
    args.extend_from_slice(extra);
    Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &args,
        Stdio::inherit(),
    )
}

#[tokio::test]
async fn a_job_submitted_on_one_node_has_its_status_on_the_other() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let id = a.submit("default", &fixture("phototest.tif")).await;
    let on_b = b.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(on_b.status(), StatusCode::OK);
    let status: Value = on_b.json().await.unwrap();
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["pipeline"], "default");
    assert_eq!(status["name"], "phototest.tif");
    // Listed on both nodes.
    for node in [&a, &b] {
        let listed = node.get_json("/v1/jobs").await;
        let ids: Vec<&str> = listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&id.as_str()), "{listed}");
    }
    // A node takes it from the queue and runs it; its status and result read the same on
    // the other node.
    let done = b.wait_final(&id).await;
    assert_eq!(done["state"], "done", "{done}");
    let result = b.get_json(&format!("/v1/jobs/{id}/result")).await;
    assert!(
        result["text"].as_str().unwrap().contains("quick brown dog"),
        "{result}"
    );
    // Unknown ids stay unknown.
    let missing = b.get("/v1/jobs/0123456789abcdef0123456789abcdef").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_idempotency_key_holds_across_nodes() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let post = |daemon: &Daemon, file: &str, key: &str| {
        daemon
            .http
            .post(daemon.url("/v1/pipelines/default/jobs"))
            .header("idempotency-key", key)
            .header("x-filename", file)
            .body(std::fs::read(fixture(file)).unwrap())
            .send()
    };
    let first = post(&a, "phototest.tif", "order-7").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again = post(&b, "phototest.tif", "order-7").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let other = post(&b, "bear-photo.jpg", "order-7").await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn a_stream_with_other_settings_stops_a_node_from_starting() {
    let nats = NatsServer::start();
    let _a = node(&nats, "a", &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/default.yaml"),
        pipeline_yaml("default", &[]),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pipelines",
            "pipelines",
        ])
        .args(["--cluster", nats.url.as_str(), "--node-name", "b"])
        .args(["--cluster-max-queued-jobs", "5"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node with other queue limits started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stream PAGEMILL_JOBS"), "{stderr}");
    assert!(stderr.contains("max_msgs = 10000"), "{stderr}");
    assert!(stderr.contains("needs 5"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &["--cluster-max-queued-jobs", "1"]);
    a.submit("default", &fixture("phototest.tif")).await;
    let refused = a.post_file("default", &fixture("phototest.tif")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "admission_full");
}

#[tokio::test]
async fn nats_down_answers_503_with_retry_after_and_stores_nothing() {
    let mut nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    nats.stop();
    // The node notices the connection is gone within a moment.
    let mut refused = None;
    for _ in 0..100 {
        let response = a.post_file("default", &fixture("phototest.tif")).await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(response);
            break;
        }
        assert_ne!(
            response.status(),
            StatusCode::ACCEPTED,
            "a 202 without NATS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("503 while NATS is down");
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cluster_unavailable");
    // Back up: the node reconnects and accepts again.
    nats.restart();
    for _ in 0..100 {
        let response = a.post_file("default", &fixture("phototest.tif")).await;
        if response.status() == StatusCode::ACCEPTED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the node did not accept again once NATS was back");
}
