//! Flow control and supervision, on the real pipeline with a held (or crashing) save stage.

use crate::common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::*;
use pagemill::model::result::JobResult;
use pagemill::pipeline::messages::JobRequest;
use pagemill::pipeline::progress::Progress;
use pagemill::pipeline::supervisor::{PipelineHandle, StartOptions};
use pagemill::runtime::pool::CpuPool;
use pagemill::stages::save::{FileWriter, ResultWriter};

/// A result writer that blocks every write until the gate opens.
struct GatedWriter {
    open: Mutex<bool>,
    changed: Condvar,
    inner: FileWriter,
}

impl GatedWriter {
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

/// Opens the gate when dropped: a test that fails while the gate is shut must not leave a
/// write blocked, since dropping the test's runtime waits for its blocking writes to return.
struct OpenedAtEnd(Arc<GatedWriter>);

impl Drop for OpenedAtEnd {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl ResultWriter for GatedWriter {
    fn write(&self, result: &JobResult) -> std::io::Result<PathBuf> {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
        drop(open);
        self.inner.write(result)
    }
}

/// Waits until `counter` reaches `target` (or a minute passes), then lets the pipeline run
/// on for a while so that any excess would show.
async fn wait_for(counter: &std::sync::atomic::AtomicU64, target: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while Progress::get(counter) < target && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_save_stage_bounds_pages_and_documents_exactly_by_the_config() {
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(
        out.path(),
        &[
            ("ingest_documents: 2", "ingest_documents: 3"),
            ("render_documents: 2", "render_documents: 2"),
            ("ocr_pages: 8", "ocr_pages: 3"),
            ("assemble_pages: 4", "assemble_pages: 2"),
            ("summarize_documents: 2", "summarize_documents: 2"),
            ("save_documents: 2", "save_documents: 1"),
        ],
    );
    let e = p.edges;
    let gate = Arc::new(GatedWriter {
        open: Mutex::new(false),
        changed: Condvar::new(),
        inner: FileWriter {
            directory: out.path().to_path_buf(),
            formats: Vec::new(),
        },
    });
    let _opened_at_end = OpenedAtEnd(gate.clone());
    let pool = CpuPool::new(2).unwrap();
    let (handle, mut finished) = PipelineHandle::start(
        p,
        pool,
        StartOptions {
            writer: Some(gate.clone()),
            jobs: None,
            store: None,
        },
    )
    .await
    .unwrap();
    let handle = Arc::new(handle);
    let jobs = 40;
    let feeder = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for i in 0..jobs {
                let request = JobRequest::new(
                    format!("job-{i:03}"),
                    "phototest.tif",
                    fixture("phototest.tif"),
                );
                handle.submit(request).await;
            }
        })
    };
    // One-page documents: every page edge and every document edge after OCR holds rendered
    // pages; render waits for OCR room with its document loaded, ingest holds one more.
    let progress = &handle.progress;
    let pages_in_flight = e.ocr_pages + e.assemble_pages + e.summarize_documents + e.save_documents;
    let documents_in_memory = pages_in_flight + e.render_documents + 1;
    wait_for(&progress.pages_rendered, pages_in_flight as u64).await;
    wait_for(&progress.documents_loaded, documents_in_memory as u64).await;
    assert_eq!(
        Progress::get(&progress.pages_rendered),
        pages_in_flight as u64,
        "rendered pages with save held"
    );
    assert_eq!(
        Progress::get(&progress.documents_loaded),
        documents_in_memory as u64,
        "documents read into memory with save held, of {jobs} submitted"
    );
    assert!(
        !feeder.is_finished(),
        "submission waits at the full ingest edge"
    );
    assert_eq!(Progress::get(&progress.jobs_done), 0);

    gate.release();
    for _ in 0..jobs {
        let event = tokio::time::timeout(Duration::from_secs(300), finished.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(event.error.is_none());
    }
    feeder.await.unwrap();
    assert_eq!(Progress::get(&progress.documents_loaded), jobs as u64);
}

/// Panics on its first write, then writes normally.
struct CrashOnceWriter {
    crashed: AtomicBool,
    writes: AtomicUsize,
    inner: FileWriter,
}

impl ResultWriter for CrashOnceWriter {
    fn write(&self, result: &JobResult) -> std::io::Result<PathBuf> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if !self.crashed.swap(true, Ordering::SeqCst) {
            panic!("simulated crash in the save stage");
        }
        self.inner.write(result)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_stage_is_restarted_and_the_pipeline_keeps_working() {
    let out = tempfile::tempdir().unwrap();
    let writer = Arc::new(CrashOnceWriter {
        crashed: AtomicBool::new(false),
        writes: AtomicUsize::new(0),
        inner: FileWriter {
            directory: out.path().to_path_buf(),
            formats: Vec::new(),
        },
    });
    let pool = CpuPool::new(2).unwrap();
    let (handle, mut finished) = PipelineHandle::start(
        pipeline(out.path(), &[]),
        pool,
        StartOptions {
            writer: Some(writer.clone()),
            jobs: None,
            store: None,
        },
    )
    .await
    .unwrap();
    let request =
        |i: usize| JobRequest::new(format!("job-{i}"), "tagged.pdf", fixture("tagged.pdf"));
    handle.submit(request(0)).await;
    // The job inside the crashed save actor is run again by the restarted stages.
    tokio::time::timeout(Duration::from_secs(60), async {
        while Progress::get(&handle.progress.restarts) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the supervisor restarts the crashed stage");
    // The restarted stages save it and the next jobs.
    handle.submit(request(1)).await;
    handle.submit(request(2)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(120), finished.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(event.error.is_none());
        assert!(event.result_path.unwrap().is_file());
        ids.push(event.id);
    }
    ids.sort();
    assert_eq!(ids, ["job-0", "job-1", "job-2"]);
    assert_eq!(Progress::get(&handle.progress.restarts), 1);
    // The write that crashed, then one per job.
    assert_eq!(writer.writes.load(Ordering::SeqCst), 4);
    handle.stop().await;
}
