//! The cluster's job store: job records in the KV bucket, readable from every node.
//!
//! Keys: `job.<id>` holds a job's record ([`JobRecord`]: the journal's fields, and the lease of
//! the node running it); `idem.<sha256 of tenant and key>` holds the job an `Idempotency-Key`
//! belongs to. Both are created with create-if-absent, so two nodes given the same key at once
//! agree on one job. Records change by compare-and-set on their revision.
//!
//! Page and summary checkpoints and sink deliveries stay in this node's own journal for now
//! (the `local` store): a job that resumes on another node runs its pages again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_nats::jetstream::{kv, object_store};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{Cluster, ClusterError};
use crate::service::jobs::SinkDelivery;
use crate::service::journal::{self, Accepted, JournalJob, ListFilter, Unfinished};
use crate::service::store::{JobStore, StoreError};

/// Attempts at a compare-and-set update before giving up.
const UPDATE_ATTEMPTS: usize = 8;

/// A job's record in the KV bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    #[serde(flatten)]
    pub job: JournalJob,
    /// The node running the job, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A node's hold on a job it runs: renewed by its heartbeat, so that a redelivered job whose
/// lease is fresh is left to its node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    /// Milliseconds since the Unix epoch of the latest heartbeat.
    pub heartbeat_ms: i64,
}

/// Which job an idempotency key belongs to, and the hash of its document.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    id: String,
    sha256: String,
}

/// The name of job `id`'s result record in the Object Store bucket.
pub fn result_object(id: &str) -> String {
    format!("results/{id}.json")
}

fn is_finished(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled")
}

/// The KV key of job `id`'s record.
pub fn job_key(id: &str) -> String {
    format!("job.{id}")
}

/// The KV key of an idempotency key of `tenant`: hashed, since keys are any text and KV keys
/// are subject tokens.
fn idempotency_kv_key(tenant: Option<&str>, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tenant.unwrap_or_default().as_bytes());
    hasher.update([0]);
    hasher.update(key.as_bytes());
    format!("idem.{:x}", hasher.finalize())
}

/// Job records in the cluster's KV bucket; checkpoints and deliveries in `local`.
pub struct ClusterStore {
    cluster: Arc<Cluster>,
    local: Arc<dyn JobStore>,
}

impl ClusterStore {
    pub fn new(cluster: Arc<Cluster>, local: Arc<dyn JobStore>) -> ClusterStore {
        ClusterStore { cluster, local }
    }

    fn kv(&self) -> &kv::Store {
        &self.cluster.jobs
    }

