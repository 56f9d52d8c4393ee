//! Intake: how a document becomes an accepted job, whatever brought it (the HTTP edge today,
//! a queue consumer tomorrow).
//!
//! A submission is first admitted against its pipeline's budget ([`Intake::admit`]); its
//! document then streams into the spool, durably, hashed and typed on the way
//! ([`Admission::spool`]); the job is recorded in the journal, honouring idempotency keys, and
//! handed to the pipeline ([`Admission::accept`]). What intake learns about the document
//! (SHA-256, media type, size) travels with the job, so ingest works out none of it again.
//! Every refusal is an [`IntakeError`] with a stable code; the HTTP layer only translates.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::error::JobError;
use crate::model::media_type::detect_media_type;
use crate::pipeline::messages::{JobRequest, KnownSource};
use crate::pipeline::progress::Progress;
use crate::pipeline::supervisor::PipelineHandle;
use crate::service::jobs::{JobRegistry, JobStatus, Usage};
use crate::service::journal::{self, JournalJob};
use crate::service::queue::{JobQueue, QueueError};
use crate::service::store::{JobStore, StoreError};

/// Longest wait intake suggests before a refused submission is tried again, in seconds.
pub const MAX_RETRY_AFTER_SECS: u64 = 600;
/// Longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Longest pause in an upload before intake gives up on it (`--upload-idle-timeout`).
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Bytes kept from the start of a document for type detection.
const HEAD_BYTES: usize = 1024;

/// Why a submission was refused. Each has a stable code, the same in every API.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("no pipeline named {0:?}; GET /v1/pipelines lists them")]
    UnknownPipeline(String),
    #[error("the daemon is stopping and accepts no new jobs")]
    ShuttingDown,
    #[error(
        "pipeline {pipeline:?} has {pages} pages and {bytes} bytes in progress (budget {max_pages} pages, {max_bytes} bytes); retry later"
    )]
    AdmissionFull {
        pipeline: String,
        pages: u64,
        bytes: u64,
        max_pages: u64,
        max_bytes: u64,
        /// When the pipeline should have room again, from the rate its pages finish at.
        retry_after_secs: u64,
    },
    #[error(
        "tenant {tenant:?} has {pages} pages in progress in pipeline {pipeline:?} (its share is {max_pages} pages); retry later"
    )]
    TenantShareFull {
        pipeline: String,
        tenant: String,
        pages: u64,
        max_pages: u64,
        retry_after_secs: u64,
    },
    #[error("this pipeline accepts documents of at most {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} characters")]
    BadIdempotencyKey,
    #[error("cannot read the body: {0}")]
    BadBody(String),
    #[error("the upload sent nothing for {0:?}; it is dropped")]
    UploadStalled(std::time::Duration),
    #[error("cannot store the upload: {0}")]
    SpoolUnwritable(std::io::Error),
    /// The document is empty or of a type pagemill does not read.
    #[error(transparent)]
    Unreadable(JobError),
    #[error("this Idempotency-Key was used for job {existing} with a different document")]
    IdempotencyKeyReused { existing: String },
    #[error("cannot record the job: {0}")]
    JournalUnwritable(String),
    /// The cluster's job queue is full: its limits are the cluster's admission.
    #[error("{reason}")]
    QueueFull {
        reason: String,
        retry_after_secs: u64,
    },
    /// The cluster's servers cannot be reached: the job is not stored.
    #[error("{reason}")]
    ClusterUnavailable {
        reason: String,
        retry_after_secs: u64,
    },
}

impl IntakeError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::UnknownPipeline(_) => "unknown_pipeline",
            IntakeError::ShuttingDown => "shutting_down",
            IntakeError::AdmissionFull { .. }
            | IntakeError::TenantShareFull { .. }
            | IntakeError::QueueFull { .. } => "admission_full",
            IntakeError::TooLarge { .. } => "too_large",
            IntakeError::BadIdempotencyKey => "bad_idempotency_key",
            IntakeError::BadBody(_) => "bad_body",
            IntakeError::UploadStalled(_) => "upload_timeout",
            IntakeError::SpoolUnwritable(_) => "spool_unwritable",
            IntakeError::Unreadable(JobError::EmptyDocument) => "empty_document",
            IntakeError::Unreadable(_) => "unsupported_media_type",
            IntakeError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            IntakeError::JournalUnwritable(_) => "journal_unwritable",
            IntakeError::ClusterUnavailable { .. } => "cluster_unavailable",
        }
    }
}

