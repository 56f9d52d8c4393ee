//! `/healthz` latency of the release daemon with the CPU pool idle, then with OCR saturating
//! every core, measured in the same run.
//!
//! Starts `target/release/pagemill serve` on a free port, times requests paced 2 ms apart over
//! one keep-alive connection, then submits scanned documents until every pool thread is busy and
//! times the same number of requests again while they are OCRed. Usage:
//! `cargo build --release && cargo bench --bench healthz`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUESTS: usize = 3000;
/// One request every 2 ms, like a busy health checker, so that the client itself leaves the
/// cores to the daemon.
const INTERVAL: Duration = Duration::from_millis(2);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(http: &reqwest::Client, url: &str) -> (f64, f64, f64) {
    let mut samples = Vec::with_capacity(REQUESTS);
    let mut tick = tokio::time::interval(INTERVAL);
    for _ in 0..REQUESTS {
        tick.tick().await;
        let started = Instant::now();
        let response = http.get(url).send().await.unwrap();
        assert!(response.status().is_success());
        response.bytes().await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        *samples.last().unwrap(),
    )
}

/// Seconds of CPU the daemon process has used, from /proc.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[tokio::main]
async fn main() {
    let corpus = std::env::var_os("PAGEMILL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    let document = corpus.join("scans-24p.pdf");
    if !document.is_file() {
        eprintln!(
            "*** SKIPPED: {} not found (set PAGEMILL_CORPUS) ***",
            document.display()
        );
        return;
    }
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/pagemill");
    assert!(exe.is_file(), "build it first: cargo build --release");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&exe)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("pagemill listening on ")
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    let healthz = format!("{base}/healthz");
    measure(&http, &healthz).await; // warm the connection and the daemon

    let idle = measure(&http, &healthz).await;

    let bytes = std::fs::read(&document).unwrap();
    for _ in 0..2 {
        let response = http
            .post(format!("{base}/v1/pipelines/default/jobs"))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_before = process_cpu_seconds(child.id());
    let started = Instant::now();
    let busy = measure(&http, &healthz).await;
    let cores_busy =
        (process_cpu_seconds(child.id()) - cpu_before) / started.elapsed().as_secs_f64();

    println!("/healthz over {REQUESTS} requests each, one every {INTERVAL:?}");
    println!(
        "pool idle:       p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        idle.0, idle.1, idle.2
    );
    println!(
        "OCR saturating:  p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (daemon used {cores_busy:.2} cores meanwhile)",
        busy.0, busy.1, busy.2
    );
    let _ = child.kill();
    let _ = child.wait();
}
