//! Throughput of `pagemill run` against the OCR-engine bound, measured in the same run.
//!
//! 1. Renders every page of the document once (not timed).
//! 2. OCR-only bounds: the same engine OCRs those pre-rendered pages on a pool of N threads
//!    with nothing else running (engines warmed first), once taking pages in document order
//!    from one queue, once in rayon's split-and-steal order (which happens to balance the
//!    last pages differently).
//! 3. `pagemill run --threads N` (release binary) on the same document: wall time from
//!    process start to exit, and the peak RSS of the process.
//!
//! 2 and 3 alternate for `PAGEMILL_BENCH_ROUNDS` rounds (default 3), so that noise from other
//! work on the machine hits both. Prints each round, the medians in pages/s, their ratio, and
//! the peak RSS. Usage:
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
        .filter_map(|i| match prepare_page(&doc, i, &pipeline).unwrap() {
            PageInput::Image(image) => Some(image),
            PageInput::TextLayer { .. } => None,
        })
        .collect();
    let n = pages.len();

    // 2 and 3, alternated over several rounds so that machine noise hits both alike.
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/pagemill");
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
    pool.broadcast(|_| {
        ocr_page_on_this_thread(
            warm.clone(),
            1,
            &pipeline.ocr,
            pipeline.limits.max_ocr_time_per_page,
        )
        .unwrap();
    });
    let mut in_order_runs = Vec::new();
    let mut split_runs = Vec::new();
    let mut pagemill_runs = Vec::new();
    for round in 1..=rounds {
        // OCR-only bounds on `threads` threads, engines warm: pages taken in document
        // order from one queue (as pagemill takes them), and rayon's split-and-steal order.
        let in_order = ocr_bound(&pool, &pages, &pipeline, true);
        let split = ocr_bound(&pool, &pages, &pipeline, false);

        // The real thing: `pagemill run` in a process of its own.
        let out = tempfile::tempdir().unwrap();
        let cpu_before = cpu_seconds(libc::RUSAGE_CHILDREN);
        let started = Instant::now();
        let status = Command::new(&exe)
            .args(["run", "--threads", &threads.to_string(), "--out"])
            .arg(out.path())
            .arg(&document)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let result_file = std::fs::read_dir(out.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let result: pagemill::result::JobResult =
            serde_json::from_slice(&std::fs::read(result_file.path()).unwrap()).unwrap();
        let run = (
            started.elapsed().as_secs_f64(),
            cpu_seconds(libc::RUSAGE_CHILDREN) - cpu_before,
        );
        println!(
            "round {round}: bound in order {:.1} s ({:.1} CPU-s), bound split {:.1} s ({:.1} CPU-s), \
             pagemill run {:.1} s ({:.1} CPU-s; OCR {:.1} s, render {:.1} s summed)",
            in_order.0,
            in_order.1,
            split.0,
            split.1,
            run.0,
            run.1,
            result.timings.ocr_ms as f64 / 1e3,
            result.timings.render_ms as f64 / 1e3,
        );
        in_order_runs.push(in_order.0);
        split_runs.push(split.0);
        pagemill_runs.push(run.0);
    }
    // SAFETY: getrusage only writes into the zeroed struct passed to it.
    let peak_rss_mib = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss as f64 / 1024.0
    };
    let in_order_secs = median(&mut in_order_runs);
    let split_secs = median(&mut split_runs);
    let run_secs = median(&mut pagemill_runs);

    let rate = |secs: f64| n as f64 / secs;
    println!(
        "document: {} ({n} OCR pages), {threads} threads, medians of {rounds} rounds",
        document.display()
    );
    println!(
        "OCR-only bound, document order: {:.3} pages/s ({in_order_secs:.1} s)",
        rate(in_order_secs)
    );
    println!(
        "OCR-only bound, rayon split:    {:.3} pages/s ({split_secs:.1} s)",
        rate(split_secs)
    );
    println!(
        "pagemill run (whole process):   {:.3} pages/s ({run_secs:.1} s)",
        rate(run_secs)
    );
    println!(
        "ratio to the bounds:            {:.3} (document order), {:.3} (rayon split)",
        in_order_secs / run_secs,
        split_secs / run_secs
    );
    println!("peak RSS:        {peak_rss_mib:.0} MiB");
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

/// OCRs the pre-rendered pages on `pool`, either taking them in document order from one FIFO
/// queue or letting rayon split the list and steal; returns wall and CPU seconds.
fn ocr_bound(
    pool: &rayon::ThreadPool,
    pages: &[PageImage],
    pipeline: &Pipeline,
    in_order: bool,
) -> (f64, f64) {
    let cpu_before = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    let ocr = |page: &PageImage| {
        ocr_page_on_this_thread(
            page.clone(),
            1,
            &pipeline.ocr,
            pipeline.limits.max_ocr_time_per_page,
        )
        .unwrap();
    };
    if in_order {
        pool.scope_fifo(|scope| {
            for page in pages {
                scope.spawn_fifo(move |_| ocr(page));
            }
        });
    } else {
        pool.install(|| pages.par_iter().with_max_len(1).for_each(ocr));
    }
    (
        started.elapsed().as_secs_f64(),
        cpu_seconds(libc::RUSAGE_SELF) - cpu_before,
    )
}
