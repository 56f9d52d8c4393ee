//! Handlers of the `/v1` jobs API, `/readyz`, and the upload path into the spool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use warp::Reply;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::{ApiError, AppState, json};
use crate::error::{ErrorRecord, JobError};
use crate::jobs::{JobState, JobStatus};
use crate::journal::{Accepted, JournalJob, ListFilter};
use crate::metrics as m;
use crate::progress::Progress;
use crate::stages::ingest::JobRequest;
use crate::stages::ingest::detect::detect_media_type;
use crate::supervisor::PipelineHandle;

/// Longest `Retry-After` the API suggests, in seconds.
const MAX_RETRY_AFTER_SECS: u64 = 600;

#[derive(Serialize)]
struct Links {
    #[serde(rename = "self")]
    status: String,
    result: String,
    events: String,
}

fn links(id: &str) -> Links {
    Links {
        status: format!("/v1/jobs/{id}"),
        result: format!("/v1/jobs/{id}/result"),
        events: format!("/v1/jobs/{id}/events"),
    }
}

#[derive(Serialize)]
struct StatusBody {
    #[serde(flatten)]
    status: JobStatus,
    links: Links,
}

fn status_body(status: JobStatus) -> StatusBody {
    let links = links(&status.id);
    StatusBody { status, links }
}

/// A refused submission. Its body may be unread, so the connection cannot carry another
/// request: `Connection: close` tells the client not to reuse it, rather than find it closed.
fn reject(pipeline: &str, reason: &'static str, error: ApiError) -> Response {
    metrics::counter!(m::JOBS_REJECTED, "pipeline" => pipeline.to_string(), "reason" => reason)
        .increment(1);
    closing(error.into_response())
}

fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        warp::http::header::CONNECTION,
        warp::http::HeaderValue::from_static("close"),
    );
    response
}

/// `POST /v1/pipelines/{pipeline}/jobs`: a raw document body, or `multipart/form-data` with a
/// `file` field, streamed to the spool; 202 with the job's id and links.
pub async fn submit<S, B>(
    pipeline: String,
    state: Arc<AppState>,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: Buf + Send,
{
    let Some(handle) = state.pipelines.get(&pipeline) else {
        return closing(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_pipeline",
                format!("no pipeline named {pipeline:?}; GET /v1/pipelines lists them"),
            )
            .into_response(),
        );
    };
    if state.is_shutting_down() {
        return reject(
            &pipeline,
            "shutting_down",
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the daemon is stopping and accepts no new jobs",
            ),
        );
    }
    let limits = handle.pipeline.limits;
    let declared: Option<u64> = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let _reservation = match admit(handle, &state, declared.unwrap_or(0)) {
        Ok(reservation) => reservation,
        Err(error) => return reject(&pipeline, "admission_full", error),
    };
    if declared.is_some_and(|n| n > limits.max_document_bytes) {
        return reject(&pipeline, "too_large", too_large(limits.max_document_bytes));
    }

    let id = uuid::Uuid::now_v7().simple().to_string();
    let content_type = headers
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = body.map_ok(|mut b| b.copy_to_bytes(b.remaining()));
    let upload = if content_type.starts_with("multipart/form-data") {
        spool_multipart(
            &state.spool,
            &id,
            &content_type,
            bytes,
            limits.max_document_bytes,
        )
        .await
    } else {
        let name = headers
            .get("x-filename")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("upload")
            .to_string();
        spool_stream(&state.spool, &id, bytes, limits.max_document_bytes)
            .await
            .map(|u| Upload { name, ..u })
    };
    let upload = match upload {
        Ok(u) => u,
        Err((reason, error)) => return reject(&pipeline, reason, error),
    };
    if let Err(e) = detect_media_type(&upload.head) {
        let _ = tokio::fs::remove_file(&upload.path).await;
        let (status, reason) = match e {
            JobError::EmptyDocument => (StatusCode::BAD_REQUEST, "empty_document"),
            _ => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        };
        return reject(
            &pipeline,
            reason,
            ApiError::new(status, reason, e.to_string()),
        );
    }

    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 255)
    {
        let _ = tokio::fs::remove_file(&upload.path).await;
        return reject(
            &pipeline,
            "bad_idempotency_key",
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                "Idempotency-Key must be 1 to 255 characters",
            ),
        );
    }
    // The job is on disk (its upload fsynced) and in the journal before the 202.
    let record = JournalJob {
        id: id.clone(),
        pipeline: pipeline.clone(),
        name: upload.name.clone(),
        spool_path: upload.path.to_string_lossy().into_owned(),
        bytes: upload.bytes,
        sha256: upload.sha256.clone(),
        idempotency_key,
        state: "accepted".into(),
        submitted_at_ms: crate::journal::now_ms(),
        finished_at_ms: None,
        error_code: None,
        result_path: None,
    };
    let journal = state.journal.clone();
    let accepted = tokio::task::spawn_blocking(move || journal.accept(&record))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match accepted {
        Ok(Accepted::New) => {}
        Ok(Accepted::Existing {
            id: existing,
            same_body,
        }) => {
            let _ = tokio::fs::remove_file(&upload.path).await;
            if !same_body {
                return reject(
                    &pipeline,
                    "idempotency_key_reused",
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_key_reused",
                        format!(
                            "this Idempotency-Key was used for job {existing} with a different document"
                        ),
                    ),
                );
            }
            return match job_status(&state, &existing).await {
                Some(status) => json(StatusCode::OK, &status_body(status)),
                None => unknown_job(&existing),
            };
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&upload.path).await;
            return reject(
                &pipeline,
                "journal_unwritable",
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "journal_unwritable",
                    format!("cannot record the job: {e}"),
                ),
            );
        }
    }

    handle.enqueue(
        JobRequest {
            id: id.clone(),
            name: upload.name,
            path: upload.path,
        },
        upload.bytes,
    );
    metrics::counter!(m::JOBS_ACCEPTED, "pipeline" => pipeline.clone()).increment(1);
    let status = state.jobs.get(&id).expect("registered by enqueue");
    let mut response = json(StatusCode::ACCEPTED, &status_body(status));
    response.headers_mut().insert(
        warp::http::header::LOCATION,
        format!("/v1/jobs/{id}")
            .parse()
            .expect("ids are header-safe"),
    );
    response
}

