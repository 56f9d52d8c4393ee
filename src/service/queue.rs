//! Where accepted jobs go when this process does not run them itself: a queue that every node
//! of a cluster takes work from.
//!
//! Without a queue, intake hands each accepted job straight to its pipeline. With one, intake
//! first keeps the document where every node can read it ([`JobQueue::put_document`]), records
//! the job in the job store, and then publishes it ([`JobQueue::publish`]); the submission is
//! answered only once the queue has it. Publishing is idempotent by job id, so publishing a job
//! again (a retried submission with its `Idempotency-Key`) never queues it twice.

use std::path::Path;

use async_trait::async_trait;

use crate::service::journal::JournalJob;

/// Why the queue did not take a job.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds as many jobs or bytes as it may: the cluster's admission is full.
    #[error("the cluster's job queue is full ({0}); retry later")]
    Full(String, u64),
    /// The queue cannot be reached now.
    #[error("the cluster cannot be reached: {0}")]
    Unavailable(String, u64),
}

impl QueueError {
    /// When to try again, in seconds.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            QueueError::Full(_, secs) | QueueError::Unavailable(_, secs) => *secs,
        }
    }
}

/// A queue of jobs shared by the nodes of a cluster.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Keeps the document of job `job_id` (a file on this machine) where every node can read it.
    async fn put_document(&self, job_id: &str, path: &Path) -> Result<(), QueueError>;

    /// Forgets the document of a job that was not queued after all; best effort.
    async fn remove_document(&self, job_id: &str);

    /// Queues a recorded job for whichever node has room; returns once the queue has it
    /// durably.
    async fn publish(&self, job: &JournalJob) -> Result<(), QueueError>;
}
