//! Live counters of one pipeline, read by the batch progress bar and by tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counts of what a pipeline has done since it started.
#[derive(Debug, Default)]
pub struct Progress {
    pub jobs_submitted: AtomicU64,
    pub jobs_done: AtomicU64,
    pub jobs_failed: AtomicU64,
    /// Pages of opened documents.
    pub pages_total: AtomicU64,
    /// Pages rendered or decoded into images (each holds page pixels until OCR is done).
    pub pages_rendered: AtomicU64,
    /// Pages that finished (OCRed, taken from a text layer, or failed).
    pub pages_finished: AtomicU64,
    /// Documents read into memory by ingest.
    pub documents_loaded: AtomicU64,
    /// Stage restarts after a crash.
    pub restarts: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
