//! The result record saved for every job, done or failed.

use serde::{Deserialize, Serialize};

use crate::model::error::ErrorRecord;
use crate::model::page::WordRecord;

/// One job's result, written as `<id>.json` by the save stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    pub id: String,
    pub pipeline: String,
    pub source: SourceRecord,
    pub pages: Vec<PageRecord>,
    /// Page texts joined by form feeds.
    pub text: String,
    pub summary: Option<SummaryRecord>,
    /// The object the LLM extracted as the pipeline's `summarize.llm.extract.schema`
    /// describes, checked against it; absent when extraction is off or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted: Option<serde_json::Value>,
    pub warnings: Vec<String>,
    pub error: Option<ErrorRecord>,
    pub timings: Timings,
}

impl JobResult {
    /// How the job ended: `done`, `failed` or `cancelled`. The journal's final state, the
    /// `outcome` metric label and the sinks' `state` column.
    pub fn outcome(&self) -> &'static str {
        match &self.error {
            None => "done",
            Some(e) if e.is_cancellation() => "cancelled",
            Some(_) => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    /// Detected from the bytes; null when they are not a supported document.
    pub media_type: Option<String>,
    /// The tenant (API key name) that submitted it; absent when the daemon serves without
    /// keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Where a page's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageSource {
    Ocr,
    TextLayer,
    /// Neither: the page was not recognized (`skipped` says why).
    Skipped,
}

/// Why a page was not recognized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No letter-sized ink on the page: blank, or a separator sheet.
    NoText,
    /// A photograph or drawing without lines of text (`ocr.skip_pictures_without_text`).
    PictureWithoutText,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRecord {
    /// 1-based page number.
    pub number: u32,
    pub source: PageSource,
    pub text: String,
    /// Mean word confidence 0-100 for OCRed pages; null for text layers.
    pub confidence: Option<f32>,
    /// Clockwise degrees the page was turned before OCR.
    pub rotation: u32,
    /// Clockwise degrees preprocessing turned the page to level its lines (0 if it did not).
    #[serde(default)]
    pub deskew: f32,
    /// The scale the page was read at: its pixels per source pixel, chosen by the size of its
    /// print (`preprocess.target_x_height_px`). Word boxes are in the source's pixels.
    #[serde(default = "unscaled")]
    pub scale: f32,
    /// `[width, height]` of the page as read (upright, levelled) in the source's pixels: the
    /// frame of its word boxes and of its preview. Absent for pages not OCRed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[u32; 2]>,
    pub words: Vec<WordRecord>,
    pub millis: u64,
    /// Why this page has no text, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
    /// Why the page was not recognized, when it was skipped (`ocr.skip_pages_without_text`,
    /// `ocr.skip_pictures_without_text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkipReason>,
    /// hOCR and ALTO fragments for the files written beside the result; not in the JSON.
    #[serde(skip)]
    pub layout: crate::model::page::PageLayout,
}

fn unscaled() -> f32 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRecord {
    pub engine: String,
    pub text: String,
}

/// Milliseconds spent in each part of the job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Submission to saved result.
    pub total_ms: u64,
    /// Reading, type detection and opening.
    pub ingest_ms: u64,
    /// Rendering or decoding, summed over pages.
    pub render_ms: u64,
    /// OCR, summed over pages.
    pub ocr_ms: u64,
    pub summarize_ms: u64,
}
