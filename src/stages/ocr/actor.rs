//! The OCR actor: puts each page on the CPU pool and passes the text to the assembler.
//!
//! The handler never waits for OCR itself: it starts one task per page, so as many pages are
//! recognized at once as the pool has threads, while the edge into this stage bounds how many
//! page images exist.

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::edge::Credit;
use crate::metrics as m;
use crate::stages::assemble::{AssembleMsg, FinishedPage, PageOutcome};
use crate::stages::ocr::{PageImage, ocr_page_on_this_thread};
use crate::stages::{Downstream, JobInfo};
use crate::supervisor::StageContext;

/// A rendered page waiting for OCR.
pub struct OcrWork {
    pub info: Arc<JobInfo>,
    pub number: u32,
    pub image: PageImage,
    pub render_ms: u64,
}

pub enum OcrMsg {
    Page(OcrWork, Credit),
}

pub struct OcrStage;

pub struct OcrState {
    ctx: StageContext,
    assemble: Downstream<AssembleMsg>,
}

impl Actor for OcrStage {
    type Msg = OcrMsg;
    type State = OcrState;
    type Arguments = (StageContext, Downstream<AssembleMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (ctx, assemble): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(OcrState { ctx, assemble })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let OcrMsg::Page(work, credit) = msg;
        let ctx = state.ctx.clone();
        let assemble = state.assemble.clone();
        metrics::counter!(m::STAGE_RECEIVED, &ctx.labels("ocr")).increment(1);
        tokio::spawn(async move {
            let labels = ctx.labels("ocr");
            let started = Instant::now();
            let cfg = ctx.pipeline.ocr.clone();
            let OcrWork {
                info,
                number,
                image,
                render_ms,
            } = work;
            let result = ctx
                .pool
                .run(move || ocr_page_on_this_thread(image, &cfg))
                .await
                .and_then(|r| r);
            metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &labels)
                .record(started.elapsed().as_secs_f64());
            let outcome = match result {
                Ok(ocr) => {
                    metrics::histogram!(m::OCR_CONFIDENCE, "pipeline" => ctx.pipeline.name.clone())
                        .record(ocr.confidence as f64);
                    PageOutcome::Ocr(ocr)
                }
                Err(e) => {
                    metrics::counter!(m::STAGE_ERRORS, "pipeline" => ctx.pipeline.name.clone(), "stage" => "ocr", "error_type" => e.code()).increment(1);
                    PageOutcome::Failed(e)
                }
            };
            let page = FinishedPage {
                info,
                number,
                outcome,
                render_ms,
            };
            assemble.send_with(|c| AssembleMsg::Page(page, c)).await;
            metrics::counter!(m::STAGE_SENT, &labels).increment(1);
            // Only now is this page out of the OCR stage: its slot frees for the next render.
            drop(credit);
        });
        Ok(())
    }
}
