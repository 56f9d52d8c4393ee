//! Tesseract settings and working scales, measured one at a time on the corpus: CPU seconds
//! per page and CER, so that a setting is kept only if it costs no character.
//!
//! Every page of the given documents is rendered and preprocessed once, as the pipeline given
//! with `--pipeline` does it (default: the built-in one with text scaling off, i.e. pages at
//! their rendered resolution), then OCRed once per variant on a pool of `--threads` threads
//! (default 2), each page by every variant in turn on one thread. A page's CPU time is its
//! thread's CPU time, so pages running side by side do not count each other. A variant is
//! `NAME:SETTING,SETTING...`, each setting one of
//!
//! - `osd=1`: Tesseract's orientation detection first, the page turned as it says (the
//!   engine bound of `benches/throughput.rs` does this);
//! - `psm=N`: page segmentation mode;
//! - `xheight=N`: scale the page as the render stage does with `target_x_height_px: N`
//!   (`preprocess::scale_factor`: pages whose print is within 0.8-1.25x of N are left alone);
//! - `force_xheight=N`: scale every page whose print can be measured to x-height N;
//! - `scale=F`: scale every page by F;
//! - `init.NAME=VALUE`: a Tesseract parameter set while the model loads (`load_system_dawg`);
//! - `NAME=VALUE`: any other Tesseract parameter.
//!
//! With no `--variant`, the built-in list runs. Prints, per variant, CPU seconds per page over
//! all pages and over the ground-truthed ones, and CER per ground-truthed file and overall
//! (errors summed over files), as a Markdown table; `--sizes` prints each page's measured print
//! and stops. Usage:
//! `cargo bench --bench ocr_settings -- [--threads N] [--pipeline FILE] [--variant V]... [FILE...]`
//! (default files: the corpus's ground-truthed documents that need OCR, and scans-24p.pdf).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pagemill::config::{Pipeline, PreprocessConfig};
use pagemill::eval::char_errors;
use pagemill::model::document::open_document;
use pagemill::model::page::PageImage;
use pagemill::stages::ocr::tess::Tesseract;
use pagemill::stages::render::lept::Pix;
use pagemill::stages::render::{PageInput, prepare_page, preprocess, text_size};
use rayon::prelude::*;

/// The variants measured when none is given: today's engine bound, then recognition alone
/// and each setting on its own.
const DEFAULT_VARIANTS: &[&str] = &[
    "bound:osd=1",
    "recognition:",
    "no_invert:tessedit_do_invert=0",
    "no_noise_removal:enable_noise_removal=0",
    "no_tables:textord_tabfind_find_tables=0",
    "no_dictionaries:init.load_system_dawg=0,init.load_freq_dawg=0",
    "no_matrix:lstm_use_matrix=0",
    "psm6:psm=6",
    "force_xheight16:force_xheight=16",
    "force_xheight24:force_xheight=24",
    "force_xheight28:force_xheight=28",
    "xheight16:xheight=16",
    "xheight20:xheight=20",
    "xheight24:xheight=24",
];

/// Ground-truthed documents OCR reads (born-digital ones take their text layer), with their
/// languages, and scans-24p.pdf for CPU only.
const DEFAULT_FILES: &[(&str, &str)] = &[
    ("phototest.tif", "eng"),
    ("phototest-rotated-R.png", "eng"),
    ("eurotext.tif", "eng"),
    ("unlv-8087_054.3B.tif", "eng"),
    ("linn.png", "eng"),
    ("kant-aufklaerung-1784-p17.tif", "deu"),
    ("linn-skew.pdf", "eng"),
    ("linn-rotated_skew.pdf", "eng"),
    ("linn-ccitt.pdf", "eng"),
    ("linn-jbig2.pdf", "eng"),
    ("linn-cardinal.pdf", "eng"),
    ("scans-24p.pdf", "eng"),
];

#[derive(Debug, Clone, Default)]
struct Variant {
    name: String,
    osd: bool,
    psm: u32,
    x_height: Option<u32>,
    force_x_height: Option<u32>,
    scale: Option<f32>,
    init: Vec<(String, String)>,
    runtime: Vec<(String, String)>,
}

impl Variant {
    fn parse(text: &str) -> Variant {
        let (name, settings) = text.split_once(':').unwrap_or((text, ""));
        let mut v = Variant {
            name: name.to_string(),
            psm: 3,
            ..Variant::default()
        };
        for setting in settings.split(',').filter(|s| !s.is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .unwrap_or_else(|| panic!("{setting}: expected NAME=VALUE"));
            match key {
                "osd" => v.osd = value == "1",
                "psm" => v.psm = value.parse().expect("psm"),
                "xheight" => v.x_height = Some(value.parse().expect("xheight")),
                "force_xheight" => v.force_x_height = Some(value.parse().expect("force_xheight")),
                "scale" => v.scale = Some(value.parse().expect("scale")),
                _ => match key.strip_prefix("init.") {
                    Some(init) => v.init.push((init.into(), value.into())),
                    None => v.runtime.push((key.into(), value.into())),
                },
            }
        }
        v
    }
}

