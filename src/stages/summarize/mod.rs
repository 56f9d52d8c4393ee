//! Summarize stage: one summary per document, from a pluggable engine.
//!
//! [`Summarizer`] is the interface of local engines; [`extractive::summarize`] is the default
//! (no network) and runs on the CPU pool. [`llm::LlmSummarizer`] calls an LLM server from the
//! stage itself (network I/O never holds a pool thread) and falls back to the extractive
//! engine when the pipeline says so. Failed documents pass through unsummarized.
//!
//! With an LLM, each document is handled in a task of its own, so the mailbox never waits on
//! the server and several documents' requests are in flight at once, as many as the adaptive
//! limit ([`limiter`]) allows. A document keeps its credit on the edge into this stage until
//! its result is handed to save: documents waiting for the server are bounded by
//! `edges.summarize_documents`, and a full edge holds assemble back.

pub mod extractive;
pub mod limiter;
pub mod llm;

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::config::{LlmFallback, SummarizeEngineKind};
use crate::edge::Credit;
use crate::error::JobError;
use crate::metrics as m;
use crate::result::{JobResult, SummaryRecord};
use crate::stages::Downstream;
use crate::stages::JobInfo;
use crate::stages::save::SaveMsg;
use crate::supervisor::StageContext;

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
    Llm(Arc<llm::LlmSummarizer>, Option<Arc<dyn Summarizer>>),
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
            Arc::new(llm::LlmSummarizer::new(
                &cfg.llm,
                &pipeline.ocr.languages,
                &pipeline.name,
            )),
            (cfg.llm.fallback == LlmFallback::Extractive).then_some(extractive),
        ),
    }
}

/// Runs a local engine on the CPU pool.
async fn summarize_locally(
    ctx: &StageContext,
    engine: Arc<dyn Summarizer>,
    text: Arc<str>,
) -> Result<(String, &'static str), JobError> {
    let name = engine.engine();
    ctx.pool
        .run(move || engine.summarize(&text))
        .await
        .and_then(|r| r)
        .map(|s| (s, name))
}

pub enum SummarizeMsg {
    /// A complete document; the error is set when the job failed.
    Document(Arc<JobInfo>, JobResult, Option<JobError>, Credit),
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
        if let Engine::Llm(..) = engine {
            // Documents are summarized side by side, up to the edge's capacity.
            let documents = ctx.pipeline.edges.summarize_documents;
            metrics::gauge!(m::STAGE_WORKERS, &ctx.labels("summarize")).set(documents as f64);
            let max = ctx.pipeline.summarize.llm.concurrency_max;
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
        state.ctx.count_received("summarize", 1);
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
}

/// An LLM summary as the journal keeps it for an unfinished job.
#[derive(serde::Serialize, serde::Deserialize)]
struct SummaryCheckpoint {
    /// [`llm::LlmSummarizer::checkpoint_key`]: a restart with another text, model, prompt or
    /// schema asks the server again.
    key: String,
    summary: String,
    extracted: Option<serde_json::Value>,
    warnings: Vec<String>,
}

/// The LLM summary a run before a restart made of this job, from the journal.
async fn restored_summary(ctx: &StageContext, job_id: &str, key: &str) -> Option<Summarized> {
    let journal = ctx.journal.clone()?;
    let id = job_id.to_string();
    let stored = tokio::task::spawn_blocking(move || journal.summary_checkpoint(&id))
        .await
        .ok()?
        .ok()??;
    let checkpoint: SummaryCheckpoint = serde_json::from_str(&stored).ok()?;
    if checkpoint.key != key {
        return None;
    }
    Some(Summarized {
        summary: Ok((checkpoint.summary, "llm")),
        extracted: checkpoint.extracted,
        warnings: checkpoint.warnings,
    })
}

/// Journals an LLM summary (not a fallback one: a resumed job tries the server again).
async fn checkpoint_summary(ctx: &StageContext, job_id: &str, key: String, done: &Summarized) {
    let (Some(journal), Ok((summary, "llm"))) = (ctx.journal.clone(), &done.summary) else {
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
    let id = job_id.to_string();
    let _ = tokio::task::spawn_blocking(move || journal.checkpoint_summary(&id, &record)).await;
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
        let labels = ctx.labels("summarize");
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
        let span = info.span("summarize");
        match done.summary {
            Ok((summary, engine)) => {
                span.in_scope(|| {
                    tracing::info!(
                        engine,
                        chars = summary.len(),
                        millis = (seconds * 1000.0) as u64,
                        "summary written"
                    )
                });
                result.summary = Some(SummaryRecord {
                    engine: engine.to_string(),
                    text: summary,
                })
            }
            Err(e) => {
                ctx.count_error("summarize", e.code());
                span.in_scope(|| tracing::warn!(code = e.code(), error = %e, "no summary"));
                failed = true;
                result.warnings.push(format!("no summary: {e}"));
            }
        }
        result.timings.summarize_ms = (seconds * 1000.0) as u64;
        metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &labels).record(seconds);
    }
    save.send_with(|c| SaveMsg::Result(info, result, c)).await;
    if !failed {
        ctx.count_sent("summarize", 1);
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
            };
        }
        Engine::Llm(llm, fallback) => (llm, fallback),
    };
    let span = info.span("summarize");
    // The summary and the extraction go to the server side by side.
    let (summary, extracted) = futures_util::join!(llm.summarize(name, &text), async {
        if llm.extracts() {
            llm.extract(name, &text).await
        } else {
            Ok(None)
        }
    });
    let extracted = match extracted {
        Ok(object) => object,
        Err(e) => {
            span.in_scope(|| tracing::warn!(error = %e, "no extracted object"));
            warnings.push(format!("no extracted object: {e}"));
            None
        }
    };
    let summary = match summary {
        Ok(summary) => Ok((summary, "llm")),
        Err(e) => {
            span.in_scope(
                || tracing::warn!(error = %e, fallback = fallback.is_some(), "the LLM failed"),
            );
            match fallback {
                Some(local) => {
                    metrics::counter!(m::LLM_FALLBACKS, "pipeline" => ctx.pipeline.name.clone())
                        .increment(1);
                    warnings.push(format!("the LLM failed ({e}); the summary is extractive"));
                    summarize_locally(ctx, local.clone(), text.clone()).await
                }
                None => Err(JobError::SummaryFailed(e.to_string())),
            }
        }
    };
    Summarized {
        summary,
        extracted,
        warnings,
    }
}
