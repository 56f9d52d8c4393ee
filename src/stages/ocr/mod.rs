//! OCR stage: page images in, text with words, boxes and confidences out.
//!
//! The pure work is [`ocr_page`]; it runs on the shared CPU pool with the calling thread's own
//! engines (one per pool thread and language set, created once and reused: loading a model
//! costs ~150 ms). The actor in [`actor`] schedules pages onto the pool and passes results to
//! the assembler. Emits `pagemill_pages_total`, `pagemill_ocr_page_confidence` and
//! `pagemill_ocr_orientation_checks_total`.
//!
//! Orientation detection (Tesseract's OSD) costs about a fifth of a page's CPU, and nearly
//! every page is upright. With `orientation: auto` it runs first only on pages whose print
//! looks turned (runs up or down the page, or stands on its head: seen in the render stage),
//! and otherwise only when the upright reading read its words as vertical text, or is poor
//! (mean confidence below [`POOR_READING_CONFIDENCE`]) on a page whose print the render stage
//! could not see standing upright and where some words were read at all (a page of pictures
//! reads poorly whichever way up it stands): then the page is turned as OSD says and read
//! again, and the better reading is kept. Before OSD, such a page gets a second, cheaper look:
//! Leptonica at the size the page was read (the render stage looks at large print half size,
//! where it often cannot tell); print it sees upright is taken as read.

pub mod actor;
pub mod layout_scale;
pub mod preview;
pub mod tess;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::page::{
    PageImage, PageLayout, PageOcr, PagePixels, PageRaster, PrintStands, WordRecord,
};

use crate::config::{OcrConfig, OrientationMode};
use crate::model::error::JobError;
use crate::runtime::metrics as m;
use crate::stages::render::text_size;
use tess::Tesseract;

/// An upright reading whose mean word confidence is below this may be of a page turned by
/// 90, 180 or 270 degrees: orientation detection decides. Upright print reads at 80-95 on
/// clean scans and in the 60s and 70s on old or poor ones; turned print reads far lower.
pub const POOR_READING_CONFIDENCE: f32 = 50.0;

/// The resolution Tesseract is told a page scaled by its print has. Its layout heuristics
/// reckon letter sizes in points from the resolution: a declared resolution that is wrong
/// (a 72-DPI scan declaring 300) or a true one multiplied by an enlargement would make the
/// scaled print look tiny or huge to them (a 72-DPI page declared 300 and enlarged read at
/// 65% CER so). At this resolution the target x-height, 20 px, is ordinary 10-point print.
pub const SCALED_PAGE_DPI: u32 = 300;

/// Tesseract parameters pagemill sets on every recognition engine: each was measured on its
/// own on the corpus (`cargo bench --bench ocr_settings`, figures in `benches/README.md`) and
/// kept because it saves CPU without changing a character of any ground-truthed page.
/// - `tessedit_do_invert=0`: no second reading of each line as white-on-black text;
/// - `textord_tabfind_find_tables=0`: no table detection in the layout analysis.
pub const ENGINE_SETTINGS: &[(&str, &str)] = &[
    ("tessedit_do_invert", "0"),
    ("textord_tabfind_find_tables", "0"),
];

/// Engines owned by one pool thread, keyed by language set.
#[derive(Default)]
pub struct Engines {
    text: HashMap<String, Tesseract>,
    osd: Option<Tesseract>,
}

impl Engines {
    fn text_engine(&mut self, languages: &str) -> Result<&mut Tesseract, JobError> {
        if !self.text.contains_key(languages) {
            let mut engine =
                Tesseract::new(languages).map_err(|e| JobError::OcrFailed(e.to_string()))?;
            for (name, value) in ENGINE_SETTINGS {
                engine.set_variable(name, value);
            }
            self.text.insert(languages.to_string(), engine);
        }
        Ok(self.text.get_mut(languages).expect("inserted above"))
    }

    fn osd_engine(&mut self) -> Result<&mut Tesseract, JobError> {
        if self.osd.is_none() {
            self.osd = Some(Tesseract::new_osd().map_err(|e| JobError::OcrFailed(e.to_string()))?);
        }
        Ok(self.osd.as_mut().expect("set above"))
    }
}

thread_local! {
    /// This thread's engines. Pool threads live as long as the pool, so each engine is
    /// created once per thread and reused for every page it OCRs.
    static ENGINES: RefCell<Engines> = RefCell::new(Engines::default());
}

/// Loads this thread's engines for `cfg` now, so the first page does not wait for them
/// (a model takes ~150 ms to load). A failure is left for that first page to report.
pub fn warm_engines_on_this_thread(cfg: &OcrConfig) {
    ENGINES.with(|engines| {
        let mut engines = engines.borrow_mut();
        let _ = engines.text_engine(&cfg.languages);
        if cfg.orientation != OrientationMode::Off {
            let _ = engines.osd_engine();
        }
    });
}

