//! Why a job or a page failed: one enum, each variant with a stable code.
//!
//! A bad document is an outcome, not a crash: these errors travel inside messages and end up in
//! the result record as `{code, message}`. `code()` is also the bounded `error_type` metric label.

use serde::Serialize;

/// A failure of a whole job or of one page.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("the document is empty (0 bytes)")]
    EmptyDocument,
    #[error("the bytes are not a supported document (PDF, PNG, JPEG or TIFF)")]
    NotADocument,
    #[error("{0} documents are not supported; send a PDF, PNG, JPEG or TIFF")]
    UnsupportedType(String),
    #[error("the document is truncated: {0}")]
    Truncated(String),
    #[error("the PDF cannot be read: {0}")]
    InvalidPdf(String),
    #[error("the PDF is encrypted")]
    Encrypted,
    #[error("the image cannot be decoded: {0}")]
    InvalidImage(String),
    #[error("the document has {bytes} bytes; this pipeline accepts at most {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("the document has {pages} pages; this pipeline accepts at most {limit}")]
    TooManyPages { pages: u64, limit: u32 },
    #[error(
        "page {page} would be {width}x{height} pixels; this pipeline accepts at most {limit} per page"
    )]
    TooManyPixels {
        page: u32,
        width: u64,
        height: u64,
        limit: u64,
    },
    #[error("preprocessing the page failed: {0}")]
    PreprocessFailed(String),
    #[error("OCR failed: {0}")]
    OcrFailed(String),
    #[error("no summary: {0}")]
    SummaryFailed(String),
    #[error("page {page}: recognition took longer than this pipeline allows ({limit_ms} ms)")]
    OcrTimeout { page: u32, limit_ms: u64 },
    #[error("the job took longer than this pipeline allows ({limit_ms} ms)")]
    JobTimeout { limit_ms: u64 },
    /// With `summarize.llm.fallback: none`: the document waited for the LLM server until the
    /// job's deadline, and the server kept failing.
    #[error(
        "the LLM server was unavailable until the job's deadline ({limit_ms} ms after submission); last error: {last}"
    )]
    LlmUnavailable { limit_ms: u64, last: String },
    #[error("cannot read or write a file: {0}")]
    Io(String),
    #[error("internal error while processing the document: {0}")]
    Internal(String),
    #[error("the job was cancelled")]
    Cancelled,
}

impl JobError {
    /// Stable machine-readable code, also used as the `error_type` metric label.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::EmptyDocument => "empty_document",
            JobError::NotADocument => "not_a_document",
            JobError::UnsupportedType(_) => "unsupported_type",
            JobError::Truncated(_) => "truncated",
            JobError::InvalidPdf(_) => "invalid_pdf",
            JobError::Encrypted => "encrypted",
            JobError::InvalidImage(_) => "invalid_image",
            JobError::TooLarge { .. } => "too_large",
            JobError::TooManyPages { .. } => "too_many_pages",
            JobError::TooManyPixels { .. } => "too_many_pixels",
            JobError::PreprocessFailed(_) => "preprocess_failed",
            JobError::OcrFailed(_) => "ocr_failed",
            JobError::SummaryFailed(_) => "summary_failed",
            JobError::OcrTimeout { .. } => "ocr_timeout",
            JobError::JobTimeout { .. } => "job_timeout",
            JobError::LlmUnavailable { .. } => "llm_unavailable",
            JobError::Io(_) => "io",
            JobError::Internal(_) => "internal",
            JobError::Cancelled => "cancelled",
        }
    }

    /// The `{code, message}` form stored in results.
    pub fn to_record(&self) -> ErrorRecord {
        ErrorRecord {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

/// An error as written into a result record.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorRecord {
    pub code: String,
    pub message: String,
}