    /// A job's record and its revision.
    pub async fn record(&self, id: &str) -> Result<Option<(JobRecord, u64)>, StoreError> {
        self.cluster.reachable().map_err(StoreError::unavailable)?;
        let entry = self
            .kv()
            .entry(job_key(id))
            .await
            .map_err(|e| unavailable("cannot read a job record", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let record: JobRecord = serde_json::from_slice(&entry.value)
            .map_err(|e| StoreError::new(format!("job record {id} is unreadable: {e}")))?;
        Ok(Some((record, entry.revision)))
    }

    /// Changes job `id`'s record with `change` (which may refuse by returning `false`), by
    /// compare-and-set; returns the record written, or `None` when there is none or `change`
    /// refused.
    pub async fn update(
        &self,
        id: &str,
        mut change: impl FnMut(&mut JobRecord) -> bool + Send,
    ) -> Result<Option<JobRecord>, StoreError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let Some((mut record, revision)) = self.record(id).await? else {
                return Ok(None);
            };
            if !change(&mut record) {
                return Ok(None);
            }
            let value = serde_json::to_vec(&record).expect("a job record serializes");
            match self.kv().update(job_key(id), value.into(), revision).await {
                Ok(_) => return Ok(Some(record)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable("cannot update a job record", e)),
            }
        }
        Err(StoreError::new(format!(
            "job record {id} kept changing; gave up after {UPDATE_ATTEMPTS} attempts"
        )))
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(ClusterError::jetstream(what, e))
}

#[async_trait]
impl JobStore for ClusterStore {
    async fn accept(&self, job: JournalJob) -> Result<Accepted, StoreError> {
        self.cluster.reachable().map_err(StoreError::unavailable)?;
        let record = JobRecord {
            job: job.clone(),
            lease: None,
        };
        let value = serde_json::to_vec(&record).expect("a job record serializes");
        self.kv()
            .create(job_key(&job.id), value.into())
            .await
            .map_err(|e| unavailable("cannot record the job", e))?;
        let Some(key) = &job.idempotency_key else {
            return Ok(Accepted::New);
        };
        let idempotency = IdempotencyRecord {
            id: job.id.clone(),
            sha256: job.sha256.clone(),
        };
        let kv_key = idempotency_kv_key(job.tenant.as_deref(), key);
        let value = serde_json::to_vec(&idempotency).expect("an idempotency record serializes");
        match self.kv().create(&kv_key, value.into()).await {
            Ok(_) => Ok(Accepted::New),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Another submission holds the key: this job's record goes.
                let _ = self.kv().delete(job_key(&job.id)).await;
                let earlier = self
                    .kv()
                    .get(&kv_key)
                    .await
                    .map_err(|e| unavailable("cannot read an idempotency key", e))?
                    .ok_or_else(|| StoreError::new("an idempotency key vanished while read"))?;
                let earlier: IdempotencyRecord = serde_json::from_slice(&earlier)
                    .map_err(|e| StoreError::new(format!("unreadable idempotency record: {e}")))?;
                Ok(Accepted::Existing {
                    same_body: earlier.sha256 == job.sha256,
                    id: earlier.id,
                })
            }
            Err(e) => {
                let _ = self.kv().delete(job_key(&job.id)).await;
                Err(unavailable("cannot record the idempotency key", e))
            }
        }
    }

    async fn withdraw(&self, id: &str) -> Result<(), StoreError> {
        let Some((record, _)) = self.record(id).await? else {
            return Ok(());
        };
        if let Some(key) = &record.job.idempotency_key {
            let kv_key = idempotency_kv_key(record.job.tenant.as_deref(), key);
            let holder = self
                .kv()
                .get(&kv_key)
                .await
                .map_err(|e| unavailable("cannot read an idempotency key", e))?
                .and_then(|v| serde_json::from_slice::<IdempotencyRecord>(&v).ok());
            if holder.is_some_and(|h| h.id == id) {
                self.kv()
                    .delete(&kv_key)
                    .await
                    .map_err(|e| unavailable("cannot remove an idempotency key", e))?;
            }
        }
        self.kv()
            .delete(job_key(id))
            .await
            .map_err(|e| unavailable("cannot remove a job record", e))
    }

    async fn finish(
        &self,
        id: &str,
        state: &'static str,
        error_code: Option<String>,
        result_path: Option<String>,
    ) -> Result<(), StoreError> {
        // The result first: a record that says finished has its result where every node
        // reads it.
        if let Some(path) = &result_path {
            self.cluster.reachable().map_err(StoreError::unavailable)?;
            let mut file = tokio::fs::File::open(path)
                .await
                .map_err(|e| StoreError::new(format!("cannot read the result {path}: {e}")))?;
            self.cluster
                .objects
                .put(result_object(id).as_str(), &mut file)
                .await
                .map_err(|e| unavailable("cannot store the result", e))?;
        }
        self.update(id, |record| {
            record.job.state = state.to_string();
            record.job.error_code = error_code.clone();
            record.job.result_path = result_path.clone();
            record.job.finished_at_ms = Some(journal::now_ms());
            record.lease = None;
            true
        })
        .await?;
        // Clears this node's checkpoints of the job.
        self.local.finish(id, state, error_code, result_path).await
    }

