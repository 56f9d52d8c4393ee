//! Summarize stage: one summary per document, from a pluggable engine.
//!
//! [`Summarizer`] is the engine interface; [`extractive::summarize`] is the local default (no
//! network). The summary runs on the CPU pool; failed documents pass through unsummarized.

pub mod extractive;

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::config::{SummarizeConfig, SummarizeEngineKind};
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

/// Builds the engine a pipeline asks for.
pub fn build_summarizer(cfg: &SummarizeConfig) -> Arc<dyn Summarizer> {
    match cfg.engine {
        SummarizeEngineKind::Extractive => Arc::new(ExtractiveSummarizer {
            max_sentences: cfg.max_sentences,
        }),
    }
}

pub enum SummarizeMsg {
    /// A complete document; the error is set when the job failed.
    Document(Arc<JobInfo>, JobResult, Option<JobError>, Credit),
}

pub struct SummarizeStage;

pub struct SummarizeState {
    ctx: StageContext,
    engine: Arc<dyn Summarizer>,
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
        let engine = build_summarizer(&ctx.pipeline.summarize);
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
            let engine = state.engine.clone();
            let text = std::mem::take(&mut result.text);
            let (text, summary, seconds) = state
                .ctx
                .pool
                .run(move || {
                    let started = Instant::now();
                    let summary = engine.summarize(&text);
                    (text, summary, started.elapsed().as_secs_f64())
                })
                .await
                .unwrap_or_else(|e| (String::new(), Err(e), 0.0));
            result.text = text;
            let span = info.span("summarize");
            match summary {
                Ok(summary) => {
                    span.in_scope(|| {
                        tracing::info!(
                            engine = state.engine.engine(),
                            chars = summary.len(),
                            millis = (seconds * 1000.0) as u64,
                            "summary written"
                        )
                    });
                    result.summary = Some(SummaryRecord {
                        engine: state.engine.engine().to_string(),
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
