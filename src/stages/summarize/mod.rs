//! Summarize stage: one summary per document, from a pluggable engine.
//!
//! [`Summarizer`] is the interface of local engines; [`extractive::summarize`] is the default
//! (no network) and runs on the CPU pool. [`LlmSummarizer`] calls an LLM server from the
//! stage itself (network I/O never holds a pool thread). Failed documents pass through
//! unsummarized.
//!
//! When the LLM fails, the pipeline's `summarize.llm.fallback` decides:
//!
//! - `extractive`: the local engine writes the summary at once (`summary.engine` says so,
//!   with a warning).
//! - `none`: a failure that may pass ([`LlmError::is_transient`]: the server down,
//!   429/5xx, timeouts, retries run out, the circuit open) makes the document wait in this
//!   stage and try again as the circuit breaker allows ([`LlmSummarizer::wait_to_retry`]),
//!   until the job's deadline (`limits.max_job_time` from submission); then the job fails
//!   `llm_unavailable` (or `job_timeout` if the server never failed it but had not answered).
//!   Any other failure (400, 401, 404, a context overflow even in small parts) fails the job
//!   at once (`summary_failed`).
//!
//! With an LLM, each document is handled in a task of its own, so the mailbox never waits on
//! the server and several documents' requests are in flight at once, as many as the adaptive
//! limit ([`limiter`]) allows. That limit, the circuit breaker and the per-minute ceilings are
//! the server's ([`endpoint`]): pipelines calling the same server share them. A document keeps its credit on the edge into this stage until
//! its result is handed to save: documents waiting for the server, however long, are bounded
//! by `edges.summarize_documents`, and a full edge holds assemble back (backpressure, not a
//! growing queue). A job cancelled while its document is here ends `cancelled` within
//! [`CANCEL_POLL`]; its requests are abandoned.
//!
//! Emits `pagemill_llm_documents_waiting` and, through the client, the `pagemill_llm_*`
//! metrics.

pub mod extractive;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::config::{LlmFallback, SummarizeEngineKind};
use crate::llm::client::LlmSummarizer;
use crate::llm::error::LlmError;
use crate::model::error::JobError;
use crate::model::result::{JobResult, SummaryRecord};
use crate::pipeline::context::StageContext;
use crate::pipeline::edge::{Credit, Downstream};
use crate::pipeline::events::{Discard, Discarded, DocumentSummarized, Passed, Received};
use crate::pipeline::job::JobInfo;
use crate::pipeline::messages::{SaveMsg, SummarizeMsg};
use crate::pipeline::stage::Stage;
use crate::runtime::metrics as m;
use crate::runtime::pool::Lane;

/// How often a document waiting for the LLM looks whether its job was cancelled.
pub const CANCEL_POLL: Duration = Duration::from_millis(100);

/// A summarizer engine. Engines that call a service (an LLM) implement the same interface.
pub trait Summarizer: Send + Sync {
    /// Name recorded in the result's `summary.engine`.
    fn engine(&self) -> &'static str;
    /// Summarizes a document's text.
    fn summarize(&self, text: &str) -> Result<String, JobError>;
}

/// The local extractive engine.
pub struct ExtractiveSummarizer {
    pub max_sentences: usize,
}

impl Summarizer for ExtractiveSummarizer {
    fn engine(&self) -> &'static str {
        "extractive"
    }

    fn summarize(&self, text: &str) -> Result<String, JobError> {
        Ok(extractive::summarize(text, self.max_sentences))
    }
}

/// The engine of a pipeline's summarize stage.
#[derive(Clone)]
pub enum Engine {
    Local(Arc<dyn Summarizer>),
    /// An LLM, with the local engine to fall back to, if any.
    Llm(Arc<LlmSummarizer>, Option<Arc<dyn Summarizer>>),
}