impl IntakeError {
    /// When to try a refused submission again, for refusals that pass with time.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            IntakeError::AdmissionFull {
                retry_after_secs, ..
            }
            | IntakeError::TenantShareFull {
                retry_after_secs, ..
            }
            | IntakeError::QueueFull {
                retry_after_secs, ..
            }
            | IntakeError::ClusterUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

impl From<QueueError> for IntakeError {
    fn from(e: QueueError) -> IntakeError {
        let retry_after_secs = e.retry_after_secs();
        let reason = e.to_string();
        match e {
            QueueError::Full(..) => IntakeError::QueueFull {
                reason,
                retry_after_secs,
            },
            QueueError::Unavailable(..) => IntakeError::ClusterUnavailable {
                reason,
                retry_after_secs,
            },
        }
    }
}

/// When a submission refused because the job store cannot be reached should be tried again.
pub(crate) const STORE_UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl IntakeError {
    /// A job store failure: unreachable (503, try again) or unwritable (507).
    fn from_store(e: StoreError) -> IntakeError {
        if e.is_unavailable() {
            IntakeError::ClusterUnavailable {
                reason: format!("cannot record the job: {e}"),
                retry_after_secs: STORE_UNAVAILABLE_RETRY_AFTER_SECS,
            }
        } else {
            IntakeError::JournalUnwritable(e.to_string())
        }
    }
}

/// What [`Admission::accept`] did with a submission.
#[derive(Debug)]
pub enum Accepted {
    /// A new job, registered and on its way into the pipeline.
    New(JobStatus),
    /// Its idempotency key belongs to an earlier job with the same document: that job, if
    /// it is still known.
    Existing {
        id: String,
        status: Option<JobStatus>,
    },
}

/// The way in for jobs, shared by everything that submits them.
pub struct Intake {
    pipelines: BTreeMap<String, Arc<PipelineHandle>>,
    pub(crate) jobs: Arc<JobRegistry>,
    pub(crate) store: Arc<dyn JobStore>,
    /// Where accepted jobs go in a cluster (every node takes work from it); without one, to
    /// this process's pipelines.
    queue: Option<Arc<dyn JobQueue>>,
    spool: PathBuf,
    /// Longest pause in an upload.
    upload_idle_timeout: std::time::Duration,
    /// Set when the daemon is stopping: no new jobs.
    shutting_down: AtomicBool,
    /// Submissions still uploading: admitted, not yet in the job registry.
    uploading: Mutex<Uploading>,
}

/// Pages and bytes of submissions still uploading, per pipeline; pages per pipeline and
/// tenant.
#[derive(Default)]
struct Uploading {
    pipelines: HashMap<String, (u64, u64)>,
    tenants: HashMap<(String, String), u64>,
}

impl Intake {
    pub fn new(
        pipelines: BTreeMap<String, Arc<PipelineHandle>>,
        jobs: Arc<JobRegistry>,
        store: Arc<dyn JobStore>,
        spool: PathBuf,
    ) -> Intake {
        Intake {
            pipelines,
            jobs,
            store,
            queue: None,
            spool,
            upload_idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT,
            shutting_down: AtomicBool::new(false),
            uploading: Mutex::default(),
        }
    }

    /// Gives up on an upload that pauses longer than `timeout`.
    pub fn with_upload_idle_timeout(mut self, timeout: std::time::Duration) -> Intake {
        self.upload_idle_timeout = timeout;
        self
    }

    /// Sends accepted jobs to `queue` instead of this process's pipelines. The queue's own
    /// limits are then the admission: the local budget no longer refuses submissions.
    pub fn with_queue(mut self, queue: Arc<dyn JobQueue>) -> Intake {
        self.queue = Some(queue);
        self
    }

    /// The running pipelines, by name.
    /// Whether this process is a node of a cluster: jobs go through a shared queue and store.
    pub fn is_clustered(&self) -> bool {
        self.queue.is_some()
    }

    pub fn pipelines(&self) -> &BTreeMap<String, Arc<PipelineHandle>> {
        &self.pipelines
    }

    /// Where uploads wait until their job is finished.
    pub fn spool(&self) -> &Path {
        &self.spool
    }

