//! The cluster's job queue: documents to the Object Store bucket, jobs published to the
//! WorkQueue stream with `Nats-Msg-Id` = job id (so a job published twice within the
//! duplicate window is queued once), answered only after the stream's acknowledgement.
//!
//! A full stream (its limits on messages and bytes, discard new) is [`QueueError::Full`];
//! NATS unreachable is [`QueueError::Unavailable`].

use std::path::Path;
use std::sync::Arc;

use async_nats::jetstream;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError, UNREACHABLE_RETRY_AFTER_SECS, layout};
use crate::service::journal::JournalJob;
use crate::service::queue::{JobQueue, QueueError};

/// When a submission refused by a full queue should be tried again, in seconds.
pub const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 5;

/// The message a queued job is: enough to find its record; for a range of a split job,
/// which range.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueuedJob {
    pub id: String,
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<super::split::RangeTask>,
}

/// Queues `job` (on the ranges stream if it is a range of a split job) once however often it
/// is published within the duplicate window (`message_id`, e.g. the job id); returns once the
/// stream has it durably.
pub(crate) async fn publish(
    cluster: &Cluster,
    job: &QueuedJob,
    message_id: &str,
) -> Result<(), QueueError> {
    cluster.reachable().map_err(unavailable)?;
    let payload = serde_json::to_vec(job).expect("a queued job serializes");
    let publish = jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .message_id(message_id);
    let subject = match job.range {
        Some(_) => layout::ranges_subject(&job.pipeline),
        None => layout::jobs_subject(&job.pipeline),
    };
    let ack = cluster
        .js
        .send_publish(subject, publish)
        .await
        .map_err(unavailable)?;
    match ack.await {
        Ok(_) => Ok(()),
        Err(e) if is_full(&e) => Err(QueueError::Full(
            stream_error_text(&e),
            QUEUE_FULL_RETRY_AFTER_SECS,
        )),
        Err(e) => Err(unavailable(ClusterError::jetstream(
            format!("cannot queue job {}", job.id),
            e,
        ))),
    }
}

/// The name of a job's document in the Object Store bucket.
pub fn document_object(job_id: &str) -> String {
    format!("documents/{job_id}")
}

/// The cluster's queue, as intake sees it.
pub struct NatsQueue {
    cluster: Arc<Cluster>,
}

impl NatsQueue {
    pub fn new(cluster: Arc<Cluster>) -> NatsQueue {
        NatsQueue { cluster }
    }
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string(), UNREACHABLE_RETRY_AFTER_SECS)
}

#[async_trait]
impl JobQueue for NatsQueue {
    async fn put_document(&self, job_id: &str, path: &Path) -> Result<(), QueueError> {
        self.cluster.reachable().map_err(unavailable)?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| unavailable(format!("cannot read the upload: {e}")))?;
        self.cluster
            .objects
            .put(document_object(job_id).as_str(), &mut file)
            .await
            .map_err(|e| unavailable(format!("cannot store the document: {e}")))?;
        Ok(())
    }

    async fn remove_document(&self, job_id: &str) {
        if let Err(e) = self.cluster.objects.delete(document_object(job_id)).await {
            tracing::warn!(job_id, error = %e, "cannot remove the document of a job not queued");
        }
    }

    async fn publish(&self, job: &JournalJob) -> Result<(), QueueError> {
        let message = QueuedJob {
            id: job.id.clone(),
            pipeline: job.pipeline.clone(),
            range: None,
        };
        publish(&self.cluster, &message, &job.id).await
    }
}

/// Whether the stream refused the message for its limits (discard new): nats-server answers
/// `maximum messages exceeded` or `maximum bytes exceeded` (error code 10077).
fn is_full(e: &jetstream::context::PublishError) -> bool {
    use std::error::Error;
    e.source()
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|j| {
            j.error_code() == jetstream::ErrorCode::STREAM_STORE_FAILED
                && j.to_string().contains("maximum")
        })
}

fn stream_error_text(e: &jetstream::context::PublishError) -> String {
    use std::error::Error;
    e.source()
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string())
}