/// Builds the engine a pipeline asks for.
pub fn build_engine(pipeline: &crate::config::Pipeline) -> Engine {
    let cfg = &pipeline.summarize;
    let extractive: Arc<dyn Summarizer> = Arc::new(ExtractiveSummarizer {
        max_sentences: cfg.max_sentences,
    });
    match cfg.engine {
        SummarizeEngineKind::Extractive => Engine::Local(extractive),
        SummarizeEngineKind::Llm => Engine::Llm(
            Arc::new(LlmSummarizer::new(
                &cfg.llm,
                &pipeline.ocr.languages,
                &pipeline.name,
            )),
            (cfg.llm.fallback == LlmFallback::Extractive).then_some(extractive),
        ),
    }
}

/// Texts up to this many bytes (a few pages) are summarized locally in the CPU pool's short
/// lane, so that a small job's summary does not wait behind page recognitions. Longer texts
/// wait in the long lane with them.
const SHORT_LANE_SUMMARY_BYTES: usize = 20_000;

/// Runs a local engine on the CPU pool.
async fn summarize_locally(
    ctx: &StageContext,
    engine: Arc<dyn Summarizer>,
    text: Arc<str>,
) -> Result<(String, &'static str), JobError> {
    let name = engine.engine();
    let lane = if text.len() <= SHORT_LANE_SUMMARY_BYTES {
        Lane::Short
    } else {
        Lane::Long
    };
    ctx.pool
        .run_in(lane, move || engine.summarize(&text))
        .await
        .and_then(|r| r)
        .map(|s| (s, name))
}

pub struct SummarizeStage;

pub struct SummarizeState {
    ctx: StageContext,
    engine: Engine,
    save: Downstream<SaveMsg>,
}

impl Actor for SummarizeStage {
    type Msg = SummarizeMsg;
    type State = SummarizeState;
    type Arguments = (StageContext, Downstream<SaveMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (ctx, save): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let engine = build_engine(&ctx.pipeline);
        if let Engine::Llm(llm, _) = &engine {
            // Documents are summarized side by side, up to the edge's capacity.
            let documents = ctx.pipeline.edges.summarize_documents;
            metrics::gauge!(m::STAGE_WORKERS, &ctx.labels(Stage::Summarize)).set(documents as f64);
            let max = llm.endpoint().settings().concurrency_max;
            if documents < max {
                tracing::info!(
                    pipeline = %ctx.pipeline.name,
                    documents,
                    concurrency_max = max,
                    "edges.summarize_documents is below summarize.llm.concurrency.max: only long \
                     documents in parts can reach the limit"
                );
            }
        }
        Ok(SummarizeState { ctx, engine, save })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SummarizeMsg::Document(info, result, error, credit) = msg;
        state
            .ctx
            .recovery
            .handling(Stage::Summarize, Some(&info.id));
        Received {
            stage: Stage::Summarize,
            items: 1,
        }
        .emit(&state.ctx);
        if info.is_superseded() {
            Discarded {
                job_id: &info.id,
                stage: Stage::Summarize,
                items: 1,
                why: Discard::Superseded,
            }
            .emit(&state.ctx);
            return Ok(());
        }
        let work = summarize_document(
            state.ctx.clone(),
            state.engine.clone(),
            state.save.clone(),
            info,
            result,
            error,
            credit,
        );
        match state.engine {
            // The pool bounds local work; waiting for it here keeps documents in order.
            Engine::Local(_) => work.await,
            // The server may take seconds: the mailbox goes on while it answers.
            Engine::Llm(..) => {
                tokio::spawn(work);
            }
        }
        Ok(())
    }
}

/// What the engine made of a document's text.
struct Summarized {
    summary: Result<(String, &'static str), JobError>,
    extracted: Option<serde_json::Value>,
    warnings: Vec<String>,
    /// The summary's error is the job's: it fails (or ends cancelled) instead of going on
    /// without a summary.
    fails_job: bool,
}

impl Summarized {
    /// No summary, and the job ends with `error`.
    fn job_fails(error: JobError) -> Summarized {
        Summarized {
            summary: Err(error),
            extracted: None,
            warnings: Vec::new(),
            fails_job: true,
        }
    }
}

/// Why a document stopped waiting for the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Cancelled,
    Deadline,
}

