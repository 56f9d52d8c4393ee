//! The HTTP edge (warp): the versioned jobs API, health, readiness, metrics and the web page
//! for people ([`web`]).
//!
//! Handlers only do I/O: uploads stream to the spool directory, statuses come from the job
//! registry, results are read from disk. CPU work stays on the pool, whose threads run at a
//! lower priority, so the edge answers quickly while OCR saturates every core. Emits
//! `pagemill_http_requests_total` and `pagemill_http_request_duration_seconds` by route.

mod api;
pub mod server;
mod web;

use std::convert::Infallible;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::model::error::JobError;
use crate::runtime::metrics as m;
use crate::service::intake::{Intake, IntakeError};
use crate::service::jobs::JobState;
use crate::service::keys::{Caller, KeyRing, Scope};

/// The OpenAPI document of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What every handler shares.
pub struct AppState {
    /// The job service: admission, spool, journal, registry, lookups.
    pub intake: Arc<Intake>,
    pub metrics: Option<PrometheusHandle>,
    pub access: Access,
    /// The event streams open, per tenant.
    pub event_streams: Arc<EventStreams>,
}

/// Event streams a tenant may hold open at once, unless `--max-event-streams-per-tenant`.
pub const DEFAULT_MAX_EVENT_STREAMS_PER_TENANT: usize = 16;

/// Counts the server-sent event streams each tenant holds open, so that no tenant can hold an
/// unbounded number of connections and watchers.
pub struct EventStreams {
    limit: usize,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open event stream, counted against its tenant until dropped.
pub struct EventStream {
    streams: Arc<EventStreams>,
    tenant: String,
}

impl EventStreams {
    pub fn new(limit: usize) -> EventStreams {
        EventStreams {
            limit,
            open: Default::default(),
        }
    }

