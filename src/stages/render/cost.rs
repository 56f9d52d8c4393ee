//! How much OCR work a page is, estimated before OCR runs, so that the heaviest pages start
//! first and the last page of a document does not run alone while the other threads idle
//! (longest-processing-time-first scheduling).
//!
//! The estimate is the page's *text texture*: the sum of gray-level changes between
//! neighbouring pixels along each row, with the page seen at [`COST_DPI`]. At that
//! resolution a line of print is a band of fine texture, a photo or a dark area is mostly
//! flat, and white paper is zero, so the sum grows with the amount of print, which is what
//! Tesseract's time grows with. On `scans-24p.pdf` its rank correlation with the pages' OCR
//! times is 0.84; the count of dark pixels scores -0.08 there (photos are dark and quick).
//!
//! Two ways to the same measure: [`text_texture`] averages an image already rendered at full
//! resolution down to [`COST_DPI`], for the OCR stage; [`pdf_page_work`] renders the PDF
//! page at [`COST_DPI`] itself (~7 ms for a scanned page, against ~50 ms at 300 DPI), for
//! the render stage to choose its order before rendering.

use image::GrayImage;

use crate::config::RenderConfig;
use crate::model::page::{PageImage, PagePixels, PrintStands};
use hayro::hayro_syntax::Pdf;

use crate::stages::render::pdf;

/// Resolution the texture is measured at: print is texture there, pages are small.
pub const COST_DPI: u32 = 50;

/// Pixels a preview may have: a page larger than this at [`COST_DPI`] (a poster, or a bomb)
/// is not previewed; its real rendering refuses it if it is too large.
const MAX_PREVIEW_PIXELS: u64 = 4_000_000;

/// The text texture of `pixels`, a page at `dpi`.
pub fn text_texture(pixels: &PagePixels, dpi: u32) -> u64 {
    let factor = (dpi as f32 / COST_DPI as f32).round().max(1.0) as usize;
    let (w, h) = pixels.dimensions();
    match pixels {
        PagePixels::Gray(g) => texture_of_rows(g.as_raw(), 1, w as usize, h as usize, factor),
        PagePixels::Rgb(c) => texture_of_rows(c.as_raw(), 3, w as usize, h as usize, factor),
    }
}

/// What a PDF page will need.
pub enum PageWork {
    /// Its text layer is taken: no OCR (here is the layer, so that it is not read twice).
    TextLayer(pdf::TextLayer),
    /// OCR, of this estimated amount (0 for a page too large to preview).
    Ocr(u64),
}

/// What PDF page `index` (0-based) will need: its text layer, or OCR of the amount a
/// rendering at [`COST_DPI`] shows.
pub fn pdf_page_work(pdf: &Pdf, index: u32, render: &RenderConfig) -> PageWork {
    match super::taken_text_layer(pdf, index, render) {
        Some(layer) => PageWork::TextLayer(layer),
        None => PageWork::Ocr(preview_texture(pdf, index)),
    }
}

fn preview_texture(pdf: &Pdf, index: u32) -> u64 {
    let (width, height) = pdf::pdf_page_pixel_size(pdf, index, COST_DPI);
    if width.saturating_mul(height) > MAX_PREVIEW_PIXELS || width == 0 || height == 0 {
        return 0;
    }
    let preview: GrayImage = pdf::render_pdf_page(pdf, index, COST_DPI);
    let (w, h) = preview.dimensions();
    texture_of_rows(preview.as_raw(), 1, w as usize, h as usize, 1)
}

/// Averages the gray level of `factor` x `factor` blocks of a `width` x `height` image
/// (`channels` bytes per pixel: gray, or RGB seen as Tesseract's gray; rows packed) and sums
/// the absolute differences of horizontally neighbouring blocks.
fn texture_of_rows(
    samples: &[u8],
    channels: usize,
    width: usize,
    height: usize,
    factor: usize,
) -> u64 {
    let blocks_across = width / factor;
    if height == 0 || blocks_across < 2 {
        return 0;
    }
    let gray = |pixel: &[u8]| match pixel {
        [r, g, b] => crate::model::page::luminance([*r, *g, *b]) as u32,
        [v, ..] => *v as u32,
        [] => 0,
    };
    let area = (factor * factor) as u32;
    let mut sums = vec![0u32; blocks_across];
    let mut texture = 0u64;
    let row_bytes = width * channels;
    for band in samples
        .chunks_exact(row_bytes * factor)
        .take(height / factor)
    {
        sums.iter_mut().for_each(|s| *s = 0);
        for row in band.chunks_exact(row_bytes) {
            for (sum, block) in sums.iter_mut().zip(row.chunks_exact(factor * channels)) {
                *sum += block.chunks_exact(channels).map(gray).sum::<u32>();
            }
        }
        texture += sums
            .windows(2)
            .map(|pair| (pair[0] / area).abs_diff(pair[1] / area) as u64)
            .sum::<u64>();
    }
    texture
}

/// Page images are made here, where their OCR work can be estimated.
impl PageImage {
    /// Wraps rendered or decoded pixels, estimating their OCR work (one pass over the pixels).
    pub fn new(pixels: impl Into<PagePixels>, dpi: u32) -> PageImage {
        let pixels = pixels.into();
        let cost = text_texture(&pixels, dpi);
        PageImage {
            pixels,
            dpi,
            cost,
            deskew_degrees: 0.0,
            scale: 1.0,
            print_stands: PrintStands::NotKnown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(width: u32, height: u32, ink: impl Fn(u32, u32) -> bool) -> PagePixels {
        PagePixels::Gray(GrayImage::from_fn(width, height, |x, y| {
            image::Luma([if ink(x, y) { 0 } else { 255 }])
        }))
    }

    #[test]
    fn white_and_flat_pages_cost_nothing_print_costs_more_than_a_dark_block() {
        let blank = page(600, 600, |_, _| false);
        let dark = page(600, 600, |x, _| x < 300);
        // "Print": 6-pixel-wide strokes every 12 pixels, on every other 24-pixel band.
        let print = page(600, 600, |x, y| (y / 24) % 2 == 0 && (x / 6) % 2 == 0);
        assert_eq!(text_texture(&blank, 300), 0);
        let dark_cost = text_texture(&dark, 300);
        let print_cost = text_texture(&print, 300);
        assert!(dark_cost > 0);
        assert!(print_cost > 10 * dark_cost, "{print_cost} vs {dark_cost}");
    }

    #[test]
    fn a_colour_page_costs_what_its_gray_version_costs() {
        let colour = image::RgbImage::from_fn(600, 300, |x, y| {
            if (y / 24) % 2 == 0 && (x / 6) % 2 == 0 {
                image::Rgb([200, 30, 40])
            } else {
                image::Rgb([250, 250, 240])
            }
        });
        let colour = PagePixels::Rgb(colour);
        let gray = PagePixels::Gray(colour.clone().into_gray());
        let cost = text_texture(&colour, 300);
        assert!(cost > 0);
        assert_eq!(cost, text_texture(&gray, 300));
    }

    #[test]
    fn more_print_costs_more() {
        let half = page(600, 600, |x, y| y < 300 && (x / 6) % 2 == 0);
        let full = page(600, 600, |x, _| (x / 6) % 2 == 0);
        assert!(text_texture(&full, 300) > text_texture(&half, 300));
    }
}
