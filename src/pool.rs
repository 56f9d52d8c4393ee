//! The one CPU pool: every render and OCR task of every pipeline runs here.
//!
//! Sized to the cores (or the pipeline's `pool.threads`), so CPU work is never oversubscribed:
//! Tesseract itself runs single-threaded (see `main.rs` for `OMP_THREAD_LIMIT`), and actor
//! handlers and tokio threads only await results. A panic in a task is caught and returned as
//! an error instead of tearing down the thread or the daemon.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::error::JobError;

/// A handle to the shared rayon pool; cheap to clone.
#[derive(Clone)]
pub struct CpuPool {
    pool: Arc<rayon::ThreadPool>,
}

impl CpuPool {
    /// Starts a pool with `threads` worker threads named `pagemill-cpu-N`.
    pub fn new(threads: usize) -> std::io::Result<CpuPool> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("pagemill-cpu-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(CpuPool {
            pool: Arc::new(pool),
        })
    }

    /// Runs `work` once on every pool thread, e.g. to free per-thread engines before exit.
    pub fn on_every_thread(&self, work: impl Fn() + Sync) {
        self.pool.broadcast(|_| work());
    }

    /// Starts `work` on every pool thread without waiting for it, e.g. to load per-thread
    /// engines while the first documents are still being read.
    pub fn spawn_on_every_thread(&self, work: impl Fn() + Send + Sync + 'static) {
        self.pool.spawn_broadcast(move |_| work());
    }

    /// Runs `work` on the pool and awaits its result. A panic becomes [`JobError::Internal`].
    pub async fn run<F, R>(&self, work: F) -> Result<R, JobError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(work)));
        });
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(JobError::Internal(format!(
                "a worker panicked: {}",
                panic_message(&panic)
            ))),
            Err(_) => Err(JobError::Internal("a worker task was dropped".into())),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_become_errors_and_the_pool_keeps_working() {
        let pool = CpuPool::new(1).unwrap();
        let err = pool.run(|| panic!("boom")).await.unwrap_err();
        assert_eq!(err.code(), "internal");
        assert!(err.to_string().contains("boom"));
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
    }
}
