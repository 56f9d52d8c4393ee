//! Pipeline configuration: the YAML a user writes, parsed and validated into domain types.
//!
//! Parsing happens in two steps. `serde-saphyr` reads the YAML into [`RawPipeline`], which
//! mirrors the file (every struct rejects unknown keys, values keep their location). Then
//! [`RawPipeline::validate`] checks every value and collects *all* problems, each with file,
//! line and column, before building a [`Pipeline`]. Syntax and type errors stop the YAML parser
//! at each error; then the node the error is in is blanked out and the file parsed again, so
//! that the errors after it are found too. Unknown keys are all found by a separate walk. A
//! file with several mistakes is reported in one go.

pub mod env;
mod keys;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::limits;

/// The only pipeline format version this build understands.
pub const PIPELINE_VERSION: u32 = 1;

/// One problem found in a pipeline file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: PathBuf,
    /// 1-based line, 0 when the position is unknown.
    pub line: u64,
    /// 1-based column, 0 when the position is unknown.
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in one pipeline file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// Bounded label for metrics and logs.
    pub fn error_type(&self) -> &'static str {
        "invalid_config"
    }
}

/// Whether a PDF page's own text layer replaces rendering and OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextLayerMode {
    /// Take the text layer when a page has one; OCR the others.
    Auto,
    /// Always render and OCR, ignoring any text layer.
    Ignore,
}

/// Whether pages turned by 90/180/270 degrees are detected and turned upright before OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrientationMode {
    /// Detect the orientation with Tesseract's OSD model where it pays: on pages whose print
    /// runs up or down the page, and on pages whose upright recognition reads poorly.
    Auto,
    /// Detect the orientation of every page before recognizing it.
    Always,
    /// OCR pages as they are.
    Off,
}

/// The summarizer engine a pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SummarizeEngineKind {
    /// Local extractive summary: the highest-scoring sentences, no network.
    Extractive,
    /// An LLM server speaking the OpenAI-compatible chat completions API.
    Llm,
}

/// What the summarize stage does when the LLM cannot be reached or keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmFallback {
    /// Summarize locally instead; the result records `extractive` as the engine.
    Extractive,
    /// No local summary: after a failure that may pass (unreachable, timeouts, 429, 5xx, the
    /// circuit open) the document waits in the stage, on its edge credit, and tries again
    /// until the job's deadline (`limits.max_job_time`), then the job fails
    /// `llm_unavailable`; after any other failure the job fails at once (`summary_failed`).
    None,
}

// ---------------------------------------------------------------------------------------------
// The file as written.

