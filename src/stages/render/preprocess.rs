//! Page preprocessing before OCR, in the render stage on the shared pool: scaling the page
//! so its print reaches Tesseract at the size it reads best, softening the edges of
//! black-and-white scans, deskew, contrast normalization for faded pages, denoising, adaptive
//! (Sauvola) binarization and removal of dark scan borders, each chosen in the pipeline YAML.
//!
//! Scaling goes by the print, not by the declared resolution ([`super::text_size`]): a page
//! whose x-height is far below `target_x_height_px` is enlarged, one far above it (a 600-DPI
//! scan, large print) is reduced, which also makes every later step and recognition cheaper.
//! Pages within [`KEEP_SCALE`] of the target, and pages with too few letters to measure, are
//! left as they are: resampling costs sharpness, and gains nothing there.
//! `upscale_below_dpi` is the older rule by declared resolution, kept as an explicit override.
//!
//! Tesseract reads a 1-bit scan better once its stair-stepped edges are softened to gray
//! ones like those of the anti-aliased text its models were trained on (a 3x3 mean; see
//! `smooth_bilevel` in README.md for the figures), so a black-and-white page gets that unless
//! upscaling or deskew has already resampled it.
//!
//! Orientation (pages turned by 90/180/270°) is decided by Tesseract's OSD in the OCR stage.
//! Deskew searches ±7° around level, so it levels pages that are slightly skewed, upright or
//! upside down; a page on its side *and* skewed is turned by OSD but stays skewed. All steps
//! use Leptonica, the image library Tesseract itself is built on, except enlargement: a
//! Lanczos filter (the `image` crate) keeps small print sharper than Leptonica's linear
//! interpolation.

use crate::config::{Binarize, PreprocessConfig};
use crate::limits::MAX_RENDER_SIDE_PX;
use crate::model::error::JobError;
use crate::model::page::PagePixels;
use image::GrayImage;

use super::lept::{LeptError, Pix};
use super::text_size::TextSize;

/// Scale factors within this range of 1 are not applied: the page's print is close enough
/// to the target that resampling would cost more than it gains.
pub const KEEP_SCALE: std::ops::RangeInclusive<f32> = 0.8..=1.25;
/// A page's print is measured from at least this many letters before it is scaled by it.
pub const MIN_LETTERS_TO_SCALE: usize = 20;
/// The most a page is enlarged by its print.
const MAX_SCALE: f32 = 4.0;
/// Small print measures larger than it is (its letters blur into their neighbours and into
/// their ascenders), and enlarged print stays soft, so an enlargement aims this much above
/// the target. Measured on linn.png reduced to 100 and 72 DPI (benches/README.md): 1.25
/// read the 100-DPI page at 37% CER (its two columns taken as one), 1.0-1.5 otherwise at
/// 0.98-1.05%; the 72-DPI page read at 4.00% with 1.0, 1.61% with 1.1, 1.34% with 1.5.
const ENLARGE_TARGET_FACTOR: f32 = 1.5;
/// The most a page is reduced by its print: halved. A page whose lines of heavy print touch
/// measures up to twice its true x-height, and is not reduced below readable size so.
const MIN_SCALE: f32 = 0.5;
/// Print measured smaller than this is not enlarged: at that size the "letters" are more
/// likely specks of a picture, a halftone or music than text (10-point print at 72 DPI
/// measures 4-5 px).
const MIN_X_HEIGHT_TO_ENLARGE: u32 = 4;

/// The smallest skew worth a rotation, in degrees: below it, rotating costs sharpness and
/// gains nothing (Leptonica's own deskew uses 0.1°).
const MIN_DESKEW_DEGREES: f32 = 1.0;
/// Leptonica's confidence below which a skew angle is a guess (its own deskew uses 3).
const MIN_SKEW_CONFIDENCE: f32 = 3.0;
/// Gray level under which a pixel is ink when measuring skew and borders.
const INK_THRESHOLD: i32 = 160;

/// What preprocessing did to a page.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Preprocessed {
    /// Clockwise degrees the page was turned to level its lines (0 when it was not).
    pub deskew_degrees: f32,
    /// The resolution after any scaling.
    pub dpi: u32,
    /// How much the page was scaled: its pixels are this many times the source's.
    pub scale: f32,
}

