//! The cluster's job store: everything pagemill keeps about jobs, in the KV bucket and the
//! Object Store bucket, readable from every node.
//!
//! KV keys:
//! - `job.<id>`: the job's record ([`JobRecord`]: the journal's fields, and the lease of the
//!   node running it). Records change by compare-and-set on their revision.
//! - `idem.<sha256 of tenant and key>`: the job an `Idempotency-Key` belongs to. Created with
//!   create-if-absent, like job records, so two nodes given the same key at once agree on one
//!   job.
//! - `status.<id>`: the running node's latest status of the job (pages, timings, error), for
//!   status queries and server-sent events on every other node.
//! - `cancel.<id>`: a request from any node that the node running the job cancel it.
//! - `page.<id>.<n>` and `summary.<id>`: page and summary checkpoints, so that a job delivered
//!   again after its node died resumes at its last finished page on another node. Removed when
//!   the job finishes.
//! - `delivery.<id>.<sink>`: how the job's delivery to a sink ended.
//!
//! Objects: `results/<id>.json` (the result record) and `files/<id>/<name>` (the other files
//! written beside it: text, hOCR, ALTO, TSV, PDF, page previews), stored when the job finishes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use async_nats::jetstream::{kv, object_store};
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{Cluster, ClusterError};
use crate::service::jobs::{JobState, JobStatus, SinkDelivery};
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
    /// How the document was split into page ranges, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<super::split::Split>,
    /// Times the job was queued again after its deliveries ran out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requeued: u32,
}