/// One page ready for OCR, from one document.
struct Page {
    file: usize,
    languages: &'static str,
    image: PageImage,
}

fn main() {
    let served = pagemill::runtime::served_to_tesseract();
    assert!(
        served.is_empty(),
        "this bench measures Tesseract on its own libraries, but {served:?} serve it here"
    );
    assert_eq!(
        std::env::var("OMP_THREAD_LIMIT").as_deref(),
        Ok("1"),
        "run through cargo bench (or with OMP_THREAD_LIMIT=1): Tesseract must be single-threaded"
    );
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut threads = 2;
    let mut pipeline_file = None;
    let mut variants = Vec::new();
    let mut files = Vec::new();
    let mut sizes_only = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().unwrap().parse().unwrap(),
            "--pipeline" => pipeline_file = args.next().map(PathBuf::from),
            "--variant" => variants.push(Variant::parse(&args.next().unwrap())),
            "--sizes" => sizes_only = true,
            _ => files.push(PathBuf::from(arg)),
        }
    }
    if variants.is_empty() {
        variants = DEFAULT_VARIANTS.iter().map(|v| Variant::parse(v)).collect();
    }
    let corpus = std::env::var_os("PAGEMILL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    let files: Vec<(PathBuf, &'static str)> = if files.is_empty() {
        if !corpus.is_dir() {
            eprintln!(
                "*** SKIPPED: corpus {} not found (set PAGEMILL_CORPUS) ***",
                corpus.display()
            );
            return;
        }
        DEFAULT_FILES
            .iter()
            .map(|(f, l)| (corpus.join(f), *l))
            .collect()
    } else {
        files.into_iter().map(|f| (f, "eng")).collect()
    };
    let pipeline = match pipeline_file {
        Some(path) => pagemill::config::load_pipeline(&path).expect("pipeline"),
        None => pagemill::config::parse_pipeline(
            Path::new("bench.yaml"),
            "version: 1\npreprocess:\n  target_x_height_px: 0\nocr:\n  orientation: off\n",
        )
        .expect("pipeline"),
    };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let pages = render_pages(&pool, &files, &pipeline);
    let truth: Vec<Option<String>> = files
        .iter()
        .map(|(f, _)| std::fs::read_to_string(format!("{}.gt.txt", f.display())).ok())
        .collect();
    eprintln!("{} pages from {} files", pages.len(), files.len());
    for page in &pages {
        let size = text_size::measure(&page.image.pixels, true).unwrap();
        let (w, h) = page.image.pixels.dimensions();
        eprintln!(
            "{} {w}x{h} at {} dpi: x-height {} px, {} letters{}, upright {}",
            files[page.file].0.file_name().unwrap().to_string_lossy(),
            page.image.dpi,
            size.x_height,
            size.letters,
            if size.sideways { ", sideways" } else { "" },
            match size.upright {
                Some(true) => "yes",
                Some(false) => "no",
                None => "not known",
            }
        );
    }

    if sizes_only {
        return;
    }
    println!(
        "| variant | CPU s/page (all) | CPU s/page (ground truth) | overall CER | CER per file |"
    );
    println!("|---|---|---|---|---|");
    // Every page is read by every variant in turn on one thread, the variants' order turning
    // from page to page: a machine whose speed drifts during the run (other work on the
    // host) slows all variants alike instead of whichever ran at that time.
    let readings: Vec<Vec<(usize, bool, String, f64)>> = pool.install(|| {
        pages
            .par_iter()
            .enumerate()
            .with_max_len(1)
            .map(|(n, page)| {
                let has_truth = truth[page.file].is_some();
                let mut readings: Vec<Option<(usize, bool, String, f64)>> =
                    vec![None; variants.len()];
                for k in 0..variants.len() {
                    let v = (n + k) % variants.len();
                    let started = thread_cpu_seconds();
                    let text = ocr(page, &pipeline, &variants[v]);
                    readings[v] =
                        Some((page.file, has_truth, text, thread_cpu_seconds() - started));
                }
                readings
                    .into_iter()
                    .map(|r| r.expect("every variant read the page"))
                    .collect()
            })
            .collect()
    });
    for (v, variant) in variants.iter().enumerate() {
        let outcomes: Vec<&(usize, bool, String, f64)> =
            readings.iter().map(|page| &page[v]).collect();
        let all_cpu: f64 = outcomes.iter().map(|o| o.3).sum::<f64>() / outcomes.len() as f64;
        let truth_pages: Vec<&&(usize, bool, String, f64)> =
            outcomes.iter().filter(|o| o.1).collect();
        let truth_cpu =
            truth_pages.iter().map(|o| o.3).sum::<f64>() / truth_pages.len().max(1) as f64;
        let mut per_file = Vec::new();
        let (mut errors, mut length) = (0, 0);
        for (i, reference) in truth.iter().enumerate() {
            let Some(reference) = reference else { continue };
            let text: Vec<&str> = outcomes
                .iter()
                .filter(|o| o.0 == i)
                .map(|o| o.2.as_str())
                .collect();
            let (e, l) = char_errors(&text.join("\n"), reference);
            errors += e;
            length += l;
            per_file.push(format!(
                "{} {:.2}",
                files[i].0.file_name().unwrap().to_string_lossy(),
                100.0 * e as f64 / l.max(1) as f64
            ));
        }
        println!(
            "| {} | {all_cpu:.3} | {truth_cpu:.3} | {:.2} % | {} |",
            variant.name,
            100.0 * errors as f64 / length.max(1) as f64,
            per_file.join(", ")
        );
    }
}

