//! Big documents across the cluster: a document with more pages than its pipeline's
//! `cluster.split_pages` is split by the node that takes it into page ranges, queued heaviest
//! first (by the text-texture estimate the render stage orders pages by), which any node may
//! render, OCR and checkpoint. The node that split the document keeps the job's message and
//! lease while the ranges run (so the job counts once in the queue's admission); once every
//! range is recorded done, it finds every page checkpointed and assembles, summarizes and
//! saves the document as an unsplit run would.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::model::document::{Content, open_document};
use crate::pipeline::job::PageRange;
use crate::stages::render::cost::{PageWork, pdf_page_work};

/// How a job's document was split, in its KV record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Split {
    /// The document's pages.
    pub pages: u32,
    /// The ranges, by index (as their queued messages name them).
    pub ranges: Vec<PageRange>,
    /// Which ranges have their pages checkpointed.
    pub done: Vec<bool>,
    /// Set by the node that holds the job's lease when it starts assembling the document
    /// (from then on, progress is that node's run).
    pub assembling: bool,
}

impl Split {
    pub fn all_done(&self) -> bool {
        self.done.iter().all(|d| *d)
    }
}

/// A range of a split job, as its queued message names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RangeTask {
    pub index: usize,
    pub range: PageRange,
}

/// The ranges to split the document at `path` into, heaviest first, or `None` when it is not
/// to be split: its pipeline does not split (`split_pages: 0`), it is no larger than a range,
/// or its pipeline keeps files of every page (hOCR, ALTO, page images) that checkpoints do not
/// hold, so that the assembling node would read every page again.
pub fn plan(path: &Path, pipeline: &Pipeline) -> Option<(u32, Vec<RangeTask>)> {
    let split_pages = pipeline.cluster.split_pages;
    let ocr = &pipeline.ocr;
    if split_pages == 0 || ocr.keep_hocr || ocr.keep_alto || ocr.keep_page_image {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let document = open_document(bytes, &pipeline.limits).ok()?;
    let pages = document.page_count;
    if pages <= split_pages {
        return None;
    }
    let weight = |number: u32| -> u64 {
        match &document.content {
            Content::Pdf(pdf) => match pdf_page_work(pdf, number - 1, &pipeline.render) {
                PageWork::Ocr(work) => work,
                PageWork::TextLayer(_) => 0,
            },
            _ => 1,
        }
    };
    let mut ranges: Vec<(u64, RangeTask)> = (0..pages.div_ceil(split_pages))
        .map(|index| {
            let first = index * split_pages + 1;
            let range = PageRange {
                first,
                last: (first + split_pages - 1).min(pages),
            };
            let work = (range.first..=range.last).map(weight).sum();
            (
                work,
                RangeTask {
                    index: index as usize,
                    range,
                },
            )
        })
        .collect();
    ranges.sort_by_key(|(work, task)| (std::cmp::Reverse(*work), task.index));
    Some((pages, ranges.into_iter().map(|(_, task)| task).collect()))
}