    /// Counts a new stream of `tenant`, unless it holds `limit` already.
    pub fn open(self: &Arc<Self>, tenant: Option<&str>) -> Result<EventStream, ApiError> {
        let tenant = tenant.unwrap_or_default().to_string();
        let mut open = self.open.lock().expect("event stream count poisoned");
        let count = open.entry(tenant.clone()).or_default();
        if *count >= self.limit {
            return Err(ApiError::TooManyEventStreams(self.limit));
        }
        *count += 1;
        Ok(EventStream {
            streams: self.clone(),
            tenant,
        })
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .expect("event stream count poisoned");
        if let Some(count) = open.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// Who may call which route.
pub struct Access {
    /// The API keys; each key is a tenant.
    pub keys: Arc<KeyRing>,
    /// Whether the API is open while no key is configured (the daemon listens on loopback
    /// only, or was started with `--allow-unauthenticated`). With a key configured, every
    /// route that has a scope needs a key.
    pub open_without_keys: bool,
    /// Whether `/metrics` needs an `admin` key.
    pub metrics_need_key: bool,
}

impl Access {
    /// The caller a request's `Authorization` header stands for, if it may do what `scope`
    /// allows.
    pub fn check(&self, authorization: Option<&str>, scope: Scope) -> Result<Caller, ApiError> {
        if self.open_without_keys && self.keys.is_empty() {
            return Ok(Caller::unauthenticated());
        }
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let caller = self
            .keys
            .authenticate(presented)
            .ok_or(ApiError::Unauthorized)?;
        if caller.may(scope) {
            Ok(caller)
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }
}

/// An API error: `{"error": {"code": ..., "message": ...}}`; each kind carries its status and
/// its stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("{0}")]
    BadMultipart(String),
    #[error("no job {0:?}")]
    UnknownJob(String),
    #[error("job {id} is {state:?}; its result is not ready")]
    NotFinished { id: String, state: JobState },
    #[error("job {id} is already {state:?}")]
    AlreadyFinished { id: String, state: JobState },
    #[error("job {0} finished but its result could not be read")]
    ResultMissing(String),
    #[error("job {id} has no {format:?} output: its pipeline does not write it")]
    NoOutput { id: String, format: String },
    #[error(
        "job {id} has no preview of page {page}: the page was not OCRed, or the pipeline keeps no previews"
    )]
    NoPreview { id: String, page: u32 },
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    JournalUnreadable(String),
    #[error("metrics are off")]
    NoMetrics,
    #[error("no such route")]
    NotFound,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} event streams are open for this tenant already; close one first")]
    TooManyEventStreams(usize),
    #[error("this route needs an API key: Authorization: Bearer KEY")]
    Unauthorized,
    #[error("this key does not have the {} scope", .0.as_str())]
    Forbidden(Scope),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Intake(e) => match e {
                IntakeError::UnknownPipeline(_) => StatusCode::NOT_FOUND,
                IntakeError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                IntakeError::AdmissionFull { .. }
                | IntakeError::TenantShareFull { .. }
                | IntakeError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
                IntakeError::ClusterUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                IntakeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                IntakeError::BadIdempotencyKey | IntakeError::BadBody(_) => StatusCode::BAD_REQUEST,
                IntakeError::UploadStalled(_) => StatusCode::REQUEST_TIMEOUT,
                IntakeError::SpoolUnwritable(_) | IntakeError::JournalUnwritable(_) => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                IntakeError::Unreadable(JobError::EmptyDocument) => StatusCode::BAD_REQUEST,
                IntakeError::Unreadable(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IntakeError::IdempotencyKeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::BadMultipart(_) | ApiError::BadQuery(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnknownJob(_)
            | ApiError::NoOutput { .. }
            | ApiError::NoPreview { .. }
            | ApiError::NoMetrics
            | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::NotFinished { .. } | ApiError::AlreadyFinished { .. } => StatusCode::CONFLICT,
            ApiError::ResultMissing(_) | ApiError::JournalUnreadable(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyEventStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Intake(e) => e.code(),
            ApiError::BadMultipart(_) => "bad_multipart",
            ApiError::UnknownJob(_) => "unknown_job",
            ApiError::NotFinished { .. } => "not_finished",
            ApiError::AlreadyFinished { .. } => "already_finished",
            ApiError::ResultMissing(_) => "result_missing",
            ApiError::NoOutput { .. } => "no_output",
            ApiError::NoPreview { .. } => "no_preview",
            ApiError::BadQuery(_) => "bad_query",
            ApiError::JournalUnreadable(_) => "journal_unreadable",
            ApiError::NoMetrics => "no_metrics",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooManyEventStreams(_) => "too_many_event_streams",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
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
        let message = self.to_string();
        let body = Body {
            error: Inner {
                code: self.code(),
                message: &message,
            },
        };
        let mut response = json(self.status(), &body);
        if let ApiError::Intake(e) = &self
            && let Some(secs) = e.retry_after_secs()
        {
            response.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                secs.to_string().parse().expect("digits are a valid header"),
            );
        }
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(
                warp::http::header::WWW_AUTHENTICATE,
                warp::http::HeaderValue::from_static("Bearer"),
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

/// One route the daemon serves: its method, path template (`{name}` matches one segment)
/// and the scope a key needs for it (`None`: open to all; `/metrics` needs an `admin` key
/// only when the daemon is told so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub template: &'static str,
    pub scope: Option<Scope>,
}

/// Every route, once: request metrics are labelled by these templates, each route is
/// guarded by its scope, and a test holds the OpenAPI document ([`OPENAPI`]) to exactly this
/// list and these scopes.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        template: "/v1/pipelines/{pipeline}/jobs",
        scope: Some(Scope::Submit),
    },
    Route {
        method: "GET",
        template: "/v1/jobs",
        scope: Some(Scope::Read),
    },
    Route {
        method: "GET",
        template: "/v1/jobs/{id}",
        scope: Some(Scope::Read),
    },
    Route {
        method: "DELETE",
        template: "/v1/jobs/{id}",
        scope: Some(Scope::Submit),
    },
    Route {
        method: "GET",
        template: "/v1/jobs/{id}/result",
        scope: Some(Scope::Read),
    },
    Route {
        method: "GET",
        template: "/v1/jobs/{id}/events",
        scope: Some(Scope::Read),
    },
    Route {
        method: "GET",
        template: "/v1/jobs/{id}/outputs/{format}",
        scope: Some(Scope::Read),
    },
    Route {
        method: "GET",
        template: "/v1/jobs/{id}/pages/{n}/preview",
        scope: Some(Scope::Read),
    },
    Route {
        method: "GET",
        template: "/v1/pipelines",
        scope: Some(Scope::Read),
    },
    Route {
        method: "GET",
        template: "/v1/openapi.json",
        scope: None,
    },
    Route {
        method: "GET",
        template: "/healthz",
        scope: None,
    },
    Route {
        method: "GET",
        template: "/readyz",
        scope: None,
    },
    Route {
        method: "GET",
        template: "/metrics",
        scope: None,
    },
    Route {
        method: "GET",
        template: "/",
        scope: None,
    },
    Route {
        method: "GET",
        template: "/web/{asset}",
        scope: None,
    },
];

/// The scope `method template` needs, from [`ROUTES`].
fn scope_of(method: &str, template: &str) -> Option<Scope> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.template == template)
        .expect("every served route is in ROUTES")
        .scope
}

