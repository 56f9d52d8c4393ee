//! The LLM summarizer against an OpenAI-compatible endpoint that misbehaves on purpose: 429s
//! with `Retry-After` (a pause for every request to the server), 5xx until retries run out
//! (fallback to the extractive engine), an outage that documents without a fallback wait out
//! on the bounded edge, up to their job's deadline (and can be cancelled meanwhile), 401s that
//! fail a job at once, answers that the context is too long (map-reduce over smaller parts), a
//! cache that spares repeat calls, a server with a fixed number of slots (the adaptive
//! concurrency limit), a circuit that probes once before closing, structured extraction
//! checked against a schema, and two pipelines sharing one server's concurrency limit and
//! circuit. The endpoint is a small local server: no real LLM can be made to fail on cue.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake_llm::{Behaviour, Fake, start_fake, valid_extraction};
use common::*;
use pagemill::llm::client::LlmSummarizer;
use pagemill::llm::error::LlmError;

fn llm_pipeline(
    out: &std::path::Path,
    fake: &Fake,
    extra: &[(&str, &str)],
) -> pagemill::config::Pipeline {
    let base = format!("base_url: {}", fake.base_url);
    let mut replacements = vec![
        ("engine: extractive", "engine: llm"),
        ("base_url: http://127.0.0.1:8000/v1", base.as_str()),
        ("max_retries: 4", "max_retries: 2"),
    ];
    replacements.extend_from_slice(extra);
    pipeline(out, &replacements)
}

fn summary_of(event: &pagemill::pipeline::messages::JobFinished) -> (String, String, Vec<String>) {
    let result = read_result(event.result_path.as_ref().unwrap());
    let summary = result.summary.expect("a summary");
    (summary.engine, summary.text, result.warnings)
}

