//! Results delivered beyond the results directory: the webhook sink against a local receiver
//! that fails on purpose (the failures a real receiver cannot be made to produce on cue); the
//! SQLite sink; the PostgreSQL sink against a real PostgreSQL server, up from the start or
//! coming up while deliveries are being retried.

use crate::common;

use std::sync::{Arc, Mutex};

use common::daemon::{Daemon, pipeline_yaml};
use common::fixture;
use common::postgres::{self, Postgres};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};

/// A receiver that answers `failure` (503 unless said otherwise) to its first `failures`
/// deliveries, and records them all.
struct Receiver {
    url: String,
    deliveries: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
}

async fn start_receiver(failures: usize) -> Arc<Receiver> {
    start_receiver_failing_with(failures, StatusCode::SERVICE_UNAVAILABLE).await
}

async fn start_receiver_failing_with(failures: usize, failure: StatusCode) -> Arc<Receiver> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = Arc::new(Receiver {
        url: format!("http://{}/hook", listener.local_addr().unwrap()),
        deliveries: Mutex::default(),
    });
    let state = receiver.clone();
    let route = warp::path!("hook")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(move |headers: HeaderMap, body: bytes::Bytes| {
            let mut deliveries = state.deliveries.lock().unwrap();
            deliveries.push((headers, body.to_vec()));
            let status = if deliveries.len() <= failures {
                failure
            } else {
                StatusCode::OK
            };
            warp::reply::with_status("", status)
        });
    tokio::spawn(warp::serve(route).incoming(listener).run());
    receiver
}

