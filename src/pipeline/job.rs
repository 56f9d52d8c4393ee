//! A job's identity as every stage sees it: its id, pipeline, cancel and superseded flags, and
//! its log spans.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::model::result::SourceRecord;
use crate::pipeline::stage::Stage;

/// Identity of one job, shared by every message about it.
#[derive(Debug)]
pub struct JobInfo {
    pub id: String,
    pub pipeline: Arc<str>,
    /// When the job was submitted; the job's total time counts from here.
    pub submitted: Instant,
    /// Set when the job is cancelled: stages skip its remaining pages.
    pub cancel: Arc<AtomicBool>,
    /// Set when this attempt at the job was replaced by a new one after a stage crashed
    /// ([`crate::pipeline::recovery`]): stages drop its messages.
    pub superseded: Arc<AtomicBool>,
    /// How many times the job was run again after a stage crashed (0 the first time).
    pub attempt: u32,
    /// The submitted document's name (empty until ingest has the job).
    pub document: Arc<str>,
    /// Only these pages: a range of a document split across a cluster, which ends once its
    /// pages are checkpointed.
    pub pages: Option<PageRange>,
    /// One span per stage, children of the job's span; every log line about the job is
    /// emitted in one of them, so it carries the job id, pipeline and stage.
    stage_spans: [tracing::Span; Stage::ALL.len()],
}

impl JobInfo {
    pub fn new(
        id: String,
        pipeline: Arc<str>,
        submitted: Instant,
        cancel: Arc<AtomicBool>,
        job_span: &tracing::Span,
    ) -> JobInfo {
        let stage_spans =
            Stage::ALL.map(|stage| stage_span(job_span, stage.name(), &id, &pipeline));
        JobInfo {
            id,
            pipeline,
            submitted,
            cancel,
            superseded: Arc::new(AtomicBool::new(false)),
            attempt: 0,
            document: Arc::from(""),
            pages: None,
            stage_spans,
        }
    }

    /// How many of a document's `page_count` pages this job reads.
    pub fn pages_to_read(&self, page_count: u32) -> u32 {
        self.pages.map_or(page_count, |r| r.count_in(page_count))
    }

    /// Whether this job reads page `number`.
    pub fn reads_page(&self, number: u32) -> bool {
        self.pages.is_none_or(|r| r.contains(number))
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Whether a newer attempt at this job has replaced this one: what is left of it is
    /// dropped.
    pub fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Relaxed)
    }

    /// The span of this job in `stage`.
    pub fn span(&self, stage: Stage) -> &tracing::Span {
        &self.stage_spans[stage as usize]
    }
}

/// The span of one job: its id and pipeline, for the life of the job. Job and stage spans
/// have the `error` level so that they are on whenever any log line is: a warning logged
/// under `--log-level warn` still says which job it is about.
pub fn job_span(id: &str, pipeline: &str) -> tracing::Span {
    tracing::error_span!("job", job_id = %id, pipeline = %pipeline)
}

/// The span of a job in one stage, a child of its job span. It repeats the job's fields so
/// that a log line's innermost span alone says which job, pipeline and stage it is about.
pub fn stage_span(
    job_span: &tracing::Span,
    stage: &str,
    id: &str,
    pipeline: &str,
) -> tracing::Span {
    tracing::error_span!(parent: job_span, "stage", stage = %stage, job_id = %id, pipeline = %pipeline)
}

/// A job's document as ingest found it.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub record: SourceRecord,
    pub ingest_ms: u64,
}

/// Pages `first..=last` of a document, numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageRange {
    pub first: u32,
    pub last: u32,
}

impl PageRange {
    pub fn contains(&self, number: u32) -> bool {
        (self.first..=self.last).contains(&number)
    }

    /// How many of a document's `page_count` pages the range holds.
    pub fn count_in(&self, page_count: u32) -> u32 {
        (self.first..=self.last.min(page_count)).count() as u32
    }
}