#[tokio::test(flavor = "multi_thread")]
async fn summaries_come_from_the_llm_and_repeats_from_the_cache() {
    let fake = start_fake(Behaviour::Healthy).await;
    let out = tempfile::tempdir().unwrap();
    let files = [fixture("phototest.tif"), fixture("phototest.tif")];
    let events = run_files(llm_pipeline(out.path(), &fake, &[]), &files, None).await;
    for event in &events {
        let (engine, text, warnings) = summary_of(event);
        assert_eq!(engine, "llm");
        assert!(text.starts_with("LLM summary of"), "{text}");
        assert!(warnings.is_empty(), "{warnings:?}");
    }
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        1,
        "the repeat came from the cache"
    );
    let prompt = fake.prompts.lock().unwrap()[0].clone();
    assert!(
        prompt.contains("quick brown dog"),
        "the document text is in the prompt"
    );
    assert!(
        prompt.contains("phototest.tif") && prompt.contains("English"),
        "{prompt}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_waited_out_as_retry_after_says() {
    let fake = start_fake(Behaviour::RateLimitedFirst(2)).await;
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        llm_pipeline(out.path(), &fake, &[]),
        &[fixture("phototest.tif")],
        None,
    )
    .await;
    let (engine, _, warnings) = summary_of(&events[0]);
    assert_eq!(engine, "llm", "{warnings:?}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
    // Two answers said "Retry-After: 1": each retry came at least a second after.
    let arrivals = fake.arrivals.lock().unwrap().clone();
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(990),
            "{arrivals:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_holds_back_every_request_to_the_server() {
    // The first request is answered 429 with "Retry-After: 1"; one request at a time, so the
    // other document's request waits for the room the first one gives back at once.
    let fake = start_fake(Behaviour::RateLimitedFirst(1)).await;
    let llm = summarizer(
        &fake,
        &[("initial: 2", "initial: 1"), ("max: 16", "max: 1")],
    );
    let outcomes = summarize_many(&llm, 2).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
    // Neither the first document's retry nor the other document's request went out within
    // the second the server asked for.
    let arrivals = fake.arrivals.lock().unwrap().clone();
    for later in &arrivals[1..] {
        assert!(
            *later - arrivals[0] >= Duration::from_millis(990),
            "{arrivals:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_llm_falls_back_to_the_extractive_engine() {
    let fake = start_fake(Behaviour::Broken).await;
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        llm_pipeline(out.path(), &fake, &[]),
        &[fixture("phototest.tif")],
        None,
    )
    .await;
    assert!(events[0].error.is_none(), "the job itself succeeds");
    let (engine, text, warnings) = summary_of(&events[0]);
    assert_eq!(engine, "extractive");
    assert!(text.contains("quick brown dog"), "{text}");
    assert!(
        warnings.iter().any(|w| w.contains("the LLM failed")),
        "{warnings:?}"
    );
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        3,
        "one try and two retries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_fallback_an_error_no_retry_mends_fails_the_job_at_once() {
    // 401: waiting would not help; the job fails with the server's answer, after one request.
    let fake = start_fake(Behaviour::Unauthorized).await;
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        llm_pipeline(
            out.path(),
            &fake,
            &[("fallback: extractive", "fallback: none")],
        ),
        &[fixture("tagged.pdf")],
        None,
    )
    .await;
    let error = events[0].error.as_ref().expect("the job fails");
    assert_eq!(error.code, "summary_failed", "{error:?}");
    assert!(error.message.contains("401"), "{error:?}");
    let result = read_result(events[0].result_path.as_ref().unwrap());
    assert!(result.summary.is_none());
    assert_eq!(result.error.as_ref(), Some(error));
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1, "no retry");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_too_long_for_the_context_is_summarized_in_parts() {
    let fake = start_fake(Behaviour::SmallContext(200)).await;
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(
        out.path(),
        &fake,
        &[
            ("max_input_chars: 12000", "max_input_chars: 1000"),
            (
                r#"prompt: "Summarize the following document in a few sentences, in {language}. Document name: {name}.\n\n{text}""#,
                r#"prompt: "{text}""#,
            ),
        ],
    );
    let events = run_files(p, &[fixture("tagged.pdf")], None).await;
    let (engine, _, warnings) = summary_of(&events[0]);
    assert_eq!(engine, "llm", "{warnings:?}");
    let prompts = fake.prompts.lock().unwrap().clone();
    let answered: Vec<&String> = prompts
        .iter()
        .filter(|p| p.chars().count() <= 200)
        .collect();
    assert!(
        answered.len() >= 3,
        "parts, then their summaries: {} prompts of sizes {:?}",
        prompts.len(),
        prompts
            .iter()
            .map(|p| p.chars().count())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_stops_requests_and_the_fallback_answers() {
    let fake = start_fake(Behaviour::Broken).await;
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(
        out.path(),
        &fake,
        &[
            ("max_retries: 2", "max_retries: 0"),
            ("circuit_failures: 5", "circuit_failures: 2"),
            ("circuit_cooldown: 30s", "circuit_cooldown: 10m"),
            // One document at a time, so that the count of requests is exact.
            ("summarize_documents: 2", "summarize_documents: 1"),
        ],
    );
    let files = [
        fixture("phototest.tif"),
        fixture("tagged.pdf"),
        fixture("phototest.tif"),
        fixture("tagged.pdf"),
    ];
    let events = run_files(p, &files, None).await;
    let mut paused = 0;
    for event in &events {
        let (engine, _, warnings) = summary_of(event);
        assert_eq!(engine, "extractive", "{warnings:?}");
        if warnings.iter().any(|w| w.contains("requests are paused")) {
            paused += 1;
        }
    }
    // The first two documents to reach the summarizer (whichever they are:
    // text-layer PDFs overtake scans) failed, then the circuit held the other
    // two back.
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    assert_eq!(paused, 2, "two documents found the circuit open");
}

#[tokio::test(flavor = "multi_thread")]
async fn hangs_and_malformed_answers_end_in_the_fallback_within_bounds() {
    // A server slower than the timeout: each try times out, retries are bounded.
    let fake = start_fake(Behaviour::Slow(Duration::from_secs(30))).await;
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(
        out.path(),
        &fake,
        &[
            ("max_retries: 2", "max_retries: 1"),
            ("timeout: 120s", "timeout: 1s"),
        ],
    );
    let events = run_files(p, &[fixture("phototest.tif")], None).await;
    let (engine, _, warnings) = summary_of(&events[0]);
    assert_eq!(engine, "extractive");
    assert!(
        warnings.iter().any(|w| w.contains("could not be reached")),
        "{warnings:?}"
    );
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        2,
        "one try and one retry"
    );

    // A 200 whose body is not JSON: no retry, the fallback answers.
    let fake = start_fake(Behaviour::Malformed).await;
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        llm_pipeline(out.path(), &fake, &[]),
        &[fixture("phototest.tif")],
        None,
    )
    .await;
    let (engine, _, warnings) = summary_of(&events[0]);
    assert_eq!(engine, "extractive");
    assert!(
        warnings.iter().any(|w| w.contains("has no message")),
        "{warnings:?}"
    );
}

/// The LLM client of a test pipeline, called directly.
fn summarizer(fake: &Fake, extra: &[(&str, &str)]) -> Arc<LlmSummarizer> {
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(out.path(), fake, extra);
    Arc::new(LlmSummarizer::new(&p.summarize.llm, "eng", "test"))
}

