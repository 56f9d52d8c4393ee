//! The `render:` section: how pages become pixels.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::check::Checker;
use crate::limits;

/// PDF render resolution.
pub const DEFAULT_DPI: u32 = 300;
/// A text layer with fewer non-blank characters than this counts as none.
pub const DEFAULT_MIN_TEXT_LAYER_CHARS: usize = 16;

/// Whether a PDF page's own text layer replaces rendering and OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextLayerMode {
    /// Take the text layer when a page has one; OCR the others.
    Auto,
    /// Always render and OCR, ignoring any text layer.
    Ignore,
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

#[derive(Debug, Clone, Serialize)]
pub struct RenderConfig {
    pub dpi: u32,
    pub text_layer: TextLayerMode,
    pub min_text_layer_chars: usize,
}

/// Checks `render:`.
pub(crate) fn validate(c: &mut Checker<'_>, raw: &RawRender) -> RenderConfig {
    RenderConfig {
        dpi: c.in_range(
            &raw.dpi,
            "render.dpi",
            DEFAULT_DPI,
            limits::MIN_DPI,
            limits::MAX_DPI,
        ),
        text_layer: raw.text_layer.unwrap_or(TextLayerMode::Auto),
        min_text_layer_chars: c.in_range(
            &raw.min_text_layer_chars,
            "render.min_text_layer_chars",
            DEFAULT_MIN_TEXT_LAYER_CHARS,
            1,
            100_000,
        ),
    }
}
