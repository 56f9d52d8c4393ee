//! The one CPU pool: every render and OCR task of every pipeline runs here.
//!
//! Sized to the cores (or the pipeline's `pool.threads`), so page recognitions never
//! oversubscribe them: Tesseract itself runs single-threaded (see `runtime::openmp`), and actor
//! handlers and tokio threads only await results. One more thread takes only the short tasks
//! (see `Lanes`), which run beside the recognitions for tens to hundreds of milliseconds. A
//! panic in a task is caught and returned as an error instead of tearing down the thread or
//! the daemon.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::model::error::JobError;

/// A handle to the shared rayon pool; cheap to clone.
#[derive(Clone)]
pub struct CpuPool {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
    counters: Arc<Counters>,
    lanes: Arc<Mutex<Lanes>>,
    /// Wakes the short-lane thread when a short task arrives.
    short_arrived: Arc<Condvar>,
}

/// A task waiting for a pool thread.
type Task = Box<dyn FnOnce() + Send>;

/// Tasks waiting for a pool thread: short ones that get a newly arrived document going
/// (opening it, rendering a page) before the long ones (recognizing a page), so that a small
/// job does not queue behind the pages of a big one. Every task submitted also spawns one
/// rayon job that runs whichever waiting task comes first, so each task runs exactly once.
///
/// Short tasks are also taken by one thread of their own, `pagemill-short`, which runs
/// nothing else: a newly arrived document is opened and rendered at once, without waiting for
/// a pool thread to finish the page it is recognizing (the pool does not preempt). That
/// thread is busy only while a short task runs (tens to hundreds of milliseconds), so the
/// cores stay the pool's for recognition nearly all the time.
#[derive(Default)]
struct Lanes {
    short: VecDeque<Task>,
    long: VecDeque<Task>,
}

/// Which lane a task waits in (see [`Lanes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Opening a document or rendering a page: tens to hundreds of milliseconds.
    Short,
    /// Recognizing a page or summarizing a document: up to seconds.
    Long,
}

/// What the pool has done, for metrics.
#[derive(Default)]
struct Counters {
    queued: AtomicUsize,
    busy_nanos: AtomicU64,
}

/// A snapshot of the pool's load.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub threads: usize,
    /// Tasks submitted and not finished.
    pub queued: usize,
    /// Seconds threads spent running tasks since the pool started.
    pub busy_seconds: f64,
}

impl CpuPool {
    /// Starts a pool with `threads` worker threads named `pagemill-cpu-N`.
    pub fn new(threads: usize) -> std::io::Result<CpuPool> {
        Self::build(threads, false)
    }

    /// A pool whose threads run at a lower scheduling priority than the rest of the process,
    /// for the daemon: its HTTP edge then answers promptly while OCR saturates every core.
    /// A batch run has no such edge and uses [`CpuPool::new`].
    pub fn below_edge_priority(threads: usize) -> std::io::Result<CpuPool> {
        Self::build(threads, true)
    }