/// Summarizes `n` different documents at once; one outcome each.
async fn summarize_many(llm: &Arc<LlmSummarizer>, n: usize) -> Vec<Result<String, LlmError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let llm = llm.clone();
            tokio::spawn(async move {
                llm.summarize(&format!("doc-{i}.pdf"), &format!("Text of document {i}."))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_stay_under_the_limit_which_shrinks_on_429s() {
    // Four slots; a request beyond them is answered 429 at once.
    let fake = start_fake(Behaviour::Slots {
        slots: 4,
        min: Duration::from_millis(100),
        max: Duration::from_millis(200),
    })
    .await;
    let llm = summarizer(
        &fake,
        &[
            ("max_retries: 2", "max_retries: 8"),
            ("initial: 2", "initial: 16"),
            ("max: 16", "max: 17"),
        ],
    );
    let outcomes = summarize_many(&llm, 24).await;
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert!(
        fake.rejected.load(Ordering::SeqCst) > 0,
        "16 requests at once found the 4 slots full"
    );
    let peak = fake.max_open.load(Ordering::SeqCst);
    assert!(peak <= 17, "{peak} requests were open at once");
    assert!(llm.limiter().peak_in_flight() <= 17);
    assert!(
        llm.limiter().limit() < 16,
        "the 429s lowered the limit, now {}",
        llm.limiter().limit()
    );
    assert_eq!(llm.limiter().in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_concurrency_is_reached_and_never_exceeded() {
    let fake = start_fake(Behaviour::Slots {
        slots: 4,
        min: Duration::from_millis(100),
        max: Duration::from_millis(200),
    })
    .await;
    let llm = summarizer(
        &fake,
        &[("initial: 2", "initial: 3"), ("max: 16", "max: 3")],
    );
    let outcomes = summarize_many(&llm, 12).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(fake.max_open.load(Ordering::SeqCst), 3);
    assert_eq!(fake.rejected.load(Ordering::SeqCst), 0);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 12);
    assert_eq!(llm.limiter().limit(), 3);
}

/// Copies of a born-digital document (no OCR), each under its own name: none is a cache hit.
fn distinct_documents(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("doc-{i:02}.pdf"));
            std::fs::copy(fixture("tagged.pdf"), &path).unwrap();
            path
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_waiting_for_the_llm_keep_their_place_on_the_edge() {
    // The limit would allow 16 requests, the server takes them all; the edge into the stage
    // holds 3 documents, and documents waiting on the server keep their place there.
    let fake = start_fake(Behaviour::Slots {
        slots: 32,
        min: Duration::from_millis(300),
        max: Duration::from_millis(300),
    })
    .await;
    let docs = tempfile::tempdir().unwrap();
    let files = distinct_documents(docs.path(), 10);
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(
        out.path(),
        &fake,
        &[
            ("initial: 2", "initial: 16"),
            ("summarize_documents: 2", "summarize_documents: 3"),
        ],
    );
    let events = run_files(p, &files, None).await;
    assert!(events.iter().all(|e| e.error.is_none()));
    let peak = fake.max_open.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&peak),
        "at most the edge's 3 documents at the server: {peak}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_summarized_side_by_side_and_none_is_lost() {
    let fake = start_fake(Behaviour::Slots {
        slots: 4,
        min: Duration::from_millis(300),
        max: Duration::from_millis(500),
    })
    .await;
    let docs = tempfile::tempdir().unwrap();
    let files = distinct_documents(docs.path(), 12);
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(
        out.path(),
        &fake,
        &[
            ("initial: 2", "initial: 4"),
            ("max: 16", "max: 4"),
            ("summarize_documents: 2", "summarize_documents: 8"),
        ],
    );
    let events = run_files(p, &files, None).await;
    assert_eq!(events.len(), 12);
    for event in &events {
        assert!(event.error.is_none(), "{:?}", event.error);
        let (engine, _, warnings) = summary_of(event);
        assert_eq!(engine, "llm", "{warnings:?}");
    }
    let peak = fake.max_open.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&peak),
        "documents' requests overlap, within the limit: {peak} at once"
    );
    assert_eq!(fake.rejected.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_documents_at_once_ask_the_server_once() {
    let fake = start_fake(Behaviour::Slots {
        slots: 4,
        min: Duration::from_millis(300),
        max: Duration::from_millis(300),
    })
    .await;
    let llm = summarizer(&fake, &[]);
    let outcomes =
        futures_util::future::join_all((0..5).map(|_| llm.summarize("same.pdf", "The same text.")))
            .await;
    let first = outcomes[0].as_ref().unwrap();
    assert!(
        outcomes.iter().all(|o| o.as_ref().ok() == Some(first)),
        "{outcomes:?}"
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_sends_nothing_until_one_probe_closes_it() {
    let fake = start_fake(Behaviour::BrokenFirst(2, Duration::from_millis(300))).await;
    let llm = summarizer(
        &fake,
        &[
            ("max_retries: 2", "max_retries: 0"),
            ("circuit_failures: 5", "circuit_failures: 2"),
            ("circuit_cooldown: 30s", "circuit_cooldown: 1s"),
        ],
    );
    for name in ["a", "b"] {
        let outcome = llm.summarize(name, "text").await;
        assert!(
            matches!(outcome, Err(LlmError::Status { status: 500, .. })),
            "{outcome:?}"
        );
    }
    // Open: no request reaches the server.
    let outcome = llm.summarize("c", "text").await;
    assert!(
        matches!(outcome, Err(LlmError::CircuitOpen(2))),
        "{outcome:?}"
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);

    // After the cooldown, of three documents at once one probes; the others are held back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (d, e, f) = tokio::join!(
        llm.summarize("d", "text"),
        llm.summarize("e", "text"),
        llm.summarize("f", "text")
    );
    let outcomes = [d, e, f];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Err(LlmError::CircuitOpen(_))))
            .count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3, "one probe");

    // The probe succeeded: the circuit is closed.
    assert!(llm.summarize("g", "text").await.is_ok());
    assert_eq!(fake.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_minute_ceilings_hold_requests_back() {
    for ceiling in [
        ("max_requests_per_minute: 0", "max_requests_per_minute: 2"),
        // Each request counts for about 400 tokens (max_tokens) plus its prompt's.
        ("max_tokens_per_minute: 0", "max_tokens_per_minute: 1000"),
    ] {
        let fake = start_fake(Behaviour::Healthy).await;
        let llm = summarizer(&fake, &[ceiling]);
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let llm = llm.clone();
                tokio::spawn(async move { llm.summarize(&format!("doc-{i}"), "text").await })
            })
            .collect();
        // The third request's room comes back only after many seconds.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            2,
            "{ceiling:?}: two fit in the minute"
        );
        for task in tasks {
            task.abort();
        }
    }
}

