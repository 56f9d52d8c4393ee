//! Cluster mode against real `nats-server`s on loopback (no mock broker): one server, or a
//! 3-server JetStream cluster with three copies of every stream. Nodes share the work; a job
//! submitted on one is stored in the cluster and has a status, events, a result and outputs on
//! every other, and is cancelled from any; an existing stream with other settings stops a node
//! from starting, naming the setting; a full queue answers 429 and NATS down answers 503, both
//! with `Retry-After`. No accepted job is lost or run twice: not when a node is killed in the
//! middle of a job (another resumes it from its checkpoints), nor when the stream leader's
//! server is killed, nor when a job runs longer than `ack_wait`, nor when a node leaves.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::daemon::{Daemon, pipeline_yaml};
use crate::common::nats::{NatsCluster, NatsServer};
use crate::common::postgres::Postgres;
use crate::common::{PATIENCE, corpus, fixture, metric, scanned_pdf, wait_exit};

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

/// A node of the cluster at `urls` (comma-separated), with one OCR thread and a short
/// `ack_wait` (3 s unless `extra` sets one), so that the jobs of a node that died come back within seconds.
fn short_lease_node(urls: &str, name: &str, pipeline: &str, extra: &[&str]) -> Daemon {
    short_lease_node_logging_to(urls, name, pipeline, extra, Stdio::inherit())
}

/// [`short_lease_node`], its logs (stderr) sent to `stderr`.
fn short_lease_node_logging_to(
    urls: &str,
    name: &str,
    pipeline: &str,
    extra: &[&str],
    stderr: Stdio,
) -> Daemon {
    let mut args = vec!["--cluster", urls, "--node-name", name, "--threads", "1"];
    if !extra.contains(&"--cluster-ack-wait") {
        args.extend(["--cluster-ack-wait", "3s"]);
    }
    args.extend_from_slice(extra);
    Daemon::start_with(&[("default", pipeline.to_string())], &args, stderr)
}

/// Whether `node` is running job `id` now: its document is in the node's spool.
fn runs(node: &Daemon, id: &str) -> bool {
    node.dir.path().join("data/spool").join(id).exists()
}

/// Result files of job `id` written on `node`.
fn results_on(node: &Daemon, id: &str) -> usize {
    usize::from(
        node.dir
            .path()
            .join(format!("results/default/{id}.json"))
            .exists(),
    )
}

async fn metrics_of(node: &Daemon) -> String {
    node.get("/metrics").await.text().await.unwrap()
}

