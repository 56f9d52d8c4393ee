//! The jobs a pagemill process knows about: state, per-stage progress, timings and errors.
//!
//! Stages report into the registry as a job moves; the HTTP API reads it for status, follows
//! a job's changes through a watch channel (server-sent events), and cancels through it.
//! Finished jobs are kept up to [`MAX_FINISHED_JOBS`], oldest dropped first, so the registry
//! stays bounded however long the daemon runs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::error::ErrorRecord;

/// Finished jobs remembered for status queries.
pub const MAX_FINISHED_JOBS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Pages of a job in each stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageProgress {
    /// Known once ingest has opened the document.
    pub total: Option<u32>,
    pub rendered: u32,
    /// Pages finished: OCRed, taken from a text layer, or failed.
    pub ocred: u32,
}

/// Where a job's time went, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTimings {
    /// From submission until ingest started on it.
    pub queued_ms: Option<u64>,
    /// From submission until its result was saved.
    pub total_ms: Option<u64>,
}

/// Where a result stands with one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// An attempt failed; another follows after a backoff.
    Retrying,
    Delivered,
    /// Every retry failed: recorded in the journal's dead letters.
    DeadLetter,
}

/// A result's delivery to one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDelivery {
    pub state: DeliveryState,
    pub attempts: u32,
    /// The last failed attempt's error.
    pub error: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub pipeline: String,
    pub name: String,
    pub state: JobState,
    /// Submission time, RFC 3339.
    pub submitted_at: String,
    /// Size of the submitted document, when known at submission.
    pub bytes: u64,
    /// The tenant (API key name) that submitted it; absent when the daemon serves without
    /// keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub pages: PageProgress,
    pub timings: JobTimings,
    pub error: Option<ErrorRecord>,
    /// Deliveries to the pipeline's sinks beyond the results directory, by sink name.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkDelivery>,
}

struct Entry {
    status: watch::Sender<JobStatus>,
    cancel: Arc<AtomicBool>,
    submitted: Instant,
    result_path: Option<PathBuf>,
}

#[derive(Default)]
struct Registry {
    jobs: HashMap<String, Entry>,
    finished: VecDeque<String>,
}

/// Shared by the stages of every pipeline and by the HTTP API.
#[derive(Default)]
pub struct JobRegistry {
    inner: Mutex<Registry>,
    /// Woken at every status change: a job's progress or end frees admission room.
    changed: tokio::sync::Notify,
}

/// What a pipeline's unfinished jobs hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub jobs: u64,
    pub pages: u64,
    pub bytes: u64,
}

impl JobRegistry {
    /// Records a new queued job; returns its cancel flag.
    pub fn register(
        &self,
        id: &str,
        pipeline: &str,
        name: &str,
        bytes: u64,
        tenant: Option<&str>,
    ) -> Arc<AtomicBool> {
        let cancel = Arc::new(AtomicBool::new(false));
        let status = JobStatus {
            id: id.to_string(),
            pipeline: pipeline.to_string(),
            name: name.to_string(),
            state: JobState::Queued,
            submitted_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            bytes,
            tenant: tenant.map(str::to_string),
            pages: PageProgress::default(),
            timings: JobTimings::default(),
            error: None,
            sinks: BTreeMap::new(),
        };
        let (tx, _) = watch::channel(status);
        let mut reg = self.inner.lock().expect("job registry poisoned");
        reg.jobs.insert(
            id.to_string(),
            Entry {
                status: tx,
                cancel: cancel.clone(),
                submitted: Instant::now(),
                result_path: None,
            },
        );
        cancel
    }

