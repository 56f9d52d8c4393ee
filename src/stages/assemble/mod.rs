//! Assemble stage: the fan-in where a document's pages come back together.
//!
//! Render announces each document (with its page count, or the reason it failed) before any of
//! its pages can arrive; pages then come from OCR or, for text-layer pages, straight from
//! render, in any order. When the last page is in, the document goes to the summarizer. Only
//! page *text* is held here; page images never reach this stage.

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::model::error::JobError;
use crate::model::result::{JobResult, PageRecord, PageSource, Timings};
use crate::pipeline::context::StageContext;
use crate::pipeline::edge::Downstream;
use crate::pipeline::events::{Discard, Discarded, PageAssembled, Passed, Received};
use crate::pipeline::messages::{
    AssembleMsg, Expectation, FinishedPage, PageOutcome, SummarizeMsg,
};
use crate::pipeline::stage::Stage;
use crate::service::store::JobStore;

/// A document whose pages are still coming in.
struct Assembly {
    expectation: Expectation,
    pages: Vec<Option<PageRecord>>,
    received: u32,
    /// Pages this job reads: all of the document's, or its range's.
    expected: u32,
    first_error: Option<(u32, JobError)>,
    render_ms: u64,
    ocr_ms: u64,
    warnings: Vec<String>,
}

/// The record of a page Tesseract did not read: no text, words, confidence or turn.
fn unrecognized(number: u32, source: PageSource, millis: u64) -> PageRecord {
    PageRecord {
        number,
        source,
        text: String::new(),
        confidence: None,
        rotation: 0,
        deskew: 0.0,
        scale: 1.0,
        size: None,
        words: Vec::new(),
        millis,
        error: None,
        skipped: None,
        layout: Default::default(),
    }
}

/// Turns a finished page into its record, noting a warning or an error where due.
fn page_record(page: FinishedPage, assembly: &mut Assembly) -> PageRecord {
    let number = page.number;
    assembly.render_ms += page.render_ms;
    match page.outcome {
        PageOutcome::Restored(record) => *record,
        PageOutcome::Ocr(ocr) => {
            assembly.ocr_ms += ocr.millis;
            PageRecord {
                number,
                source: PageSource::Ocr,
                text: ocr.text,
                confidence: Some(ocr.confidence),
                rotation: ocr.rotation,
                deskew: ocr.deskew_degrees,
                scale: ocr.scale,
                size: Some(ocr.size),
                words: ocr.words,
                millis: ocr.millis + page.render_ms,
                error: None,
                skipped: None,
                layout: ocr.layout,
            }
        }
        PageOutcome::TextLayer { text, invisible } => {
            if invisible {
                assembly.warnings.push(format!(
                    "page {number}: took an existing invisible OCR text layer"
                ));
            }
            PageRecord {
                text,
                ..unrecognized(number, PageSource::TextLayer, page.render_ms)
            }
        }
        PageOutcome::Skipped(reason) => PageRecord {
            skipped: Some(reason),
            ..unrecognized(number, PageSource::Skipped, page.render_ms)
        },
        PageOutcome::Failed(e) => {
            let record = PageRecord {
                error: Some(e.to_record()),
                ..unrecognized(number, PageSource::Ocr, page.render_ms)
            };
            if assembly
                .first_error
                .as_ref()
                .is_none_or(|(n, _)| number < *n)
            {
                assembly.first_error = Some((number, e));
            }
            record
        }
    }
}

/// Journals a finished page so that a resumed job skips it. A failure only costs the page
/// being done again after a restart, so it is logged, not fatal.
async fn checkpoint_page(journal: &dyn JobStore, id: &str, record: &PageRecord) {
    let number = record.number;
    let Ok(json) = serde_json::to_string(record) else {
        return;
    };
    if let Err(e) = journal.checkpoint_page(id, number, json).await {
        tracing::warn!(page = number, error = %e, "cannot checkpoint a page");
    }
}

/// Builds the result record of a complete assembly (without its summary).
fn finish(assembly: Assembly, pipeline: &str) -> (JobResult, Option<JobError>) {
    let Assembly {
        expectation,
        pages,
        first_error,
        render_ms,
        ocr_ms,
        warnings,
        ..
    } = assembly;
    let pages: Vec<PageRecord> = pages.into_iter().flatten().collect();
    let text = pages
        .iter()
        .map(|p| p.text.trim_end())
        .collect::<Vec<_>>()
        .join("\u{c}");
    let error = expectation.error.or(first_error.map(|(_, e)| e));
    let result = JobResult {
        id: expectation.info.id.clone(),
        pipeline: pipeline.to_string(),
        source: expectation.source.record,
        pages,
        text,
        summary: None,
        extracted: None,
        warnings,
        error: error.as_ref().map(JobError::to_record),
        timings: Timings {
            ingest_ms: expectation.source.ingest_ms,
            render_ms,
            ocr_ms,
            ..Timings::default()
        },
    };
    (result, error)
}