    /// Refuses every submission from now on.
    pub fn stop_accepting(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether no pipeline has an unfinished job.
    pub fn all_idle(&self) -> bool {
        self.pipelines
            .keys()
            .all(|name| self.jobs.usage(name, None).jobs == 0)
    }

    /// What `pipeline` holds against its admission budget: its registered unfinished jobs,
    /// plus the pages and bytes of submissions still uploading.
    pub fn admission_usage(&self, pipeline: &str) -> (Usage, u64, u64) {
        let uploading = self.uploading.lock().expect("admission lock poisoned");
        let (pages, bytes) = uploading
            .pipelines
            .get(pipeline)
            .copied()
            .unwrap_or_default();
        (self.jobs.usage(pipeline, None), pages, bytes)
    }

    /// Admits a submission of `tenant` to `pipeline` while its unfinished pages and bytes
    /// (registered jobs plus uploads in progress) are under budget, and the tenant's pages
    /// under its share; otherwise refuses it, suggesting when to retry from the rate pages
    /// have been finishing at. Checking and reserving happen under one lock, so concurrent
    /// submissions cannot all slip through. `declared_bytes` is the size the client
    /// announced, if any.
    pub fn admit(
        self: &Arc<Self>,
        pipeline: &str,
        declared_bytes: Option<u64>,
        idempotency_key: Option<String>,
        tenant: Option<String>,
    ) -> Result<Admission, IntakeError> {
        let handle = self
            .pipelines
            .get(pipeline)
            .ok_or_else(|| IntakeError::UnknownPipeline(pipeline.to_string()))?
            .clone();
        if self.is_shutting_down() {
            return Err(IntakeError::ShuttingDown);
        }
        let reservation = self.reserve(&handle, declared_bytes.unwrap_or(0), tenant.clone())?;
        let limit = handle.pipeline.limits.max_document_bytes;
        if declared_bytes.is_some_and(|n| n > limit) {
            return Err(IntakeError::TooLarge { limit });
        }
        if idempotency_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_BYTES)
        {
            return Err(IntakeError::BadIdempotencyKey);
        }
        Ok(Admission {
            intake: self.clone(),
            handle,
            id: uuid::Uuid::now_v7().simple().to_string(),
            idempotency_key,
            tenant,
            _reservation: reservation,
        })
    }