/// A schema for the fake's extraction answers.
const SCHEMA: &str = r#"schema: {"type": "object", "properties": {"title": {"type": "string"}, "pages": {"type": "integer"}}, "required": ["title", "pages"], "additionalProperties": false}"#;

#[tokio::test(flavor = "multi_thread")]
async fn extracted_objects_match_the_schema_or_are_left_out() {
    // One answer that breaks the schema, then one that matches: the second is saved.
    let fake = start_fake(Behaviour::ExtractInvalidFirst(1)).await;
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(out.path(), &fake, &[("schema: {}", SCHEMA)]);
    // The same document twice: the second gets the first one's answers.
    let events = run_files(p, &[fixture("tagged.pdf"), fixture("tagged.pdf")], None).await;
    for event in &events {
        let result = read_result(event.result_path.as_ref().unwrap());
        assert_eq!(
            result.extracted,
            Some(valid_extraction()),
            "{:?}",
            result.warnings
        );
        assert_eq!(result.summary.unwrap().engine, "llm");
    }
    assert_eq!(fake.extraction_requests.load(Ordering::SeqCst), 2);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3, "and one summary");
    let format = fake.response_format.lock().unwrap().clone().unwrap();
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "document");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(format["json_schema"]["schema"]["required"][1], "pages");

    // Answers that never match: bounded tries, a warning, no `extracted`; the summary stays.
    let fake = start_fake(Behaviour::ExtractInvalidFirst(usize::MAX)).await;
    let out = tempfile::tempdir().unwrap();
    let p = llm_pipeline(
        out.path(),
        &fake,
        &[
            ("schema: {}", SCHEMA),
            ("max_attempts: 3", "max_attempts: 2"),
        ],
    );
    let events = run_files(p, &[fixture("tagged.pdf")], None).await;
    let path = events[0].result_path.as_ref().unwrap();
    let result = read_result(path);
    assert!(result.extracted.is_none());
    assert!(
        result
            .warnings
            .iter()
            .any(|w| w.contains("no extracted object") && w.contains("2 answers")),
        "{:?}",
        result.warnings
    );
    assert_eq!(result.summary.unwrap().engine, "llm");
    assert_eq!(fake.extraction_requests.load(Ordering::SeqCst), 2);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(json.get("extracted").is_none(), "absent, not null");

    // Without a schema nothing is asked for.
    let fake = start_fake(Behaviour::ExtractInvalidFirst(0)).await;
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        llm_pipeline(out.path(), &fake, &[]),
        &[fixture("tagged.pdf")],
        None,
    )
    .await;
    assert!(
        read_result(events[0].result_path.as_ref().unwrap())
            .extracted
            .is_none()
    );
    assert_eq!(fake.extraction_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn bad_concurrency_and_schemas_are_reported_where_they_are() {
    let default = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.yaml"),
    )
    .unwrap();
    let yaml = default
        .replace("initial: 2", "initial: 20")
        .replace("schema: {}", r#"schema: {"type": "nonsense"}"#);
    let err = pagemill::config::parse_pipeline(std::path::Path::new("x.yaml"), &yaml)
        .unwrap_err()
        .to_string();
    let line_of = |needle: &str| default.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        err.contains(&format!("x.yaml:{}:", line_of("initial: 2")))
            && err.contains("must not be above max"),
        "{err}"
    );
    assert!(
        err.contains(&format!("x.yaml:{}:", line_of("schema: {}")))
            && err.contains("not a valid JSON Schema"),
        "{err}"
    );
    // Keys inside a schema are the schema's own, not unknown pipeline keys.
    let yaml = default.replace("schema: {}", SCHEMA);
    let p = pagemill::config::parse_pipeline(std::path::Path::new("x.yaml"), &yaml).unwrap();
    assert_eq!(p.summarize.llm.extract.unwrap().max_attempts, 3);
}

