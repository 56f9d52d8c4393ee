//! A local OpenAI-compatible chat completions endpoint that misbehaves on cue (429s, 5xx,
//! context overflows): the faults a real LLM server cannot be made to produce on demand.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Answers 400 "maximum context length" to prompts longer than this many characters.
    SmallContext(usize),
    /// Answers 200 with a body that is not JSON.
    Malformed,
    /// Answers only after this long.
    Slow(std::time::Duration),
}

pub struct Fake {
    pub base_url: String,
    pub requests: AtomicUsize,
    pub prompts: std::sync::Mutex<Vec<String>>,
    /// When each request arrived.
    pub arrivals: std::sync::Mutex<Vec<std::time::Instant>>,
}

/// Starts the endpoint on a free port; it serves until the test ends.
pub async fn start_fake(behaviour: Behaviour) -> Arc<Fake> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Arc::new(Fake {
        base_url: format!("http://{}/v1", listener.local_addr().unwrap()),
        requests: AtomicUsize::new(0),
        prompts: Default::default(),
        arrivals: Default::default(),
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
    let error = |status: StatusCode, body: Value| {
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    };
    match behaviour {
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
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
    warp::reply::json(&json!({
        "choices": [{"message": {"role": "assistant",
            "content": format!("LLM summary of {} characters", prompt.chars().count())}}],
        "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": 6}
    }))
    .into_response()
}
