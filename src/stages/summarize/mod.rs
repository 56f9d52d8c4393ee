//! Summarize stage: one summary per document, from a pluggable engine.
//!
//! [`Summarizer`] is the interface of local engines; [`extractive::summarize`] is the default
//! (no network) and runs on the CPU pool. [`llm::LlmSummarizer`] calls an LLM server from the
//! stage itself (network I/O never holds a pool thread) and falls back to the extractive
//! engine when the pipeline says so. Failed documents pass through unsummarized.

pub mod extractive;
pub mod llm;

use std::sync::Arc;
use std::time::Instant;

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
        Ok(SummarizeState { ctx, engine, save })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SummarizeMsg::Document(info, mut result, error, credit) = msg;
        let labels = state.ctx.labels("summarize");
        state.ctx.count_received("summarize", 1);
        let mut failed = false;
        if error.is_none() {
            let started = Instant::now();
            let text: Arc<str> = std::mem::take(&mut result.text).into();
            let summary = match &state.engine {
                Engine::Local(engine) => {
                    summarize_locally(&state.ctx, engine.clone(), text.clone()).await
                }
                Engine::Llm(llm, fallback) => match llm.summarize(&result.source.name, &text).await
                {
                    Ok(summary) => Ok((summary, "llm")),
                    Err(e) => {
                        info.span("summarize").in_scope(
                            || tracing::warn!(error = %e, fallback = fallback.is_some(), "the LLM failed"),
                        );
                        match fallback {
                            Some(local) => {
                                metrics::counter!(m::LLM_FALLBACKS, "pipeline" => state.ctx.pipeline.name.clone())
                                    .increment(1);
                                result.warnings.push(format!(
                                    "the LLM failed ({e}); the summary is extractive"
                                ));
                                summarize_locally(&state.ctx, local.clone(), text.clone()).await
                            }
                            None => Err(JobError::SummaryFailed(e.to_string())),
                        }
                    }
                },
            };
            let seconds = started.elapsed().as_secs_f64();
            result.text = text.to_string();
            let span = info.span("summarize");
            match summary {
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
                    state.ctx.count_error("summarize", e.code());
                    span.in_scope(|| tracing::warn!(code = e.code(), error = %e, "no summary"));
                    failed = true;
                    result.warnings.push(format!("no summary: {e}"));
                }
            }
            result.timings.summarize_ms = (seconds * 1000.0) as u64;
            metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &labels).record(seconds);
        }
        state
            .save
            .send_with(|c| SaveMsg::Result(info, result, c))
            .await;
        if !failed {
            state.ctx.count_sent("summarize", 1);
        }
        drop(credit);
        Ok(())
    }
}
