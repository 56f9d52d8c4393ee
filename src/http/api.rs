//! Handlers of the `/v1` jobs API and `/readyz`: each translates an HTTP request into calls
//! on the job service ([`crate::service`]) and its answer or [`ApiError`] back into HTTP.

use std::path::Path;
use std::sync::Arc;

use bytes::Buf;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use warp::Reply;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::{ApiError, AppState, json};
use crate::config::OutputFormat;
use crate::runtime::metrics as m;
use crate::service::intake::{Accepted, Admission, IntakeError, Received};
use crate::service::jobs::JobStatus;
use crate::service::journal::ListFilter;
use crate::service::keys::Caller;
use crate::stages::save::formats;

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
fn reject(pipeline: &str, error: ApiError) -> Response {
    if !matches!(
        error,
        ApiError::Intake(crate::service::intake::IntakeError::UnknownPipeline(_))
    ) {
        metrics::counter!(m::JOBS_REJECTED, "pipeline" => pipeline.to_string(), "reason" => error.code())
            .increment(1);
    }
    let mut response = error.into_response();
    response.headers_mut().insert(
        warp::http::header::CONNECTION,
        warp::http::HeaderValue::from_static("close"),
    );
    response
}

fn header(headers: &HeaderMap, name: impl warp::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /v1/pipelines/{pipeline}/jobs`: a raw document body, or `multipart/form-data` with a
/// `file` field, streamed to the spool; 202 with the job's id and links.
pub async fn submit<S, B>(
    pipeline: String,
    caller: Caller,
    state: Arc<AppState>,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: Buf + Send,
{
    match submit_job(&pipeline, caller, &state, &headers, body).await {
        Ok(Accepted::New(status)) => {
            let location = format!("/v1/jobs/{}", status.id);
            let mut response = json(StatusCode::ACCEPTED, &status_body(status));
            response.headers_mut().insert(
                warp::http::header::LOCATION,
                location.parse().expect("ids are header-safe"),
            );
            response
        }
        Ok(Accepted::Existing {
            status: Some(status),
            ..
        }) => json(StatusCode::OK, &status_body(status)),
        Ok(Accepted::Existing { id, status: None }) => ApiError::UnknownJob(id).into_response(),
        Err(error) => reject(&pipeline, error),
    }
}

async fn submit_job<S, B>(
    pipeline: &str,
    caller: Caller,
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: S,
) -> Result<Accepted, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: Buf + Send,
{
    let declared = header(headers, warp::http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let key = header(headers, "idempotency-key").map(str::to_string);
    let admission = state
        .intake
        .admit(pipeline, declared, key, caller.tenant.clone())?;
    let content_type = header(headers, warp::http::header::CONTENT_TYPE).unwrap_or("");
    let chunks = body.map_ok(|mut b| b.copy_to_bytes(b.remaining()));
    let (name, spooled) = if content_type.starts_with("multipart/form-data") {
        spool_multipart(&admission, content_type, chunks).await?
    } else {
        let name = header(headers, "x-filename")
            .unwrap_or("upload")
            .to_string();
        (name, admission.spool(chunks).await?)
    };
    Ok(admission.accept(spooled, name).await?)
}

/// Streams the `file` field of a multipart form into the spool; returns the file's name.
async fn spool_multipart<S>(
    admission: &Admission,
    content_type: &str,
    body: S,
) -> Result<(String, Received), ApiError>
where
    S: Stream<Item = Result<bytes::Bytes, warp::Error>> + Send + Unpin + 'static,
{
    let bad = |e: multer::Error| ApiError::BadMultipart(e.to_string());
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let mut form = multer::Multipart::new(body, boundary);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("upload").to_string();
        return Ok((name, admission.spool(field.boxed()).await?));
    }
    Err(ApiError::BadMultipart(
        "the form has no `file` field".into(),
    ))
}

/// Job `id`'s status if `caller` may see it: 404 for another tenant's job as for one that
/// does not exist, 503 while the job store cannot be reached.
async fn visible_status(
    id: &str,
    caller: &Caller,
    state: &AppState,
) -> Result<JobStatus, ApiError> {
    state
        .intake
        .status_for(id, caller)
        .await?
        .ok_or_else(|| ApiError::UnknownJob(id.to_string()))
}

/// `GET /v1/jobs/{id}`: another tenant's job answers as one that does not exist.
pub async fn status(id: String, caller: Caller, state: Arc<AppState>) -> Response {
    match visible_status(&id, &caller, &state).await {
        Ok(status) => json(StatusCode::OK, &status_body(status)),
        Err(refused) => refused.into_response(),
    }
}

/// The states `GET /v1/jobs` filters by (a running job is `queued` in the journal).
const LISTED_STATES: [&str; 4] = ["queued", "done", "failed", "cancelled"];
/// Most jobs `GET /v1/jobs` lists at once.
const MAX_LIST_LIMIT: u32 = 1000;

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
pub async fn list(caller: Caller, query: ListQuery, state: Arc<AppState>) -> Response {
    let since_ms = match &query.since {
        None => None,
        Some(text) => {
            match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            {
                Ok(t) => Some((t.unix_timestamp_nanos() / 1_000_000) as i64),
                Err(e) => {
                    return ApiError::BadQuery(format!(
                        "since: {e} (expected RFC 3339, e.g. 2026-11-26T03:00:00Z)"
                    ))
                    .into_response();
                }
            }
        }
    };
    if let Some(s) = &query.state
        && !LISTED_STATES.contains(&s.as_str())
    {
        return ApiError::BadQuery(format!(
            "state: {s:?} is not one of {}",
            LISTED_STATES.join(", ")
        ))
        .into_response();
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return ApiError::BadQuery(format!("limit: {limit} is not 1 to {MAX_LIST_LIMIT}"))
            .into_response();
    }
    let filter = ListFilter {
        state: query
            .state
            .map(|s| if s == "queued" { "accepted".into() } else { s }),
        pipeline: query.pipeline,
        since_ms,
        after: query.after,
        tenant: (!caller.sees_every_job()).then(|| caller.tenant.clone().unwrap_or_default()),
        limit,
    };
    let jobs = match state.intake.list(filter).await {
        Ok(jobs) => jobs,
        Err(e) => return ApiError::JournalUnreadable(e).into_response(),
    };
    let next = (jobs.len() == limit as usize)
        .then(|| jobs.last().map(|j| j.id.clone()))
        .flatten();
    let statuses: Vec<StatusBody> = jobs.into_iter().map(status_body).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({"jobs": statuses, "next": next}),
    )
}

/// Refuses a job the caller cannot see (404) or that is not finished yet (409).
async fn finished(id: &str, caller: &Caller, state: &AppState) -> Result<(), ApiError> {
    let status = visible_status(id, caller, state).await?;
    if !status.state.is_final() {
        return Err(ApiError::NotFinished {
            id: id.to_string(),
            state: status.state,
        });
    }
    Ok(())
}

/// `GET /v1/jobs/{id}/result`: the saved result record; 409 while the job is not finished.
pub async fn result(id: String, caller: Caller, state: Arc<AppState>) -> Response {
    if let Err(refused) = finished(&id, &caller, &state).await {
        return refused.into_response();
    }
    match state.intake.result(&id).await {
        Some(body) => {
            warp::reply::with_header(body, "content-type", "application/json").into_response()
        }
        None => ApiError::ResultMissing(id).into_response(),
    }
}

/// `GET /v1/jobs/{id}/outputs/{format}`: one of the files the pipeline wrote beside the
/// result (`txt`, `hocr`, `alto`, `tsv`, `pdf`), as a download; 404 `no_output` when its
/// pipeline does not write that format.
pub async fn output(id: String, format: String, caller: Caller, state: Arc<AppState>) -> Response {
    if let Err(refused) = finished(&id, &caller, &state).await {
        return refused.into_response();
    }
    let Some(output) = OutputFormat::from_name(&format) else {
        return ApiError::NoOutput { id, format }.into_response();
    };
    let extension = formats::extension(output);
    let read = match state.intake.result_path(&id).await {
        Some(result) => match result.parent() {
            Some(dir) => tokio::fs::read(dir.join(format!("{id}.{extension}")))
                .await
                .ok(),
            None => None,
        },
        None => None,
    };
    // In a cluster the node that ran the job may be another: the job store keeps its files.
    let read = match read {
        Some(body) => Some(body),
        None => state
            .intake
            .store
            .file(&id, &format!("{id}.{extension}"))
            .await
            .ok()
            .flatten(),
    };
    let Some(body) = read else {
        return ApiError::NoOutput { id, format }.into_response();
    };
    let mut response =
        warp::reply::with_header(body, "content-type", output.media_type()).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{id}.{extension}\"")
            .parse()
            .expect("ids are header-safe"),
    );
    response
}

/// `GET /v1/jobs/{id}/pages/{n}/preview`: page `n`'s preview, a PNG of the page as OCR read
/// it, reduced to the pipeline's `save.preview_max_px`. It exists once the page is OCRed
/// (while the job still runs, too); 404 `no_preview` for pages not OCRed or when the
/// pipeline keeps no previews.
pub async fn preview(id: String, page: u32, caller: Caller, state: Arc<AppState>) -> Response {
    let status = match visible_status(&id, &caller, &state).await {
        Ok(status) => status,
        Err(refused) => return refused.into_response(),
    };
    // A finished job's files are beside its result; a running one's in its pipeline's
    // results directory.
    let results_dir = match state.intake.result_path(&id).await {
        Some(result) => result.parent().map(Path::to_path_buf),
        None => state
            .intake
            .pipelines()
            .get(&status.pipeline)
            .map(|h| h.pipeline.save.directory.clone()),
    };
    let read = match results_dir {
        Some(dir) => tokio::fs::read(formats::preview_path(&dir, &id, page))
            .await
            .ok(),
        None => None,
    };
    let read = match read {
        Some(png) => Some(png),
        None => match formats::preview_path(Path::new(""), &id, page).to_str() {
            Some(name) => state.intake.store.file(&id, name).await.ok().flatten(),
            None => None,
        },
    };
    match read {
        Some(png) => {
            let mut response =
                warp::reply::with_header(png, "content-type", "image/png").into_response();
            response.headers_mut().insert(
                warp::http::header::CACHE_CONTROL,
                warp::http::HeaderValue::from_static("private, max-age=3600"),
            );
            response
        }
        None => ApiError::NoPreview { id, page }.into_response(),
    }
}

/// `GET /v1/jobs/{id}/events`: server-sent events, one `status` event per change, closing
/// after the final state.
pub async fn events(id: String, caller: Caller, state: Arc<AppState>) -> Response {
    // In a cluster, events come from the job store: this node may run only a range of it.
    let visible = !state.intake.is_clustered()
        && state
            .intake
            .jobs
            .get(&id)
            .is_some_and(|s| caller.sees(s.tenant.as_deref()));
    let rx = match state.intake.jobs.subscribe(&id).filter(|_| visible) {
        Some(rx) => rx,
        // A job another node runs (in a cluster), followed through the job store.
        None => {
            if let Err(refused) = visible_status(&id, &caller, &state).await {
                return refused.into_response();
            }
            let followed = match state.intake.store.follow(&id).await {
                Ok(Some(statuses)) => forward(statuses).await,
                _ => None,
            };
            match followed {
                Some(rx) => rx,
                None => return ApiError::UnknownJob(id).into_response(),
            }
        }
    };
    let statuses = futures_util::stream::unfold(Some((rx, true)), |next| async move {
        let (mut rx, first) = next?;
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let status = rx.borrow_and_update().clone();
        let done = status.state.is_final();
        Some((status, if done { None } else { Some((rx, false)) }))
    });
    // Counted against the tenant while the stream lives: it ends with the job's final state
    // or when the client goes away.
    let slot = match state.event_streams.open(caller.tenant.as_deref()) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let events = statuses.map(move |status| {
        let _held = &slot;
        let done = status.state.is_final();
        warp::sse::Event::default()
            .event(if done { "end" } else { "status" })
            .json_data(status_body(status))
            .map_err(std::io::Error::other)
    });
    warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response()
}

/// A watch of the statuses `statuses` yields, as the registry gives for jobs of this process;
/// `None` if it yields none.
async fn forward(
    mut statuses: futures_util::stream::BoxStream<'static, JobStatus>,
) -> Option<tokio::sync::watch::Receiver<JobStatus>> {
    let first = statuses.next().await?;
    let (tx, rx) = tokio::sync::watch::channel(first);
    tokio::spawn(async move {
        while let Some(status) = statuses.next().await {
            if tx.send(status).is_err() {
                break;
            }
        }
    });
    Some(rx)
}

/// `DELETE /v1/jobs/{id}`: asks the job to stop; 202 with its status, 409 if already over.
pub async fn cancel(id: String, caller: Caller, state: Arc<AppState>) -> Response {
    let status = match visible_status(&id, &caller, &state).await {
        Ok(status) => status,
        Err(refused) => return refused.into_response(),
    };
    // In a cluster, the job store passes the request to every node running a part of it.
    let local = if state.intake.is_clustered() {
        None
    } else {
        state.intake.jobs.cancel(&id)
    };
    let asked = match local {
        Some(asked) => Some(asked),
        // Not run by this process: in a cluster, the job store passes the request on.
        None => match state.intake.store.cancel(&id).await {
            Ok(asked) => asked,
            Err(e) => {
                return ApiError::Intake(IntakeError::ClusterUnavailable {
                    reason: format!("cannot cancel job {id}: {e}"),
                    retry_after_secs: crate::service::intake::STORE_UNAVAILABLE_RETRY_AFTER_SECS,
                })
                .into_response();
            }
        },
    };
    match asked {
        None => ApiError::UnknownJob(id).into_response(),
        Some(s) if s.is_final() => ApiError::AlreadyFinished { id, state: s }.into_response(),
        Some(_) => {
            let now = state.intake.status(&id).await.unwrap_or(status);
            json(StatusCode::ACCEPTED, &status_body(now))
        }
    }
}

/// `GET /v1/pipelines`: the loaded pipelines and their settings.
pub async fn pipelines(_caller: Caller, state: Arc<AppState>) -> Response {
    let list: Vec<_> = state
        .intake
        .pipelines()
        .values()
        .map(|h| serde_json::json!({"name": h.pipeline.name, "settings": &*h.pipeline}))
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "pipelines": list }))
}

/// `GET /readyz`: pipelines running, result and spool directories writable, not stopping.
pub async fn readyz(state: Arc<AppState>) -> Response {
    let mut problems = Vec::new();
    if state.intake.is_shutting_down() {
        problems.push("shutting down".to_string());
    }
    for (name, handle) in state.intake.pipelines() {
        if !handle.is_running() {
            problems.push(format!("pipeline {name} is not running"));
        }
        if let Err(e) = writable(&handle.pipeline.save.directory).await {
            problems.push(format!("pipeline {name}: results directory: {e}"));
        }
    }
    if let Err(e) = writable(state.intake.spool()).await {
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
