//! The `pool:` and `limits:` sections: how many threads, and what one document may cost.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::check::Checker;
use crate::limits;

/// Largest document accepted unless a pipeline says otherwise.
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 50 * 1024 * 1024;
/// Default longest job, from submission to its last page.
pub const DEFAULT_MAX_JOB_TIME: Duration = Duration::from_secs(3600);
/// Default longest recognition of one page; a normal 300 DPI page takes a few seconds.
pub const DEFAULT_MAX_OCR_TIME_PER_PAGE: Duration = Duration::from_secs(120);
/// Most pages per document unless a pipeline says otherwise.
pub const DEFAULT_MAX_PAGES: u32 = 2000;
/// Most pixels in one page image: an A2 page at 300 DPI is ~35 Mpx.
pub const DEFAULT_MAX_PAGE_PIXELS: u64 = 50_000_000;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Worker threads for render and OCR; 0 means one per CPU core.
    #[serde(default)]
    pub threads: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest document accepted, e.g. "50MiB".
    #[serde(default)]
    pub max_document_bytes: Option<Spanned<ByteSize>>,
    /// Most pages per document.
    #[serde(default)]
    pub max_pages: Option<Spanned<u32>>,
    /// Most pixels per rendered or decoded page (width x height), checked before decoding.
    #[serde(default)]
    pub max_page_pixels: Option<Spanned<u64>>,
    /// Longest Tesseract may recognize one page, e.g. "120s"; then the page fails.
    #[serde(default, with = "humantime_serde::option")]
    pub max_ocr_time_per_page: Option<Duration>,
    /// Longest a job may take from submission, e.g. "30m"; then its remaining pages fail.
    #[serde(default, with = "humantime_serde::option")]
    pub max_job_time: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolConfig {
    /// Resolved thread count (never 0).
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitsConfig {
    pub max_document_bytes: u64,
    pub max_pages: u32,
    pub max_page_pixels: u64,
    #[serde(with = "humantime_serde")]
    pub max_ocr_time_per_page: Duration,
    #[serde(with = "humantime_serde")]
    pub max_job_time: Duration,
}

/// Checks `pool:` and `limits:`.
pub(crate) fn validate(
    c: &mut Checker<'_>,
    raw_pool: &RawPool,
    raw: &RawLimits,
) -> (PoolConfig, LimitsConfig) {
    let threads = c.in_range(&raw_pool.threads, "pool.threads", 0, 0, 256);
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };

    let max_document_bytes = match &raw.max_document_bytes {
        None => DEFAULT_MAX_DOCUMENT_BYTES,
        Some(s) if s.value.as_u64() == 0 => {
            c.push(s, "limits.max_document_bytes must be above 0".into());
            DEFAULT_MAX_DOCUMENT_BYTES
        }
        Some(s) => s.value.as_u64(),
    };
    let limits = LimitsConfig {
        max_document_bytes,
        max_pages: c.in_range(
            &raw.max_pages,
            "limits.max_pages",
            DEFAULT_MAX_PAGES,
            1,
            limits::HARD_MAX_PAGES,
        ),
        max_page_pixels: c.in_range(
            &raw.max_page_pixels,
            "limits.max_page_pixels",
            DEFAULT_MAX_PAGE_PIXELS,
            1,
            limits::HARD_MAX_PAGE_PIXELS,
        ),
        max_ocr_time_per_page: raw
            .max_ocr_time_per_page
            .unwrap_or(DEFAULT_MAX_OCR_TIME_PER_PAGE),
        max_job_time: raw.max_job_time.unwrap_or(DEFAULT_MAX_JOB_TIME),
    };
    (PoolConfig { threads }, limits)
}