/// An upload counted against its pipeline's admission budget until the job registry counts
/// it (or the upload fails).
struct Reservation {
    state: Arc<AppState>,
    pipeline: String,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut uploading = self
            .state
            .uploading
            .lock()
            .expect("admission lock poisoned");
        if let Some((pages, bytes)) = uploading.get_mut(&self.pipeline) {
            *pages -= 1;
            *bytes -= self.bytes;
        }
    }
}

/// Admits a submission while the pipeline's unfinished pages and bytes (registered jobs plus
/// uploads in progress) are under budget; otherwise refuses it, suggesting when to retry from
/// the rate pages have been finishing at. Checking and reserving happen under one lock, so
/// concurrent submissions cannot all slip through.
fn admit(
    handle: &PipelineHandle,
    state: &Arc<AppState>,
    incoming_bytes: u64,
) -> Result<Reservation, ApiError> {
    let budget = handle.pipeline.admission;
    let name = &handle.pipeline.name;
    let mut uploading = state.uploading.lock().expect("admission lock poisoned");
    let registered = state.jobs.usage(name);
    let in_flight = uploading.entry(name.clone()).or_default();
    let pages = registered.pages + in_flight.0;
    let bytes = registered.bytes + in_flight.1;
    if pages < budget.max_pages_in_system
        && bytes.saturating_add(incoming_bytes) <= budget.max_bytes_in_system
    {
        in_flight.0 += 1;
        in_flight.1 += incoming_bytes;
        return Ok(Reservation {
            state: state.clone(),
            pipeline: name.clone(),
            bytes: incoming_bytes,
        });
    }
    drop(uploading);
    let excess_pages = (pages + 1)
        .saturating_sub(budget.max_pages_in_system)
        .max(1);
    let finished = Progress::get(&handle.progress.pages_finished) as f64;
    let rate = finished / handle.started.elapsed().as_secs_f64().max(1.0);
    let wait = if rate > 0.0 {
        (excess_pages as f64 / rate).ceil() as u64
    } else {
        MAX_RETRY_AFTER_SECS.min(30)
    };
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "admission_full",
        format!(
            "pipeline {:?} has {pages} pages and {bytes} bytes in progress (budget {} pages, {} bytes); retry later",
            handle.pipeline.name, budget.max_pages_in_system, budget.max_bytes_in_system
        ),
    );
    error.retry_after_secs = Some(wait.clamp(1, MAX_RETRY_AFTER_SECS));
    Err(error)
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("this pipeline accepts documents of at most {limit} bytes"),
    )
}

/// A document written to the spool.
struct Upload {
    path: PathBuf,
    name: String,
    bytes: u64,
    /// The first bytes, for type detection.
    head: Vec<u8>,
    /// Hex SHA-256 of the whole document, for `Idempotency-Key`.
    sha256: String,
}

type UploadError = (&'static str, ApiError);

fn io_error(e: std::io::Error) -> UploadError {
    (
        "io",
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "spool_unwritable",
            format!("cannot store the upload: {e}"),
        ),
    )
}

