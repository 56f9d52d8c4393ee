//! Black-box tests of `pagemill serve` on a real port: the jobs API, errors, admission,
//! cancellation, events, OpenAPI, metrics, readiness and graceful shutdown.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::*;
use common::*;
use pagemill::service::keys::Scope;
use reqwest::StatusCode;
use serde_json::Value;

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_follow_and_fetch_a_job_and_get_clear_errors() {
    let d = Daemon::start(&[
        ("default", pipeline_yaml("default", &[])),
        (
            "ocr-pdf",
            pipeline_yaml("ocr-pdf", &[("text_layer: auto", "text_layer: ignore")]),
        ),
        (
            "tiny",
            pipeline_yaml(
                "tiny",
                &[("max_document_bytes: 50MiB", "max_document_bytes: 10KiB")],
            ),
        ),
    ]);
    assert_eq!(d.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(d.get("/readyz").await.status(), StatusCode::OK);
    let listed: Value = d.get("/v1/pipelines").await.json().await.unwrap();
    let names: Vec<&str> = listed["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["default", "ocr-pdf", "tiny"]);

    // A raw upload: 202, Location, links, then events up to the final state.
    let response = d.post_file("default", &fixture("phototest.tif")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(accepted["links"]["result"], format!("/v1/jobs/{id}/result"));
    let events = d
        .get(&format!("/v1/jobs/{id}/events"))
        .await
        .text()
        .await
        .unwrap();
    let last_event = events
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .last()
        .unwrap();
    assert!(last_event.starts_with("event:end"), "{events}");
    assert!(last_event.contains("\"state\":\"done\""), "{last_event}");
    let status = d.wait_final(&id).await;
    assert_eq!(status["pages"]["total"], 1);
    assert_eq!(status["pages"]["ocred"], 1);
    let result: Value = d.get_json(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!(result["source"]["name"], "phototest.tif");
    assert!(result["text"].as_str().unwrap().contains("quick brown dog"));

    // A multipart upload takes the file name from the form.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(fixture("tagged.pdf")).unwrap())
            .file_name("tagged.pdf"),
    );
    let response = d
        .http
        .post(d.url("/v1/pipelines/default/jobs"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.unwrap();
    let status = d.wait_final(accepted["id"].as_str().unwrap()).await;
    assert_eq!(status["name"], "tagged.pdf");
    assert_eq!(status["state"], "done");

    // The result of a job still being OCRed (two 300 DPI pages) is not there yet.
    let id = d.submit("ocr-pdf", &fixture("tagged.pdf")).await;
    let (code, error) = error_code(d.get(&format!("/v1/jobs/{id}/result")).await).await;
    assert_eq!(
        (code, error.as_str()),
        (StatusCode::CONFLICT, "not_finished")
    );

    // Errors: JSON with stable codes.
    let post = |pipeline: &str, body: &'static [u8]| {
        d.http
            .post(d.url(&format!("/v1/pipelines/{pipeline}/jobs")))
            .body(body)
            .send()
    };
    let cases: Vec<(reqwest::Response, StatusCode, &str)> = vec![
        (
            post("nope", b"%PDF-1.4").await.unwrap(),
            StatusCode::NOT_FOUND,
            "unknown_pipeline",
        ),
        (
            post("default", b"plain text").await.unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            post("default", b"").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "empty_document",
        ),
        (
            d.post_file("tiny", &fixture("phototest.tif")).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            d.get("/v1/jobs/nope").await,
            StatusCode::NOT_FOUND,
            "unknown_job",
        ),
        (
            d.get("/v1/nothing-here").await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (response, status, code) in cases {
        assert_eq!(error_code(response).await, (status, code.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pipeline_answers_429_with_retry_after() {
    let d = Daemon::start(&[(
        "narrow",
        pipeline_yaml(
            "narrow",
            &[("max_pages_in_system: 1000", "max_pages_in_system: 2")],
        ),
    )]);
    let mut retry_after = None;
    for _ in 0..4 {
        let response = d.post_file("narrow", &fixture("phototest.tif")).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let (_, code) = error_code(response).await;
            assert_eq!(code, "admission_full");
        }
    }
    let retry_after = retry_after.expect("a submission beyond the budget is refused");
    assert!((1..=600).contains(&retry_after));
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "pagemill_jobs_rejected_total{pipeline=\"narrow\",reason=\"admission_full\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_submissions_against_a_small_budget() {
    let d = Daemon::start(&[(
        "small",
        pipeline_yaml(
            "small",
            &[("max_pages_in_system: 1000", "max_pages_in_system: 8")],
        ),
    )]);
    let body = std::fs::read(fixture("phototest.tif")).unwrap();
    let submissions = (0..100).map(|_| {
        let request = d
            .http
            .post(d.url("/v1/pipelines/small/jobs"))
            .body(body.clone())
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body)
        }
    });
    let answers = futures_util::future::join_all(submissions).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for (status, retry_after, body) in answers {
        match status {
            StatusCode::ACCEPTED => accepted.push(body["id"].as_str().unwrap().to_string()),
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert!(retry_after.is_some(), "429 carries Retry-After");
                assert_eq!(body["error"]["code"], "admission_full");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refused > 0, "some submissions are refused");
    assert!(!accepted.is_empty(), "some are accepted");
    for id in &accepted {
        assert_eq!(d.wait_final(id).await["state"], "done");
    }
    let peak = peak_rss_bytes(&d.child.id().to_string());
    eprintln!(
        "100 concurrent submissions: {} accepted, {refused} refused, peak RSS {} MiB",
        accepted.len(),
        peak >> 20
    );
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_corpus_document_goes_through_raw_and_multipart() {
    let Some(corpus) = corpus("every_kind_of_corpus_document_over_http") else {
        return;
    };
    let d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    // (file, media type, pages, a word that must be read)
    let documents = [
        ("phototest.tif", "image/tiff", 1, "quick"),
        ("phototest-rotated-R.png", "image/png", 1, "quick"),
        ("lept-w91frag.jpg", "image/jpeg", 1, "the"),
        ("linn-jbig2.pdf", "application/pdf", 1, "LinnSequencer"),
        ("linn-ccitt.pdf", "application/pdf", 1, "LinnSequencer"),
        ("c02-22.pdf", "application/pdf", 1, "the"),
        ("tagged.pdf", "application/pdf", 2, "Heading"),
    ];
    for (i, (name, media_type, pages, word)) in documents.iter().enumerate() {
        let bytes = std::fs::read(corpus.join(name)).unwrap();
        let request = d.http.post(d.url("/v1/pipelines/default/jobs"));
        let request = if i % 2 == 0 {
            request.header("x-filename", *name).body(bytes)
        } else {
            request.multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
            ))
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{name}");
        let accepted: Value = response.json().await.unwrap();
        let id = accepted["id"].as_str().unwrap();
        let events = d
            .get(&format!("/v1/jobs/{id}/events"))
            .await
            .text()
            .await
            .unwrap();
        assert!(events.contains("event:end"), "{name}: {events}");
        let result: Value = d.get_json(&format!("/v1/jobs/{id}/result")).await;
        assert!(result["error"].is_null(), "{name}: {}", result["error"]);
        assert_eq!(result["source"]["name"], *name);
        assert_eq!(result["source"]["media_type"], *media_type);
        assert_eq!(result["pages"].as_array().unwrap().len(), *pages, "{name}");
        assert!(
            result["text"].as_str().unwrap().contains(word),
            "{name}: no {word:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_job_ends_cancelled_and_its_pages_are_skipped() {
    let d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(d.submit("default", &fixture("phototest.tif")).await);
    }
    let last = ids.last().unwrap();
    let response = d
        .http
        .delete(d.url(&format!("/v1/jobs/{last}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let status = d.wait_final(last).await;
    assert_eq!(status["state"], "cancelled", "{status}");
    assert_eq!(status["error"]["code"], "cancelled");
    let result: Value = d.get_json(&format!("/v1/jobs/{last}/result")).await;
    assert!(
        result["text"].as_str().unwrap().is_empty(),
        "no page of it was OCRed"
    );
    let (code, error) = error_code(
        d.http
            .delete(d.url(&format!("/v1/jobs/{last}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, error.as_str()),
        (StatusCode::CONFLICT, "already_finished")
    );
    for id in &ids[..4] {
        assert_eq!(d.wait_final(id).await["state"], "done");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_file_is_refused_cleanly_while_the_daemon_keeps_serving() {
    let Some(corpus) = corpus("every_hostile_file_is_refused_cleanly_over_http") else {
        return;
    };
    // With API keys in force: refusals of bad input are the same for a tenant.
    let (mut d, keys) = Daemon::start_with_keys(
        &[("default", pipeline_yaml("default", &[]))],
        &[("uploader", &[Scope::Submit, Scope::Read])],
        &[],
        std::process::Stdio::inherit(),
    );
    d.http = Daemon::client_with_key(&keys[0]);
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join("hostile"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let response = d.post_file("default", &file).await;
        match response.status() {
            StatusCode::ACCEPTED => {
                let accepted: Value = response.json().await.unwrap();
                let status = d.wait_final(accepted["id"].as_str().unwrap()).await;
                if name != "lept-bad_mediabox_input.pdf" {
                    assert_eq!(status["state"], "failed", "{name}: {status}");
                    assert!(status["error"]["code"].as_str().unwrap().len() > 3);
                }
            }
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                let (_, code) = error_code(response).await;
                assert!(
                    ["empty_document", "unsupported_media_type"].contains(&code.as_str()),
                    "{name}: {code}"
                );
            }
            other => panic!("{name}: unexpected {other}"),
        }
        assert_eq!(
            d.get("/healthz").await.status(),
            StatusCode::OK,
            "after {name}"
        );
    }
    let id = d.submit("default", &fixture("phototest.tif")).await;
    assert_eq!(d.wait_final(&id).await["state"], "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_describes_the_served_routes() {
    let d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let doc: Value = d.get("/v1/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, operations) in paths {
        assert_eq!(
            pagemill::http::route_label(path),
            path,
            "{path} is a served route"
        );
        for (method, operation) in operations.as_object().unwrap() {
            let url = d.url(
                &path
                    .replace("{pipeline}", "default")
                    .replace("{id}", "no-such-job")
                    .replace("{format}", "txt")
                    .replace("{n}", "1")
                    .replace("{asset}", "app.js"),
            );
            let request = match method.as_str() {
                "get" => d.http.get(&url),
                "post" => d.http.post(&url).body(Vec::new()),
                "delete" => d.http.delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let status = request.send().await.unwrap().status();
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(status.as_str()),
                "{method} {path} answered {status}, documented: {:?}",
                documented.keys().collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(paths.len(), 14, "every served route is documented");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_have_histogram_buckets_and_process_figures() {
    let d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    // Before anything has failed, the failure series exist at 0, so that ratios and alert
    // rules over them read 0 rather than no data.
    let fresh = d.get("/metrics").await.text().await.unwrap();
    let value = |metric: &str, labels: &[&str]| -> Option<f64> {
        fresh
            .lines()
            .find(|l| l.starts_with(&format!("{metric}{{")) && labels.iter().all(|x| l.contains(x)))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    for stage in ["ingest", "render", "ocr", "assemble", "summarize", "save"] {
        let stage = format!("stage=\"{stage}\"");
        for code in ["internal", "invalid_pdf", "ocr_timeout"] {
            let code = format!("error_type=\"{code}\"");
            assert_eq!(
                value("pagemill_stage_errors_total", &[&stage, &code]),
                Some(0.0),
                "{stage} {code}"
            );
        }
    }
    for outcome in ["done", "failed", "cancelled"] {
        let outcome = format!("outcome=\"{outcome}\"");
        assert_eq!(
            value("pagemill_jobs_completed_total", &[&outcome]),
            Some(0.0),
            "{outcome}"
        );
    }
    assert_eq!(
        value("pagemill_pages_total", &["outcome=\"failed\""]),
        Some(0.0)
    );
    let id = d.submit("default", &fixture("phototest.tif")).await;
    d.wait_final(&id).await;
    // A failing document exercises the error counters.
    let failing = d
        .http
        .post(d.url("/v1/pipelines/default/jobs"))
        .body(b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF".to_vec())
        .send()
        .await
        .unwrap();
    let failing: Value = failing.json().await.unwrap();
    assert_eq!(
        d.wait_final(failing["id"].as_str().unwrap()).await["state"],
        "failed"
    );
    let text = d.get("/metrics").await.text().await.unwrap();
    for needle in [
        "pagemill_http_request_duration_seconds_bucket{",
        "pagemill_stage_processing_seconds_bucket{",
        "pagemill_job_duration_seconds_bucket{",
        "pagemill_ocr_page_confidence_bucket{",
        "pagemill_jobs_completed_total{pipeline=\"default\",outcome=\"done\"} 1",
        "pagemill_build_info{",
        "pagemill_process_resident_memory_bytes",
        "pagemill_cpu_pool_threads",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(!text.contains("quantile="), "histograms, not summaries");
    assert!(!text.contains(&id), "no job id as a label");

    // Prometheus's own linter accepts the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/setup.sh");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // At rest, every item a stage received was sent on, failed, or discarded.
    for stage in ["ingest", "render", "ocr", "assemble", "summarize", "save"] {
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.starts_with(&format!("{name}{{")) && l.contains(&format!("stage=\"{stage}\""))
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum()
        };
        let received = sum("pagemill_stage_received_total");
        let accounted = sum("pagemill_stage_sent_total")
            + sum("pagemill_stage_errors_total")
            + sum("pagemill_stage_discarded_total");
        assert!(received > 0.0, "{stage} received nothing");
        assert_eq!(
            received, accounted,
            "{stage}: received = sent + errors + discarded"
        );
        // Nothing holds a credit at rest, and every stage says how many items it works on.
        assert_eq!(
            sum("pagemill_stage_queue_depth"),
            0.0,
            "{stage} queue depth"
        );
        assert!(sum("pagemill_stage_workers") >= 1.0, "{stage} workers");
    }
    // The admission gauges show an empty system against the configured budget.
    for (needle, value) in [
        ("pagemill_jobs_in_system{pipeline=\"default\"}", "0"),
        (
            "pagemill_admission_pages_in_system{pipeline=\"default\"}",
            "0",
        ),
        (
            "pagemill_admission_bytes_in_system{pipeline=\"default\"}",
            "0",
        ),
        (
            "pagemill_admission_pages_limit{pipeline=\"default\"}",
            "1000",
        ),
        (
            "pagemill_admission_bytes_limit{pipeline=\"default\"}",
            "1073741824",
        ),
    ] {
        assert!(
            text.lines().any(|l| l == format!("{needle} {value}")),
            "expected {needle} {value}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_admitting_and_finishes_accepted_jobs() {
    let d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let id = d.submit("default", &fixture("phototest.tif")).await;
    // SAFETY: sends SIGTERM to the daemon child this test started.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, code) = error_code(d.post_file("default", &fixture("phototest.tif")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    );
    assert_eq!(
        d.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let exit = tokio::task::spawn_blocking(move || {
        let mut d = d;
        let status = wait_exit(&mut d.child, "the daemon after SIGTERM with a job running");
        (status, d)
    })
    .await
    .unwrap();
    assert!(exit.0.success(), "{:?}", exit.0);
    let result_dir = exit.1.dir.path().join("results/default");
    assert!(
        result_dir.join(format!("{id}.json")).is_file(),
        "the accepted job finished"
    );
}
