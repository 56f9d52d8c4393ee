//! Throughput of `pagemill run` against the OCR-engine bound, measured in the same run.
//!
//! 1. Renders every page of the document once (not timed).
//! 2. OCR-only bound: the same engine OCRs those pre-rendered pages on a pool of N threads
//!    with nothing else running (engines warmed first).
//! 3. `pagemill run --threads N` (release binary) on the same document: wall time from
//!    process start to exit, and the peak RSS of the process.
//!
//! Prints pages/s of both, their ratio, and the peak RSS. Usage:
//! `cargo bench --bench throughput [-- DOCUMENT [THREADS]]` (default: scans-24p.pdf, 2).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use pagemill::config::Pipeline;
use pagemill::document::open_document;
use pagemill::stages::ocr::{PageImage, ocr_page_on_this_thread};
use pagemill::stages::render::{PageInput, prepare_page};
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let corpus = std::env::var_os("PAGEMILL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    let document = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| corpus.join("scans-24p.pdf"));
    let threads: usize = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(2);
    if !document.is_file() {
        eprintln!(
            "*** SKIPPED: {} not found (set PAGEMILL_CORPUS) ***",
            document.display()
        );
        return;
    }
    let pipeline = Pipeline::embedded_default();

    // 1. Pre-render every page.
    let doc = open_document(std::fs::read(&document).unwrap(), &pipeline.limits).unwrap();
    let pages: Vec<PageImage> = (0..doc.page_count)
        .filter_map(
            |i| match prepare_page(&doc, i, &pipeline.render, &pipeline.limits).unwrap() {
                PageInput::Image(image) => Some(image),
                PageInput::TextLayer { .. } => None,
            },
        )
        .collect();
    let n = pages.len();

    // 2. OCR-only bound on `threads` threads, engines warmed.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let warm = pages[0].clone();
    pool.broadcast(|_| {
        ocr_page_on_this_thread(warm.clone(), &pipeline.ocr).unwrap();
    });
    let started = Instant::now();
    pool.install(|| {
        pages.into_par_iter().with_max_len(1).for_each(|page| {
            ocr_page_on_this_thread(page, &pipeline.ocr).unwrap();
        })
    });
    let bound_secs = started.elapsed().as_secs_f64();
    drop(pool);

    // 3. The real thing: `pagemill run` in a process of its own.
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/pagemill");
    assert!(exe.is_file(), "build it first: cargo build --release");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let status = Command::new(&exe)
        .args(["run", "--threads", &threads.to_string(), "--out"])
        .arg(out.path())
        .arg(&document)
        .status()
        .unwrap();
    let run_secs = started.elapsed().as_secs_f64();
    assert!(status.success());
    // SAFETY: getrusage only writes into the zeroed struct passed to it.
    let peak_rss_mib = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss as f64 / 1024.0
    };

    let bound = n as f64 / bound_secs;
    let run = n as f64 / run_secs;
    println!(
        "document: {} ({n} OCR pages), {threads} threads",
        document.display()
    );
    println!("OCR-only bound:  {bound:.3} pages/s ({bound_secs:.1} s)");
    println!("pagemill run:    {run:.3} pages/s ({run_secs:.1} s, whole process)");
    println!("ratio:           {:.3}", run / bound);
    println!("peak RSS:        {peak_rss_mib:.0} MiB");
}