/// Applies the pipeline's preprocessing steps to one page whose print measures `text`. A
/// colour page stays in colour unless a step needs gray (contrast, denoise, binarize, border
/// removal) or it is black and white only. Scaling never makes a page larger than
/// `max_pixels`.
pub fn preprocess(
    pixels: PagePixels,
    dpi: u32,
    text: &TextSize,
    cfg: &PreprocessConfig,
    max_pixels: u64,
) -> Result<(PagePixels, Preprocessed), JobError> {
    let mut report = Preprocessed {
        deskew_degrees: 0.0,
        dpi,
        scale: 1.0,
    };
    if !cfg.any() {
        return Ok((pixels, report));
    }
    let bilevel = cfg.smooth_bilevel && is_bilevel(&pixels);
    let needs_gray = bilevel
        || cfg.normalize_contrast
        || cfg.denoise
        || cfg.remove_border
        || cfg.binarize != Binarize::None;
    let mut pixels = match pixels {
        PagePixels::Rgb(_) if needs_gray => PagePixels::Gray(pixels.into_gray()),
        other => other,
    };
    let factor = scale_factor(cfg, dpi, text, pixels.dimensions(), max_pixels);
    if let Some(factor) = factor
        && factor > 1.0
    {
        pixels = enlarge(&pixels, factor);
    }
    let failed = |e: LeptError| JobError::PreprocessFailed(e.to_string());
    // The page in Leptonica, once a step changes it; until then the pixels stay as they are
    // and a step that only looks (deskew finding no skew) copies nothing.
    let mut changed: Option<Pix> = None;
    let current = |changed: &mut Option<Pix>| -> Result<Pix, JobError> {
        match changed.take() {
            Some(pix) => Ok(pix),
            None => Pix::from_pixels(&pixels).map_err(failed),
        }
    };

    if let Some(factor) = factor {
        if factor < 1.0 {
            changed = Some(current(&mut changed)?.scale(factor).map_err(failed)?);
        }
        report.scale = factor;
        report.dpi = ((dpi as f32 * factor).round() as u32).max(1);
    }
    if cfg.normalize_contrast {
        changed = Some(
            current(&mut changed)?
                .normalize_contrast()
                .map_err(failed)?,
        );
    }
    if cfg.denoise {
        changed = Some(current(&mut changed)?.median().map_err(failed)?);
    }
    if cfg.deskew {
        let ink = match (&changed, &pixels) {
            (None, PagePixels::Gray(gray)) => Pix::threshold_gray(gray, INK_THRESHOLD as u8),
            (Some(pix), _) => pix.threshold(INK_THRESHOLD),
            (None, rgb) => Pix::from_pixels(rgb).and_then(|pix| pix.threshold(INK_THRESHOLD)),
        }
        .map_err(failed)?;
        if let Some((angle, confidence)) = ink.find_skew()
            && confidence >= MIN_SKEW_CONFIDENCE
            && angle.abs() >= MIN_DESKEW_DEGREES
        {
            changed = Some(current(&mut changed)?.rotate(angle).map_err(failed)?);
            report.deskew_degrees = angle;
        }
    }
    // Upscaling and rotation already resample a black-and-white page into gray edges.
    if bilevel && report.deskew_degrees == 0.0 && report.scale == 1.0 {
        changed = Some(current(&mut changed)?.mean_3x3().map_err(failed)?);
    }
    if cfg.remove_border {
        let pix = current(&mut changed)?;
        let border = pix
            .threshold(INK_THRESHOLD)
            .and_then(|ink| ink.border_components())
            .map_err(failed)?;
        let mut pix = pix;
        if border.foreground_fraction() > 0.0 {
            pix.whiten_where(&border).map_err(failed)?;
        }
        changed = Some(pix);
    }
    if cfg.binarize == Binarize::Sauvola {
        changed = Some(current(&mut changed)?.sauvola().map_err(failed)?);
    }
    match changed {
        Some(pix) => Ok((pix.to_pixels().map_err(failed)?, report)),
        None => Ok((pixels, report)),
    }
}

