//! Throughput and CPU per page of `pagemill run` against the OCR-engine bound as it stood
//! before pagemill gave Tesseract less work per page: orientation detection plus recognition
//! of every page at its rendered resolution, measured in the same run.
//!
//! 1. Renders every page of the document once (not timed), as the default pipeline does but
//!    without scaling by print size: the pages at their native resolution.
//! 2. The bound: Tesseract detects each page's orientation, recognizes the page turned
//!    upright, and gives its text and words through its own outputs (`GetUTF8Text`,
//!    `GetTSVText`), on libgomp limited to one thread (`OMP_THREAD_LIMIT=1`, set by
//!    `.cargo/config.toml`; `build.rs` leaves the benches on libgomp): Tesseract as any client
//!    runs it. On a pool of N threads taking pages in document order from one queue, with
//!    nothing else running (engines warmed first). Wall and CPU seconds.
//! 3. `pagemill run --threads N` (release binary, built-in default pipeline) on the same
//!    document: wall time from process start to exit, CPU seconds of the process, and its
//!    peak RSS.
//!
//! 2 and 3 alternate for `PAGEMILL_BENCH_ROUNDS` rounds (default 3), so that noise from other
//! work on the machine hits both. Prints each round, then the medians: pages/s and CPU
//! seconds per page of each, and pagemill's ratios to the bound (pages/s: higher is better;
//! CPU per page: lower is better). Usage:
//! `cargo bench --bench throughput [-- [--threads N] [--ground-truthed] [DOCUMENT...]]`
//! (default: scans-24p.pdf on 2 threads; `--ground-truthed` adds the corpus's ground-truthed
//! documents that OCR reads; several documents are one `pagemill run` and one bound).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use std::cell::RefCell;

use pagemill::config::{OcrConfig, Pipeline};
use pagemill::model::document::open_document;
use pagemill::model::page::PageImage;
use pagemill::stages::ocr::tess::Tesseract;
use pagemill::stages::ocr::{ENGINE_SETTINGS, parse_tsv_words};
use pagemill::stages::render::{PageInput, prepare_page};

/// The corpus's ground-truthed documents that OCR reads (`--ground-truthed`).
const GROUND_TRUTHED: &[&str] = &[
    "phototest.tif",
    "phototest-rotated-R.png",
    "eurotext.tif",
    "unlv-8087_054.3B.tif",
    "linn.png",
    "kant-aufklaerung-1784-p17.tif",
    "linn-skew.pdf",
    "linn-rotated_skew.pdf",
    "linn-ccitt.pdf",
    "linn-jbig2.pdf",
    "linn-cardinal.pdf",
];

