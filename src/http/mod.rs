//! The HTTP edge (warp): the versioned jobs API, health, readiness and metrics.
//!
//! Handlers only do I/O: uploads stream to the spool directory, statuses come from the job
//! registry, results are read from disk. CPU work stays on the pool, whose threads run at a
//! lower priority, so the edge answers quickly while OCR saturates every core. Emits
//! `pagemill_http_requests_total` and `pagemill_http_request_duration_seconds` by route.

mod api;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::jobs::JobRegistry;
use crate::metrics as m;
use crate::supervisor::PipelineHandle;

/// The OpenAPI document of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What every handler shares.
pub struct AppState {
    pub pipelines: BTreeMap<String, Arc<PipelineHandle>>,
    /// Every accepted job, durably; see [`crate::journal`].
    pub journal: Arc<crate::journal::Journal>,
    pub jobs: Arc<JobRegistry>,
    /// Uploaded documents wait here until their job is finished.
    pub spool: PathBuf,
    pub metrics: Option<PrometheusHandle>,
    /// Set when the daemon is stopping: no new jobs, not ready.
    pub shutting_down: AtomicBool,
    /// Pages and bytes of submissions still uploading, per pipeline: admitted, not yet in
    /// the job registry.
    pub uploading: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

/// An API error: `{"error": {"code": ..., "message": ...}}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = json(self.status, &body);
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                secs.to_string().parse().expect("digits are a valid header"),
            );
        }
        response
    }
}

/// A JSON response with a status code.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = warp::reply::json(body).into_response();
    *response.status_mut() = status;
    response
}

/// The route template a path belongs to: a bounded metric label, never a job id.
pub fn route_label(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "pipelines"] => "/v1/pipelines",
        ["v1", "pipelines", _, "jobs"] => "/v1/pipelines/{pipeline}/jobs",
        ["v1", "jobs"] => "/v1/jobs",
        ["v1", "jobs", _] => "/v1/jobs/{id}",
        ["v1", "jobs", _, "result"] => "/v1/jobs/{id}/result",
        ["v1", "jobs", _, "events"] => "/v1/jobs/{id}/events",
        ["v1", "openapi.json"] => "/v1/openapi.json",
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        _ => "other",
    }
}

/// Every route of the daemon, with request metrics and JSON errors for unknown routes.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };

    let submit = warp::path!("v1" / "pipelines" / String / "jobs")
        .and(warp::post())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(api::submit);
    let list = warp::path!("v1" / "jobs")
        .and(warp::get())
        .and(warp::query::<api::ListQuery>())
        .and(with_state.clone())
        .then(api::list);
    let status = warp::path!("v1" / "jobs" / String)
        .and(warp::get())
        .and(with_state.clone())
        .then(api::status);
    let result = warp::path!("v1" / "jobs" / String / "result")
        .and(warp::get())
        .and(with_state.clone())
        .then(api::result);
    let events = warp::path!("v1" / "jobs" / String / "events")
        .and(warp::get())
        .and(with_state.clone())
        .then(api::events);
    let cancel = warp::path!("v1" / "jobs" / String)
        .and(warp::delete())
        .and(with_state.clone())
        .then(api::cancel);
    let pipelines = warp::path!("v1" / "pipelines")
        .and(warp::get())
        .and(with_state.clone())
        .then(api::pipelines);
    let openapi = warp::path!("v1" / "openapi.json").and(warp::get()).map(|| {
        warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response()
    });
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state.clone())
        .then(api::readyz);
    let metrics_route = warp::path!("metrics")
        .and(warp::get())
        .and(with_state.clone())
        .map(|state: Arc<AppState>| match &state.metrics {
            Some(handle) => warp::reply::with_header(
                {
                    state.sample_admission();
                    handle.render()
                },
                "content-type",
                "text/plain; version=0.0.4",
            )
            .into_response(),
            None => ApiError::new(StatusCode::NOT_FOUND, "no_metrics", "metrics are off")
                .into_response(),
        });

    let api = submit
        .or(list)
        .unify()
        .or(status)
        .unify()
        .or(result)
        .unify()
        .or(events)
        .unify()
        .or(cancel)
        .unify()
        .or(pipelines)
        .unify()
        .or(openapi)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics_route)
        .unify();

    api.recover(|rejection: warp::Rejection| async move {
        let error = if rejection.is_not_found() {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
        } else if rejection
            .find::<warp::reject::MethodNotAllowed>()
            .is_some()
        {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("{rejection:?}"))
        };
        Ok::<_, Infallible>(error.into_response())
    })
    .unify()
    .with(warp::log::custom(|info| {
        let route = route_label(info.path());
        let method = info.method().as_str().to_string();
        metrics::counter!(m::HTTP_REQUESTS, "route" => route, "method" => method.clone(), "code" => info.status().as_u16().to_string())
            .increment(1);
        metrics::histogram!(m::HTTP_REQUEST_SECONDS, "route" => route, "method" => method)
            .record(info.elapsed().as_secs_f64());
    }))
}

/// Binds `listen` and serves until `shutdown` resolves; returns the bound address through
/// `bound` before serving (port 0 picks a free port).
pub async fn serve(
    state: Arc<AppState>,
    listen: SocketAddr,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    bound(listener.local_addr()?);
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    Ok(())
}

impl AppState {
    /// Sets the admission gauges of every pipeline from the job registry and the uploads in
    /// progress; called just before the metrics are rendered.
    pub fn sample_admission(&self) {
        let uploading = self.uploading.lock().expect("admission lock poisoned");
        for (name, handle) in &self.pipelines {
            let usage = self.jobs.usage(name);
            let (pages, bytes) = uploading.get(name).copied().unwrap_or_default();
            let budget = handle.pipeline.admission;
            let label = [("pipeline", name.clone())];
            metrics::gauge!(m::JOBS_IN_SYSTEM, &label).set(usage.jobs as f64);
            metrics::gauge!(m::ADMISSION_PAGES, &label).set((usage.pages + pages) as f64);
            metrics::gauge!(m::ADMISSION_BYTES, &label).set((usage.bytes + bytes) as f64);
            metrics::gauge!(m::ADMISSION_PAGES_LIMIT, &label)
                .set(budget.max_pages_in_system as f64);
            metrics::gauge!(m::ADMISSION_BYTES_LIMIT, &label)
                .set(budget.max_bytes_in_system as f64);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
