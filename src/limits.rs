//! Every default and hard limit in one place, named.

use std::time::Duration;

/// Largest document accepted unless a pipeline says otherwise.
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 50 * 1024 * 1024;
/// Most pages per document unless a pipeline says otherwise.
pub const DEFAULT_MAX_PAGES: u32 = 2000;
/// No pipeline may allow more pages than this.
pub const HARD_MAX_PAGES: u32 = 100_000;
/// Most pixels in one page image: an A2 page at 300 DPI is ~35 Mpx.
pub const DEFAULT_MAX_PAGE_PIXELS: u64 = 50_000_000;
/// No pipeline may allow bigger pages than this (hayro renders at most 65535 px per side).
pub const HARD_MAX_PAGE_PIXELS: u64 = 1_000_000_000;
/// Longest side in pixels that the PDF renderer supports.
pub const MAX_RENDER_SIDE_PX: u64 = u16::MAX as u64;

/// PDF render resolution.
pub const DEFAULT_DPI: u32 = 300;
pub const MIN_DPI: u32 = 50;
pub const MAX_DPI: u32 = 1200;
/// Resolution assumed for an image whose metadata is missing or not credible.
pub const FALLBACK_IMAGE_DPI: u32 = 300;
/// Image resolutions outside this range are treated as missing.
pub const CREDIBLE_DPI: std::ops::RangeInclusive<u32> = 70..=2400;

/// A text layer with fewer non-blank characters than this counts as none.
pub const DEFAULT_MIN_TEXT_LAYER_CHARS: usize = 16;
/// The x-height, in pixels, pages are scaled to (`preprocess.target_x_height_px`).
pub const DEFAULT_TARGET_X_HEIGHT_PX: u32 = 20;
/// The largest x-height a pipeline may ask for.
pub const MAX_TARGET_X_HEIGHT_PX: u32 = 200;
/// Whether pages with no letter-sized ink skip recognition.
pub const DEFAULT_SKIP_PAGES_WITHOUT_TEXT: bool = true;
/// OSD confidence needed before a page is turned.
pub const DEFAULT_MIN_ORIENTATION_CONFIDENCE: f32 = 2.0;
/// Sentences in an extractive summary.
pub const DEFAULT_SUMMARY_SENTENCES: usize = 5;
/// Where results go unless a pipeline says otherwise.
pub const DEFAULT_RESULTS_DIR: &str = "results";
/// Largest capacity of one edge between stages.
pub const MAX_EDGE_CAPACITY: usize = 10_000;

/// Pages accepted by the daemon into one pipeline and not yet finished.
pub const DEFAULT_ADMISSION_PAGES: u64 = 1000;
/// Document bytes accepted into one pipeline and not yet finished.
pub const DEFAULT_ADMISSION_BYTES: u64 = 1024 * 1024 * 1024;
/// How long a stopping daemon waits for accepted jobs to finish.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Restart backoff of a crashed stage.
pub const DEFAULT_RESTART_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub const DEFAULT_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Crashes of a stage one job may cause before it fails with `internal` instead of running
/// again.
pub const DEFAULT_MAX_JOB_CRASHES: u32 = 2;

/// Default longest recognition of one page; a normal 300 DPI page takes a few seconds.
pub const DEFAULT_MAX_OCR_TIME_PER_PAGE: Duration = Duration::from_secs(120);
/// Default longest job, from submission to its last page.
pub const DEFAULT_MAX_JOB_TIME: Duration = Duration::from_secs(3600);

/// Where `engine: llm` sends requests unless the pipeline says otherwise.
pub const DEFAULT_LLM_BASE_URL: &str = "http://127.0.0.1:8000/v1";
/// The model asked for unless the pipeline says otherwise.
pub const DEFAULT_LLM_MODEL: &str = "default";
/// The prompt unless the pipeline gives one.
pub const DEFAULT_LLM_PROMPT: &str = "Summarize the following document in a few sentences, in {language}. Document name: {name}.\n\n{text}";
/// LLM requests in flight at first, before the limit adapts to the server.
pub const DEFAULT_LLM_CONCURRENCY_INITIAL: usize = 2;
/// Most LLM requests in flight, however well the server answers.
pub const DEFAULT_LLM_CONCURRENCY_MAX: usize = 16;
/// Highest `concurrency.max` a pipeline may set.
pub const MAX_LLM_CONCURRENCY: usize = 1024;
/// Prompt of the structured extraction.
pub const DEFAULT_LLM_EXTRACT_PROMPT: &str = "Extract the fields described by the JSON schema from the following document, in {language}. Answer with one JSON object. Document name: {name}.\n\n{text}";
