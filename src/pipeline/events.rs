//! What happens to a page in a stage, recorded once: each event's `emit` updates the stage
//! metrics, the job registry, the progress counters and the log together, so a stage says
//! what happened instead of doing that bookkeeping by hand at every turn.

use crate::model::error::JobError;
use crate::model::page::PageOcr;
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
    /// No letter-sized ink on it: nothing to recognize.
    NoText,
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
            Rendered::TextLayer | Rendered::NoText => ctx.count_sent(stage, 1),
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