    fn build(threads: usize, lowered: bool) -> std::io::Result<CpuPool> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("pagemill-cpu-{i}"))
            .start_handler(move |_| {
                if lowered {
                    crate::runtime::sched::lower_this_thread_priority();
                }
            })
            .build()
            .map_err(std::io::Error::other)?;
        let lanes: Arc<Mutex<Lanes>> = Arc::default();
        let short_arrived = Arc::new(Condvar::new());
        {
            let (lanes, short_arrived) = (Arc::downgrade(&lanes), short_arrived.clone());
            std::thread::Builder::new()
                .name("pagemill-short".into())
                .spawn(move || {
                    if lowered {
                        crate::runtime::sched::lower_this_thread_priority();
                    }
                    run_short_tasks(lanes, short_arrived)
                })?;
        }
        Ok(CpuPool {
            pool: Arc::new(pool),
            threads: threads.max(1),
            counters: Arc::default(),
            lanes,
            short_arrived,
        })
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            threads: self.threads,
            queued: self.counters.queued.load(Ordering::Relaxed),
            busy_seconds: self.counters.busy_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
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

    /// Runs `work` on the pool in the long lane and awaits its result. A panic becomes
    /// [`JobError::Internal`].
    pub async fn run<F, R>(&self, work: F) -> Result<R, JobError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.run_in(Lane::Long, work).await
    }

    /// Runs `work` on the pool in `lane` and awaits its result. A panic becomes
    /// [`JobError::Internal`].
    pub async fn run_in<F, R>(&self, lane: Lane, work: F) -> Result<R, JobError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let counters = self.counters.clone();
        counters.queued.fetch_add(1, Ordering::Relaxed);
        let task: Task = Box::new(move || {
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(work));
            counters
                .busy_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            counters.queued.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(outcome);
        });
        {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            match lane {
                Lane::Short => {
                    lanes.short.push_back(task);
                    self.short_arrived.notify_one();
                }
                Lane::Long => lanes.long.push_back(task),
            }
        }
        let lanes = self.lanes.clone();
        self.pool.spawn(move || {
            let next = {
                let mut lanes = lanes.lock().unwrap_or_else(|e| e.into_inner());
                lanes.short.pop_front().or_else(|| lanes.long.pop_front())
            };
            if let Some(task) = next {
                task();
            }
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

/// The short-lane thread: runs short tasks as they arrive, until the pool is gone (checked
/// every second while idle).
fn run_short_tasks(lanes: std::sync::Weak<Mutex<Lanes>>, arrived: Arc<Condvar>) {
    loop {
        let Some(lanes) = lanes.upgrade() else {
            return;
        };
        let task = {
            let mut waiting = lanes.lock().unwrap_or_else(|e| e.into_inner());
            if waiting.short.is_empty() {
                waiting = arrived
                    .wait_timeout(waiting, std::time::Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            waiting.short.pop_front()
        };
        drop(lanes);
        if let Some(task) = task {
            task();
        }
    }
}

/// The message a caught panic carried.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
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

    #[tokio::test]
    async fn a_short_task_runs_while_every_pool_thread_is_busy() {
        let pool = CpuPool::new(1).unwrap();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let mut busy = Box::pin(pool.run(move || {
            started.send(()).unwrap();
            hold.recv().unwrap()
        }));
        assert!(futures_util::poll!(busy.as_mut()).is_pending());
        running.recv().unwrap();
        let short = pool.run_in(Lane::Short, || {
            std::thread::current().name().map(String::from)
        });
        let ran_on = tokio::time::timeout(std::time::Duration::from_secs(10), short)
            .await
            .expect("the short task did not wait for the busy pool thread")
            .unwrap();
        assert_eq!(ran_on.as_deref(), Some("pagemill-short"));
        release.send(()).unwrap();
        busy.await.unwrap();
    }

    #[tokio::test]
    async fn a_short_task_overtakes_the_long_ones_waiting() {
        let pool = CpuPool::new(1).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Occupy the one pool thread, then the short-lane thread, each until released, so
        // that the short task below waits for the pool's thread with the long ones.
        let (pool_started, pool_running) = std::sync::mpsc::channel::<()>();
        let (pool_release, pool_hold) = std::sync::mpsc::channel::<()>();
        let mut pool_busy = Box::pin(pool.run(move || {
            pool_started.send(()).unwrap();
            pool_hold.recv().unwrap()
        }));
        assert!(futures_util::poll!(pool_busy.as_mut()).is_pending());
        pool_running.recv().unwrap();
        let (short_started, short_running) = std::sync::mpsc::channel::<()>();
        let (short_release, short_hold) = std::sync::mpsc::channel::<()>();
        let mut short_busy = Box::pin(pool.run_in(Lane::Short, move || {
            short_started.send(()).unwrap();
            short_hold.recv().unwrap()
        }));
        assert!(futures_util::poll!(short_busy.as_mut()).is_pending());
        short_running.recv().unwrap();
        // Queue two long tasks, then a short one: each waits in its lane once polled.
        let mut waiting = Vec::new();
        for (lane, name) in [
            (Lane::Long, "long 1"),
            (Lane::Long, "long 2"),
            (Lane::Short, "short"),
        ] {
            let order = order.clone();
            let mut task = Box::pin(pool.run_in(lane, move || order.lock().unwrap().push(name)));
            assert!(futures_util::poll!(task.as_mut()).is_pending());
            waiting.push(task);
        }
        pool_release.send(()).unwrap();
        pool_busy.await.unwrap();
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["short", "long 1", "long 2"]);
        short_release.send(()).unwrap();
        short_busy.await.unwrap();
    }
}
