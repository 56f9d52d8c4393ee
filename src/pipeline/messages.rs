//! The messages that flow between the stages, and what they carry: a stage imports what flows
//! into and out of it from here, never from another stage. Every message that crosses an edge
//! carries the [`Credit`] that bounds that edge.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::model::error::JobError;
use crate::model::media_type::MediaType;
use crate::model::page::{PageImage, PageOcr};
use crate::model::result::{JobResult, PageRecord, SkipReason};
use crate::pipeline::edge::Credit;
use crate::pipeline::job::{JobInfo, SourceInfo};

// Into ingest: a submitted job.

/// A job handed to the pipeline: a file on disk and the name to report it under.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    /// What intake learned about the file, if it read it.
    pub known: Option<KnownSource>,
    /// The tenant (API key name) that submitted it; none when the daemon serves without keys.
    pub tenant: Option<String>,
    /// Only these pages (a range of a document split across a cluster): they are rendered,
    /// OCRed and checkpointed, and the job ends there, without a summary or a saved result.
    pub pages: Option<crate::pipeline::job::PageRange>,
}

impl JobRequest {
    /// A job whose file nothing has read yet.
    pub fn new(id: impl Into<String>, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        JobRequest {
            id: id.into(),
            name: name.into(),
            path: path.into(),
            known: None,
            tenant: None,
            pages: None,
        }
    }
}

/// A document's facts, learned once by whoever first read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSource {
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
    pub media_type: MediaType,
    pub bytes: u64,
}

/// A job on its way into the pipeline.
pub struct Submission {
    pub request: JobRequest,
    /// When it was submitted; the job's total time counts from here.
    pub submitted: Instant,
    pub cancel: Arc<AtomicBool>,
    /// The job's span, opened when it was registered.
    pub span: tracing::Span,
    /// Set when this attempt at the job is replaced by a new one after a stage crashed: every
    /// stage drops what is left of it.
    pub superseded: Arc<AtomicBool>,
    /// How many times the job was run again after a stage crashed.
    pub attempt: u32,
    /// Set when the job made stages crash too often: it fails with this error unread.
    pub fail: Option<JobError>,
}

impl Submission {
    /// The first attempt at a job, submitted now.
    pub fn new(request: JobRequest, cancel: Arc<AtomicBool>, span: tracing::Span) -> Submission {
        Submission {
            request,
            submitted: Instant::now(),
            cancel,
            span,
            superseded: Arc::new(AtomicBool::new(false)),
            attempt: 0,
            fail: None,
        }
    }
}

pub enum IngestMsg {
    Job(Submission, Credit),
}

// Into render: an opened document (or why it could not be opened).

/// An opened document (or the reason it could not be opened) on its way to rendering.
pub struct RenderWork {
    pub info: Arc<JobInfo>,
    pub source: SourceInfo,
    pub document: Result<crate::model::document::Document, JobError>,
}

pub enum RenderMsg {
    Document(RenderWork, Credit),
}

// Into OCR: rendered pages.

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

// Into assemble: what is coming, and every finished page.

/// What render tells the assembler about a document before its pages.
pub struct Expectation {
    pub info: Arc<JobInfo>,
    pub source: SourceInfo,
    pub page_count: u32,
    /// Set when the document could not be opened; no pages follow.
    pub error: Option<JobError>,
}

/// How one page ended.
#[derive(Debug)]
pub enum PageOutcome {
    Ocr(PageOcr),
    TextLayer {
        text: String,
        invisible: bool,
    },
    Failed(JobError),
    /// Not recognized, for this reason.
    Skipped(SkipReason),
    /// Finished by an earlier run of the job and checkpointed in the journal.
    Restored(Box<PageRecord>),
}

impl PageOutcome {
    /// Every value of [`PageOutcome::label`].
    pub const LABELS: [&'static str; 5] = ["ocr", "text_layer", "failed", "restored", "skipped"];

    /// The `outcome` label of `pagemill_pages_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PageOutcome::Ocr(_) => "ocr",
            PageOutcome::TextLayer { .. } => "text_layer",
            PageOutcome::Failed(_) => "failed",
            PageOutcome::Restored(_) => "restored",
            PageOutcome::Skipped(_) => "skipped",
        }
    }
}

pub struct FinishedPage {
    pub info: Arc<JobInfo>,
    pub number: u32,
    pub outcome: PageOutcome,
    pub render_ms: u64,
}

pub enum AssembleMsg {
    Expect(Expectation),
    Page(FinishedPage, Credit),
    /// The job stops early (cancelled, or its rendering failed): finish it now with this
    /// error; pages still on their way are dropped when they arrive.
    Abandon(Arc<JobInfo>, JobError),
}

// Into summarize: an assembled document.

pub enum SummarizeMsg {
    /// A complete document; the error is set when the job failed.
    Document(Arc<JobInfo>, JobResult, Option<JobError>, Credit),
}

// Into save: a result to write and deliver; out of save: the finished job.

/// Sent when a job's result has been saved.
#[derive(Debug, Clone)]
pub struct JobFinished {
    pub id: String,
    pub name: String,
    /// `None` when the job succeeded.
    pub error: Option<crate::model::error::ErrorRecord>,
    pub result_path: Option<PathBuf>,
    pub pages: u32,
}

pub enum SaveMsg {
    Result(Arc<JobInfo>, JobResult, Credit),
}