pub struct AssembleStage;

pub struct AssembleState {
    ctx: StageContext,
    summarize: Downstream<SummarizeMsg>,
    open: HashMap<String, Assembly>,
}

impl AssembleState {
    async fn pass_on(&mut self, id: &str) {
        let Some(assembly) = self.open.remove(id) else {
            return;
        };
        let info = assembly.expectation.info.clone();
        let (result, error) = finish(assembly, &self.ctx.pipeline.name);
        if info.pages.is_some() {
            // A range of a split document: its pages are checkpointed, and the node that
            // assembles the whole document summarizes and saves it.
            self.ctx.recovery.finished(id);
            self.ctx
                .jobs
                .finished(id, error.as_ref().map(JobError::to_record), None);
            return;
        }
        self.summarize
            .send_with(|c| SummarizeMsg::Document(info, result, error, c))
            .await;
    }
}

impl Actor for AssembleStage {
    type Msg = AssembleMsg;
    type State = AssembleState;
    type Arguments = (StageContext, Downstream<SummarizeMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (ctx, summarize): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(AssembleState {
            ctx,
            summarize,
            open: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let info = match &msg {
            AssembleMsg::Expect(e) => &e.info,
            AssembleMsg::Page(page, _) => &page.info,
            AssembleMsg::Abandon(info, _) => info,
        };
        state.ctx.recovery.handling(Stage::Assemble, Some(&info.id));
        if info.is_superseded() {
            Discarded {
                job_id: &info.id,
                stage: Stage::Assemble,
                items: 1,
                why: Discard::Superseded,
            }
            .emit(&state.ctx);
            return Ok(());
        }
        match msg {
            AssembleMsg::Expect(expectation) => {
                let id = expectation.info.id.clone();
                let pages = expectation.page_count as usize;
                let expected = expectation.info.pages_to_read(expectation.page_count);
                state.open.insert(
                    id.clone(),
                    Assembly {
                        expectation,
                        pages: (0..pages).map(|_| None).collect(),
                        received: 0,
                        expected,
                        first_error: None,
                        render_ms: 0,
                        ocr_ms: 0,
                        warnings: Vec::new(),
                    },
                );
                if expected == 0 {
                    state.pass_on(&id).await;
                }
            }
            AssembleMsg::Page(page, credit) => {
                Received {
                    stage: Stage::Assemble,
                    items: 1,
                }
                .emit(&state.ctx);
                let outcome_label = page.outcome.label();
                let checkpoint = matches!(
                    page.outcome,
                    PageOutcome::Ocr(_) | PageOutcome::TextLayer { .. } | PageOutcome::Skipped(_)
                );
                PageAssembled {
                    info: &page.info,
                    outcome: outcome_label,
                }
                .emit(&state.ctx);
                let id = page.info.id.clone();
                let Some(assembly) = state.open.get_mut(&id) else {
                    // The job was abandoned (cancelled) while this page was in OCR.
                    Discarded {
                        job_id: &id,
                        stage: Stage::Assemble,
                        items: 1,
                        why: Discard::Cancelled,
                    }
                    .emit(&state.ctx);
                    return Ok(());
                };
                crate::pipeline::faults::inject(
                    Stage::Assemble,
                    &assembly.expectation.source.record.name,
                    assembly.received + 1,
                );
                Passed {
                    stage: Stage::Assemble,
                    items: 1,
                }
                .emit(&state.ctx);
                let index = (page.number - 1) as usize;
                let record = page_record(page, assembly);
                if checkpoint && let Some(journal) = &state.ctx.store {
                    checkpoint_page(journal.as_ref(), &id, &record).await;
                }
                if let Some(slot) = assembly.pages.get_mut(index)
                    && slot.is_none()
                {
                    *slot = Some(record);
                    assembly.received += 1;
                }
                if assembly.received == assembly.expected {
                    state.pass_on(&id).await;
                }
                drop(credit);
            }
            AssembleMsg::Abandon(info, error) => {
                if let Some(assembly) = state.open.get_mut(&info.id) {
                    assembly.expectation.error.get_or_insert(error);
                    state.pass_on(&info.id).await;
                }
            }
        }
        Ok(())
    }
}