fn main() {
    let served = pagemill::runtime::served_to_tesseract();
    assert!(
        served.is_empty(),
        "this bench measures Tesseract on its own libraries, but {served:?} serve it here"
    );
    let corpus = std::env::var_os("PAGEMILL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    let mut threads = 2;
    let mut documents = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|t| t.parse().ok())
                    .expect("--threads N")
            }
            "--ground-truthed" => documents.extend(GROUND_TRUTHED.iter().map(|f| corpus.join(f))),
            a if a.starts_with("--") => {}
            document => documents.push(PathBuf::from(document)),
        }
    }
    if documents.is_empty() {
        documents.push(corpus.join("scans-24p.pdf"));
    }
    if let Some(missing) = documents.iter().find(|d| !d.is_file()) {
        eprintln!(
            "*** SKIPPED: {} not found (set PAGEMILL_CORPUS) ***",
            missing.display()
        );
        return;
    }
    // The bound's pipeline: today's default pages at their rendered resolution, OSD on each.
    let bound = pagemill::config::parse_pipeline(
        std::path::Path::new("bound.yaml"),
        "version: 1\npreprocess:\n  target_x_height_px: 0\nocr:\n  orientation: always\n  \
         skip_pages_without_text: false\n",
    )
    .expect("bound pipeline");

    // 1. Pre-render every page.
    let mut pages: Vec<PageImage> = Vec::new();
    for document in &documents {
        let doc = open_document(std::fs::read(document).unwrap(), &bound.limits).unwrap();
        pages.extend((0..doc.page_count).filter_map(
            |i| match prepare_page(&doc, i, &bound).unwrap() {
                PageInput::Image(image) => Some(image),
                PageInput::TextLayer { .. } | PageInput::Skipped(_) => None,
            },
        ));
    }
    let n = pages.len();
    if n == 0 {
        eprintln!("*** SKIPPED: no page to OCR ***");
        return;
    }
    let pipeline = bound;

    // 2 and 3, alternated over several rounds so that machine noise hits both alike.
    // `PAGEMILL_BENCH_BIN` measures another build (e.g. an older commit's) against the same
    // bound.
    let exe = std::env::var_os("PAGEMILL_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/pagemill")
        });
    assert!(exe.is_file(), "build it first: cargo build --release");
    let rounds: usize = std::env::var("PAGEMILL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let warm = pages[0].clone();
    pool.broadcast(|_| bound_page(&warm, &pipeline.ocr));
    let mut bound_runs = Vec::new();
    let mut pagemill_runs = Vec::new();
    for round in 1..=rounds {
        // The bound on `threads` threads, engines warm, pages taken in document order from
        // one queue.
        let bound = ocr_bound(&pool, &pages, &pipeline);

        // The real thing: `pagemill run` in a process of its own, built-in defaults.
        let out = tempfile::tempdir().unwrap();
        let cpu_before = cpu_seconds(libc::RUSAGE_CHILDREN);
        let started = Instant::now();
        let status = Command::new(&exe)
            .args(["run", "--threads", &threads.to_string(), "--out"])
            .arg(out.path())
            .args(&documents)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let results: Vec<pagemill::model::result::JobResult> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect();
        assert_eq!(results.len(), documents.len());
        let summed = |f: fn(&pagemill::model::result::Timings) -> u64| {
            results.iter().map(|r| f(&r.timings)).sum::<u64>() as f64 / 1e3
        };
        let run = (
            started.elapsed().as_secs_f64(),
            cpu_seconds(libc::RUSAGE_CHILDREN) - cpu_before,
        );
        println!(
            "round {round}: bound {:.1} s ({:.1} CPU-s), pagemill run {:.1} s ({:.1} CPU-s; \
             OCR {:.1} s, render {:.1} s summed)",
            bound.0,
            bound.1,
            run.0,
            run.1,
            summed(|t| t.ocr_ms),
            summed(|t| t.render_ms),
        );
        bound_runs.push(bound);
        pagemill_runs.push(run);
    }
    // SAFETY: getrusage only writes into the zeroed struct passed to it.
    let peak_rss_mib = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss as f64 / 1024.0
    };
    let medians = |runs: &[(f64, f64)]| {
        let mut wall: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.1).collect();
        (median(&mut wall), median(&mut cpu))
    };
    let (bound_secs, bound_cpu) = medians(&bound_runs);
    let (run_secs, run_cpu) = medians(&pagemill_runs);
    let pages_per_s = |secs: f64| n as f64 / secs;
    let cpu_per_page = |cpu: f64| cpu / n as f64;
    println!(
        "documents: {} ({n} pages rendered for OCR), {threads} threads, medians of {rounds} rounds",
        documents
            .iter()
            .map(|d| d.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| | pages/s | CPU s/page |");
    println!("|---|---|---|");
    println!(
        "| engine bound (OSD + recognition, native resolution) | {:.3} | {:.3} |",
        pages_per_s(bound_secs),
        cpu_per_page(bound_cpu)
    );
    println!(
        "| pagemill run (whole process) | {:.3} | {:.3} |",
        pages_per_s(run_secs),
        cpu_per_page(run_cpu)
    );
    println!(
        "| pagemill / bound | {:.3} | {:.3} |",
        bound_secs / run_secs,
        run_cpu / bound_cpu
    );
    println!("peak RSS of pagemill run: {peak_rss_mib:.0} MiB");
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// User plus system CPU seconds of this process or of its waited-for children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct passed to it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// OCRs the pre-rendered pages on `pool` as the engine bound, taking them in document order
/// from one FIFO queue; returns wall and CPU seconds.
fn ocr_bound(pool: &rayon::ThreadPool, pages: &[PageImage], pipeline: &Pipeline) -> (f64, f64) {
    let cpu_before = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    pool.scope_fifo(|scope| {
        for page in pages {
            scope.spawn_fifo(move |_| bound_page(page, &pipeline.ocr));
        }
    });
    (
        started.elapsed().as_secs_f64(),
        cpu_seconds(libc::RUSAGE_SELF) - cpu_before,
    )
}

thread_local! {
    /// This thread's orientation and recognition engines for the bound.
    static BOUND_ENGINES: RefCell<Option<(Tesseract, Tesseract)>> = const { RefCell::new(None) };
}

/// One page of the bound: Tesseract's orientation detection, the page turned as it says,
/// recognition, and the text, words and confidence read out through Tesseract's own outputs
/// (`GetUTF8Text`, `GetTSVText`, `MeanTextConf`), as any Tesseract client reads them and as the
/// bound did when it was set. Recognition uses pagemill's engine settings.
fn bound_page(page: &PageImage, cfg: &OcrConfig) {
    BOUND_ENGINES.with(|engines| {
        let mut engines = engines.borrow_mut();
        let (osd, text) = engines.get_or_insert_with(|| {
            let mut text = Tesseract::new(&cfg.languages).expect("language model");
            for (name, value) in ENGINE_SETTINGS {
                text.set_variable(name, value);
            }
            (Tesseract::new_osd().expect("OSD model"), text)
        });
        osd.set_image(&page.pixels, page.dpi).unwrap();
        let rotation = osd
            .detect_orientation()
            .filter(|o| o.confidence >= cfg.min_orientation_confidence)
            .map_or(0, |o| o.rotate_clockwise);
        osd.clear();
        let pixels = page.pixels.clone().rotated(rotation);
        text.set_page_segmentation_mode(cfg.page_segmentation_mode);
        text.set_image(&pixels, page.dpi).unwrap();
        text.recognize_within(std::time::Duration::from_secs(600))
            .unwrap();
        let words = parse_tsv_words(&text.tsv_text());
        std::hint::black_box((text.utf8_text(), words, text.mean_confidence()));
        text.clear();
    });
}
