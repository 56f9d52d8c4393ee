//! Shared helpers for the integration tests: the corpus, text metrics, running a pipeline.
#![allow(dead_code)]

pub mod daemon;
pub mod fake_llm;
pub mod nats;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagemill::config::{Pipeline, parse_pipeline};
use pagemill::model::result::JobResult;
use pagemill::pipeline::messages::{JobFinished, JobRequest};
use pagemill::pipeline::supervisor::{PipelineHandle, StartOptions};
use pagemill::runtime::pool::CpuPool;
use pagemill::stages::save::ResultWriter;
use unicode_normalization::UnicodeNormalization;

/// The shared corpus: `PAGEMILL_CORPUS`, else `../shared/corpus` beside the repository.
/// Returns `None` and says so loudly when it is absent.
pub fn corpus(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PAGEMILL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.join("MANIFEST.md").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "\n*** SKIPPED {test}: corpus not found at {} (set PAGEMILL_CORPUS) ***\n",
            dir.display()
        );
        None
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[allow(unused_imports)]
pub use pagemill::eval::cer;

/// Reads a result file.
pub fn read_result(path: &Path) -> JobResult {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The test pipeline: the shipped default with results in `out` and each `(from, to)`
/// replacement applied to its YAML (each `from` must occur).
pub fn pipeline(out: &Path, replacements: &[(&str, &str)]) -> Pipeline {
    let mut yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.yaml"),
    )
    .unwrap()
    .replace(
        "directory: results",
        &format!("directory: {}", out.display()),
    );
    for (from, to) in replacements {
        assert!(yaml.contains(from), "default.yaml has no {from:?}");
        yaml = yaml.replace(from, to);
    }
    parse_pipeline(Path::new("test.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `files` through `pipeline` and returns one finished event per file, in input order.
pub async fn run_files(
    pipeline: Pipeline,
    files: &[PathBuf],
    writer: Option<Arc<dyn ResultWriter>>,
) -> Vec<JobFinished> {
    let pool = CpuPool::new(pipeline.pool.threads).unwrap();
    let (handle, mut finished) = PipelineHandle::start(
        pipeline,
        pool,
        StartOptions {
            writer,
            jobs: None,
            store: None,
        },
    )
    .await
    .unwrap();
    let handle = Arc::new(handle);
    let ids: Vec<String> = (0..files.len()).map(|i| format!("job-{i:04}")).collect();
    let feeder = {
        let handle = handle.clone();
        let files = files.to_vec();
        let ids = ids.clone();
        tokio::spawn(async move {
            for (path, id) in files.into_iter().zip(ids) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                handle.submit(JobRequest::new(id, name, path)).await;
            }
        })
    };
    let mut events = Vec::new();
    while events.len() < files.len() {
        let event = tokio::time::timeout(Duration::from_secs(900), finished.recv())
            .await
            .expect("jobs finish")
            .expect("pipeline running");
        events.push(event);
    }
    feeder.await.unwrap();
    events.sort_by_key(|e| ids.iter().position(|i| *i == e.id));
    events
}

/// Similarity of the character multisets of two texts (whitespace ignored, NFKC): 1.0 when
/// they hold the same characters, whatever their order.
pub fn char_bag_similarity(a: &str, b: &str) -> f64 {
    use std::collections::HashMap;
    fn bag(t: &str) -> HashMap<char, usize> {
        let mut m = HashMap::new();
        for c in t.nfkc().filter(|c| !c.is_whitespace()) {
            *m.entry(c).or_insert(0) += 1;
        }
        m
    }
    let (x, y) = (bag(a), bag(b));
    let common: usize = x
        .iter()
        .map(|(c, n)| (*n).min(*y.get(c).unwrap_or(&0)))
        .sum();
    let total: usize = x.values().sum::<usize>() + y.values().sum::<usize>();
    if total == 0 {
        1.0
    } else {
        2.0 * common as f64 / total as f64
    }
}

/// Peak resident memory (VmHWM) of process `pid` ("self" for this one), from /proc.
pub fn peak_rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Writes `pages` copies of phototest.tif (200 DPI) as an image-only PDF.
pub fn scanned_pdf(pages: u32, path: &Path) {
    use pagemill::model::page::{PagePixels, PageRaster};
    use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref};
    let gray = image::open(fixture("phototest.tif")).unwrap().to_luma8();
    let (w, h) = gray.dimensions();
    let raster = PageRaster::compress(&PagePixels::Gray(gray), 200, 1.0);
    let (width, height) = (w as f32 * 72.0 / 200.0, h as f32 * 72.0 / 200.0);
    let mut pdf = Pdf::new();
    let (catalog, tree) = (Ref::new(1), Ref::new(2));
    let page_ids: Vec<Ref> = (0..pages).map(|i| Ref::new(10 + 3 * i as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages as i32);
    for &page_id in &page_ids {
        let (image_id, content_id) = (Ref::new(page_id.get() + 1), Ref::new(page_id.get() + 2));
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, width, height))
            .parent(tree)
            .contents(content_id);
        page.resources().x_objects().pair(Name(b"Im"), image_id);
        page.finish();
        let mut image = pdf.image_xobject(image_id, &raster.zlib);
        image.filter(Filter::FlateDecode);
        image.width(w as i32);
        image.height(h as i32);
        image.color_space().device_gray();
        image.bits_per_component(8);
        image.finish();
        let mut content = Content::new();
        content.save_state();
        content.transform([width, 0.0, 0.0, height, 0.0, 0.0]);
        content.x_object(Name(b"Im"));
        content.restore_state();
        pdf.stream(content_id, &content.finish());
    }
    std::fs::write(path, pdf.finish()).unwrap();
}

/// The value of the metric `name` on the line whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} with {labels:?}"))
}

/// A free TCP port on the loopback interface (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How long a test waits for one thing (an HTTP answer, a process's first line, a process's
/// exit) before it fails, naming what it waited for: a hang fails its test instead of holding
/// the suite until the CI gives up on it.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// An HTTP client whose every request (its body included) fails after [`PATIENCE`].
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().unwrap()
}

/// A builder for [`http_client`]'s kind of client, for one with more settings.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(PATIENCE)
}

/// Waits for `child` to exit; kills it and fails, naming `what`, after [`PATIENCE`].
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the process had not exited after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first line `child` writes on its standard output (piped), which this takes; kills the
/// child and fails, naming `what`, if no line comes within [`PATIENCE`].
pub fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = sender.send(read);
    });
    match receiver.recv_timeout(PATIENCE) {
        Ok(read) => read.unwrap_or_else(|e| panic!("{what}: reading its first line: {e}")),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: no line on its standard output within {PATIENCE:?}");
        }
    }
}
