//! The job store: where accepted jobs, their checkpoints and their deliveries are kept, behind
//! one narrow interface.
//!
//! Intake records jobs in it, the stages checkpoint pages and summaries and record deliveries
//! in it, and lookups read finished jobs from it. The daemon's store is the SQLite journal
//! ([`JournalHandle`]); a cluster store implements the same trait, and no stage changes for it.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::service::jobs::{JobState, JobStatus, SinkDelivery};
use crate::service::journal::{
    Accepted, JournalError, JournalHandle, JournalJob, ListFilter, Unfinished,
};

/// A store call that failed; the store says why in words, and whether the store could not be
/// reached at all (a cluster store whose servers are down: try again later) rather than failed.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct StoreError {
    reason: Box<dyn std::error::Error + Send + Sync>,
    unavailable: bool,
}

impl StoreError {
    /// The store failed the call.
    pub fn new(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError {
            reason: reason.into(),
            unavailable: false,
        }
    }

    /// The store could not be reached; the call may succeed later.
    pub fn unavailable(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError {
            reason: reason.into(),
            unavailable: true,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> StoreError {
        StoreError::new(e)
    }
}

/// What pagemill keeps about jobs, whatever keeps it.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records an accepted job durably, or names the earlier job holding its idempotency key.
    async fn accept(&self, job: JournalJob) -> Result<Accepted, StoreError>;

    /// Marks a job finished: `state` is `done`, `failed` or `cancelled`.
    async fn finish(
        &self,
        id: &str,
        state: &'static str,
        error_code: Option<String>,
        result_path: Option<String>,
    ) -> Result<(), StoreError>;

    /// Forgets a job recorded by [`JobStore::accept`] that could not be queued after all, with
    /// its idempotency key, so that the submission can be tried again. Only stores whose jobs
    /// go through a [`crate::service::queue::JobQueue`] are asked.
    async fn withdraw(&self, id: &str) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// A finished job's result record (JSON), wherever the store keeps it; by default the
    /// file its record names.
    async fn result(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(path) = self.get(id).await?.and_then(|job| job.result_path) else {
            return Ok(None);
        };
        Ok(tokio::fs::read(path).await.ok())
    }

    /// Jobs accepted and not finished, to run again at start.
    async fn unfinished(&self) -> Result<Unfinished, StoreError>;

    /// Forgets up to `batch` jobs that finished before `cutoff_ms`, with everything kept
    /// about them; returns them. Unfinished jobs are never touched.
    async fn prune_finished(
        &self,
        cutoff_ms: i64,
        batch: u32,
    ) -> Result<Vec<JournalJob>, StoreError>;

    /// A job as recorded, finished or not.
    async fn get(&self, id: &str) -> Result<Option<JournalJob>, StoreError>;

    /// Recorded jobs matching `filter`, oldest first.
    async fn list(&self, filter: ListFilter) -> Result<Vec<JournalJob>, StoreError>;

    /// Keeps a finished page's record (JSON), so a job run again does not read it again.
    async fn checkpoint_page(
        &self,
        job_id: &str,
        number: u32,
        record: String,
    ) -> Result<(), StoreError>;

    /// The page records kept for a job, by page number.
    async fn checkpoints(&self, job_id: &str) -> Result<HashMap<u32, String>, StoreError>;

    /// Keeps a job's summary record (JSON), so a job run again does not pay for it again.
    async fn checkpoint_summary(&self, job_id: &str, record: String) -> Result<(), StoreError>;

    /// The summary record kept for a job.
    async fn summary_checkpoint(&self, job_id: &str) -> Result<Option<String>, StoreError>;

    /// Records how a job's delivery to `sink` ended, and a dead letter if it became one.
    async fn record_delivery(
        &self,
        job_id: &str,
        sink: &'static str,
        delivery: SinkDelivery,
    ) -> Result<(), StoreError>;

    /// How each of a job's deliveries ended, by sink.
    async fn deliveries(&self, job_id: &str) -> Result<BTreeMap<String, SinkDelivery>, StoreError>;

    /// A job's status as the store knows it, with its deliveries. A store shared by several
    /// processes adds the progress its running process shares.
    async fn status(&self, id: &str) -> Result<Option<JobStatus>, StoreError> {
        let Some(job) = self.get(id).await? else {
            return Ok(None);
        };
        let mut status = job.status();
        status.sinks = self.deliveries(id).await?;
        Ok(Some(status))
    }

    /// A file written beside a finished job's result (`<id>.txt`, `<id>.previews/<page>.png`),
    /// when the store keeps them itself; by default it does not (they are on this machine).
    async fn file(&self, id: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = (id, name);
        Ok(None)
    }

    /// Follows a job run by another process: its status now and at every change, ending with
    /// its final one. `None` when the store does not know the job or cannot follow jobs (on one
    /// machine every running job is in this process).
    async fn follow(&self, id: &str) -> Result<Option<BoxStream<'static, JobStatus>>, StoreError> {
        let _ = id;
        Ok(None)
    }

    /// Asks that a job run by another process, or waiting for one, be cancelled; returns its
    /// state when asked. `None` when the store does not know the job or cannot.
    async fn cancel(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        let _ = id;
        Ok(None)
    }
}

#[async_trait]
impl JobStore for JournalHandle {
    async fn accept(&self, job: JournalJob) -> Result<Accepted, StoreError> {
        Ok(JournalHandle::accept(self, job).await?)
    }

    async fn finish(
        &self,
        id: &str,
        state: &'static str,
        error_code: Option<String>,
        result_path: Option<String>,
    ) -> Result<(), StoreError> {
        Ok(JournalHandle::finish(self, id, state, error_code, result_path).await?)
    }

    async fn unfinished(&self) -> Result<Unfinished, StoreError> {
        Ok(JournalHandle::unfinished(self).await?)
    }

    async fn prune_finished(
        &self,
        cutoff_ms: i64,
        batch: u32,
    ) -> Result<Vec<JournalJob>, StoreError> {
        Ok(JournalHandle::prune_finished(self, cutoff_ms, batch).await?)
    }

    async fn get(&self, id: &str) -> Result<Option<JournalJob>, StoreError> {
        Ok(JournalHandle::get(self, id).await?)
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<JournalJob>, StoreError> {
        Ok(JournalHandle::list(self, filter).await?)
    }

    async fn checkpoint_page(
        &self,
        job_id: &str,
        number: u32,
        record: String,
    ) -> Result<(), StoreError> {
        Ok(JournalHandle::checkpoint_page(self, job_id, number, record).await?)
    }

    async fn checkpoints(&self, job_id: &str) -> Result<HashMap<u32, String>, StoreError> {
        Ok(JournalHandle::checkpoints(self, job_id).await?)
    }

    async fn checkpoint_summary(&self, job_id: &str, record: String) -> Result<(), StoreError> {
        Ok(JournalHandle::checkpoint_summary(self, job_id, record).await?)
    }

    async fn summary_checkpoint(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        Ok(JournalHandle::summary_checkpoint(self, job_id).await?)
    }

    async fn record_delivery(
        &self,
        job_id: &str,
        sink: &'static str,
        delivery: SinkDelivery,
    ) -> Result<(), StoreError> {
        Ok(JournalHandle::record_delivery(self, job_id, sink, delivery).await?)
    }

    async fn deliveries(&self, job_id: &str) -> Result<BTreeMap<String, SinkDelivery>, StoreError> {
        Ok(JournalHandle::deliveries(self, job_id).await?)
    }
}