/// How much to scale a page of `dimensions` at `dpi` whose print measures `text`, if at all:
/// to `working_dpi` when the declared resolution is below `upscale_below_dpi` (the explicit
/// override), else to bring its x-height to `target_x_height_px`, unless that is within
/// [`KEEP_SCALE`]. Never past `max_pixels` or the largest side the renderer supports.
pub fn scale_factor(
    cfg: &PreprocessConfig,
    dpi: u32,
    text: &TextSize,
    (width, height): (u32, u32),
    max_pixels: u64,
) -> Option<f32> {
    let factor = if cfg.upscale_below_dpi > 0 && dpi < cfg.upscale_below_dpi && dpi > 0 {
        cfg.working_dpi as f32 / dpi as f32
    } else if cfg.target_x_height_px > 0
        && text.letters >= MIN_LETTERS_TO_SCALE
        && text.x_height > 0
    {
        let mut factor = cfg.target_x_height_px as f32 / text.x_height as f32;
        if factor > *KEEP_SCALE.end() {
            factor *= ENLARGE_TARGET_FACTOR;
        }
        let factor = factor.clamp(MIN_SCALE, MAX_SCALE);
        if KEEP_SCALE.contains(&factor) || (factor > 1.0 && text.x_height < MIN_X_HEIGHT_TO_ENLARGE)
        {
            return None;
        }
        factor
    } else {
        return None;
    };
    let (w, h) = (width as f32 * factor, height as f32 * factor);
    let fits = w >= 1.0
        && h >= 1.0
        && w <= MAX_RENDER_SIDE_PX as f32
        && h <= MAX_RENDER_SIDE_PX as f32
        && (w as f64) * (h as f64) <= max_pixels as f64;
    fits.then_some(factor)
}

/// Enlarges a page by `factor` with a Lanczos filter (3 lobes), which keeps strokes sharper
/// than the linear interpolation of Leptonica's `pixScale`: linn.png reduced to 72 DPI and
/// enlarged 4x read at 3.44% CER with `pixScale` and 1.34% so (the 300-DPI original: 0.96%).
/// Reductions stay with `pixScale`, which averages areas.
fn enlarge(pixels: &PagePixels, factor: f32) -> PagePixels {
    use image::imageops::{FilterType, resize};
    let (w, h) = pixels.dimensions();
    // Leptonica's rounding, so a page's size does not depend on the filter.
    let (w, h) = (
        (w as f32 * factor + 0.5) as u32,
        (h as f32 * factor + 0.5) as u32,
    );
    match pixels {
        PagePixels::Gray(gray) => PagePixels::Gray(resize(gray, w, h, FilterType::Lanczos3)),
        PagePixels::Rgb(rgb) => PagePixels::Rgb(resize(rgb, w, h, FilterType::Lanczos3)),
    }
}

/// Brings a page drawn from 1-bit scans back to black and white, undoing the gray that
/// hayro's image sampling blends into some rows, so that [`preprocess`] smooths the scan's
/// own edges rather than blurred ones.
pub fn restore_black_and_white(gray: &mut GrayImage) {
    for v in gray.iter_mut() {
        *v = if *v < 128 { 0 } else { 255 };
    }
}

