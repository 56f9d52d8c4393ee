//! Results delivered beyond the results directory: the webhook sink against a local receiver
//! that fails on purpose (the failures a real receiver cannot be made to produce on cue).

mod common;

use std::sync::{Arc, Mutex};

use common::daemon::{Daemon, pipeline_yaml};
use common::fixture;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};

/// A receiver that answers 503 to its first `failures` deliveries, and records them all.
struct Receiver {
    url: String,
    deliveries: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
}

async fn start_receiver(failures: usize) -> Arc<Receiver> {
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
                StatusCode::SERVICE_UNAVAILABLE
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
    let url = format!("url: {}", receiver.url);
    let yaml = pipeline_yaml(
        "default",
        &[
            ("url: \"\"", url.as_str()),
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
    let url = format!("url: {}", receiver.url);
    let yaml = pipeline_yaml(
        "default",
        &[
            (r#"url: """#, url.as_str()),
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
