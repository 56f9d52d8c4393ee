//! How much does adaptive concurrency get out of an LLM server whose capacity the pipeline does
//! not know?
//!
//! A local fake OpenAI-compatible server has 4 slots: a request finding them busy is answered
//! 429 at once, the others after 200-500 ms. 40 documents wait for the summarizer at once (as
//! when `edges.summarize_documents` holds 40), and each configuration summarizes them all,
//! one after the other in the same run: the adaptive limit (initial 2, max 32) and fixed
//! limits of 1, 4 and 32 (`initial = max`). Retries are the pipeline defaults (4, jittered
//! exponential backoff); a document whose retries run out would get the fallback summary.
//!
//! Printed per configuration: wall time, goodput (documents summarized by the LLM per second),
//! p50/p95 document latency (ready to summarized, failures included), requests sent, 429s,
//! documents that failed, and the limit at the end.
//!
//! `cargo bench --bench llm` (or `cargo bench --profile dev --bench llm`: the work is waiting,
//! not computing, so an unoptimized build measures the same).

#[path = "../../tests/common/fake_llm.rs"]
mod fake_llm;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fake_llm::{Behaviour, start_fake};
use pagemill::config::Pipeline;
use pagemill::llm::client::LlmSummarizer;

const DOCUMENTS: usize = 40;
const SLOTS: usize = 4;

struct Row {
    label: String,
    wall: Duration,
    summarized: usize,
    failed: usize,
    p50: Duration,
    p95: Duration,
    requests: usize,
    rejected: usize,
    final_limit: usize,
}

async fn run(label: &str, initial: usize, max: usize) -> Row {
    let fake = start_fake(Behaviour::Slots {
        slots: SLOTS,
        min: Duration::from_millis(200),
        max: Duration::from_millis(500),
    })
    .await;
    let mut cfg = Pipeline::embedded_default().summarize.llm;
    cfg.base_url = fake.base_url.clone();
    cfg.concurrency_initial = initial;
    cfg.concurrency_max = max;
    let llm = Arc::new(LlmSummarizer::new(&cfg, "eng", "bench"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..DOCUMENTS)
        .map(|i| {
            let llm = llm.clone();
            tokio::spawn(async move {
                let outcome = llm
                    .summarize(
                        &format!("doc-{i:02}.pdf"),
                        &format!("The text of document {i}."),
                    )
                    .await;
                (outcome.is_ok(), started.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut summarized = 0;
    for task in tasks {
        let (ok, latency) = task.await.expect("a document task");
        summarized += usize::from(ok);
        latencies.push(latency);
    }
    let wall = started.elapsed();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).max(1) - 1];
    Row {
        label: label.to_string(),
        wall,
        summarized,
        failed: DOCUMENTS - summarized,
        p50: pick(0.50),
        p95: pick(0.95),
        requests: fake.requests.load(Ordering::SeqCst),
        rejected: fake.rejected.load(Ordering::SeqCst),
        final_limit: llm.limiter().limit(),
    }
}

#[tokio::main]
async fn main() {
    println!(
        "{DOCUMENTS} documents, a server with {SLOTS} slots (429 beyond), 200-500 ms per answer\n"
    );
    let mut rows = Vec::new();
    for (label, initial, max) in [
        ("adaptive 2..32", 2, 32),
        ("fixed 1", 1, 1),
        ("fixed 4", 4, 4),
        ("fixed 32", 32, 32),
    ] {
        rows.push(run(label, initial, max).await);
    }
    println!(
        "{:<16} {:>7} {:>13} {:>7} {:>7} {:>9} {:>6} {:>7} {:>6}",
        "concurrency",
        "wall s",
        "goodput doc/s",
        "p50 s",
        "p95 s",
        "requests",
        "429s",
        "failed",
        "limit"
    );
    for r in &rows {
        println!(
            "{:<16} {:>7.2} {:>13.2} {:>7.2} {:>7.2} {:>9} {:>6} {:>7} {:>6}",
            r.label,
            r.wall.as_secs_f64(),
            r.summarized as f64 / r.wall.as_secs_f64(),
            r.p50.as_secs_f64(),
            r.p95.as_secs_f64(),
            r.requests,
            r.rejected,
            r.failed,
            r.final_limit
        );
    }
}