/// Waits until `check` holds of job `id`'s status on `node`; fails after [`PATIENCE`].
async fn wait_status(node: &Daemon, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let status = node.get_json(&format!("/v1/jobs/{id}")).await;
        if check(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id}: {what} did not happen within {PATIENCE:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_lose_no_job_when_one_is_killed_in_the_middle_of_a_job() {
    let nats = NatsCluster::start().await;
    let pg = Postgres::start();
    let postgres = format!("postgres:\n    url: \"{}\"", pg.url());
    let pipeline = pipeline_yaml("default", &[("postgres:\n    url: \"\"", &postgres)]);
    let urls = nats.urls();
    let mut nodes: Vec<Option<Daemon>> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            Some(short_lease_node(
                &urls,
                name,
                &pipeline,
                &["--cluster-replicas", "3"],
            ))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path().join("scan-8p.pdf");
    scanned_pdf(8, &scan);
    let big = nodes[0].as_ref().unwrap().submit("default", &scan).await;
    let mut ids = vec![big.clone()];
    for i in 0..30 {
        let node = nodes[i % 3].as_ref().unwrap();
        ids.push(node.submit("default", &fixture("phototest.tif")).await);
    }
    // Once the scan has pages done, its node is killed.
    let any = nodes[1].as_ref().unwrap();
    wait_status(any, &big, "two pages OCRed", |s| {
        s["pages"]["ocred"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let victim = (0..3)
        .find(|&i| runs(nodes[i].as_ref().unwrap(), &big))
        .expect("a node runs the scan");
    let mut killed = nodes[victim].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let survivors: Vec<&Daemon> = nodes.iter().flatten().collect();

    for id in &ids {
        let status = survivors[0].wait_final(id).await;
        assert_eq!(status["state"], "done", "{status}");
    }
    // Exactly one result per job, on whichever node ran it.
    for id in &ids {
        let written: usize =
            survivors.iter().map(|n| results_on(n, id)).sum::<usize>() + results_on(&killed, id);
        assert_eq!(written, 1, "job {id} has {written} results");
    }
    let result = survivors[1]
        .get_json(&format!("/v1/jobs/{big}/result"))
        .await;
    assert_eq!(result["pages"].as_array().unwrap().len(), 8);
    // The scan finished on another node from the killed node's checkpoints.
    let mut restored = 0.0;
    let mut takeovers = 0.0;
    for node in &survivors {
        let text = metrics_of(node).await;
        restored += metric(&text, "pagemill_pages_total", &["outcome=\"restored\""]);
        takeovers += metric(&text, "pagemill_cluster_lease_takeovers_total", &[]);
    }
    assert!(restored >= 1.0, "no page of the scan was restored");
    assert!(restored < 8.0, "every page was restored: {restored}");
    // The killed node's lease; on a loaded machine a live node's 3 s lease may lapse too
    // (then its job is still finished once: one result and one row, checked here).
    assert!(takeovers >= 1.0, "no lease was taken over");
    // One row per job in the shared database.
    let rows = pg
        .client()
        .await
        .query("SELECT id, state FROM results", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len());
    for row in rows {
        let id: String = row.get(0);
        let state: String = row.get(1);
        assert!(ids.contains(&id), "{id}");
        assert_eq!(state, "done");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_leaders_server_killed_loses_no_accepted_job() {
    let mut nats = NatsCluster::start().await;
    let urls = nats.urls();
    let pipeline = pipeline_yaml("default", &[]);
    let a = short_lease_node(&urls, "a", &pipeline, &["--cluster-replicas", "3"]);
    let b = short_lease_node(&urls, "b", &pipeline, &["--cluster-replicas", "3"]);
    let first = a.submit("default", &fixture("phototest.tif")).await;
    let leader = nats.stream_leader("PAGEMILL_JOBS").await;
    nats.kill(&leader);
    // Submissions during the failover: accepted, or refused with a time to come back.
    let mut accepted = vec![first];
    let mut refused = 0;
    for i in 0..40 {
        let node = if i % 2 == 0 { &a } else { &b };
        let response = node.post_file("default", &fixture("phototest.tif")).await;
        match response.status() {
            StatusCode::ACCEPTED => {
                let body: Value = response.json().await.unwrap();
                accepted.push(body["id"].as_str().unwrap().to_string());
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                assert!(response.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!(
                "{other} during the failover: {}",
                response.text().await.unwrap()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "during the failover: {} accepted, {refused} refused",
        accepted.len()
    );
    assert!(
        accepted.len() > 1,
        "nothing was accepted after the failover"
    );
    // Every accepted job ends done; those that do not are named together.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut unfinished = accepted.clone();
    while !unfinished.is_empty() && tokio::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for id in unfinished {
            let response = b.get(&format!("/v1/jobs/{id}")).await;
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                still.push(id);
                continue;
            }
            let status: Value = response.json().await.unwrap();
            match status["state"].as_str().unwrap() {
                "done" => {}
                "queued" | "running" => still.push(id),
                _ => panic!("an accepted job did not end done: {status}"),
            }
        }
        unfinished = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut states = Vec::new();
    for id in &unfinished {
        states.push(b.get_json(&format!("/v1/jobs/{id}")).await);
    }
    assert!(
        unfinished.is_empty(),
        "{} of {} accepted jobs did not finish: {states:?}",
        unfinished.len(),
        accepted.len()
    );
    assert_ne!(nats.stream_leader("PAGEMILL_JOBS").await, leader);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_slower_than_ack_wait_is_not_run_twice() {
    let nats = NatsServer::start();
    let pipeline = pipeline_yaml("default", &[]);
    // ack_wait 1 s: the scan takes several.
    let args = ["--cluster-ack-wait", "1s"];
    let a = short_lease_node(&nats.url, "a", &pipeline, &args);
    let b = short_lease_node(&nats.url, "b", &pipeline, &args);
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path().join("scan-6p.pdf");
    scanned_pdf(6, &scan);
    let id = a.submit("default", &scan).await;
    let status = a.wait_final(&id).await;
    assert_eq!(status["state"], "done", "{status}");
    let mut recognized = 0.0;
    let mut redelivered = 0.0;
    for node in [&a, &b] {
        let text = metrics_of(node).await;
        recognized += metric(&text, "pagemill_pages_total", &["outcome=\"ocr\""]);
        redelivered += metric(&text, "pagemill_cluster_redeliveries_total", &[]);
    }
    assert_eq!(recognized, 6.0, "every page is recognized once");
    assert_eq!(redelivered, 0.0);
    assert_eq!(results_on(&a, &id) + results_on(&b, &id), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_outputs_previews_and_cancel_work_from_a_node_that_does_not_run_the_job() {
    let nats = NatsServer::start();
    let pipeline = pipeline_yaml("default", &[("formats: []", "formats: [txt, hocr]")]);
    let a = short_lease_node(&nats.url, "a", &pipeline, &[]);
    let b = short_lease_node(&nats.url, "b", &pipeline, &[]);
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path().join("scan-3p.pdf");
    scanned_pdf(3, &scan);
    let id = a.submit("default", &scan).await;
    // Events from a node that does not run it, from the start to the end.
    wait_status(&a, &id, "running", |s| s["state"] == "running").await;
    // Claimed: its node fetches the document into its spool.
    for _ in 0..600 {
        if runs(&a, &id) || runs(&b, &id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (runner, other) = if runs(&a, &id) { (&a, &b) } else { (&b, &a) };
    assert!(runs(runner, &id));
    let events = other.get(&format!("/v1/jobs/{id}/events")).await;
    assert_eq!(events.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(120), events.text())
        .await
        .expect("the event stream ends with the job")
        .unwrap();
    let statuses: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert!(body.contains("event:end"), "{body}");
    let last = statuses.last().unwrap();
    assert_eq!(last["state"], "done", "{body}");
    assert_eq!(last["pages"]["ocred"], 3, "{body}");
    assert!(
        statuses.iter().any(|s| s["state"] == "running"),
        "progress is followed: {body}"
    );
    // The result, its outputs and its previews from the other node.
    let result = other.get_json(&format!("/v1/jobs/{id}/result")).await;
    for (format, expected) in [("txt", result["text"].as_str().unwrap().to_string())] {
        let response = other.get(&format!("/v1/jobs/{id}/outputs/{format}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), expected);
    }
    let hocr = other.get(&format!("/v1/jobs/{id}/outputs/hocr")).await;
    assert_eq!(hocr.status(), StatusCode::OK);
    let preview = other.get(&format!("/v1/jobs/{id}/pages/2/preview")).await;
    assert_eq!(preview.status(), StatusCode::OK);
    let png = preview.bytes().await.unwrap();
    let local = std::fs::read(
        runner
            .dir
            .path()
            .join(format!("results/default/{id}.previews/2.png")),
    )
    .unwrap();
    assert_eq!(png.as_ref(), local.as_slice());

    // Cancel, asked of the node that does not run the job.
    let scan = dir.path().join("scan-20p.pdf");
    scanned_pdf(20, &scan);
    let long = a.submit("default", &scan).await;
    wait_status(&a, &long, "one page OCRed", |s| {
        s["pages"]["ocred"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let other = if runs(&a, &long) { &b } else { &a };
    let holds_part_of = |node: &Daemon| {
        std::fs::read_dir(node.dir.path().join("data/spool"))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(&long))
            })
            .unwrap_or(false)
    };
    assert!(
        holds_part_of(&a) || holds_part_of(&b),
        "no node runs the job"
    );
    let cancelled = other
        .http
        .delete(other.url(&format!("/v1/jobs/{long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let status = other.wait_final(&long).await;
    assert_eq!(status["state"], "cancelled", "{status}");
    assert!(status["pages"]["ocred"].as_u64().unwrap() < 20, "{status}");
    // Split into ranges of 8 pages (the default): every range stops, on both nodes.
    for _ in 0..300 {
        if !holds_part_of(&a) && !holds_part_of(&b) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !holds_part_of(&a) && !holds_part_of(&b),
        "a range of the cancelled job still runs"
    );
    let again = other
        .http
        .delete(other.url(&format!("/v1/jobs/{long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_leaves_hands_its_running_job_back_and_exits_0() {
    let nats = NatsServer::start();
    let pipeline = pipeline_yaml("default", &[]);
    // No time to finish: a page of this scan takes a fraction of a second, so with any wait
    // the node could finish the job itself before it leaves.
    let mut a = short_lease_node(&nats.url, "a", &pipeline, &["--shutdown-timeout", "0s"]);
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path().join("scan-16p.pdf");
    scanned_pdf(16, &scan);
    let id = a.submit("default", &scan).await;
    wait_status(&a, &id, "two pages OCRed", |s| {
        s["pages"]["ocred"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let pid = a.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = wait_exit(&mut a.child, "node a after SIGTERM");
    assert!(exit.success(), "{exit}");
    // Handed back at once: another node takes it without waiting for a lease to go stale,
    // and resumes it from the pages the first one finished.
    let b = short_lease_node(&nats.url, "b", &pipeline, &[]);
    let status = b.wait_final(&id).await;
    assert_eq!(status["state"], "done", "{status}");
    let text = metrics_of(&b).await;
    assert!(
        metric(&text, "pagemill_pages_total", &["outcome=\"restored\""]) >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "pagemill_cluster_lease_takeovers_total", &[]),
        0.0
    );
    assert_eq!(results_on(&a, &id) + results_on(&b, &id), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_document_reads_as_unsplit_with_every_page_once_when_a_node_holding_a_range_dies() {
    let Some(corpus) = corpus("a_split_document_reads_as_unsplit") else {
        return;
    };
    let scan = corpus.join("scans-24p.pdf");
    // The document read whole, on one machine.
    let single = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let whole = single.submit("default", &scan).await;
    let status = single.wait_final(&whole).await;
    assert_eq!(status["state"], "done", "{status}");
    let unsplit = single.get_json(&format!("/v1/jobs/{whole}/result")).await;
    drop(single);

    // The same document on three nodes, split into ranges of 8 pages (the default).
    let nats = NatsServer::start();
    let pipeline = pipeline_yaml("default", &[]);
    assert!(pipeline.contains("split_pages: 8"));
    let mut nodes: Vec<Option<Daemon>> = ["a", "b", "c"]
        .iter()
        .map(|name| Some(short_lease_node(&nats.url, name, &pipeline, &[])))
        .collect();
    let id = nodes[0].as_ref().unwrap().submit("default", &scan).await;
    // Kill a node once it holds a range with pages read.
    let holds_range = |node: &Daemon| {
        std::fs::read_dir(node.dir.path().join("data/spool"))
            .map(|entries| {
                entries.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{id}.r"))
                })
            })
            .unwrap_or(false)
    };
    let any = nodes[1].as_ref().unwrap();
    let progress = wait_status(any, &id, "three pages OCRed", |s| {
        s["pages"]["ocred"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(progress["pages"]["total"], 24, "{progress}");
    let victim = (0..3)
        .find(|&i| holds_range(nodes[i].as_ref().unwrap()))
        .expect("a node holds a range of the split document");
    let mut killed = nodes[victim].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let survivors: Vec<&Daemon> = nodes.iter().flatten().collect();
    let status = survivors[0].wait_final(&id).await;
    assert_eq!(status["state"], "done", "{status}");
    let split = survivors[1]
        .get_json(&format!("/v1/jobs/{id}/result"))
        .await;
    // Its events, from any node, end with every page counted once.
    let events = survivors[1].get(&format!("/v1/jobs/{id}/events")).await;
    let body = events.text().await.unwrap();
    let last: Value = serde_json::from_str(
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .next_back()
            .expect("an event")
            .trim(),
    )
    .unwrap();
    assert_eq!(last["state"], "done", "{body}");
    assert_eq!(last["pages"]["total"], 24, "{body}");
    assert_eq!(last["pages"]["ocred"], 24, "{body}");

    // Every page once, in order, with the text of the unsplit run.
    let pages = split["pages"].as_array().unwrap();
    let expected = unsplit["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 24);
    for (number, (page, whole)) in pages.iter().zip(expected).enumerate() {
        assert_eq!(page["number"], number as u64 + 1);
        assert_eq!(page["text"], whole["text"], "page {}", number + 1);
    }
    assert_eq!(split["text"], unsplit["text"]);
    // One result, written by one node.
    let written: usize =
        survivors.iter().map(|n| results_on(n, &id)).sum::<usize>() + results_on(&killed, &id);
    assert_eq!(written, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_that_fails_fails_the_split_job_with_its_pages_error() {
    // Every page runs out of its OCR time: the unsplit run fails with that page's error.
    let pipeline = pipeline_yaml(
        "default",
        &[("max_ocr_time_per_page: 120s", "max_ocr_time_per_page: 1ms")],
    );
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path().join("scan-12p.pdf");
    scanned_pdf(12, &scan);
    let single = Daemon::start(&[("default", pipeline.clone())]);
    let whole = single.submit("default", &scan).await;
    let unsplit = single.wait_final(&whole).await;
    assert_eq!(unsplit["state"], "failed", "{unsplit}");
    drop(single);

    let nats = NatsServer::start();
    // Node a takes the job (b starts once it has) and says when it splits it.
    let log = dir.path().join("a.log");
    let a = short_lease_node_logging_to(
        &nats.url,
        "a",
        &pipeline,
        &["--log-level", "info"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let id = a.submit("default", &scan).await;
    wait_status(&a, &id, "taken", |s| s["state"] != "queued").await;
    let b = short_lease_node(&nats.url, "b", &pipeline, &[]);
    let status = b.wait_final(&id).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["pages"]["total"], 12, "{status}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("split a job into page ranges") && l.contains(id.as_str())),
        "the job was not split: {logged}"
    );
    assert_eq!(
        status["error"]["code"], unsplit["error"]["code"],
        "{status}"
    );
    // No result was saved for it, on either node.
    assert_eq!(results_on(&a, &id) + results_on(&b, &id), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_job_takes_its_turn_between_the_ranges_of_a_split_job_which_counts_once() {
    // One node with one slot; ranges of 2 pages; a queue that holds 2 jobs.
    let nats = NatsServer::start();
    let pipeline = pipeline_yaml("default", &[("split_pages: 8", "split_pages: 2")]);
    let a = short_lease_node(
        &nats.url,
        "a",
        &pipeline,
        &["--cluster-max-queued-jobs", "2"],
    );
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path().join("scan-12p.pdf");
    scanned_pdf(12, &scan);
    // Split into 6 ranges, more than the queue holds: they are not counted against it.
    let big = a.submit("default", &scan).await;
    wait_status(&a, &big, "split", |s| s["pages"]["total"] == 12).await;
    // The split job still counts once: one more job fills the queue.
    let small = a.submit("default", &fixture("phototest.tif")).await;
    let refused = a.post_file("default", &fixture("phototest.tif")).await;
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the split job and the small one fill a queue of 2"
    );
    // The small job runs after the range in hand, not after all of them.
    let done = a.wait_final(&small).await;
    assert_eq!(done["state"], "done", "{done}");
    let progress = a.get_json(&format!("/v1/jobs/{big}")).await;
    let ocred = progress["pages"]["ocred"].as_u64().unwrap();
    assert!(
        ocred <= 6,
        "the small job waited for {ocred} of the split job's 12 pages: {progress}"
    );
    let status = a.wait_final(&big).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["pages"]["ocred"], 12, "{status}");
    let result = a.get_json(&format!("/v1/jobs/{big}/result")).await;
    assert_eq!(result["pages"].as_array().unwrap().len(), 12);
}