    /// Resumes the jobs an earlier run accepted and did not finish (their uploads wait in the
    /// spool under their ids), and removes spool files no unfinished job owns (uploads cut off
    /// mid-way). A job whose pipeline is not loaded now stays in the journal with its upload, for
    /// a start that loads it.
    pub async fn resume_unfinished(&self) -> anyhow::Result<()> {
        let spool = self.spool.as_path();
        let found = self.store.unfinished().await?;
        for entry in &found.quarantined {
            tracing::error!(entry = %entry, "quarantined an unreadable journal entry");
        }
        let mut keep = std::collections::HashSet::new();
        let mut resumed = 0;
        for job in &found.jobs {
            let path = spool.join(&job.id);
            if !path.is_file() {
                tracing::error!(job_id = %job.id, pipeline = %job.pipeline, "cannot resume a journaled job: its upload is gone");
                self.store
                    .finish(&job.id, "failed", Some("upload_missing".into()), None)
                    .await?;
                continue;
            }
            keep.insert(std::ffi::OsString::from(&job.id));
            match self.pipelines.get(&job.pipeline) {
                None => {
                    tracing::warn!(job_id = %job.id, pipeline = %job.pipeline, "a journaled job waits for its pipeline, which is not loaded")
                }
                Some(handle) => {
                    let mut request = JobRequest::new(job.id.clone(), job.name.clone(), path);
                    request.tenant = job.tenant.clone();
                    handle.enqueue(request, job.bytes);
                    resumed += 1;
                }
            }
        }
        if resumed > 0 {
            tracing::info!(jobs = resumed, "resumed unfinished jobs from the journal");
        }
        if let Ok(entries) = std::fs::read_dir(spool) {
            for entry in entries.flatten() {
                if !keep.contains(&entry.file_name()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    fn reserve(
        self: &Arc<Self>,
        handle: &PipelineHandle,
        incoming_bytes: u64,
        tenant: Option<String>,
    ) -> Result<Reservation, IntakeError> {
        let budget = handle.pipeline.admission;
        let name = &handle.pipeline.name;
        let mut uploading = self.uploading.lock().expect("admission lock poisoned");
        let registered = self.jobs.usage(name, None);
        let (uploading_pages, uploading_bytes) =
            uploading.pipelines.get(name).copied().unwrap_or_default();
        let pages = registered.pages + uploading_pages;
        let bytes = registered.bytes + uploading_bytes;
        let tenant_pages = tenant.as_ref().map(|t| {
            let key = (name.clone(), t.clone());
            self.jobs.usage(name, Some(t)).pages + uploading.tenants.get(&key).copied().unwrap_or(0)
        });
        // With a queue, the queue's limits admit jobs: this node only runs what it fetches.
        let queued = self.queue.is_some();
        let system_full = !queued
            && (pages >= budget.max_pages_in_system
                || bytes.saturating_add(incoming_bytes) > budget.max_bytes_in_system);
        let share_full = !queued && tenant_pages.is_some_and(|p| p >= budget.max_pages_per_tenant);
        if !system_full && !share_full {
            let in_flight = uploading.pipelines.entry(name.clone()).or_default();
            in_flight.0 += 1;
            in_flight.1 += incoming_bytes;
            if let Some(t) = &tenant {
                *uploading
                    .tenants
                    .entry((name.clone(), t.clone()))
                    .or_default() += 1;
            }
            return Ok(Reservation {
                intake: self.clone(),
                pipeline: name.clone(),
                tenant,
                bytes: incoming_bytes,
            });
        }
        drop(uploading);
        let finished = Progress::get(&handle.progress.pages_finished) as f64;
        let rate = finished / handle.started.elapsed().as_secs_f64().max(1.0);
        let wait_for = |excess_pages: u64| {
            let wait = if rate > 0.0 {
                (excess_pages.max(1) as f64 / rate).ceil() as u64
            } else {
                MAX_RETRY_AFTER_SECS.min(30)
            };
            wait.clamp(1, MAX_RETRY_AFTER_SECS)
        };
        if system_full {
            return Err(IntakeError::AdmissionFull {
                pipeline: name.clone(),
                pages,
                bytes,
                max_pages: budget.max_pages_in_system,
                max_bytes: budget.max_bytes_in_system,
                retry_after_secs: wait_for((pages + 1).saturating_sub(budget.max_pages_in_system)),
            });
        }
        let tenant_pages = tenant_pages.unwrap_or_default();
        Err(IntakeError::TenantShareFull {
            pipeline: name.clone(),
            tenant: tenant.unwrap_or_default(),
            pages: tenant_pages,
            max_pages: budget.max_pages_per_tenant,
            retry_after_secs: wait_for(
                (tenant_pages + 1).saturating_sub(budget.max_pages_per_tenant),
            ),
        })
    }
}

/// A submission counted against its pipeline's admission budget until the job registry
/// counts it (or the submission fails).
struct Reservation {
    intake: Arc<Intake>,
    pipeline: String,
    tenant: Option<String>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut uploading = self
            .intake
            .uploading
            .lock()
            .expect("admission lock poisoned");
        if let Some((pages, bytes)) = uploading.pipelines.get_mut(&self.pipeline) {
            *pages -= 1;
            *bytes -= self.bytes;
        }
        if let Some(tenant) = self.tenant.take() {
            let key = (self.pipeline.clone(), tenant);
            if let Some(pages) = uploading.tenants.get_mut(&key) {
                *pages -= 1;
                if *pages == 0 {
                    uploading.tenants.remove(&key);
                }
            }
        }
    }
}

/// An admitted submission: it holds its share of the budget until it is accepted or dropped.
pub struct Admission {
    intake: Arc<Intake>,
    handle: Arc<PipelineHandle>,
    id: String,
    idempotency_key: Option<String>,
    tenant: Option<String>,
    _reservation: Reservation,
}

/// A document received for a job, hashed and typed: written to the spool, or left in place.
pub struct Received {
    path: PathBuf,
    known: KnownSource,
    /// Whether `path` is intake's own copy in the spool, to remove if the job is refused.
    in_spool: bool,
}

impl Admission {
    /// The id the job will have.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Streams the document into `<spool>/<id>`, durably, refusing more than the pipeline's
    /// `max_document_bytes` and anything that is not a document pagemill reads. The file
    /// appears under its final name only when complete, and is removed if refused.
    pub async fn spool<S, E>(&self, chunks: S) -> Result<Received, IntakeError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let spool = self.intake.spool.as_path();
        let limit = self.handle.pipeline.limits.max_document_bytes;
        let idle = self.intake.upload_idle_timeout;
        let (path, bytes, head, sha256) =
            write_durably(spool, &self.id, chunks, limit, idle).await?;
        match detect_media_type(&head) {
            Ok(media_type) => Ok(Received {
                path,
                known: KnownSource {
                    sha256,
                    media_type,
                    bytes,
                },
                in_spool: true,
            }),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(IntakeError::Unreadable(e))
            }
        }
    }

    /// Takes a document that already lies durably on this machine where it is, without
    /// copying it: hashes and types it, refusing more than the pipeline's
    /// `max_document_bytes` and anything that is not a document pagemill reads.
    pub async fn in_place(&self, path: &Path) -> Result<Received, IntakeError> {
        let limit = self.handle.pipeline.limits.max_document_bytes;
        let unreadable =
            |e: std::io::Error| IntakeError::BadBody(format!("{}: {e}", path.display()));
        let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let (mut bytes, mut head, mut hasher) = (0u64, Vec::new(), Sha256::new());
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let n = file.read(&mut buffer).await.map_err(unreadable)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            if bytes > limit {
                return Err(IntakeError::TooLarge { limit });
            }
            if head.len() < HEAD_BYTES {
                head.extend_from_slice(&buffer[..n.min(HEAD_BYTES - head.len())]);
            }
            hasher.update(&buffer[..n]);
        }
        let media_type = detect_media_type(&head).map_err(IntakeError::Unreadable)?;
        Ok(Received {
            path: path.to_path_buf(),
            known: KnownSource {
                sha256: format!("{:x}", hasher.finalize()),
                media_type,
                bytes,
            },
            in_spool: false,
        })
    }