    /// Wakes at the next change of any job's status.
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// Changes a job's status (no-op for unknown jobs) and notifies its watchers.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut JobStatus)) {
        self.apply(id, change);
        self.changed.notify_waiters();
    }

    fn apply(&self, id: &str, change: impl FnOnce(&mut JobStatus)) {
        let mut reg = self.inner.lock().expect("job registry poisoned");
        let Some(entry) = reg.jobs.get_mut(id) else {
            return;
        };
        let mut became_final = false;
        entry.status.send_modify(|s| {
            let was_final = s.state.is_final();
            change(s);
            became_final = !was_final && s.state.is_final();
        });
        if became_final {
            let elapsed = entry.submitted.elapsed().as_millis() as u64;
            entry
                .status
                .send_modify(|s| s.timings.total_ms = Some(elapsed));
            reg.finished.push_back(id.to_string());
            while reg.finished.len() > MAX_FINISHED_JOBS {
                if let Some(old) = reg.finished.pop_front() {
                    reg.jobs.remove(&old);
                }
            }
        }
    }

    /// Marks a job running and records how long it queued.
    pub fn started(&self, id: &str) {
        let queued = self
            .inner
            .lock()
            .expect("job registry poisoned")
            .jobs
            .get(id)
            .map(|e| e.submitted.elapsed().as_millis() as u64);
        self.update(id, |s| {
            s.state = JobState::Running;
            s.timings.queued_ms = queued;
        });
    }

    /// Records a finished job's outcome and where its result is.
    pub fn finished(&self, id: &str, error: Option<ErrorRecord>, result_path: Option<PathBuf>) {
        if let Some(entry) = self
            .inner
            .lock()
            .expect("job registry poisoned")
            .jobs
            .get_mut(id)
        {
            entry.result_path = result_path;
        }
        self.update(id, |s| {
            s.state = match &error {
                None => JobState::Done,
                Some(e) if e.is_cancellation() => JobState::Cancelled,
                Some(_) => JobState::Failed,
            };
            s.error = error;
        });
    }

    /// A pipeline's unfinished jobs (those of `tenant` only, if given), their pages and
    /// bytes: what admission control counts. A job whose page count is not known yet counts
    /// one page.
    pub fn usage(&self, pipeline: &str, tenant: Option<&str>) -> Usage {
        let reg = self.inner.lock().expect("job registry poisoned");
        reg.jobs
            .values()
            .map(|e| e.status.borrow())
            .filter(|s| {
                s.pipeline == pipeline
                    && !s.state.is_final()
                    && tenant.is_none_or(|t| s.tenant.as_deref() == Some(t))
            })
            .fold(Usage::default(), |usage, s| {
                let left = s
                    .pages
                    .total
                    .unwrap_or(1)
                    .saturating_sub(s.pages.ocred)
                    .max(1);
                Usage {
                    jobs: usage.jobs + 1,
                    pages: usage.pages + left as u64,
                    bytes: usage.bytes + s.bytes,
                }
            })
    }

    pub fn get(&self, id: &str) -> Option<JobStatus> {
        let reg = self.inner.lock().expect("job registry poisoned");
        reg.jobs.get(id).map(|e| e.status.borrow().clone())
    }

    pub fn result_path(&self, id: &str) -> Option<PathBuf> {
        let reg = self.inner.lock().expect("job registry poisoned");
        reg.jobs.get(id).and_then(|e| e.result_path.clone())
    }

    /// A receiver that sees every change of the job's status.
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<JobStatus>> {
        let reg = self.inner.lock().expect("job registry poisoned");
        reg.jobs.get(id).map(|e| e.status.subscribe())
    }

    /// Asks a job to stop; pages not yet rendered or recognized are skipped. Returns the
    /// job's state at the time, or `None` for an unknown job.
    pub fn cancel(&self, id: &str) -> Option<JobState> {
        let reg = self.inner.lock().expect("job registry poisoned");
        let entry = reg.jobs.get(id)?;
        let state = entry.status.borrow().state;
        if !state.is_final() {
            entry.cancel.store(true, Ordering::SeqCst);
        }
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_moves_through_its_states_and_watchers_see_it() {
        let jobs = JobRegistry::default();
        let cancel = jobs.register("a", "default", "doc.pdf", 10, None);
        assert_eq!(
            jobs.usage("default", None),
            Usage {
                jobs: 1,
                pages: 1,
                bytes: 10
            }
        );
        let mut rx = jobs.subscribe("a").unwrap();
        jobs.started("a");
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().state, JobState::Running);
        jobs.update("a", |s| s.pages.total = Some(3));
        assert_eq!(jobs.cancel("a"), Some(JobState::Running));
        assert!(cancel.load(Ordering::SeqCst));
        jobs.finished(
            "a",
            Some(ErrorRecord {
                code: "cancelled".into(),
                message: "cancelled".into(),
            }),
            None,
        );
        assert_eq!(jobs.usage("default", None), Usage::default());
        let status = jobs.get("a").unwrap();
        assert_eq!(status.state, JobState::Cancelled);
        assert!(status.timings.total_ms.is_some());
        assert_eq!(jobs.cancel("missing"), None);
    }
}
