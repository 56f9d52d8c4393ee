//! A local OpenAI-compatible chat completions endpoint that misbehaves on cue (429s, 5xx,
//! an outage the test ends, 401s, context overflows, a fixed number of slots, schema-breaking
//! JSON): the faults a real LLM server cannot be made to produce on demand. It counts the
//! requests it had open at once.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::{Filter, Reply};

/// How the fake endpoint behaves.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Answers every request.
    Healthy,
    /// Answers 429 with `Retry-After: 1` to the first `n` requests.
    RateLimitedFirst(usize),
    /// Answers 500 to everything.
    Broken,
    /// Answers 503 to everything until [`Fake::recover`], then as `Healthy`.
    Unavailable,
    /// Answers 401 to everything: a fault no retry mends.
    Unauthorized,
    /// Answers 400 "maximum context length" to prompts longer than this many characters.
    SmallContext(usize),
    /// Answers 200 with a body that is not JSON.
    Malformed,
    /// Answers only after this long.
    Slow(Duration),
    /// A server with `slots` slots: a request finding them all busy is answered 429 at once
    /// (no `Retry-After`); the others after between `min` and `max` (varying per request).
    Slots {
        slots: usize,
        min: Duration,
        max: Duration,
    },
    /// Answers 500 to the first `n` requests, then answers each after `delay`.
    BrokenFirst(usize, Duration),
    /// Summaries as `Healthy`; extraction requests (those with a `response_format`) get an
    /// object that breaks the schema the first `n` times, then [`valid_extraction`].
    ExtractInvalidFirst(usize),
}

/// The object the fake extracts once it answers well: `{"title": .., "pages": 1}`.
pub fn valid_extraction() -> Value {
    json!({"title": "The quick brown dog", "pages": 1})
}

/// Decrements the open-request count however the answer ends.
struct Open(Arc<Fake>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Fake {
    pub base_url: String,
    pub requests: AtomicUsize,
    pub prompts: std::sync::Mutex<Vec<String>>,
    /// When each request arrived.
    pub arrivals: std::sync::Mutex<Vec<std::time::Instant>>,
    /// Requests open now, and the most that were ever open at once.
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
    /// Requests answered 429 because every slot was busy.
    pub rejected: AtomicUsize,
    /// Requests that asked for a JSON answer (`response_format`), and the last such format.
    pub extraction_requests: AtomicUsize,
    pub response_format: std::sync::Mutex<Option<Value>>,
    /// Whether a `Behaviour::Unavailable` endpoint is still down.
    pub down: AtomicBool,
}

impl Fake {
    /// Ends the outage of a `Behaviour::Unavailable` endpoint.
    pub fn recover(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// The different prompts received: one per document when the prompt holds its name.
    pub fn distinct_prompts(&self) -> usize {
        let prompts = self.prompts.lock().unwrap();
        prompts
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

/// Starts the endpoint on a free port; it serves until the test ends.
pub async fn start_fake(behaviour: Behaviour) -> Arc<Fake> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Arc::new(Fake {
        base_url: format!("http://{}/v1", listener.local_addr().unwrap()),
        requests: AtomicUsize::new(0),
        prompts: Default::default(),
        arrivals: Default::default(),
        open: AtomicUsize::new(0),
        max_open: AtomicUsize::new(0),
        rejected: AtomicUsize::new(0),
        extraction_requests: AtomicUsize::new(0),
        response_format: Default::default(),
        down: AtomicBool::new(true),
    });
    let state = fake.clone();
    let route = warp::path!("v1" / "chat" / "completions")
        .and(warp::post())
        .and(warp::body::json())
        .then(move |body: Value| answer(state.clone(), behaviour, body));
    tokio::spawn(warp::serve(route).incoming(listener).run());
    fake
}

/// One answer of the endpoint, as `behaviour` has it.
async fn answer(state: Arc<Fake>, behaviour: Behaviour, body: Value) -> warp::reply::Response {
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    let open_now = state.open.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_open.fetch_max(open_now, Ordering::SeqCst);
    let _open = Open(state.clone());
    state
        .arrivals
        .lock()
        .unwrap()
        .push(std::time::Instant::now());
    let prompt = body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    state.prompts.lock().unwrap().push(prompt.clone());
    let format = body.get("response_format").cloned();
    let extraction = if let Some(format) = format {
        *state.response_format.lock().unwrap() = Some(format);
        Some(state.extraction_requests.fetch_add(1, Ordering::SeqCst))
    } else {
        None
    };
    let error = |status: StatusCode, body: Value| {
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    };
    match behaviour {
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::Slots { slots, .. } if open_now > slots => {
            state.rejected.fetch_add(1, Ordering::SeqCst);
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "all slots busy"}),
            );
        }
        Behaviour::Slots { min, max, .. } => {
            // A spread of durations that does not depend on timing: a hash of the request.
            let spread = (max - min).as_millis() as u64;
            let jitter = (n as u64).wrapping_mul(2_654_435_761) % (spread + 1);
            tokio::time::sleep(min + Duration::from_millis(jitter)).await;
        }
        Behaviour::BrokenFirst(k, _) if n < k => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "overloaded"}),
            );
        }
        Behaviour::BrokenFirst(_, delay) => tokio::time::sleep(delay).await,
        Behaviour::RateLimitedFirst(k) if n < k => {
            let busy = error(StatusCode::TOO_MANY_REQUESTS, json!({"error": "slow down"}));
            return warp::reply::with_header(busy, "retry-after", "1").into_response();
        }
        Behaviour::Broken => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "overloaded"}),
            );
        }
        Behaviour::Unavailable if state.down.load(Ordering::SeqCst) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the model is loading"}),
            );
        }
        Behaviour::Unauthorized => {
            return error(
                StatusCode::UNAUTHORIZED,
                json!({"error": {"message": "invalid api key"}}),
            );
        }
        Behaviour::SmallContext(max) if prompt.chars().count() > max => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": {"message": "This model's maximum context length is 64 tokens"}}),
            );
        }
        Behaviour::Malformed => {
            return warp::reply::with_header("{\"choices\": [", "content-type", "application/json")
                .into_response();
        }
        _ => {}
    }
    if let (Behaviour::ExtractInvalidFirst(k), Some(i)) = (behaviour, extraction) {
        let object = if i < k {
            json!({"title": 42})
        } else {
            valid_extraction()
        };
        return warp::reply::json(&json!({
            "choices": [{"message": {"role": "assistant", "content": object.to_string()}}],
            "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": 12}
        }))
        .into_response();
    }
    warp::reply::json(&json!({
        "choices": [{"message": {"role": "assistant",
            "content": format!("LLM summary of {} characters", prompt.chars().count())}}],
        "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": 6}
    }))
    .into_response()
}