    /// Records the job in the journal (durable before this returns) and hands it to the
    /// pipeline under `name`; or, when its idempotency key is already taken, answers with the
    /// earlier job and drops the upload.
    pub async fn accept(self, received: Received, name: String) -> Result<Accepted, IntakeError> {
        let pipeline = self.handle.pipeline.name.clone();
        let record = JournalJob {
            id: self.id.clone(),
            pipeline: pipeline.clone(),
            name: name.clone(),
            spool_path: received.path.to_string_lossy().into_owned(),
            bytes: received.known.bytes,
            sha256: received.known.sha256.clone(),
            idempotency_key: self.idempotency_key.clone(),
            tenant: self.tenant.clone(),
            state: "accepted".into(),
            submitted_at_ms: journal::now_ms(),
            finished_at_ms: None,
            error_code: None,
            result_path: None,
        };
        if let Some(queue) = self.intake.queue.clone() {
            return self.accept_queued(queue, received, record).await;
        }
        match self.intake.store.accept(record).await {
            Ok(journal::Accepted::New) => {}
            Ok(journal::Accepted::Existing {
                id: existing,
                same_body,
            }) => {
                received.discard().await;
                if !same_body {
                    return Err(IntakeError::IdempotencyKeyReused { existing });
                }
                let status = self.intake.status(&existing).await;
                return Ok(Accepted::Existing {
                    id: existing,
                    status,
                });
            }
            Err(e) => {
                received.discard().await;
                return Err(IntakeError::JournalUnwritable(e.to_string()));
            }
        }
        let bytes = received.known.bytes;
        let request = JobRequest {
            id: self.id.clone(),
            name,
            path: received.path,
            known: Some(received.known),
            tenant: self.tenant.clone(),
            pages: None,
        };
        self.handle.enqueue(request, bytes);
        metrics::counter!(crate::runtime::metrics::JOBS_ACCEPTED, "pipeline" => pipeline)
            .increment(1);
        let status = self
            .intake
            .jobs
            .get(&self.id)
            .expect("registered by enqueue");
        Ok(Accepted::New(status))
    }
}