/// A request refused for its key; turned into its [`ApiError`] response by the recovery.
#[derive(Debug)]
struct Refused(ApiError);

impl warp::reject::Reject for Refused {}

/// Answers a request for a known path with a method it does not take: 405 with the `Allow`
/// header listing the methods it takes (RFC 9110). Other requests pass, to be answered by
/// their route's own rejection or as not found.
fn method_not_allowed() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path::full().and(warp::method()).and_then(
        |path: warp::path::FullPath, method: warp::http::Method| async move {
            let template = route_label(path.as_str());
            let allowed: Vec<&str> = ROUTES
                .iter()
                .filter(|r| r.template == template)
                .map(|r| r.method)
                .collect();
            if allowed.is_empty() || allowed.contains(&method.as_str()) {
                return Err(warp::reject::not_found());
            }
            let mut response = ApiError::MethodNotAllowed.into_response();
            response.headers_mut().insert(
                warp::http::header::ALLOW,
                allowed
                    .join(", ")
                    .parse()
                    .expect("method names are a valid header"),
            );
            Ok(response)
        },
    )
}

/// Passes the caller of a request to `method template`, if its key has the route's scope.
fn caller(
    state: Arc<AppState>,
    method: &'static str,
    template: &'static str,
) -> impl Filter<Extract = (Caller,), Error = warp::Rejection> + Clone {
    let scope = scope_of(method, template).expect("a guarded route has a scope");
    warp::header::optional::<String>("authorization").and_then(
        move |authorization: Option<String>| {
            let state = state.clone();
            async move {
                state
                    .access
                    .check(authorization.as_deref(), scope)
                    .map_err(|e| warp::reject::custom(Refused(e)))
            }
        },
    )
}

/// The route template a path belongs to: a bounded metric label, never a job id.
pub fn route_label(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    ROUTES
        .iter()
        .map(|r| r.template)
        .find(|template| {
            let pattern: Vec<&str> = template.trim_matches('/').split('/').collect();
            pattern.len() == parts.len()
                && pattern
                    .iter()
                    .zip(&parts)
                    .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}')))
        })
        .unwrap_or("other")
}