    async fn result(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((record, _)) = self.record(id).await? else {
            return Ok(None);
        };
        if let Some(path) = &record.job.result_path
            && let Ok(body) = tokio::fs::read(path).await
        {
            return Ok(Some(body));
        }
        if !is_finished(&record.job.state) {
            return Ok(None);
        }
        let mut object = match self.cluster.objects.get(result_object(id)).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("cannot read the result", e)),
        };
        let mut body = Vec::new();
        object
            .read_to_end(&mut body)
            .await
            .map_err(|e| unavailable("cannot read the result", e))?;
        Ok(Some(body))
    }

    async fn unfinished(&self) -> Result<Unfinished, StoreError> {
        // Unfinished jobs come back through the queue, to whichever node has room.
        Ok(Unfinished::default())
    }

    async fn prune_finished(
        &self,
        _cutoff_ms: i64,
        _batch: u32,
    ) -> Result<Vec<JournalJob>, StoreError> {
        Ok(Vec::new())
    }

    async fn get(&self, id: &str) -> Result<Option<JournalJob>, StoreError> {
        Ok(self.record(id).await?.map(|(record, _)| record.job))
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<JournalJob>, StoreError> {
        self.cluster.reachable().map_err(StoreError::unavailable)?;
        let keys: Vec<String> = self
            .kv()
            .keys()
            .await
            .map_err(|e| unavailable("cannot list job records", e))?
            .try_collect()
            .await
            .map_err(|e| unavailable("cannot list job records", e))?;
        // Ids grow with time: sorted ids are oldest first.
        let mut ids: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix("job.")).collect();
        ids.sort_unstable();
        let mut jobs = Vec::new();
        for id in ids {
            if filter.after.as_deref().is_some_and(|after| id <= after) {
                continue;
            }
            let Some(job) = self.get(id).await? else {
                continue;
            };
            let state = if job.state == "accepted" || job.state == "running" {
                "queued"
            } else {
                job.state.as_str()
            };
            if filter.state.as_deref().is_some_and(|s| s != state)
                || filter.pipeline.as_ref().is_some_and(|p| *p != job.pipeline)
                || filter.since_ms.is_some_and(|t| job.submitted_at_ms < t)
                || filter
                    .tenant
                    .as_ref()
                    .is_some_and(|t| job.tenant.as_ref() != Some(t))
            {
                continue;
            }
            jobs.push(job);
            if jobs.len() >= filter.limit as usize {
                break;
            }
        }
        Ok(jobs)
    }

    async fn checkpoint_page(
        &self,
        job_id: &str,
        number: u32,
        record: String,
    ) -> Result<(), StoreError> {
        self.local.checkpoint_page(job_id, number, record).await
    }

    async fn checkpoints(&self, job_id: &str) -> Result<HashMap<u32, String>, StoreError> {
        self.local.checkpoints(job_id).await
    }

    async fn checkpoint_summary(&self, job_id: &str, record: String) -> Result<(), StoreError> {
        self.local.checkpoint_summary(job_id, record).await
    }

    async fn summary_checkpoint(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        self.local.summary_checkpoint(job_id).await
    }

    async fn record_delivery(
        &self,
        job_id: &str,
        sink: &'static str,
        delivery: SinkDelivery,
    ) -> Result<(), StoreError> {
        self.local.record_delivery(job_id, sink, delivery).await
    }

    async fn deliveries(&self, job_id: &str) -> Result<BTreeMap<String, SinkDelivery>, StoreError> {
        self.local.deliveries(job_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_per_tenant_and_subject_safe() {
        let a = idempotency_kv_key(Some("acme"), "order 1/2");
        let b = idempotency_kv_key(Some("other"), "order 1/2");
        let c = idempotency_kv_key(None, "order 1/2");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("idem."));
        assert!(a[5..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_record_without_a_lease_reads_back() {
        let text = r#"{"id":"1","pipeline":"default","name":"a.png","spool_path":"","bytes":3,
            "sha256":"x","idempotency_key":null,"tenant":null,"state":"accepted",
            "submitted_at_ms":1,"finished_at_ms":null,"error_code":null,"result_path":null}"#;
        let record: JobRecord = serde_json::from_str(text).unwrap();
        assert_eq!(record.lease, None);
        assert_eq!(record.job.state, "accepted");
    }
}