/// Frees this thread's engines (Tesseract complains about leaks if they outlive `main`).
pub fn release_engines_on_this_thread() {
    ENGINES.with(|engines| *engines.borrow_mut() = Engines::default());
}

/// OCRs page `number` (1-based) with the current thread's engines (creating them on first
/// use).
pub fn ocr_page_on_this_thread(
    page: PageImage,
    number: u32,
    cfg: &OcrConfig,
    time_limit: Duration,
) -> Result<PageOcr, JobError> {
    ENGINES.with(|engines| ocr_page(&mut engines.borrow_mut(), page, number, cfg, time_limit))
}

/// OCRs page `number` (1-based): turns it upright if asked (see the module doc for when
/// orientation detection runs), then recognizes it, all within `time_limit` (else the page
/// fails with `ocr_timeout`). Word boxes and layouts come back in the source page's
/// coordinates, whatever scale preprocessing read it at.
pub fn ocr_page(
    engines: &mut Engines,
    page: PageImage,
    number: u32,
    cfg: &OcrConfig,
    time_limit: Duration,
) -> Result<PageOcr, JobError> {
    let started = Instant::now();
    let PageImage {
        pixels,
        dpi,
        deskew_degrees,
        scale,
        print_stands,
        ..
    } = page;
    let detect_first = match cfg.orientation {
        OrientationMode::Always => true,
        OrientationMode::Auto => print_stands == PrintStands::Turned,
        OrientationMode::Off => false,
    };
    // The resolution Tesseract is told: the page's own unless it was scaled by its print.
    let dpi_told = if scale == 1.0 { dpi } else { SCALED_PAGE_DPI };
    let mut rotation = 0;
    let mut orientation_checked = detect_first;
    if detect_first {
        rotation = detect_orientation(engines, &pixels, dpi_told, cfg, Reason::First)?;
    }
    let mut pixels = pixels.rotated(rotation);
    let read = |engines: &mut Engines, pixels: &PagePixels| {
        let left = time_limit.saturating_sub(started.elapsed());
        recognize(engines, pixels, dpi_told, number, cfg, left).map_err(|e| match e {
            tess::TessError::Timeout => JobError::OcrTimeout {
                page: number,
                limit_ms: time_limit.as_millis() as u64,
            },
            other => JobError::OcrFailed(other.to_string()),
        })
    };
    let mut reading = read(engines, &pixels)?;
    let vertical = reads_vertically(&reading.words);
    let poor_and_maybe_turned = reading.confidence < POOR_READING_CONFIDENCE
        && print_stands != PrintStands::Upright
        && !reading.words.is_empty();
    if cfg.orientation == OrientationMode::Auto
        && !detect_first
        && (vertical || (poor_and_maybe_turned && !seen_upright_now(&pixels, print_stands)))
    {
        orientation_checked = true;
        let turn = detect_orientation(engines, &pixels, dpi_told, cfg, Reason::PoorReading)?;
        if turn != 0 {
            let turned = pixels.clone().rotated(turn);
            let again = read(engines, &turned)?;
            // Vertical words are sideways print read right but laid out wrong: the turned
            // reading is the one to keep.
            if vertical || again.confidence > reading.confidence {
                (reading, pixels, rotation) = (again, turned, turn);
            }
        }
    }
    let raster = cfg
        .keep_page_image
        .then(|| PageRaster::compress(&pixels, dpi, scale));
    let preview =
        (cfg.preview_max_px > 0).then(|| preview::preview_png(&pixels, cfg.preview_max_px));
    let (width, height) = pixels.dimensions();
    let size = [width, height].map(|v| (v as f32 / scale).round() as u32);
    drop(pixels);
    let Reading {
        text,
        confidence,
        mut words,
        hocr,
        alto,
    } = reading;
    let (hocr, alto) = if scale == 1.0 {
        (hocr, alto)
    } else {
        for word in &mut words {
            word.bbox = word.bbox.map(|v| (v as f32 / scale).round() as u32);
        }
        let source_dpi = (dpi as f32 / scale).round() as u32;
        (
            hocr.map(|h| layout_scale::hocr_to_source(&h, scale, source_dpi)),
            alto.map(|a| layout_scale::alto_to_source(&a, scale)),
        )
    };
    Ok(PageOcr {
        text,
        confidence,
        words,
        rotation,
        orientation_checked,
        deskew_degrees,
        scale,
        size,
        millis: started.elapsed().as_millis() as u64,
        layout: PageLayout { hocr, alto, raster },
        preview,
    })
}

