//! What happens to a page or a job in a stage, recorded once: each event's `emit` updates the stage
//! metrics, the job registry, the progress counters and the log together, so a stage says
//! what happened instead of doing that bookkeeping by hand at every turn.

use crate::model::document::Document;
use crate::model::error::JobError;
use crate::model::page::PageOcr;
use crate::model::result::{JobResult, SourceRecord};
use crate::pipeline::context::StageContext;
use crate::pipeline::job::JobInfo;
use crate::pipeline::progress::Progress;
use crate::pipeline::stage::Stage;
use crate::runtime::metrics as m;

/// How a page left the render stage.
#[derive(Debug, Clone, Copy)]
pub enum Rendered<'a> {
    /// Rendered to pixels, on its way to OCR.
    ForOcr,
    /// Its text layer taken instead of OCR.
    TextLayer,
    /// Nothing on it to recognize (a blank page, or a picture without text).
    Skipped,
    Failed(&'a JobError),
}

/// A page left the render stage, after `seconds` of work.
pub struct PageRendered<'a> {
    pub info: &'a JobInfo,
    pub number: u32,
    pub seconds: f64,
    pub rendered: Rendered<'a>,
}

impl PageRendered<'_> {
    pub fn emit(&self, ctx: &StageContext) {
        let stage = Stage::Render;
        metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &ctx.labels(stage)).record(self.seconds);
        ctx.jobs.update(&self.info.id, |s| s.pages.rendered += 1);
        let (page, millis) = (self.number, (self.seconds * 1000.0) as u64);
        self.info.span(stage).in_scope(|| match self.rendered {
            Rendered::Failed(e) => {
                tracing::warn!(page, code = e.code(), error = %e, "page failed")
            }
            rendered => tracing::debug!(
                page,
                millis,
                text_layer = matches!(rendered, Rendered::TextLayer),
                "page rendered"
            ),
        });
        match self.rendered {
            Rendered::Failed(e) => ctx.count_error(stage, e.code()),
            Rendered::ForOcr => {
                ctx.count_sent(stage, 1);
                Progress::add(&ctx.progress.pages_rendered, 1);
            }
            Rendered::TextLayer | Rendered::Skipped => ctx.count_sent(stage, 1),
        }
    }
}

/// A page left the OCR stage, after `seconds` there (waiting for a thread included).
pub struct PageRecognized<'a> {
    pub info: &'a JobInfo,
    pub number: u32,
    pub seconds: f64,
    pub result: Result<&'a PageOcr, &'a JobError>,
}

impl PageRecognized<'_> {
    pub fn emit(&self, ctx: &StageContext) {
        let stage = Stage::Ocr;
        metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &ctx.labels(stage)).record(self.seconds);
        let page = self.number;
        match self.result {
            Ok(ocr) => {
                ctx.count_sent(stage, 1);
                self.info.span(stage).in_scope(|| {
                    tracing::debug!(
                        page,
                        confidence = ocr.confidence,
                        rotation = ocr.rotation,
                        millis = ocr.millis,
                        "page recognized"
                    )
                });
                metrics::histogram!(m::OCR_CONFIDENCE, "pipeline" => ctx.pipeline.name.clone())
                    .record(ocr.confidence as f64);
            }
            Err(JobError::Cancelled) => ctx.count_discarded(stage, 1),
            Err(e) => {
                ctx.count_error(stage, e.code());
                self.info
                    .span(stage)
                    .in_scope(|| tracing::warn!(page, code = e.code(), error = %e, "page failed"));
            }
        }
    }
}

/// A page reached the assembler, read or not (`outcome` is its `pagemill_pages_total` label).
pub struct PageAssembled<'a> {
    pub info: &'a JobInfo,
    pub outcome: &'static str,
}

impl PageAssembled<'_> {
    pub fn emit(&self, ctx: &StageContext) {
        metrics::counter!(m::PAGES, "pipeline" => ctx.pipeline.name.clone(), "outcome" => self.outcome)
            .increment(1);
        Progress::add(&ctx.progress.pages_finished, 1);
        ctx.jobs.update(&self.info.id, |s| s.pages.ocred += 1);
    }
}

/// A job's result was saved (or could not be), after `seconds` in the save stage.
pub struct JobSaved<'a> {
    pub info: &'a JobInfo,
    pub result: &'a JobResult,
    pub seconds: f64,
}

impl JobSaved<'_> {
    pub fn emit(&self, ctx: &StageContext) {
        let stage = Stage::Save;
        metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &ctx.labels(stage)).record(self.seconds);
        let outcome = self.result.outcome();
        let (pages, total_ms) = (self.result.pages.len(), self.result.timings.total_ms);
        self.info.span(stage).in_scope(|| match &self.result.error {
            None => tracing::info!(outcome, pages, total_ms, "job finished"),
            Some(e) => tracing::warn!(outcome, pages, total_ms, code = %e.code,
                error = %e.message, "job finished"),
        });
        let progress = &ctx.progress;
        let counter = match self.result.error {
            None => &progress.jobs_done,
            Some(_) => &progress.jobs_failed,
        };
        Progress::add(counter, 1);
        let pipeline = ctx.pipeline.name.clone();
        metrics::counter!(m::JOBS_COMPLETED, "pipeline" => pipeline.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(m::JOB_DURATION_SECONDS, "pipeline" => pipeline, "outcome" => outcome)
            .record(self.info.submitted.elapsed().as_secs_f64());
    }
}