/// llama.cpp's server (xllamacpp) with SmolLM2-135M, as `scripts/setup.sh` installs them;
/// killed when dropped.
struct RealServer {
    child: std::process::Child,
    base_url: String,
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealServer {
    fn start(context_tokens: u32) -> RealServer {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("target/test-venv/bin/python");
        let model = root.join("target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            python.is_file() && model.is_file(),
            "the LLM server or model is missing: run scripts/setup.sh --install-only"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(python)
            .arg(root.join("tests/tools/llm_server.py"))
            .arg(&model)
            .arg(port.to_string())
            .arg(context_tokens.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let line = first_line(&mut child, "the llama.cpp server");
        assert!(line.starts_with("listening"), "{line:?}");
        RealServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_llm_server_writes_the_summary_and_long_texts_go_in_parts() {
    let server = RealServer::start(512);
    let base = format!("base_url: {}", server.base_url);
    let replacements = [
        ("engine: extractive", "engine: llm"),
        ("base_url: http://127.0.0.1:8000/v1", base.as_str()),
        ("max_tokens: 400", "max_tokens: 60"),
        ("timeout: 120s", "timeout: 300s"),
        ("fallback: extractive", "fallback: none"),
    ];
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        pipeline(out.path(), &replacements),
        &[fixture("phototest.tif")],
        None,
    )
    .await;
    let result = read_result(events[0].result_path.as_ref().unwrap());
    let summary = result.summary.expect("the model wrote a summary");
    assert_eq!(summary.engine, "llm", "{:?}", result.warnings);
    assert!(!summary.text.trim().is_empty());

    // A page of about 1,100 tokens does not fit a 512-token context: the server answers 400
    // and the text goes in smaller parts, whose summaries are then summarized.
    let Some(corpus) = corpus("a_real_llm_server (long text)") else {
        return;
    };
    let mut long = replacements.to_vec();
    long.push(("max_input_chars: 12000", "max_input_chars: 8000"));
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        pipeline(out.path(), &long),
        &[corpus.join("linn.png")],
        None,
    )
    .await;
    let result = read_result(events[0].result_path.as_ref().unwrap());
    let summary = result.summary.expect("a summary despite the small context");
    assert_eq!(summary.engine, "llm", "{:?}", result.warnings);
    assert!(!summary.text.trim().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_llm_server_extracts_an_object_the_schema_allows() {
    // llama.cpp's server turns `response_format: json_schema` into a grammar.
    let server = RealServer::start(1024);
    let base = format!("base_url: {}", server.base_url);
    let schema = r#"schema: {"type": "object", "properties": {"title": {"type": "string", "maxLength": 60}, "language": {"type": "string", "enum": ["English", "German", "other"]}}, "required": ["title", "language"], "additionalProperties": false}"#;
    let replacements = [
        ("engine: extractive", "engine: llm"),
        ("base_url: http://127.0.0.1:8000/v1", base.as_str()),
        ("max_tokens: 400", "max_tokens: 100"),
        ("timeout: 120s", "timeout: 300s"),
        ("schema: {}", schema),
    ];
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        pipeline(out.path(), &replacements),
        &[fixture("phototest.tif")],
        None,
    )
    .await;
    let result = read_result(events[0].result_path.as_ref().unwrap());
    let object = result.extracted.expect("an object matching the schema");
    assert!(object["title"].is_string(), "{object}");
    assert!(
        ["English", "German", "other"].contains(&object["language"].as_str().unwrap()),
        "{object}"
    );
    assert_eq!(object.as_object().unwrap().len(), 2, "{object}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_resumed_after_kill_9_takes_its_summary_from_the_journal() {
    use common::daemon::{Daemon, pipeline_yaml};
    let fake = start_fake(Behaviour::Healthy).await;
    let base = format!("base_url: {}", fake.base_url);
    // The webhook has no receiver yet: the job waits in the save stage, summarized, while its
    // delivery is retried; then the daemon is killed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = format!("webhook:\n    url: http://127.0.0.1:{port}/hook");
    let yaml = pipeline_yaml(
        "default",
        &[
            ("engine: extractive", "engine: llm"),
            ("base_url: http://127.0.0.1:8000/v1", base.as_str()),
            ("webhook:\n    url: \"\"", hook.as_str()),
            ("max_retries: 5", "max_retries: 30"),
        ],
    );
    let mut d = Daemon::start(&[("default", yaml)]);
    let id = d.submit("default", &fixture("phototest.tif")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = d.get_json(&format!("/v1/jobs/{id}")).await;
        if status["sinks"]["webhook"]["state"] == "retrying" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
    d.kill_and_restart();

    // A receiver now listens; the resumed job finishes without asking the LLM again.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let route = warp::Filter::map(
        warp::Filter::and(warp::path!("hook"), warp::post()),
        warp::reply,
    );
    tokio::spawn(warp::serve(route).incoming(listener).run());
    let status = d.wait_final(&id).await;
    assert_eq!(status["state"], "done", "{status}");
    let result: serde_json::Value = d
        .get(&format!("/v1/jobs/{id}/result"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(result["summary"]["engine"], "llm");
    assert!(
        result["summary"]["text"]
            .as_str()
            .unwrap()
            .starts_with("LLM summary of"),
        "{result}"
    );
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        1,
        "the resumed job's summary came from the journal"
    );
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pagemill_llm_summaries_restored_total{") && l.ends_with(" 1")),
        "{metrics}"
    );
}

/// The shipped default pipeline as `name`, summarizing with the fake and no fallback: one try
/// and one retry per round, a pause of a second between rounds; then `extra` replacements.
fn no_fallback_yaml(name: &str, fake: &Fake, extra: &[(&str, &str)]) -> String {
    let base = format!("base_url: {}", fake.base_url);
    let mut replacements = vec![
        ("engine: extractive", "engine: llm"),
        ("base_url: http://127.0.0.1:8000/v1", base.as_str()),
        ("fallback: extractive", "fallback: none"),
        ("max_retries: 4", "max_retries: 1"),
        ("circuit_cooldown: 30s", "circuit_cooldown: 1s"),
    ];
    replacements.extend_from_slice(extra);
    common::daemon::pipeline_yaml(name, &replacements)
}

/// The value of the metric `name` on the line whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Documents of pipeline `default` waiting for the LLM, from the daemon's metrics.
async fn waiting(d: &common::daemon::Daemon) -> f64 {
    let text = d.get("/metrics").await.text().await.unwrap();
    metric(
        &text,
        "pagemill_llm_documents_waiting",
        &[r#"pipeline="default""#],
    )
    .unwrap_or_else(|| panic!("no waiting gauge in {text}"))
}

/// Polls `done` every 50 ms for up to two minutes; panics with `what` if it never holds.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_fallback_a_document_waits_for_the_llm_to_come_back() {
    use common::daemon::Daemon;
    let fake = start_fake(Behaviour::Unavailable).await;
    let d = Daemon::start(&[("default", no_fallback_yaml("default", &fake, &[]))]);
    let id = d.submit("default", &fixture("tagged.pdf")).await;
    // Two rounds of one try and one retry, all answered 503: the retries ran out twice.
    eventually("four requests", || async {
        fake.requests.load(Ordering::SeqCst) >= 4
    })
    .await;
    let status = d.get_json(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status["state"], "running", "{status}");
    assert!(status["error"].is_null(), "{status}");
    assert_eq!(waiting(&d).await, 1.0);

    fake.recover();
    let status = d.wait_final(&id).await;
    assert_eq!(status["state"], "done", "{status}");
    let result: serde_json::Value = d.get_json(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!(result["summary"]["engine"], "llm", "{result}");
    assert!(
        result["summary"]["text"]
            .as_str()
            .unwrap()
            .starts_with("LLM summary of"),
        "{result}"
    );
    assert_eq!(result["warnings"], serde_json::json!([]), "{result}");
    assert!(fake.requests.load(Ordering::SeqCst) >= 5);
    assert_eq!(waiting(&d).await, 0.0);
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(
            &metrics,
            "pagemill_llm_fallbacks_total",
            &[r#"pipeline="default""#]
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_fallback_a_job_fails_at_its_deadline_while_the_llm_stays_down() {
    use common::daemon::{Daemon, pipeline_yaml};
    let fake = start_fake(Behaviour::Unavailable).await;
    let yaml = no_fallback_yaml(
        "default",
        &fake,
        &[("max_job_time: 1h", "max_job_time: 3s")],
    );
    let d = Daemon::start(&[("default", yaml), ("local", pipeline_yaml("local", &[]))]);
    let submitted = std::time::Instant::now();
    let id = d.submit("default", &fixture("tagged.pdf")).await;
    let status = d.wait_final(&id).await;
    let elapsed = submitted.elapsed();
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["error"]["code"], "llm_unavailable", "{status}");
    let message = status["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("unavailable until the job's deadline (3000 ms")
            && message.contains("503"),
        "{message}"
    );
    // Not before the deadline.
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    assert!(
        status["timings"]["total_ms"].as_u64().unwrap() >= 3000,
        "{status}"
    );
    assert!(fake.requests.load(Ordering::SeqCst) >= 1);
    let result: serde_json::Value = d.get_json(&format!("/v1/jobs/{id}/result")).await;
    assert!(result["summary"].is_null(), "{result}");
    assert_eq!(result["error"]["code"], "llm_unavailable", "{result}");
    assert_eq!(waiting(&d).await, 0.0);

    // The daemon goes on serving.
    assert_eq!(d.get("/healthz").await.status(), reqwest::StatusCode::OK);
    let other = d.submit("local", &fixture("tagged.pdf")).await;
    let status = d.wait_final(&other).await;
    assert_eq!(status["state"], "done", "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_fallback_documents_waiting_for_the_llm_stay_within_their_edge() {
    use common::daemon::Daemon;
    let fake = start_fake(Behaviour::Unavailable).await;
    let yaml = no_fallback_yaml(
        "default",
        &fake,
        &[
            ("max_retries: 1", "max_retries: 0"),
            ("circuit_failures: 5", "circuit_failures: 2"),
        ],
    );
    assert!(yaml.contains("summarize_documents: 2"));
    let d = Daemon::start(&[("default", yaml)]);
    let docs = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for file in distinct_documents(docs.path(), 24) {
        ids.push(d.submit("default", &file).await);
    }
    eventually("two documents waiting", || async {
        waiting(&d).await >= 2.0
    })
    .await;
    // While the server is down, for a few seconds: never more than the edge's two documents
    // in the stage, the other jobs held back upstream, none finished.
    let depth = |text: &str| {
        metric(
            text,
            "pagemill_stage_queue_depth",
            &[r#"pipeline="default""#, r#"stage="summarize""#],
        )
        .unwrap()
    };
    for _ in 0..30 {
        let text = d.get("/metrics").await.text().await.unwrap();
        assert_eq!(depth(&text), 2.0, "the edge is full and no fuller");
        let waiting = metric(&text, "pagemill_llm_documents_waiting", &[]).unwrap();
        assert!(waiting <= 2.0, "{waiting} documents waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fake.distinct_prompts(),
        2,
        "only two documents reached the server"
    );
    let mut queued = 0;
    for id in &ids {
        let status = d.get_json(&format!("/v1/jobs/{id}")).await;
        let state = status["state"].as_str().unwrap();
        assert!(["queued", "running"].contains(&state), "{status}");
        queued += usize::from(state == "queued");
    }
    assert!(queued > 0, "upstream stopped taking jobs");

    // The server comes back: every document gets its LLM summary; none was lost.
    fake.recover();
    for id in &ids {
        let status = d.wait_final(id).await;
        assert_eq!(status["state"], "done", "{status}");
        let result: serde_json::Value = d.get_json(&format!("/v1/jobs/{id}/result")).await;
        assert_eq!(result["summary"]["engine"], "llm", "{result}");
    }
    assert_eq!(fake.distinct_prompts(), 24);
    assert_eq!(waiting(&d).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waiting_for_the_llm_can_be_cancelled() {
    use common::daemon::Daemon;
    let fake = start_fake(Behaviour::Unavailable).await;
    let d = Daemon::start(&[("default", no_fallback_yaml("default", &fake, &[]))]);
    let id = d.submit("default", &fixture("tagged.pdf")).await;
    eventually("the document waits", || async { waiting(&d).await == 1.0 }).await;
    let response = d
        .http
        .delete(d.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    // The deadline is an hour away: only the cancellation can end the job now.
    let status = d.wait_final(&id).await;
    assert_eq!(status["state"], "cancelled", "{status}");
    assert_eq!(status["error"]["code"], "cancelled", "{status}");
    assert_eq!(waiting(&d).await, 0.0);
}

/// The shipped default pipeline as `name`, summarizing with the fake (fallback extractive);
/// then `extra` replacements.
fn llm_yaml(name: &str, fake: &Fake, extra: &[(&str, &str)]) -> String {
    let base = format!("base_url: {}", fake.base_url);
    let mut replacements = vec![
        ("engine: extractive", "engine: llm"),
        ("base_url: http://127.0.0.1:8000/v1", base.as_str()),
    ];
    replacements.extend_from_slice(extra);
    common::daemon::pipeline_yaml(name, &replacements)
}

/// The metric label that names the fake as an endpoint.
fn endpoint_label(fake: &Fake) -> String {
    format!(r#"endpoint="{}""#, fake.base_url)
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_calling_one_server_share_its_concurrency_limit() {
    use common::daemon::Daemon;
    const LIMIT: usize = 3;
    // The server takes any number of requests; each is answered after 400 ms.
    let fake = start_fake(Behaviour::Slots {
        slots: 64,
        min: Duration::from_millis(400),
        max: Duration::from_millis(400),
    })
    .await;
    // Pipeline `a` (the first file) fixes the limit at 3; `b` asks for 8, and alone would get
    // them. Each pipeline's edge lets 8 documents at the server.
    let edge = ("summarize_documents: 2", "summarize_documents: 8");
    let a = llm_yaml(
        "a",
        &fake,
        &[("initial: 2", "initial: 3"), ("max: 16", "max: 3"), edge],
    );
    let b = llm_yaml(
        "b",
        &fake,
        &[("initial: 2", "initial: 8"), ("max: 16", "max: 8"), edge],
    );
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("pagemill.log");
    let d = Daemon::start_with(
        &[("a", a), ("b", b)],
        &[],
        std::process::Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let docs = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for (i, file) in distinct_documents(docs.path(), 16).iter().enumerate() {
        let pipeline = if i % 2 == 0 { "a" } else { "b" };
        ids.push(d.submit(pipeline, file).await);
    }
    for id in &ids {
        let status = d.wait_final(id).await;
        assert_eq!(status["state"], "done", "{status}");
        let result: serde_json::Value = d.get_json(&format!("/v1/jobs/{id}/result")).await;
        assert_eq!(result["summary"]["engine"], "llm", "{result}");
    }
    assert_eq!(fake.requests.load(Ordering::SeqCst), 16);
    let peak = fake.max_open.load(Ordering::SeqCst);
    assert!(
        peak <= LIMIT,
        "{peak} requests at once from both pipelines; the server's limit is {LIMIT}"
    );
    assert_eq!(
        peak, LIMIT,
        "the documents of both pipelines filled the limit"
    );

    // One limit for the server, not one per pipeline.
    let text = d.get("/metrics").await.text().await.unwrap();
    let limits: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pagemill_llm_concurrency_limit{"))
        .collect();
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert!(limits[0].contains(&endpoint_label(&fake)), "{limits:?}");
    assert_eq!(
        metric(&text, "pagemill_llm_concurrency_limit", &[]),
        Some(LIMIT as f64)
    );
    // Pipeline `b` was told that its settings do not apply.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines().any(|l| l.contains("flow settings differ")
            && l.contains("\"b\"")
            && l.contains("concurrency.max: 8 (3)")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_circuit_opened_through_one_pipeline_holds_back_the_other() {
    use common::daemon::Daemon;
    const COOLDOWN: Duration = Duration::from_secs(8);
    let fake = start_fake(Behaviour::Unavailable).await;
    // No retries: each document that reaches the server sends one request.
    let flow = [
        ("max_retries: 4", "max_retries: 0"),
        ("circuit_failures: 5", "circuit_failures: 2"),
        ("circuit_cooldown: 30s", "circuit_cooldown: 8s"),
    ];
    let d = Daemon::start(&[
        ("a", llm_yaml("a", &fake, &flow)),
        ("b", llm_yaml("b", &fake, &flow)),
    ]);
    let docs = tempfile::tempdir().unwrap();
    let files = distinct_documents(docs.path(), 7);
    let summarize = |pipeline: &'static str, file: &std::path::Path| {
        let (d, file) = (&d, file.to_path_buf());
        async move {
            let id = d.submit(pipeline, &file).await;
            let status = d.wait_final(&id).await;
            assert_eq!(status["state"], "done", "{status}");
            let result: serde_json::Value = d.get_json(&format!("/v1/jobs/{id}/result")).await;
            (
                result["summary"]["engine"].as_str().unwrap().to_string(),
                result["warnings"].to_string(),
            )
        }
    };
    let circuit_open = || async {
        let text = d.get("/metrics").await.text().await.unwrap();
        metric(
            &text,
            "pagemill_llm_circuit_open",
            &[&endpoint_label(&fake)],
        )
    };

    // Two documents in a row fail through pipeline `a`: the server's circuit opens.
    for file in &files[..2] {
        let (engine, warnings) = summarize("a", file).await;
        assert_eq!(engine, "extractive", "{warnings}");
        assert!(warnings.contains("503"), "{warnings}");
    }
    let opened = std::time::Instant::now();
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    assert_eq!(circuit_open().await, Some(1.0));

    // Pipeline `b` has sent nothing yet, and sends nothing now: the fallback answers at once.
    for file in &files[2..5] {
        let (engine, warnings) = summarize("b", file).await;
        assert_eq!(engine, "extractive", "{warnings}");
        assert!(warnings.contains("requests are paused"), "{warnings}");
    }
    assert!(
        opened.elapsed() < COOLDOWN - Duration::from_secs(2),
        "too slow to look at the open circuit: {:?}",
        opened.elapsed()
    );
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        2,
        "no request while the circuit is open"
    );

    // After the cooldown one document probes (here through `b`); the server is back, and its
    // success closes the circuit for both pipelines.
    fake.recover();
    tokio::time::sleep_until((opened + COOLDOWN + Duration::from_millis(200)).into()).await;
    let (engine, warnings) = summarize("b", &files[5]).await;
    assert_eq!(engine, "llm", "{warnings}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3, "one probe");
    assert_eq!(circuit_open().await, Some(0.0));
    let (engine, warnings) = summarize("a", &files[6]).await;
    assert_eq!(engine, "llm", "{warnings}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 4);
}