/// Every route of the daemon, with request metrics and JSON errors for unknown routes.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };

    let guard = |method, template| caller(state.clone(), method, template);
    let submit = warp::path!("v1" / "pipelines" / String / "jobs")
        .and(warp::post())
        .and(guard("POST", "/v1/pipelines/{pipeline}/jobs"))
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(api::submit);
    let list = warp::path!("v1" / "jobs")
        .and(warp::get())
        .and(guard("GET", "/v1/jobs"))
        .and(warp::query::<api::ListQuery>())
        .and(with_state.clone())
        .then(api::list);
    let status = warp::path!("v1" / "jobs" / String)
        .and(warp::get())
        .and(guard("GET", "/v1/jobs/{id}"))
        .and(with_state.clone())
        .then(api::status);
    let result = warp::path!("v1" / "jobs" / String / "result")
        .and(warp::get())
        .and(guard("GET", "/v1/jobs/{id}/result"))
        .and(with_state.clone())
        .then(api::result);
    let events = warp::path!("v1" / "jobs" / String / "events")
        .and(warp::get())
        .and(guard("GET", "/v1/jobs/{id}/events"))
        .and(with_state.clone())
        .then(api::events);
    let output = warp::path!("v1" / "jobs" / String / "outputs" / String)
        .and(warp::get())
        .and(guard("GET", "/v1/jobs/{id}/outputs/{format}"))
        .and(with_state.clone())
        .then(api::output);
    let preview = warp::path!("v1" / "jobs" / String / "pages" / u32 / "preview")
        .and(warp::get())
        .and(guard("GET", "/v1/jobs/{id}/pages/{n}/preview"))
        .and(with_state.clone())
        .then(api::preview);
    let cancel = warp::path!("v1" / "jobs" / String)
        .and(warp::delete())
        .and(guard("DELETE", "/v1/jobs/{id}"))
        .and(with_state.clone())
        .then(api::cancel);
    let pipelines = warp::path!("v1" / "pipelines")
        .and(warp::get())
        .and(guard("GET", "/v1/pipelines"))
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
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state.clone())
        .map(|authorization: Option<String>, state: Arc<AppState>| {
            if state.access.metrics_need_key
                && let Err(e) = state.access.check(authorization.as_deref(), Scope::Admin)
            {
                return e.into_response();
            }
            metrics_page(&state)
        });

    // Each route is boxed and the chain is boxed at every step: a chain of fifteen nested
    // `Or` filters made a type whose checking took the compiler minutes.
    let routes: Vec<BoxedFilter<(Response,)>> = vec![
        submit.boxed(),
        list.boxed(),
        status.boxed(),
        result.boxed(),
        events.boxed(),
        output.boxed(),
        preview.boxed(),
        cancel.boxed(),
        pipelines.boxed(),
        openapi.boxed(),
        healthz.boxed(),
        readyz.boxed(),
        metrics_route.boxed(),
        web::page().boxed(),
        web::asset().boxed(),
        method_not_allowed().boxed(),
    ];
    let api = routes
        .into_iter()
        .reduce(|chain, route| chain.or(route).unify().boxed())
        .expect("there are routes");

    api.recover(|rejection: warp::Rejection| async move {
        if let Some(Refused(refusal)) = rejection.find::<Refused>() {
            let error = match refusal {
                ApiError::Forbidden(scope) => ApiError::Forbidden(*scope),
                _ => ApiError::Unauthorized,
            };
            // A refused upload's body is left unread, so its connection cannot carry another
            // request: tell the client rather than let it find the connection closed.
            let mut response = error.into_response();
            response.headers_mut().insert(
                warp::http::header::CONNECTION,
                warp::http::HeaderValue::from_static("close"),
            );
            return Ok::<_, Infallible>(response);
        }
        let error = if rejection.is_not_found() {
            ApiError::NotFound
        } else if rejection
            .find::<warp::reject::MethodNotAllowed>()
            .is_some()
        {
            ApiError::MethodNotAllowed
        } else {
            ApiError::BadRequest(format!("{rejection:?}"))
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

/// The Prometheus exposition, with the admission gauges sampled now.
fn metrics_page(state: &AppState) -> Response {
    match &state.metrics {
        Some(handle) => {
            state.sample_admission();
            warp::reply::with_header(handle.render(), "content-type", "text/plain; version=0.0.4")
                .into_response()
        }
        None => ApiError::NoMetrics.into_response(),
    }
}

impl AppState {
    /// Sets the admission gauges of every pipeline from the job registry and the uploads in
    /// progress; called just before the metrics are rendered.
    pub fn sample_admission(&self) {
        for (name, handle) in self.intake.pipelines() {
            let (usage, pages, bytes) = self.intake.admission_usage(name);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_and_the_openapi_document_list_the_same_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, operations)| {
                operations
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let mut table: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.template.to_string()))
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
    }

    #[test]
    fn the_openapi_document_says_which_routes_need_a_key_and_which_scope() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for route in ROUTES {
            let operation = &doc["paths"][route.template][route.method.to_lowercase()];
            let security = &operation["security"];
            let description = operation["description"].as_str().unwrap_or("");
            match route.scope {
                Some(scope) => {
                    assert_eq!(
                        security,
                        &serde_json::json!([{"bearer": []}]),
                        "{route:?} needs a key"
                    );
                    assert!(
                        description.contains(&format!("`{}` scope", scope.as_str())),
                        "{route:?}: {description}"
                    );
                    assert!(operation["responses"]["401"].is_object(), "{route:?}");
                    assert!(operation["responses"]["403"].is_object(), "{route:?}");
                }
                // Open routes list no key requirement, or list it as optional (`{}`).
                None => assert!(
                    security.is_null()
                        || security
                            .as_array()
                            .unwrap()
                            .contains(&serde_json::json!({})),
                    "{route:?} is open"
                ),
            }
        }
    }

    #[test]
    fn paths_are_labelled_by_their_template() {
        assert_eq!(route_label("/v1/jobs/0193abc"), "/v1/jobs/{id}");
        assert_eq!(
            route_label("/v1/jobs/0193abc/result"),
            "/v1/jobs/{id}/result"
        );
        assert_eq!(
            route_label("/v1/pipelines/p/jobs"),
            "/v1/pipelines/{pipeline}/jobs"
        );
        assert_eq!(route_label("/v1/pipelines"), "/v1/pipelines");
        assert_eq!(
            route_label("/v1/jobs/0193abc/pages/2/preview"),
            "/v1/jobs/{id}/pages/{n}/preview"
        );
        assert_eq!(route_label("/web/app.js"), "/web/{asset}");
        assert_eq!(route_label("/v1/jobs/a/b/c"), "other");
        assert_eq!(route_label("/v1"), "other");
        for route in ROUTES {
            assert_eq!(route_label(route.template), route.template);
        }
    }
}