/// Ingest is done with a job's document: opened with its pages counted, or refused, after
/// `seconds` in the stage.
pub struct DocumentOpened<'a> {
    pub info: &'a JobInfo,
    pub record: &'a SourceRecord,
    pub document: Result<&'a Document, &'a JobError>,
    pub seconds: f64,
}

impl DocumentOpened<'_> {
    pub fn emit(&self, ctx: &StageContext) {
        let stage = Stage::Ingest;
        let span = self.info.span(stage);
        match self.document {
            Ok(doc) => {
                ctx.count_sent(stage, 1);
                let record = self.record;
                span.in_scope(|| {
                    tracing::info!(name = %record.name, bytes = record.bytes,
                    media_type = record.media_type.as_deref().unwrap_or("unknown"),
                    pages = doc.page_count, "document opened")
                });
                let pages = self.info.pages_to_read(doc.page_count);
                Progress::add(&ctx.progress.pages_total, pages as u64);
                ctx.jobs
                    .update(&self.info.id, |s| s.pages.total = Some(pages));
            }
            Err(JobError::Cancelled) => {
                ctx.count_discarded(stage, 1);
                span.in_scope(|| tracing::info!("job cancelled before it was read"));
            }
            Err(e) => {
                ctx.count_error(stage, e.code());
                span.in_scope(|| tracing::warn!(code = e.code(), error = %e, "document refused"));
            }
        }
        metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &ctx.labels(stage)).record(self.seconds);
    }
}

/// The summarize stage is done with a document, after `seconds`: a summary from `engine`, or
/// none, in which case `fails_job` says whether the job fails for it or only records why.
pub struct DocumentSummarized<'a> {
    pub info: &'a JobInfo,
    /// The summary and the engine that wrote it.
    pub summary: Result<(&'a str, &'a str), &'a JobError>,
    pub fails_job: bool,
    pub seconds: f64,
}

impl DocumentSummarized<'_> {
    pub fn emit(&self, ctx: &StageContext) {
        let stage = Stage::Summarize;
        let span = self.info.span(stage);
        match self.summary {
            Ok((summary, engine)) => span.in_scope(|| {
                tracing::info!(
                    engine,
                    chars = summary.len(),
                    millis = (self.seconds * 1000.0) as u64,
                    "summary written"
                )
            }),
            Err(JobError::Cancelled) if self.fails_job => {
                ctx.count_discarded(stage, 1);
                span.in_scope(|| tracing::info!("cancelled while summarizing"));
            }
            Err(e) if self.fails_job => {
                ctx.count_error(stage, e.code());
                span.in_scope(
                    || tracing::warn!(code = e.code(), error = %e, "no summary: the job fails"),
                );
            }
            Err(e) => {
                ctx.count_error(stage, e.code());
                span.in_scope(|| tracing::warn!(code = e.code(), error = %e, "no summary"));
            }
        }
        metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &ctx.labels(stage)).record(self.seconds);
    }
}

/// Items came into a stage: documents, or pages for the stages that work on pages.
pub struct Received {
    pub stage: Stage,
    pub items: u64,
}

impl Received {
    pub fn emit(&self, ctx: &StageContext) {
        ctx.count_received(self.stage, self.items);
    }
}

/// Items a stage passed on in good order without an event of their own (restored pages, a
/// document assembled or summarized, a result written).
pub struct Passed {
    pub stage: Stage,
    pub items: u64,
}

impl Passed {
    pub fn emit(&self, ctx: &StageContext) {
        ctx.count_sent(self.stage, self.items);
    }
}

/// Why a stage dropped items unprocessed.
#[derive(Debug, Clone, Copy)]
pub enum Discard {
    /// A stage crashed and the job runs again from the start: this attempt's items go.
    Superseded,
    /// The job was cancelled.
    Cancelled,
    /// The job already failed: the pages not started are not worth reading.
    JobFailed,
}

impl Discard {
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::Superseded => "superseded",
            Discard::Cancelled => "cancelled",
            Discard::JobFailed => "job_failed",
        }
    }
}

/// A stage dropped `items` of a job unprocessed.
pub struct Discarded<'a> {
    pub job_id: &'a str,
    pub stage: Stage,
    pub items: u64,
    pub why: Discard,
}

impl Discarded<'_> {
    pub fn emit(&self, ctx: &StageContext) {
        ctx.count_discarded(self.stage, self.items);
        tracing::debug!(
            job_id = self.job_id,
            stage = self.stage.name(),
            items = self.items,
            why = self.why.as_str(),
            "items discarded"
        );
    }
}

/// An item failed in a stage without an event of its own (a recognition task that panicked, a
/// result that could not be written), counted by its error type.
pub struct Failed {
    pub stage: Stage,
    pub error_type: &'static str,
}

impl Failed {
    pub fn emit(&self, ctx: &StageContext) {
        ctx.count_error(self.stage, self.error_type);
    }
}