/// Streams chunks into `<spool>/<id>`, durably, refusing more than `limit` bytes. The file
/// appears under its final name only when complete.
async fn spool_stream<S, E>(
    spool: &Path,
    id: &str,
    mut chunks: S,
    limit: u64,
) -> Result<Upload, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    tokio::fs::create_dir_all(spool).await.map_err(io_error)?;
    let partial = spool.join(format!("{id}.part"));
    let path = spool.join(id);
    let mut file = tokio::fs::File::create(&partial).await.map_err(io_error)?;
    let mut written = 0u64;
    let mut head = Vec::new();
    let mut hasher = Sha256::new();
    let outcome: Result<(), UploadError> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                (
                    "bad_body",
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        format!("cannot read the body: {e}"),
                    ),
                )
            })?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(("too_large", too_large(limit)));
            }
            if head.len() < 1024 {
                head.extend_from_slice(&chunk[..chunk.len().min(1024 - head.len())]);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        file.sync_all().await.map_err(io_error)?;
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        drop(file);
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, &path).await.map_err(io_error)?;
    // The rename is durable only once the directory is: the journal row that follows must
    // never outlive the file it points to.
    tokio::fs::File::open(spool)
        .await
        .map_err(io_error)?
        .sync_all()
        .await
        .map_err(io_error)?;
    Ok(Upload {
        path,
        name: String::new(),
        bytes: written,
        head,
        sha256: format!("{:x}", hasher.finalize()),
    })
}

/// Streams the `file` field of a multipart form into the spool.
async fn spool_multipart<S>(
    spool: &Path,
    id: &str,
    content_type: &str,
    body: S,
    limit: u64,
) -> Result<Upload, UploadError>
where
    S: Stream<Item = Result<Bytes, warp::Error>> + Send + Unpin + 'static,
{
    let bad = |message: String| {
        (
            "bad_multipart",
            ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", message),
        )
    };
    let boundary = multer::parse_boundary(content_type).map_err(|e| bad(e.to_string()))?;
    let mut form = multer::Multipart::new(body, boundary);
    while let Some(field) = form.next_field().await.map_err(|e| bad(e.to_string()))? {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("upload").to_string();
        let upload = spool_stream(spool, id, field.boxed(), limit).await?;
        return Ok(Upload { name, ..upload });
    }
    Err(bad("the form has no `file` field".into()))
}

fn unknown_job(id: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_job",
        format!("no job {id:?}"),
    )
    .into_response()
}

/// A journaled job as a status: what is known of jobs this process did not run itself.
fn journal_status(job: &JournalJob) -> JobStatus {
    let state = match job.state.as_str() {
        "done" => JobState::Done,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        _ => JobState::Queued,
    };
    JobStatus {
        id: job.id.clone(),
        pipeline: job.pipeline.clone(),
        name: job.name.clone(),
        state,
        submitted_at: humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(job.submitted_at_ms as u64),
        )
        .to_string(),
        bytes: job.bytes,
        pages: Default::default(),
        timings: Default::default(),
        error: job.error_code.as_ref().map(|code| ErrorRecord {
            code: code.clone(),
            message: format!("the job failed ({code})"),
        }),
        sinks: Default::default(),
    }
}

fn journal_job(state: &AppState, id: &str) -> Option<JournalJob> {
    state.journal.get(id).ok().flatten()
}

/// A job's status from the registry, else from the journal (jobs of an earlier run).
async fn job_status(state: &Arc<AppState>, id: &str) -> Option<JobStatus> {
    if let Some(status) = state.jobs.get(id) {
        return Some(status);
    }
    let (state, id) = (state.clone(), id.to_string());
    tokio::task::spawn_blocking(move || {
        let mut status = journal_status(&journal_job(&state, &id)?);
        status.sinks = state.journal.deliveries(&id).unwrap_or_default();
        Some(status)
    })
    .await
    .ok()
    .flatten()
}