/// Whether a page is black and white only: a 1-bit scan (a palette one decodes as colour),
/// or a PDF page drawn from one at its own resolution. Stops at the first other pixel, so
/// other pages cost little.
pub(super) fn is_bilevel(pixels: &PagePixels) -> bool {
    match pixels {
        PagePixels::Gray(gray) => gray.as_raw().iter().all(|&v| v == 0 || v == 255),
        PagePixels::Rgb(rgb) => rgb
            .as_raw()
            .chunks_exact(3)
            .all(|p| p == [0, 0, 0] || p == [255, 255, 255]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb, RgbImage};

    fn gray(pixels: PagePixels) -> GrayImage {
        match pixels {
            PagePixels::Gray(g) => g,
            PagePixels::Rgb(_) => panic!("expected gray"),
        }
    }

    fn run(page: GrayImage, dpi: u32, cfg: &PreprocessConfig) -> (GrayImage, Preprocessed) {
        let pixels = PagePixels::Gray(page);
        let text = super::super::text_size::measure(&pixels, false).unwrap();
        let (out, report) = preprocess(pixels, dpi, &text, cfg, u64::MAX).unwrap();
        (gray(out), report)
    }

    /// A white page with dark horizontal bars ("text lines"), turned by `degrees`.
    fn lined_page(degrees: f32) -> GrayImage {
        let (w, h) = (900u32, 700u32);
        let (sin, cos) = degrees.to_radians().sin_cos();
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        GrayImage::from_fn(w, h, |x, y| {
            // Where this pixel comes from on the level page.
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let (sx, sy) = (dx * cos + dy * sin + cx, -dx * sin + dy * cos + cy);
            let line = (sy as i32).div_euclid(40);
            let on_line = (sy as i32).rem_euclid(40) < 12 && (100.0..800.0).contains(&sx);
            // Words: gaps along each line, placed differently on every line as in real text.
            let pitch = 50 + (line * 13).rem_euclid(30);
            let in_word = (sx as i32 + line * 37).rem_euclid(pitch) < pitch - 12;
            Luma([if on_line && in_word { 0 } else { 255 }])
        })
    }

    fn deskew_only() -> PreprocessConfig {
        PreprocessConfig {
            deskew: true,
            ..PreprocessConfig::none()
        }
    }

    #[test]
    fn black_and_white_pages_are_smoothed_unless_deskew_resampled_them() {
        let cfg = PreprocessConfig {
            smooth_bilevel: true,
            ..deskew_only()
        };
        let page = lined_page(0.0);
        let (smoothed, report) = run(page.clone(), 300, &cfg);
        assert_eq!(report.deskew_degrees, 0.0);
        // Leptonica's 3x3 mean across the top edge of a line, inside a word: two rows of paper
        // above the edge, two of ink from it down, the same in three columns.
        let ink = |x: u32, y: u32| page.get_pixel(x, y)[0] == 0;
        let (x, top) = (100..800)
            .flat_map(|x| (20..690).map(move |y| (x, y)))
            .find(|&(x, y)| {
                (x - 1..=x + 1)
                    .all(|x| !ink(x, y - 2) && !ink(x, y - 1) && ink(x, y) && ink(x, y + 1))
            })
            .expect("a line's top edge");
        assert_eq!(smoothed.get_pixel(x, top - 1)[0], 170, "above the edge");
        assert_eq!(smoothed.get_pixel(x, top)[0], 85, "on the edge");
        assert_eq!(smoothed.get_pixel(x, top + 1)[0], 0, "inside the line");
        // Now gray, the page is not smoothed again.
        assert_eq!(run(smoothed.clone(), 300, &cfg).0, smoothed);
        // A skewed page is rotated, which leaves gray edges of its own, and not smoothed too.
        assert_eq!(
            run(lined_page(4.0), 300, &cfg).0,
            run(lined_page(4.0), 300, &deskew_only()).0
        );
        // A black-and-white palette image decodes as colour: it is smoothed as gray.
        let colour = RgbImage::from_fn(900, 700, |x, y| {
            let v = page.get_pixel(x, y)[0];
            Rgb([v, v, v])
        });
        let (out, _) = preprocess(
            PagePixels::Rgb(colour),
            300,
            &TextSize::NONE,
            &cfg,
            u64::MAX,
        )
        .unwrap();
        assert_eq!(gray(out), smoothed);
    }

    #[test]
    fn a_skewed_page_is_levelled() {
        let (levelled, report) = run(lined_page(4.0), 300, &deskew_only());
        assert!(
            (report.deskew_degrees.abs() - 4.0).abs() < 0.5,
            "{report:?}"
        );
        // Turned the right way: the levelled page needs no more turning.
        let (_, again) = run(levelled, 300, &deskew_only());
        assert!(again.deskew_degrees.abs() < 0.5, "{again:?}");
    }

    #[test]
    fn a_level_page_is_left_alone() {
        let page = lined_page(0.0);
        let (out, report) = run(page.clone(), 300, &deskew_only());
        assert_eq!(report.deskew_degrees, 0.0);
        assert_eq!(out, page);
    }

    #[test]
    fn low_resolution_images_are_scaled_to_the_working_resolution() {
        let cfg = PreprocessConfig {
            upscale_below_dpi: 150,
            working_dpi: 300,
            ..PreprocessConfig::none()
        };
        let (out, report) = run(lined_page(0.0), 100, &cfg);
        assert_eq!(report.dpi, 300);
        assert_eq!((out.width(), out.height()), (2700, 2100));
        let (out, report) = run(lined_page(0.0), 300, &cfg);
        assert_eq!((report.dpi, out.width()), (300, 900));
        // Never past the pipeline's pixel limit.
        let (out, report) = preprocess(
            PagePixels::Gray(lined_page(0.0)),
            100,
            &TextSize::NONE,
            &cfg,
            1_000_000,
        )
        .unwrap();
        assert_eq!((report.dpi, out.dimensions()), (100, (900, 700)));
    }

    #[test]
    fn pages_are_scaled_by_their_print_within_limits() {
        let cfg = PreprocessConfig {
            target_x_height_px: 20,
            ..PreprocessConfig::none()
        };
        let print = |x_height, letters| TextSize {
            x_height,
            letters,
            sideways: false,
            upright: None,
            lined: letters,
            midtones: 0.0,
        };
        let page = (2000, 3000);
        let factor = |text: TextSize, dpi: u32| scale_factor(&cfg, dpi, &text, page, u64::MAX);
        // Large print is reduced, small print enlarged, whatever the declared resolution.
        assert_eq!(factor(print(32, 500), 300), Some(0.625));
        assert_eq!(factor(print(32, 500), 72), Some(0.625));
        assert_eq!(factor(print(5, 500), 300), Some(4.0));
        assert_eq!(factor(print(10, 500), 600), Some(3.0));
        // Never below half, nor above four times.
        assert_eq!(factor(print(90, 500), 300), Some(0.5));
        assert_eq!(factor(print(4, 500), 300), Some(4.0));
        // Close to the target, or too few letters to tell, or specks: left alone.
        assert_eq!(factor(print(22, 500), 300), None);
        assert_eq!(factor(print(17, 500), 300), None);
        assert_eq!(factor(print(40, 5), 300), None);
        assert_eq!(factor(print(3, 500), 300), None);
        // Never past the pixel limit.
        assert_eq!(
            scale_factor(&cfg, 300, &print(5, 500), page, 10_000_000),
            None
        );
        // The override by declared resolution wins where it applies.
        let by_dpi = PreprocessConfig {
            upscale_below_dpi: 150,
            working_dpi: 300,
            ..cfg
        };
        assert_eq!(
            scale_factor(&by_dpi, 100, &print(40, 500), page, u64::MAX),
            Some(3.0)
        );
        assert_eq!(
            scale_factor(&by_dpi, 300, &print(40, 500), page, u64::MAX),
            Some(0.5)
        );
        // Off: nothing is scaled.
        let off = PreprocessConfig::none();
        assert_eq!(
            scale_factor(&off, 300, &print(40, 500), page, u64::MAX),
            None
        );
    }

    #[test]
    fn sauvola_separates_ink_from_unevenly_lit_paper() {
        let cfg = PreprocessConfig {
            binarize: Binarize::Sauvola,
            ..PreprocessConfig::none()
        };
        // Paper fades from 250 on the left to 150 on the right; ink is 100 levels darker than
        // the paper around it, so ink on the left is as light as paper on the right and no
        // single threshold separates them.
        let is_ink = |x: u32, y: u32| (y / 10).is_multiple_of(3) && x % 20 < 15;
        let page = GrayImage::from_fn(400, 200, |x, y| {
            let paper = 250 - (x * 100 / 400) as u8;
            Luma([if is_ink(x, y) { paper - 100 } else { paper }])
        });
        let (out, _) = run(page, 300, &cfg);
        assert!(out.pixels().all(|p| p[0] == 0 || p[0] == 255));
        for (x, y) in [(30, 5), (370, 5)] {
            assert_eq!(out.get_pixel(x, y)[0], 0, "ink at {x},{y}");
        }
        for (x, y) in [(30, 15), (370, 15)] {
            assert_eq!(out.get_pixel(x, y)[0], 255, "paper at {x},{y}");
        }
    }

    #[test]
    fn a_dark_scan_border_is_whitened() {
        let cfg = PreprocessConfig {
            remove_border: true,
            ..PreprocessConfig::none()
        };
        let page = GrayImage::from_fn(300, 200, |x, y| {
            let border = x < 12 || y < 8;
            let text = (100..140).contains(&x) && (90..110).contains(&y);
            Luma([if border || text { 20 } else { 250 }])
        });
        let (out, _) = run(page, 300, &cfg);
        assert_eq!(out.get_pixel(2, 100)[0], 255, "border gone");
        assert_eq!(out.get_pixel(120, 100)[0], 20, "text kept");
    }
}