/// Whether most words of three or more characters have boxes taller than wide: print running
/// up or down the page that Tesseract's layout analysis read as vertical text. Such a page
/// reads right but lays out wrong (every box on its side), so it is turned upright too.
fn reads_vertically(words: &[WordRecord]) -> bool {
    let long = words.iter().filter(|w| w.text.chars().count() >= 3);
    let (mut count, mut vertical) = (0, 0);
    for word in long {
        count += 1;
        let [left, top, right, bottom] = word.bbox;
        if bottom.saturating_sub(top) > right.saturating_sub(left) {
            vertical += 1;
        }
    }
    count > 0 && 2 * vertical > count
}

/// Whether the print of a page the render stage could not judge stands upright as Leptonica
/// sees it at the size it was read (a poor reading of such a page is then taken as it is,
/// without orientation detection). A page already seen turned, or one the look cannot
/// judge, is not.
fn seen_upright_now(pixels: &PagePixels, print_stands: PrintStands) -> bool {
    print_stands == PrintStands::NotKnown
        && matches!(text_size::upright_at_full_size(pixels), Ok(Some(true)))
}

/// What one recognition of a page gave.
struct Reading {
    text: String,
    confidence: f32,
    words: Vec<WordRecord>,
    hocr: Option<String>,
    alto: Option<String>,
}

/// Why orientation detection runs on a page.
#[derive(Clone, Copy)]
enum Reason {
    /// Before recognition: the print looks turned, or the pipeline says `always`.
    First,
    /// After an upright reading with low confidence, or of vertical words.
    PoorReading,
}

/// Clockwise degrees that turn the page upright, as OSD sees it with enough confidence (0
/// otherwise).
fn detect_orientation(
    engines: &mut Engines,
    pixels: &PagePixels,
    dpi: u32,
    cfg: &OcrConfig,
    reason: Reason,
) -> Result<u32, JobError> {
    let osd = engines.osd_engine()?;
    osd.set_image(pixels, dpi)
        .map_err(|e| JobError::OcrFailed(e.to_string()))?;
    let rotation = osd
        .detect_orientation()
        .filter(|o| o.confidence >= cfg.min_orientation_confidence)
        .map_or(0, |o| o.rotate_clockwise);
    osd.clear();
    let outcome = match (reason, rotation) {
        (Reason::First, 0) => "first_kept",
        (Reason::First, _) => "first_turned",
        (Reason::PoorReading, 0) => "poor_reading_kept",
        (Reason::PoorReading, _) => "poor_reading_turned",
    };
    metrics::counter!(m::OCR_ORIENTATION_CHECKS, "outcome" => outcome).increment(1);
    Ok(rotation)
}

/// Recognizes `pixels` as page `number` within `time_limit`.
fn recognize(
    engines: &mut Engines,
    pixels: &PagePixels,
    dpi: u32,
    number: u32,
    cfg: &OcrConfig,
    time_limit: Duration,
) -> Result<Reading, tess::TessError> {
    let engine = engines
        .text_engine(&cfg.languages)
        .map_err(|_| tess::TessError::Init(cfg.languages.clone()))?;
    engine.set_page_segmentation_mode(cfg.page_segmentation_mode);
    engine.set_image(pixels, dpi)?;
    if let Err(e) = engine.recognize_within(time_limit) {
        engine.clear();
        return Err(e);
    }
    let index = number.saturating_sub(1);
    let (text, words) = engine
        .read_page()
        .unwrap_or_else(|| (engine.utf8_text(), parse_tsv_words(&engine.tsv_text())));
    let reading = Reading {
        text,
        words,
        confidence: engine.mean_confidence().max(0) as f32,
        hocr: cfg.keep_hocr.then(|| engine.hocr_text(index)),
        alto: cfg.keep_alto.then(|| engine.alto_text(index)),
    };
    engine.clear();
    Ok(reading)
}

/// Words from Tesseract's TSV: level 5 rows, `left top width height conf text`.
pub fn parse_tsv_words(tsv: &str) -> Vec<WordRecord> {
    tsv.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 12 || cols[0] != "5" {
                return None;
            }
            let num = |i: usize| cols[i].parse::<i64>().ok();
            let (left, top, width, height) = (num(6)?, num(7)?, num(8)?, num(9)?);
            let text = cols[11].trim();
            if text.is_empty() {
                return None;
            }
            Some(WordRecord {
                text: text.to_string(),
                confidence: cols[10].parse::<f32>().ok()?.max(0.0),
                bbox: [
                    left.max(0) as u32,
                    top.max(0) as u32,
                    (left + width).max(0) as u32,
                    (top + height).max(0) as u32,
                ],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_words_keep_boxes_and_confidences() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t640\t480\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t36\t92\t60\t24\t96.5\tThis\n\
                   5\t1\t1\t1\t1\t2\t100\t92\t20\t24\t91\tis\n";
        let words = parse_tsv_words(tsv);
        assert_eq!(words.len(), 2);
        assert_eq!(words[0].text, "This");
        assert_eq!(words[0].bbox, [36, 92, 96, 116]);
        assert!((words[1].confidence - 91.0).abs() < 1e-6);
    }
}
