//! Leptonica or a Rust image crate for page preprocessing: which reads better, and at what
//! cost?
//!
//! pagemill's preprocessing (`src/stages/render/preprocess.rs`) runs on Leptonica, the
//! library Tesseract is built on. This compares its two cleanup steps for faded and unevenly
//! lit pages, local contrast normalization (`pixContrastNorm`, `preprocess.normalize_contrast`)
//! and Sauvola binarization (`preprocess.binarize: sauvola`), with what the `imageproc` crate
//! offers for the same job: a percentile contrast stretch, its mean-based adaptive threshold,
//! and Sauvola's threshold built from its integral images with Leptonica's window and factor.
//!
//! Every variant OCRs the same decoded page with the default pipeline's Tesseract settings.
//! Quality is dictionary words found (Debian's wamerican list) and, where the corpus has
//! ground truth, CER; cost is the median wall time of the preprocessing step alone (for
//! Leptonica including the copy into and out of its image type, as pagemill pays it).
//! Run with `cargo bench --bench preprocess_libs`; see benches/README.md.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{GrayImage, Luma};
use imageproc::contrast::{adaptive_threshold, stretch_contrast};
use imageproc::integral_image::{integral_image, integral_squared_image, sum_image_pixels};
use imageproc::stats::percentile;
use pagemill::config::{Binarize, PreprocessConfig};
use pagemill::model::page::{PageImage, PagePixels};
use pagemill::stages::ocr::{Engines, ocr_page};
use pagemill::stages::render::preprocess::preprocess;
use pagemill::stages::render::{PageInput, prepare_page};

/// Pages compared: two faded or low-contrast scans and one clean page with ground truth.
const PAGES: &[&str] = &["lept-lighttext.jpg", "lept-w91frag.jpg", "linn.png"];
/// Timed runs of each preprocessing step; the median is reported.
const RUNS: usize = 5;
/// Sauvola's window half-size and factor, as pagemill calls Leptonica.
const SAUVOLA_HALF_WINDOW: u32 = 25;
const SAUVOLA_K: f64 = 0.35;
/// imageproc's adaptive threshold: same window; a pixel this much darker than its
/// neighbourhood's mean is ink.
const ADAPTIVE_DELTA: i32 = 10;

type Step = Box<dyn Fn(&GrayImage, u32) -> GrayImage>;

fn leptonica(cfg: PreprocessConfig) -> Step {
    Box::new(move |page, dpi| {
        let text = pagemill::stages::render::text_size::TextSize::NONE;
        let (out, _) = preprocess(PagePixels::Gray(page.clone()), dpi, &text, &cfg, u64::MAX)
            .expect("Leptonica preprocessing");
        out.into_gray()
    })
}

/// Linear stretch of the 1st to the 99th percentile of gray levels onto 0..=255.
fn imageproc_stretch(page: &GrayImage, _dpi: u32) -> GrayImage {
    let (low, high) = (percentile(page, 1), percentile(page, 99));
    if low >= high {
        return page.clone();
    }
    stretch_contrast(page, low, high, 0, 255)
}

fn imageproc_adaptive(page: &GrayImage, _dpi: u32) -> GrayImage {
    adaptive_threshold(page, SAUVOLA_HALF_WINDOW, ADAPTIVE_DELTA)
}

/// Sauvola's threshold, mean * (1 + k (std / 128 - 1)) over a (2r+1)² window, from
/// imageproc's integral images.
fn imageproc_sauvola(page: &GrayImage, _dpi: u32) -> GrayImage {
    let sum = integral_image::<_, u64>(page);
    let squares = integral_squared_image::<_, u64>(page);
    let (w, h) = page.dimensions();
    let r = SAUVOLA_HALF_WINDOW;
    GrayImage::from_fn(w, h, |x, y| {
        let (x0, y0) = (x.saturating_sub(r), y.saturating_sub(r));
        let (x1, y1) = ((x + r).min(w - 1), (y + r).min(h - 1));
        let n = ((x1 - x0 + 1) * (y1 - y0 + 1)) as f64;
        let mean = sum_image_pixels(&sum, x0, y0, x1, y1)[0] as f64 / n;
        let variance = sum_image_pixels(&squares, x0, y0, x1, y1)[0] as f64 / n - mean * mean;
        let threshold = mean * (1.0 + SAUVOLA_K * (variance.max(0.0).sqrt() / 128.0 - 1.0));
        Luma([if (page.get_pixel(x, y)[0] as f64) < threshold {
            0
        } else {
            255
        }])
    })
}

fn dictionary() -> HashSet<String> {
    std::fs::read_to_string("/usr/share/dict/words")
        .expect("/usr/share/dict/words (Debian wamerican)")
        .lines()
        .map(|w| w.to_lowercase())
        .collect()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let corpus = std::env::var_os("PAGEMILL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if !corpus.join(PAGES[0]).is_file() {
        eprintln!(
            "*** SKIPPED: {} not found (set PAGEMILL_CORPUS) ***",
            corpus.display()
        );
        return;
    }
    let yaml_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.yaml");
    let mut pipeline =
        pagemill::config::parse_pipeline(&yaml_path, &std::fs::read_to_string(&yaml_path).unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
    // Pages are decoded as pagemill decodes them, with no cleanup: each variant adds its own.
    pipeline.preprocess = PreprocessConfig::none();
    let words = dictionary();
    let variants: Vec<(&str, Step)> = vec![
        ("none", Box::new(|p: &GrayImage, _| p.clone())),
        (
            "Leptonica contrast normalization",
            leptonica(PreprocessConfig {
                normalize_contrast: true,
                ..PreprocessConfig::none()
            }),
        ),
        ("imageproc contrast stretch", Box::new(imageproc_stretch)),
        (
            "Leptonica Sauvola",
            leptonica(PreprocessConfig {
                binarize: Binarize::Sauvola,
                ..PreprocessConfig::none()
            }),
        ),
        ("imageproc Sauvola", Box::new(imageproc_sauvola)),
        ("imageproc adaptive threshold", Box::new(imageproc_adaptive)),
    ];
    let mut engines = Engines::default();
    println!(
        "| page | preprocessing | dictionary words | CER | step ms (median of {RUNS}) |\n|---|---|---|---|---|"
    );
    for name in PAGES {
        let bytes = std::fs::read(corpus.join(name)).unwrap();
        let doc = pagemill::model::document::open_document(bytes, &pipeline.limits).unwrap();
        let Ok(PageInput::Image(decoded)) = prepare_page(&doc, 0, &pipeline) else {
            panic!("{name}: no page image");
        };
        let dpi = decoded.dpi;
        let gray = decoded.pixels.into_gray();
        let truth = std::fs::read_to_string(corpus.join(format!("{name}.gt.txt"))).ok();
        for (variant, step) in &variants {
            let mut times = Vec::new();
            let mut out = None;
            for _ in 0..RUNS {
                let started = Instant::now();
                out = Some(step(&gray, dpi));
                times.push(started.elapsed());
            }
            let page = PageImage::new(out.expect("RUNS > 0"), dpi);
            let ocr = ocr_page(
                &mut engines,
                page,
                1,
                &pipeline.ocr,
                Duration::from_secs(300),
            )
            .expect("OCR");
            let cer = truth.as_ref().map_or("–".to_string(), |t| {
                format!("{:.2}%", 100.0 * pagemill::eval::cer(&ocr.text, t))
            });
            println!(
                "| {name} | {variant} | {} | {cer} | {:.1} |",
                pagemill::eval::dictionary_words(&ocr.text, &words),
                median(times).as_secs_f64() * 1000.0
            );
        }
    }
}