/// `GET /v1/jobs/{id}`.
pub async fn status(id: String, state: Arc<AppState>) -> Response {
    match job_status(&state, &id).await {
        Some(status) => json(StatusCode::OK, &status_body(status)),
        None => unknown_job(&id),
    }
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    pipeline: Option<String>,
    /// RFC 3339, e.g. `2026-11-26T03:00:00Z`.
    since: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/jobs`: jobs from the journal, oldest first, filtered by state, pipeline and
/// submission time, `limit` at a time (default 100, at most 1000); `next` is the cursor for
/// the following page, null on the last.
pub async fn list(query: ListQuery, state: Arc<AppState>) -> Response {
    let since_ms = match &query.since {
        None => None,
        Some(text) => match humantime::parse_rfc3339_weak(text) {
            Ok(t) => Some(
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            ),
            Err(e) => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("since: {e} (expected RFC 3339, e.g. 2026-11-26T03:00:00Z)"),
                )
                .into_response();
            }
        },
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let filter = ListFilter {
        state: query
            .state
            .map(|s| if s == "queued" { "accepted".into() } else { s }),
        pipeline: query.pipeline,
        since_ms,
        after: query.after,
        limit,
    };
    let journal = state.journal.clone();
    let found = tokio::task::spawn_blocking(move || journal.list(&filter)).await;
    let jobs = match found {
        Ok(Ok(jobs)) => jobs,
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "journal_unreadable",
                e.to_string(),
            )
            .into_response();
        }
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                .into_response();
        }
    };
    let next = (jobs.len() == limit as usize).then(|| jobs.last().map(|j| j.id.clone()));
    let statuses: Vec<StatusBody> = jobs
        .iter()
        .map(|j| status_body(state.jobs.get(&j.id).unwrap_or_else(|| journal_status(j))))
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({"jobs": statuses, "next": next.flatten()}),
    )
}

/// `GET /v1/jobs/{id}/result`: the saved result record; 409 while the job is not finished.
pub async fn result(id: String, state: Arc<AppState>) -> Response {
    let Some(status) = job_status(&state, &id).await else {
        return unknown_job(&id);
    };
    if !status.state.is_final() {
        return ApiError::new(
            StatusCode::CONFLICT,
            "not_finished",
            format!("job {id} is {:?}; its result is not ready", status.state),
        )
        .into_response();
    }
    let path = match state.jobs.result_path(&id) {
        Some(path) => Some(path),
        None => {
            let (state, id) = (state.clone(), id.clone());
            tokio::task::spawn_blocking(move || journal_job(&state, &id))
                .await
                .ok()
                .flatten()
                .and_then(|j| j.result_path)
                .map(PathBuf::from)
        }
    };
    let read = match path {
        Some(path) => tokio::fs::read(&path).await.ok(),
        None => None,
    };
    match read {
        Some(body) => {
            warp::reply::with_header(body, "content-type", "application/json").into_response()
        }
        None => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "result_missing",
            format!("job {id} finished but its result could not be read"),
        )
        .into_response(),
    }
}

/// `GET /v1/jobs/{id}/events`: server-sent events, one `status` event per change, closing
/// after the final state.
pub async fn events(id: String, state: Arc<AppState>) -> Response {
    let Some(rx) = state.jobs.subscribe(&id) else {
        return unknown_job(&id);
    };
    let stream = futures_util::stream::unfold(Some((rx, true)), |next| async move {
        let (mut rx, first) = next?;
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let status = rx.borrow_and_update().clone();
        let done = status.state.is_final();
        let event = warp::sse::Event::default()
            .event(if done { "end" } else { "status" })
            .json_data(status_body(status))
            .map_err(std::io::Error::other);
        Some((event, if done { None } else { Some((rx, false)) }))
    });
    warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response()
}

/// `DELETE /v1/jobs/{id}`: asks the job to stop; 202 with its status, 409 if already over.
pub async fn cancel(id: String, state: Arc<AppState>) -> Response {
    match state.jobs.cancel(&id) {
        None => unknown_job(&id),
        Some(s) if s.is_final() => ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("job {id} is already {s:?}"),
        )
        .into_response(),
        Some(_) => json(
            StatusCode::ACCEPTED,
            &status_body(state.jobs.get(&id).expect("job exists")),
        ),
    }
}

/// `GET /v1/pipelines`: the loaded pipelines and their settings.
pub async fn pipelines(state: Arc<AppState>) -> Response {
    let list: Vec<_> = state
        .pipelines
        .values()
        .map(|h| serde_json::json!({"name": h.pipeline.name, "settings": &*h.pipeline}))
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "pipelines": list }))
}

/// `GET /readyz`: pipelines running, result and spool directories writable, not stopping.
pub async fn readyz(state: Arc<AppState>) -> Response {
    let mut problems = Vec::new();
    if state.is_shutting_down() {
        problems.push("shutting down".to_string());
    }
    for (name, handle) in &state.pipelines {
        if !handle.is_running() {
            problems.push(format!("pipeline {name} is not running"));
        }
        if let Err(e) = writable(&handle.pipeline.save.directory).await {
            problems.push(format!("pipeline {name}: results directory: {e}"));
        }
    }
    if let Err(e) = writable(&state.spool).await {
        problems.push(format!("spool directory: {e}"));
    }
    if problems.is_empty() {
        json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "not_ready", "problems": problems}),
        )
    }
}

/// Checks that a file can be created in `dir` (creating the directory if needed).
async fn writable(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        tempfile::tempfile_in(&dir).map(drop)
    })
    .await
    .map_err(std::io::Error::other)?
}
