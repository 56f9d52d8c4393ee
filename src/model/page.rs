//! A page as it flows between stages: its pixels ([`PagePixels`]), the image OCR reads
//! ([`PageImage`]), what OCR found on it ([`PageOcr`], [`PageLayout`]), and the compressed
//! image the searchable PDF embeds ([`PageRaster`]).

use image::{GrayImage, RgbImage};

use serde::{Deserialize, Serialize};

/// A page's pixels: grayscale, or colour for colour sources. Tesseract separates ink from
/// paper on each colour channel, which reads faint or coloured print better than one gray
/// channel does (kant-aufklaerung: 13.9% CER from colour, 14.6% from gray).
#[derive(Debug, Clone, PartialEq)]
pub enum PagePixels {
    Gray(GrayImage),
    Rgb(RgbImage),
}

/// Gray level Leptonica and Tesseract give a colour pixel: 0.3 R + 0.5 G + 0.2 B.
pub fn luminance([r, g, b]: [u8; 3]) -> u8 {
    ((3 * r as u32 + 5 * g as u32 + 2 * b as u32 + 5) / 10) as u8
}

impl PagePixels {
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            PagePixels::Gray(g) => g.dimensions(),
            PagePixels::Rgb(c) => c.dimensions(),
        }
    }

    /// The page in grayscale, converting colour as Tesseract does.
    pub fn into_gray(self) -> GrayImage {
        match self {
            PagePixels::Gray(g) => g,
            PagePixels::Rgb(c) => {
                let (w, h) = c.dimensions();
                let gray = c.pixels().map(|p| luminance(p.0)).collect();
                GrayImage::from_raw(w, h, gray).expect("one byte per pixel")
            }
        }
    }

    /// Turns the page clockwise by 0, 90, 180 or 270 degrees.
    pub fn rotated(self, degrees: u32) -> PagePixels {
        use image::imageops::{rotate90, rotate180, rotate270};
        match (self, degrees) {
            (PagePixels::Gray(g), 90) => PagePixels::Gray(rotate90(&g)),
            (PagePixels::Gray(g), 180) => PagePixels::Gray(rotate180(&g)),
            (PagePixels::Gray(g), 270) => PagePixels::Gray(rotate270(&g)),
            (PagePixels::Rgb(c), 90) => PagePixels::Rgb(rotate90(&c)),
            (PagePixels::Rgb(c), 180) => PagePixels::Rgb(rotate180(&c)),
            (PagePixels::Rgb(c), 270) => PagePixels::Rgb(rotate270(&c)),
            (pixels, _) => pixels,
        }
    }
}

/// A page image ready for OCR: its pixels and their true resolution.
#[derive(Debug, Clone)]
pub struct PageImage {
    pub pixels: PagePixels,
    pub dpi: u32,
    /// How much OCR work the page is (its text texture, see [`crate::stages::render::cost`]),
    /// so that the OCR stage can start the heaviest waiting page first.
    pub cost: u64,
    /// Clockwise degrees preprocessing turned the page to level its lines.
    pub deskew_degrees: f32,
    /// How much preprocessing scaled the page: its pixels are this many times the source's.
    /// Word boxes and layouts are scaled back, so they stay in the source's coordinates.
    pub scale: f32,
    /// Which way up its print seemed to stand before it was read (see `render::text_size`).
    pub print_stands: PrintStands,
}

/// Which way up a page's print stands, as the render stage sees it (Leptonica's count of
/// ascenders and descenders, and whether its letters line up across or along the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintStands {
    /// Upright, by a clear count: a poor upright reading is not worth orientation detection.
    Upright,
    /// On its side or on its head: orientation detection runs before the page is read.
    Turned,
    /// No clear sign (few letters, or an even count): a poor upright reading gets orientation
    /// detection.
    NotKnown,
}

impl From<GrayImage> for PagePixels {
    fn from(gray: GrayImage) -> PagePixels {
        PagePixels::Gray(gray)
    }
}

/// What OCR found on one page.
#[derive(Debug, Clone)]
pub struct PageOcr {
    pub text: String,
    /// Tesseract's mean word confidence, 0-100.
    pub confidence: f32,
    pub words: Vec<WordRecord>,
    /// Clockwise degrees the page was turned before recognition.
    pub rotation: u32,
    /// Whether orientation detection ran on the page.
    pub orientation_checked: bool,
    /// Clockwise degrees preprocessing turned the page to level its lines.
    pub deskew_degrees: f32,
    /// The scale the page was read at (its pixels per source pixel).
    pub scale: f32,
    /// `[width, height]` of the page as read (upright, levelled) in the source's pixels: the
    /// frame its word boxes are in.
    pub size: [u32; 2],
    pub millis: u64,
    /// The page as Tesseract lays it out, when the pipeline writes those formats.
    pub layout: PageLayout,
    /// The page as read, reduced, as PNG (`save.preview_max_px`); written beside the result
    /// by the OCR stage.
    pub preview: Option<Vec<u8>>,
}

/// What the output files need of an OCRed page beyond its words: fragments of the hOCR and
/// ALTO documents as Tesseract writes them, and the image Tesseract read (for the searchable
/// PDF). Each is kept only when the pipeline writes that format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageLayout {
    /// The `ocr_page` element.
    pub hocr: Option<String>,
    /// The `Page` element.
    pub alto: Option<String>,
    pub raster: Option<PageRaster>,
}

/// A page image, zlib-compressed 8-bit samples (gray or RGB): the form a PDF image stream
/// takes, so that the searchable PDF embeds it as is. A scanned text page shrinks ~10x.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRaster {
    pub width: u32,
    pub height: u32,
    /// The image's resolution.
    pub dpi: u32,
    /// Image pixels per source pixel: word boxes are in the source's coordinates.
    pub scale: f32,
    pub rgb: bool,
    pub zlib: Vec<u8>,
}

impl PageRaster {
    pub fn compress(pixels: &PagePixels, dpi: u32, scale: f32) -> PageRaster {
        use std::io::Write;
        let (width, height) = pixels.dimensions();
        let (samples, rgb) = match pixels {
            PagePixels::Gray(g) => (g.as_raw(), false),
            PagePixels::Rgb(c) => (c.as_raw(), true),
        };
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(samples)
            .expect("writing to memory cannot fail");
        PageRaster {
            width,
            height,
            dpi,
            scale,
            rgb,
            zlib: encoder.finish().expect("writing to memory cannot fail"),
        }
    }
}

/// A word OCR found, with its box and confidence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WordRecord {
    pub text: String,
    pub confidence: f32,
    /// `[left, top, right, bottom]` in pixels of the (upright) source page image.
    pub bbox: [u32; 4],
}
