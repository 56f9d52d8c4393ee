//! The OCR actor: puts pages on the CPU pool, a fair share for every job and each job's
//! heaviest page first, and passes the text on to the assembler.
//!
//! The handler never waits for OCR itself. It keeps as many pages in recognition as the pool
//! has threads; the other rendered pages wait here, and when a thread frees up the next page
//! is chosen in two steps:
//!
//! 1. the job: the one with the fewest pages started in this stage so far (least attained
//!    service), the oldest among equals. A job that just arrived has started none, so a
//!    one-page job submitted behind a 200-page scan starts at the next free thread, and two
//!    large jobs take turns page by page. A job is remembered while it is alive anywhere in
//!    the pipeline, so a large job whose pages briefly stop waiting here does not count as
//!    new. As long as new small jobs keep arriving, they go before a large one: it gets the
//!    threads they leave free.
//! 2. the page: within that job, the one with the most estimated work (its text texture).
//!    Starting long pages early keeps the last page of a document from running alone while
//!    the other threads idle.
//!
//! The edge into this stage still bounds how many page images exist; waiting pages keep
//! their credit.
//!
//! Pipelines share one CPU pool, and each pipeline's OCR stage keeps at most as many pages on
//! it as the pool has threads. The pool runs its tasks in the order they came, so a page of
//! a job in one pipeline waits behind at most the pages the other pipelines have already put
//! on the pool, never behind all the pages they have waiting.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::model::error::JobError;
use crate::pipeline::context::StageContext;
use crate::pipeline::edge::{Credit, Downstream};
use crate::pipeline::events::{Discard, Discarded, Failed, PageRecognized, Received};
use crate::pipeline::job::JobInfo;
use crate::pipeline::messages::{AssembleMsg, FinishedPage, OcrMsg, OcrWork, PageOutcome};
use crate::pipeline::stage::Stage;
use crate::stages::ocr::ocr_page_on_this_thread;
use crate::stages::save::formats::preview_path;

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

/// The pages waiting for OCR, per job, and the order they start in (see the module doc).
/// Generic over the waiting item (its `Ord` says which of one job's items goes first), so
/// the order can be tested without images.
struct JobQueues<T> {
    jobs: HashMap<String, JobQueue<T>>,
    /// Jobs seen so far; numbers each job's arrival.
    arrivals: u64,
}

/// One job in this stage.
struct JobQueue<T> {
    /// The job, while any stage still holds it. Once it is gone and none of its pages
    /// waits, the entry is forgotten.
    info: Weak<JobInfo>,
    /// Pages of this job started here: its attained service.
    started: u64,
    /// When its first page arrived (the number of jobs before it); the older job goes first
    /// among equals.
    arrival: u64,
    waiting: BinaryHeap<T>,
}

impl<T: Ord> JobQueues<T> {
    fn new() -> Self {
        JobQueues {
            jobs: HashMap::new(),
            arrivals: 0,
        }
    }

    /// Adds a waiting page of `info`'s job.
    fn push(&mut self, info: &Arc<JobInfo>, item: T) {
        let queue = self
            .jobs
            .entry(info.id.clone())
            .or_insert_with(|| JobQueue {
                info: Weak::new(),
                started: 0,
                arrival: 0,
                waiting: BinaryHeap::new(),
            });
        let same_job =
            queue.info.strong_count() > 0 && std::ptr::eq(queue.info.as_ptr(), Arc::as_ptr(info));
        if !same_job {
            // A job new to this stage (or its id run again after the first run was gone).
            queue.info = Arc::downgrade(info);
            queue.started = 0;
            queue.arrival = self.arrivals;
            self.arrivals += 1;
        }
        queue.waiting.push(item);
    }

    /// The next page to start: the first waiting item of the job with the fewest pages
    /// started, the oldest job among equals.
    fn pop(&mut self) -> Option<T> {
        self.jobs
            .retain(|_, q| !q.waiting.is_empty() || q.info.strong_count() > 0);
        let queue = self
            .jobs
            .values_mut()
            .filter(|q| !q.waiting.is_empty())
            .min_by_key(|q| (q.started, q.arrival))?;
        queue.started += 1;
        queue.waiting.pop()
    }
}

pub struct OcrStage;

pub struct OcrState {
    ctx: StageContext,
    assemble: Downstream<AssembleMsg>,
    waiting: JobQueues<Waiting>,
    running: usize,
}