impl JobRecord {
    /// The node other than `me` that alone may record this job finished, if any: the holder
    /// of its lease, except while a split job's ranges run, when the node of a range that
    /// fails (or is cancelled) ends the job and its coordinating node follows.
    pub fn finisher_other_than(&self, me: &str) -> Option<&str> {
        let ranges_running = self.split.as_ref().is_some_and(|s| !s.assembling);
        match &self.lease {
            Some(lease) if lease.node != me && !ranges_running => Some(&lease.node),
            _ => None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

/// The KV key of job `id`'s latest status from the node running it.
pub fn status_key(id: &str) -> String {
    format!("status.{id}")
}

/// The KV key of the latest status of range `index` of split job `id`, from the node
/// reading it.
pub fn range_status_key(id: &str, index: usize) -> String {
    format!("status.{id}.r{index}")
}

/// The KV key of a request to cancel job `id`.
pub fn cancel_key(id: &str) -> String {
    format!("cancel.{id}")
}

fn page_prefix(id: &str) -> String {
    format!("page.{id}.")
}

fn summary_key(id: &str) -> String {
    format!("summary.{id}")
}

fn delivery_prefix(id: &str) -> String {
    format!("delivery.{id}.")
}

/// The name of a file written beside job `id`'s result, in the Object Store bucket.
fn file_object(id: &str, name: &str) -> String {
    format!("files/{id}/{name}")
}

/// Everything about jobs in the cluster's buckets.
pub struct ClusterStore {
    cluster: Arc<Cluster>,
}

impl ClusterStore {
    pub fn new(cluster: Arc<Cluster>) -> ClusterStore {
        ClusterStore { cluster }
    }

    /// Keeps the status of a job this node runs (under `key`: the job's status key, or a
    /// range's) where every node reads it.
    pub async fn put_status(&self, key: String, status: &JobStatus) {
        let value = serde_json::to_vec(status).expect("a status serializes");
        if let Err(e) = self.kv().put(key, value.into()).await {
            tracing::debug!(job_id = %status.id, error = %e, "cannot share a job's status");
        }
    }

    /// The latest status shared by the node running job `id`.
    async fn live_status(&self, id: &str) -> Option<JobStatus> {
        let value = self.kv().get(status_key(id)).await.ok().flatten()?;
        serde_json::from_slice(&value).ok()
    }

    /// Requests to cancel job `id`, from now on: the node running it follows them.
    pub async fn cancel_requests(&self, id: &str) -> Result<kv::Watch, StoreError> {
        self.kv()
            .watch_with_history(cancel_key(id))
            .await
            .map_err(|e| unavailable("cannot follow cancel requests", e))
    }

    /// Stores the previews of pages `range` of job `id` written in `results` (by a range of a
    /// split job), so that every node serves them.
    pub async fn put_previews(
        &self,
        id: &str,
        results: &Path,
        range: crate::pipeline::job::PageRange,
    ) -> Result<(), StoreError> {
        for number in range.first..=range.last {
            let path = crate::stages::save::formats::preview_path(results, id, number);
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                continue;
            };
            let name = format!("{id}.previews/{number}.png");
            self.cluster
                .objects
                .put(file_object(id, &name).as_str(), &mut file)
                .await
                .map_err(|e| unavailable("cannot store a preview", e))?;
            let _ = tokio::fs::remove_file(&path).await;
        }
        Ok(())
    }

    /// Stores the files written beside a finished job's result (`<id>.*` and the
    /// `<id>.previews` folder), so that every node serves them.
    async fn put_files(&self, id: &str, result: &Path) -> Result<(), StoreError> {
        let Some(dir) = result.parent() else {
            return Ok(());
        };
        let mut files = Vec::new();
        let prefix = format!("{id}.");
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(e) => {
                return Err(StoreError::new(format!(
                    "cannot read {}: {e}",
                    dir.display()
                )));
            }
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&prefix) || entry.path() == result || name.ends_with(".part") {
                continue;
            }
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            if kind.is_file() {
                files.push((name, entry.path()));
            } else if kind.is_dir()
                && let Ok(mut inner) = tokio::fs::read_dir(entry.path()).await
            {
                while let Ok(Some(file)) = inner.next_entry().await {
                    let inner_name = file.file_name().to_string_lossy().into_owned();
                    if !inner_name.ends_with(".part") {
                        files.push((format!("{name}/{inner_name}"), file.path()));
                    }
                }
            }
        }
        for (name, path) in files {
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(file) => file,
                Err(e) => {
                    tracing::warn!(job_id = id, file = %path.display(), error = %e, "cannot read an output to share");
                    continue;
                }
            };
            self.cluster
                .objects
                .put(file_object(id, &name).as_str(), &mut file)
                .await
                .map_err(|e| unavailable("cannot store an output", e))?;
        }
        Ok(())
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
            split: None,
            requeued: 0,
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
        // A job whose lease another node took over (this node's heartbeats did not reach the
        // cluster in time) is that node's to finish.
        let me = self.cluster.node_name().to_string();
        if let Some((record, _)) = self.record(id).await?
            && let Some(holder) = record.finisher_other_than(&me)
        {
            tracing::warn!(job_id = id, holder = %holder, "not recording a job finished: another node took it over");
            return Ok(());
        }
        // The result and its files first: a record that says finished has them where every
        // node reads them.
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
            self.put_files(id, Path::new(path)).await?;
        }
        if self
            .update(id, |record| {
                if record.finisher_other_than(&me).is_some() {
                    return false;
                }
                record.job.state = state.to_string();
                record.job.error_code = error_code.clone();
                record.job.result_path = result_path.clone();
                record.job.finished_at_ms = Some(journal::now_ms());
                record.lease = None;
                true
            })
            .await?
            .is_none()
        {
            return Ok(());
        }
        // Checkpoints and the document are no longer needed.
        for keys in [
            format!("{}>", page_prefix(id)),
            summary_key(id),
            cancel_key(id),
        ] {
            if let Err(e) = self.cluster.purge_keys(&keys).await {
                tracing::warn!(job_id = id, error = %e, "cannot remove a finished job's checkpoints");
            }
        }
        if let Err(e) = self
            .cluster
            .objects
            .delete(super::queue::document_object(id))
            .await
        {
            tracing::debug!(job_id = id, error = %e, "cannot remove a finished job's document");
        }
        Ok(())
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
        read_object(&self.cluster, &result_object(id)).await
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
        let records = self
            .cluster
            .latest_under("job.")
            .await
            .map_err(|e| unavailable("cannot list job records", e))?;
        let mut jobs: Vec<JournalJob> = records
            .iter()
            .filter_map(|(_, value)| serde_json::from_slice::<JobRecord>(value).ok())
            .map(|record| record.job)
            .collect();
        // Ids grow with time: sorted ids are oldest first.
        jobs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs
            .into_iter()
            .filter(|job| {
                let state = if job.state == "accepted" || job.state == "running" {
                    "queued"
                } else {
                    job.state.as_str()
                };
                !(filter
                    .after
                    .as_deref()
                    .is_some_and(|after| job.id.as_str() <= after)
                    || filter.state.as_deref().is_some_and(|s| s != state)
                    || filter.pipeline.as_ref().is_some_and(|p| *p != job.pipeline)
                    || filter.since_ms.is_some_and(|t| job.submitted_at_ms < t)
                    || filter
                        .tenant
                        .as_ref()
                        .is_some_and(|t| job.tenant.as_ref() != Some(t)))
            })
            .take(filter.limit as usize)
            .collect())
    }

    async fn checkpoint_page(
        &self,
        job_id: &str,
        number: u32,
        record: String,
    ) -> Result<(), StoreError> {
        self.kv()
            .put(format!("{}{number}", page_prefix(job_id)), record.into())
            .await
            .map_err(|e| unavailable("cannot keep a page checkpoint", e))?;
        Ok(())
    }

    async fn checkpoints(&self, job_id: &str) -> Result<HashMap<u32, String>, StoreError> {
        let prefix = page_prefix(job_id);
        let found = self
            .cluster
            .latest_under(&prefix)
            .await
            .map_err(|e| unavailable("cannot read page checkpoints", e))?;
        Ok(found
            .into_iter()
            .filter_map(|(key, value)| {
                let number = key.strip_prefix(&prefix)?.parse().ok()?;
                Some((number, String::from_utf8(value.to_vec()).ok()?))
            })
            .collect())
    }

    async fn checkpoint_summary(&self, job_id: &str, record: String) -> Result<(), StoreError> {
        self.kv()
            .put(summary_key(job_id), record.into())
            .await
            .map_err(|e| unavailable("cannot keep a summary checkpoint", e))?;
        Ok(())
    }

    async fn summary_checkpoint(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        let value = self
            .kv()
            .get(summary_key(job_id))
            .await
            .map_err(|e| unavailable("cannot read a summary checkpoint", e))?;
        Ok(value.and_then(|v| String::from_utf8(v.to_vec()).ok()))
    }

    async fn record_delivery(
        &self,
        job_id: &str,
        sink: &'static str,
        delivery: SinkDelivery,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&delivery).expect("a delivery serializes");
        self.kv()
            .put(format!("{}{sink}", delivery_prefix(job_id)), value.into())
            .await
            .map_err(|e| unavailable("cannot record a delivery", e))?;
        Ok(())
    }

    async fn deliveries(&self, job_id: &str) -> Result<BTreeMap<String, SinkDelivery>, StoreError> {
        // One direct read per sink there can be: cheaper than a consumer over the keys.
        let mut found = BTreeMap::new();
        for sink in crate::stages::save::sinks::Sink::NAMES {
            let value = self
                .kv()
                .get(format!("{}{sink}", delivery_prefix(job_id)))
                .await
                .map_err(|e| unavailable("cannot read deliveries", e))?;
            if let Some(delivery) = value.and_then(|v| serde_json::from_slice(&v).ok()) {
                found.insert(sink.to_string(), delivery);
            }
        }
        Ok(found)
    }

    async fn status(&self, id: &str) -> Result<Option<JobStatus>, StoreError> {
        let Some((record, _)) = self.record(id).await? else {
            return Ok(None);
        };
        let mut recorded = record.job.status();
        if let Some(split) = &record.split {
            // Progress of a split job: the sum over its ranges.
            recorded.pages.total = Some(split.pages);
            for index in 0..split.ranges.len() {
                let value = self
                    .kv()
                    .get(range_status_key(id, index))
                    .await
                    .map_err(|e| unavailable("cannot read a split job's progress", e))?;
                if let Some(range) =
                    value.and_then(|v| serde_json::from_slice::<JobStatus>(&v).ok())
                {
                    recorded.pages.rendered += range.pages.rendered;
                    recorded.pages.ocred += range.pages.ocred;
                }
            }
            if !split.assembling || recorded.state.is_final() {
                let mut status = recorded;
                status.sinks = self.deliveries(id).await?;
                return Ok(Some(status));
            }
        }
        let mut status = match self.live_status(id).await {
            Some(mut live) => {
                if recorded.state.is_final() && !live.state.is_final() {
                    // Finished, but the node's last shared status came before.
                    live.state = recorded.state;
                    live.error = recorded.error.clone();
                } else if recorded.state == JobState::Queued {
                    // Handed back, or delivered again after its node died.
                    live.state = JobState::Queued;
                }
                live
            }
            None => recorded,
        };
        status.sinks = self.deliveries(id).await?;
        Ok(Some(status))
    }

    async fn file(&self, id: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_object(&self.cluster, &file_object(id, name)).await
    }

    async fn follow(&self, id: &str) -> Result<Option<BoxStream<'static, JobStatus>>, StoreError> {
        // Watching first: a change between the first read and the watch is not missed.
        let watch = |key: String| async move {
            self.kv()
                .watch(key)
                .await
                .map_err(|e| unavailable("cannot follow a job", e))
        };
        let changes = futures_util::stream::select(
            futures_util::stream::select(watch(job_key(id)).await?, watch(status_key(id)).await?),
            watch(format!("{}.>", status_key(id))).await?,
        );
        let Some(first) = self.status(id).await? else {
            return Ok(None);
        };
        let store = ClusterStore {
            cluster: self.cluster.clone(),
        };
        let id = id.to_string();
        let rest = futures_util::stream::unfold(
            (store, id, changes, first.clone()),
            |(store, id, mut changes, last)| async move {
                if last.state.is_final() {
                    return None;
                }
                loop {
                    changes.next().await?.ok()?;
                    let Ok(Some(status)) = store.status(&id).await else {
                        return None;
                    };
                    if status != last {
                        return Some((status.clone(), (store, id, changes, status)));
                    }
                }
            },
        );
        Ok(Some(
            futures_util::stream::once(async move { first })
                .chain(rest)
                .boxed(),
        ))
    }

    async fn cancel(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        let mut was = None;
        let now = journal::now_ms();
        self.update(id, |record| {
            let state = record.job.status().state;
            was = Some(state);
            if state != JobState::Queued {
                return false;
            }
            // Waiting in the queue: cancelled here; the node that fetches it acknowledges it.
            record.job.state = "cancelled".into();
            record.job.error_code = Some("cancelled".into());
            record.job.finished_at_ms = Some(now);
            record.lease = None;
            true
        })
        .await?;
        match was {
            Some(JobState::Running) => {
                self.kv()
                    .put(cancel_key(id), "requested".into())
                    .await
                    .map_err(|e| unavailable("cannot request a cancel", e))?;
            }
            Some(JobState::Queued) => {
                let _ = self
                    .cluster
                    .objects
                    .delete(super::queue::document_object(id))
                    .await;
            }
            _ => {}
        }
        Ok(was)
    }
}

/// An object's bytes, or `None` when there is no such object.
async fn read_object(cluster: &Cluster, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    cluster.reachable().map_err(StoreError::unavailable)?;
    let mut object = match cluster.objects.get(name).await {
        Ok(object) => object,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unavailable("cannot read a stored file", e)),
    };
    let mut body = Vec::new();
    object
        .read_to_end(&mut body)
        .await
        .map_err(|e| unavailable("cannot read a stored file", e))?;
    Ok(Some(body))
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
