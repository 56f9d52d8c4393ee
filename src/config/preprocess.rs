//! The `preprocess:` section: what is done to a page's pixels before OCR.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::check::Checker;
use crate::limits;

/// The x-height, in pixels, pages are scaled to (`preprocess.target_x_height_px`).
pub const DEFAULT_TARGET_X_HEIGHT_PX: u32 = 20;

/// Adaptive binarization before OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binarize {
    /// Leave the page grayscale; Tesseract thresholds it itself (Otsu).
    None,
    /// Sauvola's local threshold: better on uneven lighting and faded ink.
    Sauvola,
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

/// Checks `preprocess:`.
pub(crate) fn validate(c: &mut Checker<'_>, raw: &RawPreprocess) -> PreprocessConfig {
    let p = raw;
    let off = PreprocessConfig::none();
    PreprocessConfig {
        smooth_bilevel: p.smooth_bilevel.unwrap_or(true),
        deskew: p.deskew.unwrap_or(true),
        normalize_contrast: p.normalize_contrast.unwrap_or(off.normalize_contrast),
        denoise: p.denoise.unwrap_or(off.denoise),
        binarize: p.binarize.unwrap_or(off.binarize),
        remove_border: p.remove_border.unwrap_or(off.remove_border),
        target_x_height_px: c.in_range(
            &p.target_x_height_px,
            "preprocess.target_x_height_px",
            DEFAULT_TARGET_X_HEIGHT_PX,
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
    }
}