impl OcrState {
    /// Starts waiting pages, in the order of [`JobQueues::pop`], while pool threads are free.
    fn start_pages(&mut self, myself: &ActorRef<OcrMsg>) {
        while self.running < self.ctx.pipeline.pool.threads {
            let Some(Waiting(work, credit)) = self.waiting.pop() else {
                return;
            };
            if work.info.is_superseded() {
                Discarded {
                    job_id: &work.info.id,
                    stage: Stage::Ocr,
                    items: 1,
                    why: Discard::Superseded,
                }
                .emit(&self.ctx);
                continue;
            }
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

/// Recognizes one page on the pool, passes it on, then tells the actor its thread is free. A
/// panic outside the pool (which turns its own into errors) fails the page with `internal`
/// instead of losing it.
fn spawn_recognition(
    ctx: StageContext,
    assemble: Downstream<AssembleMsg>,
    myself: ActorRef<OcrMsg>,
    work: OcrWork,
    credit: Credit,
) {
    tokio::spawn(async move {
        let (info, number, render_ms) = (work.info.clone(), work.number, work.render_ms);
        let recognizing = async {
            crate::pipeline::faults::inject(Stage::Ocr, &info.document, number);
            recognize(&ctx, work).await
        };
        let outcome = AssertUnwindSafe(recognizing)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let error = JobError::Internal(format!(
                    "recognizing page {number} panicked: {}",
                    crate::runtime::pool::panic_message(&panic)
                ));
                Failed {
                    stage: Stage::Ocr,
                    error_type: error.code(),
                }
                .emit(&ctx);
                PageOutcome::Failed(error)
            });
        let _ = myself.send_message(OcrMsg::Finished);
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

/// Recognizes one page on the pool, within the job's time left.
async fn recognize(ctx: &StageContext, work: OcrWork) -> PageOutcome {
    let started = Instant::now();
    let cfg = ctx.pipeline.ocr.clone();
    let OcrWork {
        info,
        number,
        image,
        ..
    } = work;
    let span = info.span(Stage::Ocr).clone();
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
    PageRecognized {
        info: &info,
        number,
        seconds: started.elapsed().as_secs_f64(),
        result: result.as_ref(),
    }
    .emit(ctx);
    match result {
        Ok(mut ocr) => {
            if let Some(png) = ocr.preview.take() {
                keep_preview(ctx, &info.id, number, png).await;
            }
            PageOutcome::Ocr(ocr)
        }
        Err(e) => PageOutcome::Failed(e),
    }
}

/// Writes a page's preview beside the job's result (a temporary file renamed into place, so
/// a reader never sees half of one). The preview is for people: failing to keep it is
/// logged, and the page goes on.
async fn keep_preview(ctx: &StageContext, id: &str, number: u32, png: Vec<u8>) {
    let path = preview_path(&ctx.pipeline.save.directory, id, number);
    let partial = path.with_extension("png.part");
    let written = async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&partial, png).await?;
        tokio::fs::rename(&partial, &path).await
    };
    if let Err(e) = written.await {
        tracing::warn!(page = number, error = %e, "cannot keep a page's preview");
    }
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
            waiting: JobQueues::new(),
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
                state.ctx.recovery.handling(Stage::Ocr, Some(&work.info.id));
                Received {
                    stage: Stage::Ocr,
                    items: 1,
                }
                .emit(&state.ctx);
                if work.info.is_superseded() {
                    Discarded {
                        job_id: &work.info.id,
                        stage: Stage::Ocr,
                        items: 1,
                        why: Discard::Superseded,
                    }
                    .emit(&state.ctx);
                    return Ok(());
                }
                let info = work.info.clone();
                state.waiting.push(&info, Waiting(work, credit));
            }
            OcrMsg::Finished => {
                state.ctx.recovery.handling(Stage::Ocr, None);
                state.running = state.running.saturating_sub(1)
            }
        }
        state.start_pages(&myself);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn job(id: &str) -> Arc<JobInfo> {
        Arc::new(JobInfo::new(
            id.into(),
            "test".into(),
            Instant::now(),
            Arc::new(AtomicBool::new(false)),
            &tracing::Span::none(),
        ))
    }

    /// Items are page costs: within a job, the largest starts first.
    fn drain(queues: &mut JobQueues<u64>) -> Vec<u64> {
        std::iter::from_fn(|| queues.pop()).collect()
    }

    #[test]
    fn a_new_job_starts_before_the_waiting_pages_of_a_job_already_served() {
        let (big, small) = (job("big"), job("small"));
        let mut queues = JobQueues::new();
        for cost in [50, 90, 70, 30, 60] {
            queues.push(&big, cost);
        }
        assert_eq!(queues.pop(), Some(90));
        assert_eq!(queues.pop(), Some(70));
        queues.push(&small, 1);
        assert_eq!(drain(&mut queues), vec![1, 60, 50, 30]);
    }

    #[test]
    fn jobs_take_turns_heaviest_page_first_and_the_older_job_first_among_equals() {
        let (a, b) = (job("a"), job("b"));
        let mut queues = JobQueues::new();
        for cost in [10, 30, 20] {
            queues.push(&a, cost);
        }
        for cost in [200, 100] {
            queues.push(&b, cost);
        }
        assert_eq!(drain(&mut queues), vec![30, 200, 20, 100, 10]);
    }

    #[test]
    fn a_job_is_remembered_while_it_is_alive_and_forgotten_once_it_is_gone() {
        let (big, small) = (job("big"), job("small"));
        let mut queues = JobQueues::new();
        queues.push(&big, 90);
        queues.push(&big, 80);
        assert_eq!(drain(&mut queues), vec![90, 80]);
        // No page of the big job waits, yet it has had two pages: the small job goes first.
        queues.push(&big, 70);
        queues.push(&small, 1);
        assert_eq!(drain(&mut queues), vec![1, 70]);
        drop((big, small));
        assert_eq!(queues.pop(), None);
        assert!(queues.jobs.is_empty(), "jobs that are gone are forgotten");
        // The same id run again is a new job: it starts from nothing.
        let (again, other) = (job("big"), job("other"));
        queues.push(&other, 5);
        queues.push(&other, 4);
        assert_eq!(queues.pop(), Some(5));
        queues.push(&again, 60);
        assert_eq!(drain(&mut queues), vec![60, 4]);
    }
}