/// Runs `work` until it ends, the job is cancelled (looked at every [`CANCEL_POLL`]), or
/// `deadline`, if any, passes; `work` is dropped when it is stopped.
async fn until_stopped<T>(
    info: &JobInfo,
    deadline: Option<Instant>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Stopped> {
    let cancelled = async {
        while !info.is_cancelled() {
            tokio::time::sleep(CANCEL_POLL).await;
        }
    };
    let deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        out = work => Ok(out),
        () = cancelled => Err(Stopped::Cancelled),
        () = deadline => Err(Stopped::Deadline),
    }
}

/// Counts a document in `pagemill_llm_documents_waiting` while it lives.
struct Waiting(metrics::Gauge);

impl Waiting {
    fn new(pipeline: &str) -> Waiting {
        let gauge = metrics::gauge!(m::LLM_DOCUMENTS_WAITING, "pipeline" => pipeline.to_string());
        gauge.increment(1.0);
        Waiting(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// An LLM summary as the journal keeps it for an unfinished job.
#[derive(serde::Serialize, serde::Deserialize)]
struct SummaryCheckpoint {
    /// [`LlmSummarizer::checkpoint_key`]: a restart with another text, model, prompt or
    /// schema asks the server again.
    key: String,
    summary: String,
    extracted: Option<serde_json::Value>,
    warnings: Vec<String>,
}

/// The LLM summary a run before a restart made of this job, from the journal.
async fn restored_summary(ctx: &StageContext, job_id: &str, key: &str) -> Option<Summarized> {
    let journal = ctx.store.clone()?;
    let stored = journal.summary_checkpoint(job_id).await.ok()??;
    let checkpoint: SummaryCheckpoint = serde_json::from_str(&stored).ok()?;
    if checkpoint.key != key {
        return None;
    }
    Some(Summarized {
        summary: Ok((checkpoint.summary, "llm")),
        extracted: checkpoint.extracted,
        warnings: checkpoint.warnings,
        fails_job: false,
    })
}

/// Journals an LLM summary (not a fallback one: a resumed job tries the server again).
async fn checkpoint_summary(ctx: &StageContext, job_id: &str, key: String, done: &Summarized) {
    let (Some(journal), Ok((summary, "llm"))) = (ctx.store.clone(), &done.summary) else {
        return;
    };
    let record = SummaryCheckpoint {
        key,
        summary: summary.clone(),
        extracted: done.extracted.clone(),
        warnings: done.warnings.clone(),
    };
    let Ok(record) = serde_json::to_string(&record) else {
        return;
    };
    if let Err(e) = journal.checkpoint_summary(job_id, record).await {
        tracing::warn!(error = %e, "cannot checkpoint the summary");
    }
}

/// Summarizes one document and hands it to save, then frees its credit.
async fn summarize_document(
    ctx: StageContext,
    engine: Engine,
    save: Downstream<SaveMsg>,
    info: Arc<JobInfo>,
    mut result: JobResult,
    error: Option<JobError>,
    credit: Credit,
) {
    let mut failed = false;
    if error.is_none() {
        let started = Instant::now();
        let text: Arc<str> = std::mem::take(&mut result.text).into();
        // A resumed job may have its LLM summary in the journal already.
        let key = match &engine {
            Engine::Llm(llm, _) => Some(llm.checkpoint_key(&result.source.name, &text)),
            Engine::Local(_) => None,
        };
        let restored = match &key {
            Some(key) => restored_summary(&ctx, &result.id, key).await,
            None => None,
        };
        let done = match restored {
            Some(done) => {
                metrics::counter!(m::LLM_SUMMARIES_RESTORED, "pipeline" => ctx.pipeline.name.clone())
                    .increment(1);
                done
            }
            None => {
                let work = summarize_text(&ctx, &engine, &info, &result.source.name, text.clone());
                // A panic in the engine fails this document's summary, never the job.
                let done = match std::panic::AssertUnwindSafe(work).catch_unwind().await {
                    Ok(done) => done,
                    Err(_) => Summarized {
                        summary: Err(JobError::SummaryFailed("the summarizer panicked".into())),
                        extracted: None,
                        warnings: Vec::new(),
                        fails_job: false,
                    },
                };
                if let Some(key) = key {
                    checkpoint_summary(&ctx, &result.id, key, &done).await;
                }
                done
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        result.text = text.to_string();
        result.warnings.extend(done.warnings);
        result.extracted = done.extracted;
        DocumentSummarized {
            info: &info,
            summary: match &done.summary {
                Ok((summary, engine)) => Ok((summary.as_str(), *engine)),
                Err(e) => Err(e),
            },
            fails_job: done.fails_job,
            seconds,
        }
        .emit(&ctx);
        match done.summary {
            Ok((summary, engine)) => {
                result.summary = Some(SummaryRecord {
                    engine: engine.to_string(),
                    text: summary,
                })
            }
            Err(e) if done.fails_job => {
                failed = true;
                result.error = Some(e.to_record());
            }
            Err(e) => {
                failed = true;
                result.warnings.push(format!("no summary: {e}"));
            }
        }
        result.timings.summarize_ms = (seconds * 1000.0) as u64;
    }
    save.send_with(|c| SaveMsg::Result(info, result, c)).await;
    if !failed {
        Passed {
            stage: Stage::Summarize,
            items: 1,
        }
        .emit(&ctx);
    }
    drop(credit);
}

/// The summary (and extracted object) of one document's text.
async fn summarize_text(
    ctx: &StageContext,
    engine: &Engine,
    info: &JobInfo,
    name: &str,
    text: Arc<str>,
) -> Summarized {
    let mut warnings = Vec::new();
    let (llm, fallback) = match engine {
        Engine::Local(engine) => {
            return Summarized {
                summary: summarize_locally(ctx, engine.clone(), text).await,
                extracted: None,
                warnings,
                fails_job: false,
            };
        }
        Engine::Llm(llm, fallback) => (llm, fallback),
    };
    if info.is_cancelled() {
        return Summarized::job_fails(JobError::Cancelled);
    }
    let span = info.span(Stage::Summarize);
    let max_job_time = ctx.pipeline.limits.max_job_time;
    // Without a fallback the document may wait for the server, up to the job's deadline.
    let deadline = fallback.is_none().then(|| info.submitted + max_job_time);
    // The summary and the extraction go to the server side by side.
    let both = futures_util::future::join(llm.summarize(name, &text), async {
        if llm.extracts() {
            llm.extract(name, &text).await
        } else {
            Ok(None)
        }
    });
    let (summary, mut extracted) = match until_stopped(info, deadline, both).await {
        Ok(both) => both,
        Err(Stopped::Cancelled) => return Summarized::job_fails(JobError::Cancelled),
        // Out of time before the server said anything.
        Err(Stopped::Deadline) => {
            return Summarized::job_fails(JobError::JobTimeout {
                limit_ms: max_job_time.as_millis() as u64,
            });
        }
    };
    let summary = match (summary, fallback, deadline) {
        (Ok(summary), _, _) => Ok((summary, "llm")),
        (Err(e), Some(local), _) => {
            span.in_scope(|| tracing::warn!(error = %e, fallback = true, "the LLM failed"));
            metrics::counter!(m::LLM_FALLBACKS, "pipeline" => ctx.pipeline.name.clone())
                .increment(1);
            warnings.push(format!("the LLM failed ({e}); the summary is extractive"));
            summarize_locally(ctx, local.clone(), text.clone()).await
        }
        (Err(e), None, Some(deadline)) if e.is_transient() => {
            match wait_for_llm(ctx, llm, info, name, &text, deadline, e).await {
                Ok(summary) => {
                    // An extraction held back with the summary is asked for again, now that
                    // the server answers.
                    if matches!(&extracted, Err(e) if e.is_transient()) {
                        match until_stopped(info, None, llm.extract(name, &text)).await {
                            Ok(again) => extracted = again,
                            Err(_) => return Summarized::job_fails(JobError::Cancelled),
                        }
                    }
                    Ok((summary, "llm"))
                }
                Err(error) => return Summarized::job_fails(error),
            }
        }
        (Err(e), None, _) => {
            span.in_scope(|| tracing::warn!(error = %e, fallback = false, "the LLM failed"));
            return Summarized::job_fails(JobError::SummaryFailed(e.to_string()));
        }
    };
    let extracted = match extracted {
        Ok(object) => object,
        Err(e) => {
            span.in_scope(|| tracing::warn!(error = %e, "no extracted object"));
            warnings.push(format!("no extracted object: {e}"));
            None
        }
    };
    Summarized {
        summary,
        extracted,
        warnings,
        fails_job: false,
    }
}

/// With `fallback: none`, after a transient failure (`first`): waits and tries again as the
/// circuit allows, holding the document's place on the edge, until the summary is written,
/// the job is cancelled, its `deadline` passes (`llm_unavailable`), or the server fails it
/// for good (`summary_failed`). Returns the summary or the job's error.
async fn wait_for_llm(
    ctx: &StageContext,
    llm: &LlmSummarizer,
    info: &JobInfo,
    name: &str,
    text: &str,
    deadline: Instant,
    first: LlmError,
) -> Result<String, JobError> {
    let _waiting = Waiting::new(&ctx.pipeline.name);
    let started = Instant::now();
    let span = info.span(Stage::Summarize);
    span.in_scope(|| {
        tracing::warn!(error = %first, "the LLM failed; the document waits for it (no fallback)")
    });
    let mut last = first;
    loop {
        let round = async {
            llm.wait_to_retry().await;
            llm.summarize(name, text).await
        };
        match until_stopped(info, Some(deadline), round).await {
            Ok(Ok(summary)) => {
                span.in_scope(|| {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "the LLM answered after the document waited"
                    )
                });
                return Ok(summary);
            }
            Ok(Err(e)) if e.is_transient() => {
                span.in_scope(|| tracing::debug!(error = %e, "the LLM failed again; waiting"));
                // The server's own failure says more than the circuit's pause that followed.
                if !matches!(e, LlmError::CircuitOpen(_))
                    || matches!(last, LlmError::CircuitOpen(_))
                {
                    last = e;
                }
            }
            Ok(Err(e)) => return Err(JobError::SummaryFailed(e.to_string())),
            Err(Stopped::Cancelled) => return Err(JobError::Cancelled),
            Err(Stopped::Deadline) => {
                return Err(JobError::LlmUnavailable {
                    limit_ms: ctx.pipeline.limits.max_job_time.as_millis() as u64,
                    last: last.to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn waiting_ends_with_the_work_at_cancellation_or_at_the_deadline() {
        let cancel = Arc::new(AtomicBool::new(false));
        let info = JobInfo::new(
            "job".into(),
            "test".into(),
            Instant::now(),
            cancel.clone(),
            &tracing::Span::none(),
        );
        let far = Some(Instant::now() + Duration::from_secs(3600));
        assert_eq!(until_stopped(&info, far, async { 7 }).await, Ok(7));

        // Work that never ends stops at the deadline, not before.
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(300));
        let out = until_stopped(&info, deadline, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Stopped::Deadline));
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Or when the job is cancelled, with or without a deadline.
        let flag = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        let out = until_stopped(&info, None, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Stopped::Cancelled));
        let out = until_stopped(&info, far, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Stopped::Cancelled));
    }
}
