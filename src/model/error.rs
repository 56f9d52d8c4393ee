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
    /// Every code [`JobError::code`] returns: the `error_type` label values, which the error
    /// counters start with at 0 so that panels and alerts see 0 rather than no data.
    pub const CODES: [&'static str; 19] = [
        "empty_document",
        "not_a_document",
        "unsupported_type",
        "truncated",
        "invalid_pdf",
        "encrypted",
        "invalid_image",
        "too_large",
        "too_many_pages",
        "too_many_pixels",
        "preprocess_failed",
        "ocr_failed",
        "summary_failed",
        "ocr_timeout",
        "job_timeout",
        "llm_unavailable",
        "io",
        "internal",
        "cancelled",
    ];

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

impl ErrorRecord {
    /// Whether the job ended because it was cancelled rather than because it failed.
    pub fn is_cancellation(&self) -> bool {
        self.code == JobError::Cancelled.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_lists_the_code_of_every_variant_once() {
        // One of each variant: a new variant without a line here fails to match below.
        let every = [
            JobError::EmptyDocument,
            JobError::NotADocument,
            JobError::UnsupportedType(String::new()),
            JobError::Truncated(String::new()),
            JobError::InvalidPdf(String::new()),
            JobError::Encrypted,
            JobError::InvalidImage(String::new()),
            JobError::TooLarge { bytes: 0, limit: 0 },
            JobError::TooManyPages { pages: 0, limit: 0 },
            JobError::TooManyPixels {
                page: 0,
                width: 0,
                height: 0,
                limit: 0,
            },
            JobError::PreprocessFailed(String::new()),
            JobError::OcrFailed(String::new()),
            JobError::SummaryFailed(String::new()),
            JobError::OcrTimeout {
                page: 0,
                limit_ms: 0,
            },
            JobError::JobTimeout { limit_ms: 0 },
            JobError::LlmUnavailable {
                limit_ms: 0,
                last: String::new(),
            },
            JobError::Io(String::new()),
            JobError::Internal(String::new()),
            JobError::Cancelled,
        ];
        for e in &every {
            // Exhaustive: adding a variant breaks this match until it is listed above.
            match e {
                JobError::EmptyDocument
                | JobError::NotADocument
                | JobError::UnsupportedType(_)
                | JobError::Truncated(_)
                | JobError::InvalidPdf(_)
                | JobError::Encrypted
                | JobError::InvalidImage(_)
                | JobError::TooLarge { .. }
                | JobError::TooManyPages { .. }
                | JobError::TooManyPixels { .. }
                | JobError::PreprocessFailed(_)
                | JobError::OcrFailed(_)
                | JobError::SummaryFailed(_)
                | JobError::OcrTimeout { .. }
                | JobError::JobTimeout { .. }
                | JobError::LlmUnavailable { .. }
                | JobError::Io(_)
                | JobError::Internal(_)
                | JobError::Cancelled => {}
            }
        }
        let codes: Vec<&str> = every.iter().map(JobError::code).collect();
        assert_eq!(codes, JobError::CODES);
    }
}
