//! The `ocr:` section: languages, orientation, page segmentation.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::check::Checker;
use super::save::{OutputFormat, SaveConfig};

/// OSD confidence needed before a page is turned.
pub const DEFAULT_MIN_ORIENTATION_CONFIDENCE: f32 = 2.0;
/// Whether pages with no letter-sized ink skip recognition.
pub const DEFAULT_SKIP_PAGES_WITHOUT_TEXT: bool = true;
pub const DEFAULT_SKIP_PICTURES_WITHOUT_TEXT: bool = false;

/// The Tesseract language models a pipeline reads with unless it names others.
pub const DEFAULT_LANGUAGES: &str = "eng";
/// Tesseract's fully automatic page segmentation, without orientation detection.
pub const DEFAULT_PAGE_SEGMENTATION_MODE: u32 = 3;

/// Whether pages turned by 90/180/270 degrees are detected and turned upright before OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrientationMode {
    /// Detect the orientation with Tesseract's OSD model where it pays: on pages whose print
    /// runs up or down the page, and on pages whose upright recognition reads poorly and whose
    /// print is not seen standing upright.
    Auto,
    /// Detect the orientation of every page before recognizing it.
    Always,
    /// OCR pages as they are.
    Off,
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
    /// Pages that look like photographs or drawings without text skip recognition.
    #[serde(default)]
    pub skip_pictures_without_text: Option<bool>,
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
    /// The longest side of the preview image made of each page (`save.preview_max_px`); 0:
    /// none.
    pub preview_max_px: u32,
    pub orientation: OrientationMode,
    pub min_orientation_confidence: f32,
    pub page_segmentation_mode: u32,
    /// Pages with no letter-sized ink skip recognition.
    pub skip_pages_without_text: bool,
    /// Pages that look like pictures without text skip recognition.
    pub skip_pictures_without_text: bool,
}

/// Checks `ocr:`; the formats the pipeline writes say what recognition keeps for them.
pub(crate) fn validate(c: &mut Checker<'_>, raw: &RawOcr, save: &SaveConfig) -> OcrConfig {
    let formats = &save.formats;
    let languages = match &raw.languages {
        None => DEFAULT_LANGUAGES.to_string(),
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
    OcrConfig {
        languages,
        keep_hocr: formats.contains(&OutputFormat::Hocr),
        keep_alto: formats.contains(&OutputFormat::Alto),
        keep_page_image: formats.contains(&OutputFormat::Pdf),
        preview_max_px: save.preview_max_px,
        orientation: raw.orientation.unwrap_or(OrientationMode::Auto),
        min_orientation_confidence: c.in_range(
            &raw.min_orientation_confidence,
            "ocr.min_orientation_confidence",
            DEFAULT_MIN_ORIENTATION_CONFIDENCE,
            0.0,
            100.0,
        ),
        page_segmentation_mode: c.in_range(
            &raw.page_segmentation_mode,
            "ocr.page_segmentation_mode",
            DEFAULT_PAGE_SEGMENTATION_MODE,
            1,
            13,
        ),
        skip_pages_without_text: raw
            .skip_pages_without_text
            .unwrap_or(DEFAULT_SKIP_PAGES_WITHOUT_TEXT),
        skip_pictures_without_text: raw
            .skip_pictures_without_text
            .unwrap_or(DEFAULT_SKIP_PICTURES_WITHOUT_TEXT),
    }
}

fn is_valid_language_code(lang: &str) -> bool {
    (1..=32).contains(&lang.len())
        && lang
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
