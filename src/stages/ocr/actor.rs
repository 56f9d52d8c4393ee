//! The OCR actor: puts pages on the CPU pool, heaviest first, and passes the text on to the
//! assembler.
//!
//! The handler never waits for OCR itself. It keeps as many pages in recognition as the pool
//! has threads; the other rendered pages wait here, and when a thread frees up the page with
//! the most estimated work (its text texture) starts next. Starting long pages early keeps the last page of a document from
//! running alone while the other threads idle. The edge into this stage still bounds how many
//! page images exist; waiting pages keep their credit.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::edge::Credit;
use crate::error::JobError;
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
    /// A page's recognition finished and its thread is free.
    Finished,
}

/// A waiting page, ordered by its estimated OCR work; among equals, the earlier page first.
struct Waiting(OcrWork, Credit);

impl Waiting {
    fn key(&self) -> (u64, std::cmp::Reverse<u32>) {
        (self.0.image.cost, std::cmp::Reverse(self.0.number))
    }
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

pub struct OcrStage;

pub struct OcrState {
    ctx: StageContext,
    assemble: Downstream<AssembleMsg>,
    waiting: BinaryHeap<Waiting>,
    running: usize,
}

impl OcrState {
    /// Starts the heaviest waiting pages while pool threads are free.
    fn start_pages(&mut self, myself: &ActorRef<OcrMsg>) {
        while self.running < self.ctx.pipeline.pool.threads {
            let Some(Waiting(work, credit)) = self.waiting.pop() else {
                return;
            };
            self.running += 1;
            spawn_recognition(
                self.ctx.clone(),
                self.assemble.clone(),
                myself.clone(),
                work,
                credit,
            );
        }
    }
}

/// Recognizes one page on the pool, passes it on, then tells the actor its thread is free.
fn spawn_recognition(
    ctx: StageContext,
    assemble: Downstream<AssembleMsg>,
    myself: ActorRef<OcrMsg>,
    work: OcrWork,
    credit: Credit,
) {
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
        let span = info.span("ocr").clone();
        let limits = ctx.pipeline.limits;
        let job_time_left = limits.max_job_time.saturating_sub(info.submitted.elapsed());
        let result = if info.is_cancelled() {
            Err(JobError::Cancelled)
        } else if job_time_left.is_zero() {
            Err(JobError::JobTimeout {
                limit_ms: limits.max_job_time.as_millis() as u64,
            })
        } else {
            let limit = limits.max_ocr_time_per_page.min(job_time_left);
            ctx.pool
                .run(move || span.in_scope(|| ocr_page_on_this_thread(image, number, &cfg, limit)))
                .await
                .and_then(|r| r)
        };
        let span = info.span("ocr");
        let _ = myself.send_message(OcrMsg::Finished);
        metrics::histogram!(m::STAGE_PROCESSING_SECONDS, &labels)
            .record(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(ocr) => {
                ctx.count_sent("ocr", 1);
                span.in_scope(|| {
                    tracing::debug!(
                        page = number,
                        confidence = ocr.confidence,
                        rotation = ocr.rotation,
                        millis = ocr.millis,
                        "page recognized"
                    )
                });
                metrics::histogram!(m::OCR_CONFIDENCE, "pipeline" => ctx.pipeline.name.clone())
                    .record(ocr.confidence as f64);
                PageOutcome::Ocr(ocr)
            }
            Err(JobError::Cancelled) => {
                ctx.count_discarded("ocr", 1);
                PageOutcome::Failed(JobError::Cancelled)
            }
            Err(e) => {
                ctx.count_error("ocr", e.code());
                span.in_scope(
                    || tracing::warn!(page = number, code = e.code(), error = %e, "page failed"),
                );
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
        // Only now is this page out of the OCR stage: its slot frees for the next render.
        drop(credit);
    });
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
        Ok(OcrState {
            ctx,
            assemble,
            waiting: BinaryHeap::new(),
            running: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OcrMsg::Page(work, credit) => {
                state.ctx.count_received("ocr", 1);
                state.waiting.push(Waiting(work, credit));
            }
            OcrMsg::Finished => state.running = state.running.saturating_sub(1),
        }
        state.start_pages(&myself);
        Ok(())
    }
}