/// A pipeline file as written. Field docs are the user documentation of each key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Format version of this file; must be 1.
    pub version: Spanned<u32>,
    /// Pipeline name; defaults to the file's stem.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// The shared CPU pool that renders and OCRs pages.
    #[serde(default)]
    pub pool: RawPool,
    /// Limits checked before any expensive work.
    #[serde(default)]
    pub limits: RawLimits,
    /// Turning PDF pages into images.
    #[serde(default)]
    pub render: RawRender,
    /// Image cleanup before OCR.
    #[serde(default)]
    pub preprocess: RawPreprocess,
    /// Tesseract settings.
    #[serde(default)]
    pub ocr: RawOcr,
    /// Summary of each document.
    #[serde(default)]
    pub summarize: RawSummarize,
    /// Where results are written.
    #[serde(default)]
    pub save: RawSave,
    /// Capacities of the bounded edges between stages.
    #[serde(default)]
    pub edges: RawEdges,
    /// How much work the daemon accepts into this pipeline before answering 429.
    #[serde(default)]
    pub admission: RawAdmission,
    /// Restart policy of the stage supervisor.
    #[serde(default)]
    pub supervisor: RawSupervisor,
}

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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRender {
    /// Resolution PDF pages are rendered at, in dots per inch.
    #[serde(default)]
    pub dpi: Option<Spanned<u32>>,
    /// `auto` takes a page's text layer instead of OCR; `ignore` always OCRs.
    #[serde(default)]
    pub text_layer: Option<TextLayerMode>,
    /// A text layer with fewer non-blank characters than this counts as none.
    #[serde(default)]
    pub min_text_layer_chars: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    /// Soften the edges of black-and-white pages (3x3 mean) before OCR.
    #[serde(default)]
    pub smooth_bilevel: Option<bool>,
    /// Detect the skew of the text lines and rotate the page level.
    #[serde(default)]
    pub deskew: Option<bool>,
    /// Stretch local contrast, for faded pages.
    #[serde(default)]
    pub normalize_contrast: Option<bool>,
    /// 3x3 median filter against speckle noise.
    #[serde(default)]
    pub denoise: Option<bool>,
    /// `none`, or `sauvola` for adaptive black-and-white thresholding.
    #[serde(default)]
    pub binarize: Option<Binarize>,
    /// Whiten dark regions touching the page edge (scanner borders).
    #[serde(default)]
    pub remove_border: Option<bool>,
    /// Scale each page so the x-height of its print is about this many pixels (up for small
    /// print, down for oversampled pages); 0 turns it off.
    #[serde(default)]
    pub target_x_height_px: Option<Spanned<u32>>,
    /// Images below this resolution are scaled up to `working_dpi` by their declared
    /// resolution instead of by their print; 0 turns this override off.
    #[serde(default)]
    pub upscale_below_dpi: Option<Spanned<u32>>,
    /// The resolution low-resolution images are scaled to.
    #[serde(default)]
    pub working_dpi: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOcr {
    /// Tesseract languages, e.g. [eng] or [deu, eng].
    #[serde(default)]
    pub languages: Option<Spanned<Vec<String>>>,
    /// `auto` detects pages turned by 90/180/270 degrees and turns them upright.
    #[serde(default)]
    pub orientation: Option<OrientationMode>,
    /// Minimum OSD confidence before a page is rotated.
    #[serde(default)]
    pub min_orientation_confidence: Option<Spanned<f32>>,
    /// Tesseract page segmentation mode (3 = fully automatic).
    #[serde(default)]
    pub page_segmentation_mode: Option<Spanned<u32>>,
    /// Pages with no letter-sized ink (blank or separator sheets) skip recognition.
    #[serde(default)]
    pub skip_pages_without_text: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSummarize {
    /// Summarizer engine: `extractive` or `llm`.
    #[serde(default)]
    pub engine: Option<SummarizeEngineKind>,
    /// Most sentences in an extractive summary.
    #[serde(default)]
    pub max_sentences: Option<Spanned<usize>>,
    /// The LLM server, for `engine: llm`.
    #[serde(default)]
    pub llm: RawLlm,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    /// Base URL of the OpenAI-compatible API, e.g. "http://127.0.0.1:8000/v1".
    #[serde(default)]
    pub base_url: Option<Spanned<String>>,
    /// Model name sent with each request.
    #[serde(default)]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (the key never goes in YAML).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<Spanned<u32>>,
    #[serde(default)]
    pub temperature: Option<Spanned<f32>>,
    /// Time to connect to the server.
    #[serde(default, with = "humantime_serde::option")]
    pub connect_timeout: Option<Duration>,
    /// Time for one whole request.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Retries of a request answered 429 or 5xx, or timed out.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
    /// Most characters of document text per request; longer documents are summarized in
    /// parts, then the parts' summaries are summarized.
    #[serde(default)]
    pub max_input_chars: Option<Spanned<usize>>,
    /// The prompt, with {text}, {name} and {language} placeholders.
    #[serde(default)]
    pub prompt: Option<Spanned<String>>,
    /// `extractive` or `none`: what to do when the LLM keeps failing (summarize locally, or
    /// wait for the server until the job's deadline).
    #[serde(default)]
    pub fallback: Option<LlmFallback>,
    /// Documents in a row the LLM must fail before requests stop for `circuit_cooldown`.
    #[serde(default)]
    pub circuit_failures: Option<Spanned<u32>>,
    /// How long requests stay stopped once the circuit opens; then one is tried again.
    #[serde(default, with = "humantime_serde::option")]
    pub circuit_cooldown: Option<Duration>,
    /// Requests in flight at once, adapted to the server's answers.
    #[serde(default)]
    pub concurrency: RawLlmConcurrency,
    /// Most requests sent per minute (retries count); 0: no ceiling.
    #[serde(default)]
    pub max_requests_per_minute: Option<Spanned<u32>>,
    /// Most tokens per minute, each request counted as its prompt's characters / 4 plus
    /// `max_tokens`; 0: no ceiling.
    #[serde(default)]
    pub max_tokens_per_minute: Option<Spanned<u32>>,
    /// A JSON object extracted from each document, as a JSON Schema describes it.
    #[serde(default)]
    pub extract: RawLlmExtract,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLlmConcurrency {
    /// Requests in flight at first.
    #[serde(default)]
    pub initial: Option<Spanned<usize>>,
    /// Most requests in flight, however well the server answers; `initial = max` fixes it.
    #[serde(default)]
    pub max: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLlmExtract {
    /// JSON Schema of the object; an empty mapping turns extraction off.
    #[serde(default)]
    pub schema: Option<Spanned<serde_json::Value>>,
    /// Name of the schema, sent with it.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// The prompt, with {text}, {name} and {language} placeholders.
    #[serde(default)]
    pub prompt: Option<Spanned<String>>,
    /// Answers asked for per document before giving up on one that matches the schema.
    #[serde(default)]
    pub max_attempts: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSave {
    /// Directory result JSON files are written to (relative to the working directory).
    #[serde(default)]
    pub directory: Option<Spanned<PathBuf>>,
    /// Files written beside each result JSON: `txt`, `hocr`, `alto`, `tsv`, `pdf`.
    #[serde(default)]
    pub formats: Option<Vec<OutputFormat>>,
    /// POST each result to a URL as well.
    #[serde(default)]
    pub webhook: RawWebhook,
    /// Also keep each result as a row of a table in an SQLite database.
    #[serde(default)]
    pub sqlite: RawSqliteSink,
    /// Also keep each result as a row of a table in PostgreSQL.
    #[serde(default)]
    pub postgres: RawPostgresSink,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSqliteSink {
    /// The database file (created if missing); empty: no SQLite sink.
    #[serde(default)]
    pub path: Option<Spanned<PathBuf>>,
    /// The results table (created if missing).
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    /// Retries of a failed delivery before it becomes a dead letter.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresSink {
    /// Connection string (`host=... user=... dbname=...` or a `postgresql://` URL); empty: no
    /// PostgreSQL sink.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// The results table (created if missing).
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    /// Retries of a failed delivery before it becomes a dead letter.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
    /// Time for one delivery attempt (connecting included).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Where results are POSTed; empty: no webhook.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// Environment variable with the HMAC-SHA256 signing secret; empty: unsigned.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Retries of a failed delivery before it becomes a dead letter.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
    /// Time for one delivery attempt.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// A file written beside the result JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Plain text, pages separated by form feeds (`<id>.txt`).
    Txt,
    /// hOCR: XHTML with page, block, line and word boxes (`<id>.hocr`).
    Hocr,
    /// ALTO XML (`<id>.alto.xml`).
    Alto,
    /// One row per word: page, box, confidence, text (`<id>.tsv`).
    Tsv,
    /// Searchable PDF: each OCRed page's image with its words as invisible text (`<id>.pdf`).
    Pdf,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEdges {
    /// Submitted documents waiting to be read and opened.
    #[serde(default)]
    pub ingest_documents: Option<Spanned<usize>>,
    /// Opened documents waiting to be rendered.
    #[serde(default)]
    pub render_documents: Option<Spanned<usize>>,
    /// Rendered pages waiting for or in OCR: bounds the page images in memory.
    #[serde(default)]
    pub ocr_pages: Option<Spanned<usize>>,
    /// Finished pages waiting to be assembled into their document.
    #[serde(default)]
    pub assemble_pages: Option<Spanned<usize>>,
    /// Assembled documents waiting for the summarizer.
    #[serde(default)]
    pub summarize_documents: Option<Spanned<usize>>,
    /// Summarized documents waiting to be saved.
    #[serde(default)]
    pub save_documents: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    /// Pages accepted and not yet finished; a job counts one page until it is opened.
    #[serde(default)]
    pub max_pages_in_system: Option<Spanned<u64>>,
    /// Bytes of documents accepted and not yet finished, e.g. "1GiB".
    #[serde(default)]
    pub max_bytes_in_system: Option<Spanned<ByteSize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSupervisor {
    /// First delay before restarting a crashed stage, e.g. "100ms".
    #[serde(default, with = "humantime_serde::option")]
    pub restart_backoff_initial: Option<Duration>,
    /// Longest delay between restarts, e.g. "10s".
    #[serde(default, with = "humantime_serde::option")]
    pub restart_backoff_max: Option<Duration>,
    /// Crashes of a stage one job may cause before it fails with `internal`.
    #[serde(default)]
    pub max_job_crashes: Option<Spanned<u32>>,
}

// ---------------------------------------------------------------------------------------------
// The validated pipeline.

/// A validated pipeline, ready to build.
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub name: String,
    pub pool: PoolConfig,
    pub limits: LimitsConfig,
    pub render: RenderConfig,
    pub preprocess: PreprocessConfig,
    pub ocr: OcrConfig,
    pub summarize: SummarizeConfig,
    pub save: SaveConfig,
    pub edges: EdgesConfig,
    pub admission: AdmissionConfig,
    pub supervisor: SupervisorConfig,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AdmissionConfig {
    pub max_pages_in_system: u64,
    pub max_bytes_in_system: u64,
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

#[derive(Debug, Clone, Serialize)]
pub struct RenderConfig {
    pub dpi: u32,
    pub text_layer: TextLayerMode,
    pub min_text_layer_chars: usize,
}

/// Adaptive binarization before OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binarize {
    /// Leave the page grayscale; Tesseract thresholds it itself (Otsu).
    None,
    /// Sauvola's local threshold: better on uneven lighting and faded ink.
    Sauvola,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PreprocessConfig {
    pub smooth_bilevel: bool,
    pub deskew: bool,
    pub normalize_contrast: bool,
    pub denoise: bool,
    pub binarize: Binarize,
    pub remove_border: bool,
    /// The x-height, in pixels, pages are scaled to; 0: no scaling by print size.
    pub target_x_height_px: u32,
    pub upscale_below_dpi: u32,
    pub working_dpi: u32,
}

impl PreprocessConfig {
    /// Every step off.
    pub fn none() -> PreprocessConfig {
        PreprocessConfig {
            smooth_bilevel: false,
            deskew: false,
            normalize_contrast: false,
            denoise: false,
            binarize: Binarize::None,
            remove_border: false,
            target_x_height_px: 0,
            upscale_below_dpi: 0,
            working_dpi: 300,
        }
    }

    /// Whether any step is on.
    pub fn any(&self) -> bool {
        self.smooth_bilevel
            || self.deskew
            || self.normalize_contrast
            || self.denoise
            || self.binarize != Binarize::None
            || self.remove_border
            || self.target_x_height_px > 0
            || self.upscale_below_dpi > 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OcrConfig {
    /// Languages joined for Tesseract, e.g. "deu+eng".
    pub languages: String,
    /// Keep each page's hOCR fragment (for `save.formats: [hocr]`).
    pub keep_hocr: bool,
    /// Keep each page's ALTO fragment (for `save.formats: [alto]`).
    pub keep_alto: bool,
    /// Keep each page's image, compressed (for `save.formats: [pdf]`).
    pub keep_page_image: bool,
    pub orientation: OrientationMode,
    pub min_orientation_confidence: f32,
    pub page_segmentation_mode: u32,
    /// Pages with no letter-sized ink skip recognition.
    pub skip_pages_without_text: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SummarizeConfig {
    pub engine: SummarizeEngineKind,
    pub max_sentences: usize,
    pub llm: LlmConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct LlmConfig {
    pub base_url: String,
    pub model: String,
    pub api_key_env: Option<String>,
    pub max_tokens: u32,
    pub temperature: f32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_input_chars: usize,
    pub prompt: String,
    pub fallback: LlmFallback,
    pub circuit_failures: u32,
    #[serde(with = "humantime_serde")]
    pub circuit_cooldown: Duration,
    /// Requests in flight at first, then adapted (AIMD) between 1 and `concurrency_max`.
    pub concurrency_initial: usize,
    pub concurrency_max: usize,
    /// Ceilings per minute, 0 for none.
    pub max_requests_per_minute: u32,
    pub max_tokens_per_minute: u32,
    /// Structured extraction, when a schema is set.
    pub extract: Option<ExtractConfig>,
}

/// A JSON object asked of the LLM for each document, checked against a JSON Schema.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractConfig {
    pub name: String,
    /// A valid JSON Schema (checked when the pipeline is loaded).
    pub schema: serde_json::Value,
    pub prompt: String,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SaveConfig {
    pub directory: PathBuf,
    pub formats: Vec<OutputFormat>,
    pub webhook: Option<WebhookConfig>,
    pub sqlite: Option<SqliteSinkConfig>,
    pub postgres: Option<PostgresSinkConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SqliteSinkConfig {
    pub path: PathBuf,
    pub table: String,
    pub max_retries: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostgresSinkConfig {
    /// Not serialized: it may hold a password.
    #[serde(skip)]
    pub url: String,
    pub table: String,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookConfig {
    pub url: String,
    pub secret_env: Option<String>,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct EdgesConfig {
    pub ingest_documents: usize,
    pub render_documents: usize,
    pub ocr_pages: usize,
    pub assemble_pages: usize,
    pub summarize_documents: usize,
    pub save_documents: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SupervisorConfig {
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    pub max_job_crashes: u32,
}

impl Pipeline {
    /// The built-in default pipeline, identical to the shipped `pipelines/default.yaml`.
    pub fn embedded_default() -> Pipeline {
        parse_pipeline(Path::new("default.yaml"), DEFAULT_PIPELINE_YAML)
            .expect("the embedded default pipeline is valid")
    }
}

/// The shipped default pipeline, compiled in so the daemon runs without any file.
pub const DEFAULT_PIPELINE_YAML: &str = include_str!("../../pipelines/default.yaml");

/// Reads and validates one pipeline file.
pub fn load_pipeline(path: &Path) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        issues: vec![ConfigIssue {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read file: {e}"),
        }],
    })?;
    parse_pipeline(path, &text)
}

/// Parses and validates pipeline YAML; `file` names it in errors and gives the default name.
pub fn parse_pipeline(file: &Path, text: &str) -> Result<Pipeline, ConfigError> {
    let interpolated = crate::config::env::interpolate(text, |name| std::env::var(name).ok());
    let text = match &interpolated {
        Ok(text) => text.as_str(),
        Err(unset) => {
            return Err(ConfigError {
                issues: unset
                    .iter()
                    .map(|u| ConfigIssue {
                        file: file.to_path_buf(),
                        line: u.line as u64,
                        column: u.column as u64,
                        message: format!(
                            "environment variable {} is not set and has no default (write ${{{}:-default}})",
                            u.name, u.name
                        ),
                    })
                    .collect(),
            });
        }
    };
    // Unknown keys: all of them, from a walk over the YAML tree.
    let mut issues = crate::config::keys::unknown_keys(file, text);
    let walk_found_unknown_keys = !issues.is_empty();
    let (raw, parse_issues) = parse_recovering(file, text);
    for issue in parse_issues {
        // The walk already reported unknown keys precisely; the parser's word on them adds
        // nothing.
        if !walk_found_unknown_keys || !issue.message.contains("unknown field") {
            issues.push(issue);
        }
    }
    if let Some(raw) = raw {
        if issues.is_empty() {
            return raw.validate(file);
        }
        // Also report the value problems of everything that did parse.
        if let Err(e) = raw.validate(file) {
            issues.extend(e.issues);
        }
    }
    issues.sort_by_key(|i| (i.line, i.column));
    issues.dedup();
    Err(ConfigError { issues })
}

/// Most parser errors reported for one file (each costs one more parse).
const MAX_PARSE_ERRORS: usize = 25;

/// Parses `text`, and after an error goes on past it: the node the error points at (its line
/// and the more indented lines under it) is blanked out, as if it were not written, and the
/// file is parsed again, until it parses or an error comes at or before the last one (the
/// blanking itself caused it, so it is not reported). Line numbers do not move, so every
/// error is reported where the user wrote it. Returns the parsed pipeline when the file,
/// minus the blanked nodes, parses.
fn parse_recovering(file: &Path, text: &str) -> (Option<RawPipeline>, Vec<ConfigIssue>) {
    let original: Vec<&str> = text.split('\n').collect();
    let mut lines = original.clone();
    let mut issues = Vec::new();
    let mut last_line = 0;
    loop {
        let current = lines.join("\n");
        let error = match serde_saphyr::from_str::<RawPipeline>(&current) {
            Ok(raw) => return (Some(raw), issues),
            Err(e) => e,
        };
        let (line, column) = error
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let mut message = parser_message(&error.to_string());
        if let Some(written) = original.get((line as usize).wrapping_sub(1))
            && !written.trim().is_empty()
        {
            message = format!("{message}: `{}`", written.trim());
        }
        let caused_by_blanking = !issues.is_empty()
            && (line <= last_line || missing_key_was_blanked(&message, &original, &lines));
        if caused_by_blanking {
            return (None, issues);
        }
        issues.push(ConfigIssue {
            file: file.to_path_buf(),
            line,
            column,
            message,
        });
        let index = line as usize;
        if index == 0 || index > lines.len() || issues.len() >= MAX_PARSE_ERRORS {
            return (None, issues);
        }
        blank_node(&mut lines, index - 1);
        last_line = line;
    }
}

/// Blanks line `index` (0-based) and the lines below it that are indented deeper (its
/// children), up to the next line at its own depth or shallower; then its parent key, if
/// that is left without children (an empty `pool:` is not a section).
fn blank_node(lines: &mut [&str], index: usize) {
    let depth = indent(lines[index]);
    lines[index] = "";
    for line in lines.iter_mut().skip(index + 1) {
        if is_content(line) && indent(line) <= depth {
            break;
        }
        *line = "";
    }
    let parent = (0..index)
        .rev()
        .find(|&i| is_content(lines[i]) && indent(lines[i]) < depth);
    if let Some(parent) = parent {
        let has_children = lines[parent + 1..]
            .iter()
            .find(|line| is_content(line))
            .is_some_and(|next| indent(next) > indent(lines[parent]));
        if lines[parent].trim_end().ends_with(':') && !has_children {
            blank_node(lines, parent);
        }
    }
}

/// Whether `message` says a key is missing that was written but blanked out.
fn missing_key_was_blanked(message: &str, original: &[&str], lines: &[&str]) -> bool {
    let Some(key) = message
        .split("missing field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    else {
        return false;
    };
    original
        .iter()
        .zip(lines)
        .any(|(was, now)| now.is_empty() && was.trim_start().starts_with(&format!("{key}:")))
}

/// The parser's message without its own position prefix ("error: line 3 column 12: "),
/// which the issue already carries.
fn parser_message(message: &str) -> String {
    let first = first_line(message);
    let rest = first.strip_prefix("error: ").unwrap_or(&first);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((position, text)) if position.contains(" column ") => text.to_string(),
        _ => rest.to_string(),
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Whether a line holds YAML (not blank, not only a comment).
fn is_content(line: &str) -> bool {
    let content = line.trim();
    !content.is_empty() && !content.starts_with('#')
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// Collects value problems while building the domain config.
/// A sink's table name: a plain SQL identifier (it is written into statements), `results` by
/// default.
fn table_name(c: &mut Checker<'_>, table: &Option<Spanned<String>>, key: &str) -> String {
    let Some(t) = table else {
        return "results".into();
    };
    let mut chars = t.value.chars();
    let plain = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && t.value.len() <= 63
        && !t.value.to_ascii_lowercase().starts_with("sqlite_");
    if !plain {
        c.push(
            t,
            format!(
                "{key} {:?} must be a plain name: letters, digits and _, not starting with a digit or sqlite_",
                t.value
            ),
        );
    }
    t.value.clone()
}

struct Checker<'a> {
    file: &'a Path,
    issues: Vec<ConfigIssue>,
}

impl Checker<'_> {
    fn push<T>(&mut self, at: &Spanned<T>, message: String) {
        self.issues.push(ConfigIssue {
            file: self.file.to_path_buf(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message,
        });
    }

    /// Returns the value (or the default) after checking it lies in `min..=max`.
    fn in_range<T>(&mut self, v: &Option<Spanned<T>>, key: &str, default: T, min: T, max: T) -> T
    where
        T: PartialOrd + Copy + fmt::Display,
    {
        match v {
            None => default,
            Some(s) if s.value < min || s.value > max => {
                self.push(
                    s,
                    format!("{key} must be between {min} and {max}, got {}", s.value),
                );
                default
            }
            Some(s) => s.value,
        }
    }
}

impl RawPipeline {
    /// Checks every value, collecting all problems, and builds the domain pipeline.
    pub fn validate(self, file: &Path) -> Result<Pipeline, ConfigError> {
        let mut c = Checker {
            file,
            issues: Vec::new(),
        };
        if self.version.value != PIPELINE_VERSION {
            c.push(
                &self.version,
                format!(
                    "unsupported version {}: this pagemill reads version {PIPELINE_VERSION}",
                    self.version.value
                ),
            );
        }
        let name = match &self.name {
            Some(n) if !is_valid_name(&n.value) => {
                c.push(
                    n,
                    format!(
                        "name {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
                        n.value
                    ),
                );
                String::new()
            }
            Some(n) => n.value.clone(),
            None => file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "default".into()),
        };

        let threads = c.in_range(&self.pool.threads, "pool.threads", 0, 0, 256);
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };

        let max_document_bytes = match &self.limits.max_document_bytes {
            None => limits::DEFAULT_MAX_DOCUMENT_BYTES,
            Some(s) if s.value.as_u64() == 0 => {
                c.push(s, "limits.max_document_bytes must be above 0".into());
                limits::DEFAULT_MAX_DOCUMENT_BYTES
            }
            Some(s) => s.value.as_u64(),
        };
        let limits = LimitsConfig {
            max_document_bytes,
            max_pages: c.in_range(
                &self.limits.max_pages,
                "limits.max_pages",
                limits::DEFAULT_MAX_PAGES,
                1,
                limits::HARD_MAX_PAGES,
            ),
            max_page_pixels: c.in_range(
                &self.limits.max_page_pixels,
                "limits.max_page_pixels",
                limits::DEFAULT_MAX_PAGE_PIXELS,
                1,
                limits::HARD_MAX_PAGE_PIXELS,
            ),
            max_ocr_time_per_page: self
                .limits
                .max_ocr_time_per_page
                .unwrap_or(limits::DEFAULT_MAX_OCR_TIME_PER_PAGE),
            max_job_time: self
                .limits
                .max_job_time
                .unwrap_or(limits::DEFAULT_MAX_JOB_TIME),
        };

        let render = RenderConfig {
            dpi: c.in_range(
                &self.render.dpi,
                "render.dpi",
                limits::DEFAULT_DPI,
                limits::MIN_DPI,
                limits::MAX_DPI,
            ),
            text_layer: self.render.text_layer.unwrap_or(TextLayerMode::Auto),
            min_text_layer_chars: c.in_range(
                &self.render.min_text_layer_chars,
                "render.min_text_layer_chars",
                limits::DEFAULT_MIN_TEXT_LAYER_CHARS,
                1,
                100_000,
            ),
        };

        let languages = match &self.ocr.languages {
            None => "eng".to_string(),
            Some(s) => {
                if s.value.is_empty() {
                    c.push(s, "ocr.languages must name at least one language".into());
                }
                for lang in &s.value {
                    if !is_valid_language_code(lang) {
                        c.push(s, format!("ocr.languages: {lang:?} is not a language code"));
                    } else if !crate::runtime::tessdata::language_installed(lang) {
                        c.push(
                            s,
                            format!(
                                "ocr.languages: {lang:?} is not installed (Debian: apt-get install tesseract-ocr-{})",
                                lang.replace('_', "-").to_lowercase()
                            ),
                        );
                    }
                }
                s.value.join("+")
            }
        };
        let formats = self.save.formats.as_deref().unwrap_or_default();
        let ocr = OcrConfig {
            languages,
            keep_hocr: formats.contains(&OutputFormat::Hocr),
            keep_alto: formats.contains(&OutputFormat::Alto),
            keep_page_image: formats.contains(&OutputFormat::Pdf),
            orientation: self.ocr.orientation.unwrap_or(OrientationMode::Auto),
            min_orientation_confidence: c.in_range(
                &self.ocr.min_orientation_confidence,
                "ocr.min_orientation_confidence",
                limits::DEFAULT_MIN_ORIENTATION_CONFIDENCE,
                0.0,
                100.0,
            ),
            page_segmentation_mode: c.in_range(
                &self.ocr.page_segmentation_mode,
                "ocr.page_segmentation_mode",
                3,
                1,
                13,
            ),
            skip_pages_without_text: self
                .ocr
                .skip_pages_without_text
                .unwrap_or(limits::DEFAULT_SKIP_PAGES_WITHOUT_TEXT),
        };

        let p = &self.preprocess;
        let off = PreprocessConfig::none();
        let preprocess = PreprocessConfig {
            smooth_bilevel: p.smooth_bilevel.unwrap_or(true),
            deskew: p.deskew.unwrap_or(true),
            normalize_contrast: p.normalize_contrast.unwrap_or(off.normalize_contrast),
            denoise: p.denoise.unwrap_or(off.denoise),
            binarize: p.binarize.unwrap_or(off.binarize),
            remove_border: p.remove_border.unwrap_or(off.remove_border),
            target_x_height_px: c.in_range(
                &p.target_x_height_px,
                "preprocess.target_x_height_px",
                limits::DEFAULT_TARGET_X_HEIGHT_PX,
                0,
                limits::MAX_TARGET_X_HEIGHT_PX,
            ),
            upscale_below_dpi: c.in_range(
                &p.upscale_below_dpi,
                "preprocess.upscale_below_dpi",
                off.upscale_below_dpi,
                0,
                1200,
            ),
            working_dpi: c.in_range(
                &p.working_dpi,
                "preprocess.working_dpi",
                off.working_dpi,
                70,
                1200,
            ),
        };

        let l = &self.summarize.llm;
        let prompt = match &l.prompt {
            Some(p) if !p.value.contains("{text}") => {
                c.push(p, "summarize.llm.prompt must contain {text}".into());
                String::new()
            }
            Some(p) => p.value.clone(),
            None => limits::DEFAULT_LLM_PROMPT.to_string(),
        };
        let base_url = match &l.base_url {
            Some(u) if !(u.value.starts_with("http://") || u.value.starts_with("https://")) => {
                c.push(
                    u,
                    format!("summarize.llm.base_url {:?} is not an http(s) URL", u.value),
                );
                String::new()
            }
            Some(u) => u.value.trim_end_matches('/').to_string(),
            None => limits::DEFAULT_LLM_BASE_URL.to_string(),
        };
        let llm = LlmConfig {
            base_url,
            model: l
                .model
                .clone()
                .unwrap_or_else(|| limits::DEFAULT_LLM_MODEL.into()),
            api_key_env: l.api_key_env.clone().filter(|v| !v.is_empty()),
            max_tokens: c.in_range(&l.max_tokens, "summarize.llm.max_tokens", 400, 1, 100_000),
            temperature: c.in_range(&l.temperature, "summarize.llm.temperature", 0.2, 0.0, 2.0),
            connect_timeout: l.connect_timeout.unwrap_or(Duration::from_secs(5)),
            timeout: l.timeout.unwrap_or(Duration::from_secs(120)),
            max_retries: c.in_range(&l.max_retries, "summarize.llm.max_retries", 4, 0, 20),
            max_input_chars: c.in_range(
                &l.max_input_chars,
                "summarize.llm.max_input_chars",
                12_000,
                200,
                10_000_000,
            ),
            prompt,
            fallback: l.fallback.unwrap_or(LlmFallback::Extractive),
            circuit_failures: c.in_range(
                &l.circuit_failures,
                "summarize.llm.circuit_failures",
                5,
                1,
                1000,
            ),
            circuit_cooldown: l.circuit_cooldown.unwrap_or(Duration::from_secs(30)),
            concurrency_initial: c.in_range(
                &l.concurrency.initial,
                "summarize.llm.concurrency.initial",
                limits::DEFAULT_LLM_CONCURRENCY_INITIAL,
                1,
                limits::MAX_LLM_CONCURRENCY,
            ),
            concurrency_max: c.in_range(
                &l.concurrency.max,
                "summarize.llm.concurrency.max",
                limits::DEFAULT_LLM_CONCURRENCY_MAX,
                1,
                limits::MAX_LLM_CONCURRENCY,
            ),
            max_requests_per_minute: c.in_range(
                &l.max_requests_per_minute,
                "summarize.llm.max_requests_per_minute",
                0,
                0,
                10_000_000,
            ),
            max_tokens_per_minute: c.in_range(
                &l.max_tokens_per_minute,
                "summarize.llm.max_tokens_per_minute",
                0,
                0,
                1_000_000_000,
            ),
            extract: validate_extract(&mut c, &l.extract),
        };
        if let (Some(i), Some(m)) = (&l.concurrency.initial, &l.concurrency.max)
            && i.value > m.value
        {
            c.push(
                i,
                format!(
                    "summarize.llm.concurrency.initial ({}) must not be above max ({})",
                    i.value, m.value
                ),
            );
        }
        let summarize = SummarizeConfig {
            llm,
            engine: self
                .summarize
                .engine
                .unwrap_or(SummarizeEngineKind::Extractive),
            max_sentences: c.in_range(
                &self.summarize.max_sentences,
                "summarize.max_sentences",
                limits::DEFAULT_SUMMARY_SENTENCES,
                1,
                100,
            ),
        };

        let directory = match &self.save.directory {
            None => PathBuf::from(limits::DEFAULT_RESULTS_DIR),
            Some(s) if s.value.as_os_str().is_empty() => {
                c.push(s, "save.directory must not be empty".into());
                PathBuf::new()
            }
            Some(s) => s.value.clone(),
        };

        let w = &self.save.webhook;
        let webhook = match &w.url {
            Some(u) if u.value.is_empty() => None,
            Some(u) if !(u.value.starts_with("http://") || u.value.starts_with("https://")) => {
                c.push(
                    u,
                    format!("save.webhook.url {:?} is not an http(s) URL", u.value),
                );
                None
            }
            Some(u) => Some(WebhookConfig {
                url: u.value.clone(),
                secret_env: w.secret_env.clone().filter(|v| !v.is_empty()),
                max_retries: c.in_range(&w.max_retries, "save.webhook.max_retries", 5, 0, 100),
                timeout: w.timeout.unwrap_or(Duration::from_secs(10)),
            }),
            None => None,
        };
        let sqlite = self.save.sqlite.path.as_ref().and_then(|p| {
            if p.value.as_os_str().is_empty() {
                return None;
            }
            let s = &self.save.sqlite;
            Some(SqliteSinkConfig {
                path: p.value.clone(),
                table: table_name(&mut c, &s.table, "save.sqlite.table"),
                max_retries: c.in_range(&s.max_retries, "save.sqlite.max_retries", 5, 0, 100),
            })
        });
        let postgres = self.save.postgres.url.as_ref().and_then(|u| {
            if u.value.is_empty() {
                return None;
            }
            let s = &self.save.postgres;
            if let Err(e) = u.value.parse::<tokio_postgres::Config>() {
                c.push(
                    u,
                    format!("save.postgres.url is not a connection string: {e}"),
                );
            }
            Some(PostgresSinkConfig {
                url: u.value.clone(),
                table: table_name(&mut c, &s.table, "save.postgres.table"),
                max_retries: c.in_range(&s.max_retries, "save.postgres.max_retries", 5, 0, 100),
                timeout: s.timeout.unwrap_or(Duration::from_secs(10)),
            })
        });

        let e = &self.edges;
        let mut edge = |v: &Option<Spanned<usize>>, key: &str, default: usize| {
            c.in_range(v, key, default, 1, limits::MAX_EDGE_CAPACITY)
        };
        let edges = EdgesConfig {
            ingest_documents: edge(&e.ingest_documents, "edges.ingest_documents", 2),
            render_documents: edge(&e.render_documents, "edges.render_documents", 2),
            ocr_pages: edge(&e.ocr_pages, "edges.ocr_pages", 8),
            assemble_pages: edge(&e.assemble_pages, "edges.assemble_pages", 4),
            summarize_documents: edge(&e.summarize_documents, "edges.summarize_documents", 2),
            save_documents: edge(&e.save_documents, "edges.save_documents", 2),
        };

        let admission = AdmissionConfig {
            max_pages_in_system: c.in_range(
                &self.admission.max_pages_in_system,
                "admission.max_pages_in_system",
                limits::DEFAULT_ADMISSION_PAGES,
                1,
                10_000_000,
            ),
            max_bytes_in_system: match &self.admission.max_bytes_in_system {
                None => limits::DEFAULT_ADMISSION_BYTES,
                Some(s) if s.value.as_u64() < max_document_bytes => {
                    c.push(
                        s,
                        "admission.max_bytes_in_system must be at least limits.max_document_bytes"
                            .into(),
                    );
                    limits::DEFAULT_ADMISSION_BYTES
                }
                Some(s) => s.value.as_u64(),
            },
        };

        let supervisor = SupervisorConfig {
            restart_backoff_initial: self
                .supervisor
                .restart_backoff_initial
                .unwrap_or(limits::DEFAULT_RESTART_BACKOFF_INITIAL),
            restart_backoff_max: self
                .supervisor
                .restart_backoff_max
                .unwrap_or(limits::DEFAULT_RESTART_BACKOFF_MAX),
            max_job_crashes: match &self.supervisor.max_job_crashes {
                None => limits::DEFAULT_MAX_JOB_CRASHES,
                Some(s) if s.value == 0 => {
                    c.push(s, "supervisor.max_job_crashes must be at least 1".into());
                    limits::DEFAULT_MAX_JOB_CRASHES
                }
                Some(s) => s.value,
            },
        };
        if supervisor.restart_backoff_max < supervisor.restart_backoff_initial {
            c.issues.push(ConfigIssue {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
                message: "supervisor.restart_backoff_max must not be below restart_backoff_initial"
                    .into(),
            });
        }

        if !c.issues.is_empty() {
            c.issues.sort_by_key(|i| (i.line, i.column));
            return Err(ConfigError { issues: c.issues });
        }
        Ok(Pipeline {
            name,
            pool: PoolConfig { threads },
            limits,
            render,
            preprocess,
            ocr,
            summarize,
            save: SaveConfig {
                directory,
                formats: self.save.formats.clone().unwrap_or_default(),
                webhook,
                sqlite,
                postgres,
            },
            edges,
            admission,
            supervisor,
        })
    }
}

/// Checks the `extract` section: off with an empty schema, else a schema that compiles.
fn validate_extract(c: &mut Checker<'_>, x: &RawLlmExtract) -> Option<ExtractConfig> {
    let schema = x.schema.as_ref()?;
    match &schema.value {
        serde_json::Value::Object(o) if o.is_empty() => return None,
        serde_json::Value::Object(_) => {}
        _ => {
            c.push(
                schema,
                "summarize.llm.extract.schema must be a mapping (a JSON Schema)".into(),
            );
            return None;
        }
    }
    if let Err(e) = jsonschema::validator_for(&schema.value) {
        c.push(
            schema,
            format!("summarize.llm.extract.schema is not a valid JSON Schema: {e}"),
        );
        return None;
    }
    let prompt = match &x.prompt {
        Some(p) if !p.value.contains("{text}") => {
            c.push(p, "summarize.llm.extract.prompt must contain {text}".into());
            String::new()
        }
        Some(p) => p.value.clone(),
        None => limits::DEFAULT_LLM_EXTRACT_PROMPT.to_string(),
    };
    let name = match &x.name {
        Some(n) if !is_valid_schema_name(&n.value) => {
            c.push(
                n,
                format!(
                    "summarize.llm.extract.name {:?} must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                    n.value
                ),
            );
            String::new()
        }
        Some(n) => n.value.clone(),
        None => "document".to_string(),
    };
    Some(ExtractConfig {
        name,
        schema: schema.value.clone(),
        prompt,
        max_attempts: c.in_range(
            &x.max_attempts,
            "summarize.llm.extract.max_attempts",
            3,
            1,
            20,
        ),
    })
}

/// Names the OpenAI API accepts for a `json_schema` response format.
fn is_valid_schema_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn is_valid_language_code(lang: &str) -> bool {
    (1..=32).contains(&lang.len())
        && lang
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline, ConfigError> {
        parse_pipeline(Path::new("t.yaml"), text)
    }

    /// Every key of a JSON value with its value, as `a.b.c = value` lines.
    fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    flatten(&format!("{prefix}{key}."), v, out);
                }
            }
            other => out.push(format!("{} = {other}", prefix.trim_end_matches('.'))),
        }
    }

    #[test]
    fn the_shipped_default_pipeline_says_what_the_built_in_defaults_are() {
        // Every setting left out of a file takes its built-in default; the shipped default
        // pipeline writes every setting out. The two must agree key for key, or a user reading
        // `pipelines/default.yaml` is told a default that is not the one in force.
        let shipped = Pipeline::embedded_default();
        let built_in = parse_pipeline(Path::new("default.yaml"), "version: 1\n").unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flatten("", &serde_json::to_value(&shipped).unwrap(), &mut a);
        flatten("", &serde_json::to_value(&built_in).unwrap(), &mut b);
        let only_shipped: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_built_in: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
        assert!(
            only_shipped.is_empty() && only_built_in.is_empty(),
            "pipelines/default.yaml says {only_shipped:#?}\nthe built-in defaults are {only_built_in:#?}"
        );
    }

    #[test]
    fn minimal_file_gets_defaults_and_name_from_stem() {
        let p = parse("version: 1\n").unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.render.dpi, limits::DEFAULT_DPI);
        assert_eq!(p.ocr.languages, "eng");
    }

    #[test]
    fn value_errors_are_all_reported_with_lines() {
        let err = parse("version: 2\nrender:\n  dpi: 5\nedges:\n  ocr_pages: 0\n").unwrap_err();
        let lines: Vec<u64> = err.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![1, 3, 5], "{err}");
    }

    #[test]
    fn sizes_and_durations_are_typed() {
        let p = parse(
            "version: 1\nlimits:\n  max_document_bytes: 2MiB\nsupervisor:\n  restart_backoff_initial: 250ms\n",
        )
        .unwrap();
        assert_eq!(p.limits.max_document_bytes, 2 * 1024 * 1024);
        assert_eq!(
            p.supervisor.restart_backoff_initial,
            Duration::from_millis(250)
        );
    }
}