/// Renders and preprocesses every page of `files` with `pipeline`, in parallel.
fn render_pages(
    pool: &rayon::ThreadPool,
    files: &[(PathBuf, &'static str)],
    pipeline: &Pipeline,
) -> Vec<Page> {
    let documents: Vec<_> = files
        .iter()
        .map(|(f, _)| open_document(std::fs::read(f).unwrap(), &pipeline.limits).unwrap())
        .collect();
    let work: Vec<(usize, u32)> = documents
        .iter()
        .enumerate()
        .flat_map(|(i, d)| (0..d.page_count).map(move |p| (i, p)))
        .collect();
    let pages = Mutex::new(Vec::new());
    pool.install(|| {
        work.par_iter().for_each(|&(file, index)| {
            if let PageInput::Image(image) =
                prepare_page(&documents[file], index, pipeline).unwrap()
            {
                pages.lock().unwrap().push((
                    (file, index),
                    Page {
                        file,
                        languages: files[file].1,
                        image,
                    },
                ));
            }
        })
    });
    let mut pages = pages.into_inner().unwrap();
    pages.sort_by_key(|(key, _)| *key);
    pages.into_iter().map(|(_, page)| page).collect()
}

thread_local! {
    /// This thread's engines, by language and load-time settings.
    static ENGINES: std::cell::RefCell<HashMap<String, Tesseract>> = Default::default();
}

/// OCRs one page as `variant` says and returns its text.
fn ocr(page: &Page, pipeline: &Pipeline, variant: &Variant) -> String {
    let mut pixels = page.image.pixels.clone();
    let mut dpi = page.image.dpi;
    let factor = if let Some(f) = variant.scale {
        Some(f)
    } else if let Some(target) = variant.force_x_height {
        let size = text_size::measure(&pixels, false).unwrap();
        (size.letters >= preprocess::MIN_LETTERS_TO_SCALE && size.x_height > 0)
            .then(|| target as f32 / size.x_height as f32)
    } else if let Some(target) = variant.x_height {
        let size = text_size::measure(&pixels, false).unwrap();
        let cfg = PreprocessConfig {
            target_x_height_px: target,
            ..PreprocessConfig::none()
        };
        preprocess::scale_factor(
            &cfg,
            dpi,
            &size,
            pixels.dimensions(),
            pipeline.limits.max_page_pixels,
        )
    } else {
        None
    };
    if let Some(f) = factor.filter(|f| (f - 1.0).abs() > 0.01) {
        pixels = Pix::from_pixels(&pixels)
            .unwrap()
            .scale(f)
            .unwrap()
            .to_pixels()
            .unwrap();
        dpi = (dpi as f32 * f).round() as u32;
    }
    ENGINES.with(|engines| {
        let mut engines = engines.borrow_mut();
        if variant.osd {
            let osd = engines
                .entry("osd".into())
                .or_insert_with(|| Tesseract::new_osd().unwrap());
            osd.set_image(&pixels, dpi).unwrap();
            let rotation = osd
                .detect_orientation()
                .filter(|o| o.confidence >= pipeline.ocr.min_orientation_confidence)
                .map_or(0, |o| o.rotate_clockwise);
            osd.clear();
            pixels = pixels.rotated(rotation);
        }
        let key = format!("{}{:?}", page.languages, variant.init);
        let engine = engines.entry(key).or_insert_with(|| {
            let init: Vec<(&str, &str)> = variant
                .init
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Tesseract::with_init_variables(page.languages, &init).unwrap()
        });
        for (name, value) in &variant.runtime {
            assert!(engine.set_variable(name, value), "unknown parameter {name}");
        }
        engine.set_page_segmentation_mode(variant.psm);
        engine.set_image(&pixels, dpi).unwrap();
        engine
            .recognize_within(std::time::Duration::from_secs(600))
            .unwrap();
        let text = engine.utf8_text();
        engine.clear();
        // Back to the defaults for the next variant on this thread.
        for (name, _) in &variant.runtime {
            let default = DEFAULTS
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no default recorded for {name}"));
            engine.set_variable(name, default.1);
        }
        text
    })
}

/// Tesseract's defaults of the runtime parameters the variants change.
const DEFAULTS: &[(&str, &str)] = &[
    ("tessedit_do_invert", "1"),
    ("enable_noise_removal", "1"),
    ("textord_tabfind_find_tables", "1"),
    ("lstm_use_matrix", "1"),
    ("paragraph_text_based", "1"),
    ("textord_tabfind_vertical_text", "1"),
    ("textord_all_prop", "0"),
    ("textord_disable_pitch_test", "0"),
    ("thresholding_method", "0"),
];

fn thread_cpu_seconds() -> f64 {
    // SAFETY: clock_gettime only writes into the zeroed struct passed to it.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