impl Admission {
    /// Accepts a job for the cluster's queue: the document goes where every node reads it,
    /// the job is recorded (its idempotency key taken), then published; only then is it
    /// accepted. A submission retried with its idempotency key publishes the earlier job
    /// again, which the queue takes once: a job recorded but not yet queued (the queue was full
    /// or unreachable) is queued by the retry.
    async fn accept_queued(
        self,
        queue: Arc<dyn JobQueue>,
        received: Received,
        record: JournalJob,
    ) -> Result<Accepted, IntakeError> {
        let outcome = self
            .record_and_publish(queue.as_ref(), &received, &record)
            .await;
        // The document is in the cluster now (or refused): this machine's copy goes either way.
        received.discard().await;
        match outcome {
            Ok(None) => {
                metrics::counter!(crate::runtime::metrics::JOBS_ACCEPTED, "pipeline" => record.pipeline.clone())
                    .increment(1);
                Ok(Accepted::New(record.status()))
            }
            Ok(Some(existing)) => {
                let status = self.intake.status(&existing).await;
                Ok(Accepted::Existing {
                    id: existing,
                    status,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The steps of [`Admission::accept_queued`]; `Some(id)` when the idempotency key named
    /// an earlier job.
    async fn record_and_publish(
        &self,
        queue: &dyn JobQueue,
        received: &Received,
        record: &JournalJob,
    ) -> Result<Option<String>, IntakeError> {
        let store = &self.intake.store;
        queue.put_document(&record.id, &received.path).await?;
        match store.accept(record.clone()).await {
            Ok(journal::Accepted::New) => {}
            Ok(journal::Accepted::Existing {
                id: existing,
                same_body,
            }) => {
                queue.remove_document(&record.id).await;
                if !same_body {
                    return Err(IntakeError::IdempotencyKeyReused { existing });
                }
                let earlier = store
                    .get(&existing)
                    .await
                    .map_err(IntakeError::from_store)?;
                if let Some(earlier) = earlier.filter(|j| j.state == "accepted") {
                    queue.publish(&earlier).await?;
                }
                return Ok(Some(existing));
            }
            Err(e) => {
                queue.remove_document(&record.id).await;
                return Err(IntakeError::from_store(e));
            }
        }
        if let Err(e) = queue.publish(record).await {
            match store.withdraw(&record.id).await {
                Ok(()) => queue.remove_document(&record.id).await,
                // Its document stays too: a retry with its Idempotency-Key queues it.
                Err(w) => {
                    tracing::warn!(job_id = %record.id, error = %w, "a job that could not be queued stays recorded")
                }
            }
            return Err(e.into());
        }
        Ok(None)
    }
}

impl Received {
    /// Removes intake's copy of a refused document; a document taken in place stays.
    async fn discard(&self) {
        if self.in_spool {
            let _ = tokio::fs::remove_file(&self.path).await;
        }
    }
}

/// Writes chunks to `<spool>/<id>.part`, fsyncs it, renames it to `<spool>/<id>` and fsyncs
/// the directory; returns the path, the size, the first bytes and the hex SHA-256.
async fn write_durably<S, E>(
    spool: &Path,
    id: &str,
    mut chunks: S,
    limit: u64,
    idle: std::time::Duration,
) -> Result<(PathBuf, u64, Vec<u8>, String), IntakeError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let io = IntakeError::SpoolUnwritable;
    tokio::fs::create_dir_all(spool).await.map_err(io)?;
    let partial = spool.join(format!("{id}.part"));
    let path = spool.join(id);
    let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
    let mut written = 0u64;
    let mut head = Vec::new();
    let mut hasher = Sha256::new();
    let outcome: Result<(), IntakeError> = async {
        loop {
            let Some(chunk) = tokio::time::timeout(idle, chunks.next())
                .await
                .map_err(|_| IntakeError::UploadStalled(idle))?
            else {
                break;
            };
            let chunk = chunk.map_err(|e| IntakeError::BadBody(e.to_string()))?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(IntakeError::TooLarge { limit });
            }
            if head.len() < HEAD_BYTES {
                head.extend_from_slice(&chunk[..chunk.len().min(HEAD_BYTES - head.len())]);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        drop(file);
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, &path).await.map_err(io)?;
    // The rename is durable only once the directory is: the journal row that follows must
    // never outlive the file it points to.
    tokio::fs::File::open(spool)
        .await
        .map_err(io)?
        .sync_all()
        .await
        .map_err(io)?;
    Ok((path, written, head, format!("{:x}", hasher.finalize())))
}
