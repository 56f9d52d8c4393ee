//! The LLM summarizer against an OpenAI-compatible endpoint that misbehaves on purpose: 429s
//! with `Retry-After`, 5xx until retries run out (fallback to the extractive engine), answers
//! that the context is too long (map-reduce over smaller parts), and a cache that spares
//! repeat calls. The endpoint is a small local server: no real LLM can be made to fail on cue.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake_llm::{Behaviour, Fake, start_fake};
use common::*;

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

fn summary_of(event: &pagemill::stages::save::JobFinished) -> (String, String, Vec<String>) {
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

    // With no fallback the document keeps no summary, and says why.
    let fake = start_fake(Behaviour::Broken).await;
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        llm_pipeline(
            out.path(),
            &fake,
            &[
                ("fallback: extractive", "fallback: none"),
                ("max_retries: 2", "max_retries: 0"),
            ],
        ),
        &[fixture("phototest.tif")],
        None,
    )
    .await;
    let result = read_result(events[0].result_path.as_ref().unwrap());
    assert!(result.summary.is_none());
    assert!(
        result.warnings.iter().any(|w| w.contains("no summary")),
        "{:?}",
        result.warnings
    );
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
        ],
    );
    let files = [
        fixture("phototest.tif"),
        fixture("tagged.pdf"),
        fixture("phototest.tif"),
        fixture("tagged.pdf"),
    ];
    let events = run_files(p, &files, None).await;
    for event in &events {
        let (engine, _, warnings) = summary_of(event);
        assert_eq!(engine, "extractive", "{warnings:?}");
    }
    // Two documents failed, then the circuit held the other two back.
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    let (_, _, warnings) = summary_of(&events[3]);
    assert!(
        warnings.iter().any(|w| w.contains("requests are paused")),
        "{warnings:?}"
    );
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
        use std::io::{BufRead, BufReader};
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
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
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