fn counter(metrics: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("pagemill_sink_deliveries_total{") && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn results_reach_the_webhook_signed_after_its_first_failures() {
    let receiver = start_receiver(2).await;
    let url = format!("webhook:\n    url: {}", receiver.url);
    let yaml = pipeline_yaml(
        "default",
        &[
            ("webhook:\n    url: \"\"", url.as_str()),
            ("secret_env: \"\"", "secret_env: PAGEMILL_TEST_HOOK_SECRET"),
        ],
    );
    let secret = "correct horse battery staple";
    let d = Daemon::start_with_env(
        &[("default", yaml)],
        &[],
        &[("PAGEMILL_TEST_HOOK_SECRET", secret)],
        std::process::Stdio::inherit(),
    );
    let id = d.submit("default", &fixture("phototest.tif")).await;
    assert_eq!(d.wait_final(&id).await["state"], "done");

    let deliveries = receiver.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 3, "two failures, then the delivery");
    let saved = std::fs::read(d.dir.path().join(format!("results/default/{id}.json"))).unwrap();
    for (headers, body) in &deliveries {
        assert_eq!(body, &saved, "the body is the saved result");
        assert_eq!(headers["idempotency-key"], id.as_str());
        assert_eq!(
            headers["x-pagemill-signature"],
            pagemill::stages::save::webhook::signature(secret.as_bytes(), body).as_str()
        );
    }
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert_eq!(counter(&metrics, "outcome=\"delivered\""), 1.0);
    assert_eq!(counter(&metrics, "outcome=\"retried\""), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_keeps_failing_leaves_a_dead_letter_and_the_result() {
    let receiver = start_receiver(usize::MAX).await;
    let url = format!("webhook:\n    url: {}", receiver.url);
    let yaml = pipeline_yaml(
        "default",
        &[
            ("webhook:\n    url: \"\"", url.as_str()),
            ("max_retries: 5", "max_retries: 1"),
        ],
    );
    let d = Daemon::start(&[("default", yaml)]);
    let id = d.submit("default", &fixture("tagged.pdf")).await;
    assert_eq!(d.wait_final(&id).await["state"], "done");
    assert_eq!(receiver.deliveries.lock().unwrap().len(), 2);
    assert!(
        d.dir
            .path()
            .join(format!("results/default/{id}.json"))
            .is_file()
    );
    let letters: Vec<(String, String)> =
        rusqlite::Connection::open(d.dir.path().join("data/journal.sqlite"))
            .unwrap()
            .prepare("SELECT job_id, sink FROM dead_letters")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(letters, vec![(id.clone(), "webhook".to_string())]);
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert_eq!(counter(&metrics, "outcome=\"dead_letter\""), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_refuses_the_result_is_not_asked_again() {
    let receiver = start_receiver_failing_with(usize::MAX, StatusCode::UNPROCESSABLE_ENTITY).await;
    let url = format!("webhook:\n    url: {}", receiver.url);
    let yaml = pipeline_yaml(
        "default",
        &[
            ("webhook:\n    url: \"\"", url.as_str()),
            ("max_retries: 5", "max_retries: 3"),
        ],
    );
    let d = Daemon::start(&[("default", yaml)]);
    let id = d.submit("default", &fixture("tagged.pdf")).await;
    let status = d.wait_final(&id).await;
    assert_eq!(status["state"], "done");
    // A 422 says the receiver will never take this result: one attempt, no retries.
    assert_eq!(receiver.deliveries.lock().unwrap().len(), 1);
    assert_eq!(
        status["sinks"]["webhook"]["state"], "dead_letter",
        "{status}"
    );
    assert_eq!(status["sinks"]["webhook"]["attempts"], 1, "{status}");
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert_eq!(counter(&metrics, "outcome=\"retried\""), 0.0);
    assert_eq!(counter(&metrics, "outcome=\"dead_letter\""), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_that_breaks_a_constraint_is_not_written_again() {
    // The SQLite table exists already, with a rule no result row meets.
    let yaml = pipeline_yaml(
        "default",
        &[
            (
                "sqlite:\n    path: \"\"",
                "sqlite:\n    path: data/results.sqlite",
            ),
            ("max_retries: 5", "max_retries: 3"),
        ],
    );
    let prepare = |dir: &std::path::Path| {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        rusqlite::Connection::open(dir.join("data/results.sqlite"))
            .unwrap()
            .execute_batch(
                "CREATE TABLE results (id TEXT PRIMARY KEY, pipeline TEXT NOT NULL,
                     name TEXT NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL,
                     error_code TEXT, pages INTEGER NOT NULL CHECK (pages > 1000),
                     summary_engine TEXT, summary TEXT, text TEXT NOT NULL,
                     result TEXT NOT NULL, saved_at TEXT NOT NULL)",
            )
            .unwrap();
    };
    let d = Daemon::start_prepared(
        &[("default", yaml)],
        &[],
        &[],
        std::process::Stdio::inherit(),
        prepare,
    );
    let id = d.submit("default", &fixture("tagged.pdf")).await;
    let status = d.wait_final(&id).await;
    assert_eq!(
        status["sinks"]["sqlite"]["state"], "dead_letter",
        "{status}"
    );
    assert_eq!(status["sinks"]["sqlite"]["attempts"], 1, "{status}");
    let error = status["sinks"]["sqlite"]["error"].as_str().unwrap();
    assert!(error.contains("CHECK constraint failed"), "{error}");
}

/// The default pipeline with the SQLite sink at `data/results.sqlite` and the PostgreSQL sink
/// at `pg_url`, `max_retries` each.
fn database_sinks_yaml(pg_url: &str, max_retries: u32) -> String {
    let sqlite = "sqlite:\n    path: data/results.sqlite".to_string();
    let postgres = format!("postgres:\n    url: \"{pg_url}\"");
    let retries = format!("max_retries: {max_retries}");
    pipeline_yaml(
        "default",
        &[
            ("sqlite:\n    path: \"\"", sqlite.as_str()),
            ("postgres:\n    url: \"\"", postgres.as_str()),
            ("max_retries: 5", retries.as_str()),
        ],
    )
}

fn sqlite_rows(d: &Daemon) -> Vec<(String, String, Option<String>, String, String)> {
    rusqlite::Connection::open(d.dir.path().join("data/results.sqlite"))
        .unwrap()
        .prepare("SELECT id, state, error_code, text, result FROM results ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn results_become_one_row_per_job_in_sqlite_and_postgres() {
    let pg = Postgres::start();
    let d = Daemon::start(&[("default", database_sinks_yaml(&pg.url(), 5))]);
    let good = d.submit("default", &fixture("phototest.tif")).await;
    let bad_file = d.dir.path().join("notes.pdf");
    std::fs::write(&bad_file, b"%PDF-1.7\nthe rest of this document is missing").unwrap();
    let bad = d.submit("default", &bad_file).await;
    let good_status = d.wait_final(&good).await;
    assert_eq!(good_status["state"], "done");
    let bad_status = d.wait_final(&bad).await;
    assert_eq!(bad_status["state"], "failed");
    let bad_code = bad_status["error"]["code"].as_str().unwrap().to_string();
    for sink in ["sqlite", "postgres"] {
        assert_eq!(
            good_status["sinks"][sink]["state"], "delivered",
            "{good_status}"
        );
        assert_eq!(good_status["sinks"][sink]["attempts"], 1, "{good_status}");
    }

    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.dir.path().join(format!("results/default/{good}.json"))).unwrap(),
    )
    .unwrap();
    let rows = sqlite_rows(&d);
    assert_eq!(rows.len(), 2);
    let by_id = |id: &str| rows.iter().find(|r| r.0 == id).unwrap().clone();
    let (_, state, code, text, result) = by_id(&good);
    assert_eq!((state.as_str(), code), ("done", None));
    assert_eq!(text, saved["text"].as_str().unwrap());
    assert!(text.contains("quick brown"), "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&result).unwrap(),
        saved
    );
    let (_, state, code, _, _) = by_id(&bad);
    assert_eq!(state, "failed");
    assert_eq!(code, Some(bad_code.clone()));

    let client = pg.client().await;
    let rows = client
        .query(
            "SELECT id, state, error_code, pages, result FROM results ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let id: String = row.get(0);
        let state: String = row.get(1);
        let code: Option<String> = row.get(2);
        let pages: i32 = row.get(3);
        let result: serde_json::Value = row.get(4);
        assert_eq!(result["id"], id.as_str());
        if id == good {
            assert_eq!((state.as_str(), code, pages), ("done", None, 1));
            assert_eq!(result, saved);
        } else {
            assert_eq!(id, bad);
            assert_eq!(
                (state, code),
                ("failed".to_string(), Some(bad_code.clone()))
            );
        }
    }
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        counter(&metrics, "sink=\"postgres\",outcome=\"delivered\""),
        2.0
    );
    assert_eq!(
        counter(&metrics, "sink=\"sqlite\",outcome=\"delivered\""),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_delivery_of_a_job_replaces_its_row() {
    let pg = Postgres::start();
    let cfg = pagemill::config::PostgresSinkConfig {
        url: pg.url(),
        table: "documents".into(),
        max_retries: 0,
        timeout: std::time::Duration::from_secs(10),
    };
    let sink = pagemill::stages::save::postgres::PostgresSink::new(cfg);
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        pagemill::stages::save::sqlite::SqliteSink::new(pagemill::config::SqliteSinkConfig {
            path: dir.path().join("r.sqlite"),
            table: "documents".into(),
            max_retries: 0,
        });
    let mut result: pagemill::model::result::JobResult =
        serde_json::from_value(serde_json::json!({
            "id": "job-1", "pipeline": "default",
            "source": {"name": "a.pdf", "sha256": "00", "bytes": 3, "media_type": null},
            "pages": [], "text": "first", "summary": null, "warnings": [], "error": null,
            "timings": {"total_ms": 0, "ingest_ms": 0, "render_ms": 0, "ocr_ms": 0,
                "summarize_ms": 0}
        }))
        .unwrap();
    for text in ["first", "second"] {
        result.text = text.into();
        let body = serde_json::to_vec(&result).unwrap();
        sink.upsert(&result, &body).await.unwrap();
        sqlite.upsert(&result, &body).unwrap();
    }
    let rows = pg
        .client()
        .await
        .query("SELECT text, result->>'text' FROM documents", &[])
        .await
        .unwrap();
    let texts: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(texts, vec![("second".to_string(), "second".to_string())]);
    let texts: Vec<String> = rusqlite::Connection::open(dir.path().join("r.sqlite"))
        .unwrap()
        .prepare("SELECT text FROM documents")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(texts, vec!["second".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_creating_the_table_at_once_each_write_their_row() {
    // Several daemons (cluster nodes) sharing one database meet it for the first time
    // together: each creates the table if missing, and none may lose its row to another's
    // creation of it.
    let pg = Postgres::start();
    for round in 0..3 {
        let table = format!("shared_{round}");
        let deliveries = (0..8).map(|node| {
            let sink = pagemill::stages::save::postgres::PostgresSink::new(
                pagemill::config::PostgresSinkConfig {
                    url: pg.url(),
                    table: table.clone(),
                    max_retries: 0,
                    timeout: std::time::Duration::from_secs(30),
                },
            );
            async move {
                let result: pagemill::model::result::JobResult =
                    serde_json::from_value(serde_json::json!({
                        "id": format!("job-{node}"), "pipeline": "default",
                        "source": {"name": "a.pdf", "sha256": "00", "bytes": 3,
                            "media_type": null},
                        "pages": [], "text": "text", "summary": null, "warnings": [],
                        "error": null,
                        "timings": {"total_ms": 0, "ingest_ms": 0, "render_ms": 0,
                            "ocr_ms": 0, "summarize_ms": 0}
                    }))
                    .unwrap();
                let body = serde_json::to_vec(&result).unwrap();
                sink.upsert(&result, &body).await
            }
        });
        for outcome in futures_util::future::join_all(deliveries).await {
            outcome.unwrap();
        }
        let rows = pg
            .client()
            .await
            .query(&format!("SELECT id FROM {table}"), &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 8);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_comes_up_late_gets_the_result_after_retries() {
    let port = common::free_port();
    let d = Daemon::start(&[(
        "default",
        database_sinks_yaml(&postgres::url_for_port(port), 9),
    )]);
    let id = d.submit("default", &fixture("phototest.tif")).await;
    // The delivery fails while nothing listens, and the job's status says so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let retrying = loop {
        let status = d.get_json(&format!("/v1/jobs/{id}")).await;
        if status["sinks"]["postgres"]["state"] == "retrying" {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_ne!(retrying["state"], "done", "not done while a sink waits");
    assert!(
        retrying["sinks"]["postgres"]["error"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL")
    );
    let pg = Postgres::start_on(port);
    let status = d.wait_final(&id).await;
    assert_eq!(status["state"], "done");
    let delivery = &status["sinks"]["postgres"];
    assert_eq!(delivery["state"], "delivered", "{status}");
    assert!(delivery["attempts"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["sinks"]["sqlite"]["attempts"], 1);
    let rows = pg
        .client()
        .await
        .query("SELECT id FROM results", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), id);
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(counter(&metrics, "sink=\"postgres\",outcome=\"retried\"") >= 1.0);
    assert_eq!(
        counter(&metrics, "sink=\"postgres\",outcome=\"delivered\""),
        1.0
    );
}
