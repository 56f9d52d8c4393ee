//! The LLM summarizer: an OpenAI-compatible chat completions client (`POST
//! {base_url}/chat/completions`), as served by vLLM, llama.cpp's server, Ollama, LM Studio and
//! OpenAI.
//!
//! - Long documents are split on page, then line boundaries into parts of at most
//!   `max_input_chars`; each part is summarized, then the parts' summaries are summarized
//!   (map-reduce). A server that answers that the context is too long gets parts half as long.
//! - A request answered 429 or 5xx, or that times out or cannot connect, is retried up to
//!   `max_retries` times with jittered exponential backoff (backon); `Retry-After` is
//!   honoured.
//! - Summaries and extracted objects are cached by document text, model, prompt and
//!   parameters, so reprocessing a document does not call the server again; identical
//!   documents at the same time wait for the first one's answer.
//!
//! - A circuit breaker: after `circuit_failures` documents in a row the LLM failed, no request
//!   is sent for `circuit_cooldown` (the fallback answers at once); then one document probes
//!   (half-open) while the others still get the fallback, and its success closes the circuit.
//! - Failures that may pass by themselves ([`LlmError::is_transient`]) can be waited out:
//!   [`LlmSummarizer::wait_to_retry`] returns when a document whose retries ran out may try
//!   again, as the circuit allows. The stage does that with `fallback: none`.
//! - Requests in flight are limited per server by an adaptive limit ([`super::limiter`]):
//!   documents wait for room, retries wait without holding it, and the parts of a long
//!   document go out together under the same limit.
//! - Structured extraction, when the pipeline gives a JSON Schema: the document's text (its
//!   first `max_input_chars`) is sent with `response_format: json_schema`, the answer is
//!   checked against the schema, and a non-matching answer is asked for again up to
//!   `max_attempts` times.
//!
//! Emits `pagemill_llm_requests_total`, `pagemill_llm_request_duration_seconds`,
//! `pagemill_llm_tokens_total`, `pagemill_llm_cache_hits_total`, `pagemill_llm_circuit_open`,
//! `pagemill_llm_extractions_total`, `pagemill_llm_quota_wait_seconds` and, through the limiter, the in-flight and limit gauges.
//!
//! - Optional ceilings of requests and (estimated) tokens per minute (governor's GCRA): a
//!   request waits for them before it waits for room under the concurrency limit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::num::NonZeroU32;

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::limiter::{Limiter, Outcome};
use crate::config::LlmConfig;
use crate::metrics as m;

/// Most summaries kept in the cache.
const CACHE_ENTRIES: usize = 1024;
/// First retry delay (jitter takes 50-100% of it); doubles with each retry.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Times parts are halved after context-overflow answers before giving up.
const MAX_SPLITS: u32 = 4;
/// Rounds of summarizing summaries before giving up (the summaries do not get shorter).
const MAX_ROUNDS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM server could not be reached: {0}")]
    Unreachable(String),
    #[error("the LLM server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the LLM server's answer has no message: {0}")]
    BadAnswer(String),
    #[error("the document does not fit the model's context even in small parts")]
    ContextOverflow,
    #[error("the summaries of the parts do not get shorter than the parts")]
    NotConverging,
    #[error("the LLM failed {0} documents in a row; requests are paused")]
    CircuitOpen(u32),
    #[error("{attempts} answers did not match the extraction schema; the last: {reason}")]
    NoValidExtraction { attempts: u32, reason: String },
}

impl LlmError {
    /// Whether the failure may pass by itself, so that waiting and trying again can mend it:
    /// the server cannot be reached or timed out, answered 429 or 5xx, or the circuit holds
    /// requests back. Other answers (400, 401, 404, a context overflow even in small parts, an
    /// answer without a message) would be the same the next time.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Unreachable(_) | LlmError::CircuitOpen(_) => true,
            LlmError::Status { status, .. } => is_overload_status(*status),
            LlmError::BadAnswer(_)
            | LlmError::ContextOverflow
            | LlmError::NotConverging
            | LlmError::NoValidExtraction { .. } => false,
        }
    }
}

/// Whether an HTTP status says the server is overloaded or failing for now: 429 or 5xx.
fn is_overload_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Why one try failed, and whether and when to try again.
struct TryError {
    error: LlmError,
    retryable: bool,
    /// The pause the server asked for (`Retry-After`, in seconds).
    retry_after: Option<Duration>,
}

impl TryError {
    /// A failure that another try would not mend.
    fn fatal(error: LlmError) -> TryError {
        TryError {
            error,
            retryable: false,
            retry_after: None,
        }
    }
}

/// The circuit breaker's state; failures count documents in a row the LLM failed.
#[derive(Debug, Clone, Copy)]
enum Breaker {
    /// Requests go out.
    Closed { failures: u32 },
    /// No request until `until`.
    Open { failures: u32, until: Instant },
    /// One document is probing the server; the others get the fallback meanwhile.
    Probing { failures: u32 },
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::Closed { failures: 0 }
    }
}

/// Reopens the circuit at once if a probe is dropped before its outcome is known, so that
/// the next document probes instead of the circuit staying half-open for ever.
struct ProbeGuard<'a> {
    llm: &'a LlmSummarizer,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut b = self.llm.breaker.lock().expect("breaker lock");
            if let Breaker::Probing { failures } = *b {
                *b = Breaker::Open {
                    failures,
                    until: Instant::now(),
                };
            }
            drop(b);
            self.llm.breaker_changed.notify_waiters();
        }
    }
}

/// Takes a key's gate out of the in-flight map once nobody else waits on it, however the
/// caller ends (a document abandoned at its deadline or cancelled included).
struct GateGuard<'a> {
    inflight: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut inflight = self.inflight.lock().expect("in-flight lock");
        // The map's and this one: nobody else waits on this key.
        if Arc::strong_count(&self.gate) <= 2 {
            inflight.remove(self.key);
        }
    }
}

/// The LLM client of one pipeline.
pub struct LlmSummarizer {
    cfg: LlmConfig,
    language: String,
    client: reqwest::Client,
    pipeline: String,
    /// Answers by cache key (summaries, extracted objects as JSON), oldest first out.
    cache: Mutex<(HashMap<String, String>, VecDeque<String>)>,
    /// One gate per key being answered: documents with the same key wait for the first.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    breaker: Mutex<Breaker>,
    /// Woken at each change of the breaker, for documents waiting to try again.
    breaker_changed: tokio::sync::Notify,
    /// Summaries the server wrote: a document waiting to try again goes as soon as another
    /// one succeeds.
    successes: AtomicU64,
    /// Requests in flight to the server, adapted to its answers.
    limiter: Limiter,
    /// The extraction schema, compiled once; none when extraction is off.
    validator: Option<jsonschema::Validator>,
    /// Requests per minute, when the pipeline sets a ceiling.
    requests_per_minute: Option<DefaultDirectRateLimiter>,
    /// Estimated tokens per minute and that ceiling, when the pipeline sets one.
    tokens_per_minute: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl LlmSummarizer {
    pub fn new(cfg: &LlmConfig, languages: &str, pipeline: &str) -> LlmSummarizer {
        // Present from the start, so dashboards and alerts see zeros rather than nothing.
        metrics::counter!(m::LLM_FALLBACKS, "pipeline" => pipeline.to_string()).increment(0);
        metrics::counter!(m::LLM_CACHE_HITS, "pipeline" => pipeline.to_string()).increment(0);
        metrics::gauge!(m::LLM_CIRCUIT_OPEN, "pipeline" => pipeline.to_string()).set(0.0);
        metrics::gauge!(m::LLM_DOCUMENTS_WAITING, "pipeline" => pipeline.to_string()).set(0.0);
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .build()
            .expect("a client with timeouts builds");
        let validator = cfg.extract.as_ref().map(|x| {
            for outcome in ["valid", "invalid", "failed"] {
                metrics::counter!(m::LLM_EXTRACTIONS, "pipeline" => pipeline.to_string(), "outcome" => outcome)
                    .increment(0);
            }
            jsonschema::validator_for(&x.schema).expect("the schema was checked at load")
        });
        LlmSummarizer {
            cfg: cfg.clone(),
            language: language_name(languages),
            client,
            pipeline: pipeline.to_string(),
            cache: Mutex::default(),
            inflight: Mutex::default(),
            breaker: Mutex::default(),
            breaker_changed: tokio::sync::Notify::new(),
            successes: AtomicU64::new(0),
            limiter: Limiter::new(cfg.concurrency_initial, cfg.concurrency_max, pipeline),
            validator,
            requests_per_minute: NonZeroU32::new(cfg.max_requests_per_minute)
                .map(|n| RateLimiter::direct(Quota::per_minute(n))),
            tokens_per_minute: NonZeroU32::new(cfg.max_tokens_per_minute)
                .map(|n| (RateLimiter::direct(Quota::per_minute(n)), n)),
        }
    }

    /// The limit of requests in flight to the server.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Whether the pipeline asks for structured extraction.
    pub fn extracts(&self) -> bool {
        self.validator.is_some()
    }

    /// What a journaled summary must match to be reused after a restart: the document's text
    /// and name, the model, prompt and parameters, and the extraction schema.
    pub fn checkpoint_key(&self, name: &str, text: &str) -> String {
        let schema = self
            .cfg
            .extract
            .as_ref()
            .map(|e| e.schema.to_string())
            .unwrap_or_default();
        self.cache_key(&format!("checkpoint\0{schema}"), name, text)
    }

    /// The cache key of a document's answer; `task` tells a summary from an extraction.
    fn cache_key(&self, task: &str, name: &str, text: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            task,
            text,
            name,
            &self.cfg.model,
            &self.cfg.prompt,
            &self.language,
            &self.cfg.max_tokens.to_string(),
            &self.cfg.temperature.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("{:x}", h.finalize())
    }

    /// The cached answer for `key`, else the answer of `work`, cached if it succeeds. Documents
    /// with the same key wait for the first one's answer instead of asking the server again.
    async fn cached<Fut>(&self, key: String, work: impl FnOnce() -> Fut) -> Result<String, LlmError>
    where
        Fut: std::future::Future<Output = Result<String, LlmError>>,
    {
        let hit = || {
            let hit = self.cache.lock().expect("cache lock").0.get(&key).cloned();
            if hit.is_some() {
                metrics::counter!(m::LLM_CACHE_HITS, "pipeline" => self.pipeline.clone())
                    .increment(1);
            }
            hit
        };
        if let Some(hit) = hit() {
            return Ok(hit);
        }
        let gate = self
            .inflight
            .lock()
            .expect("in-flight lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = GateGuard {
            inflight: &self.inflight,
            key: &key,
            gate,
        };
        let outcome = {
            let _turn = guard.gate.lock().await;
            match hit() {
                Some(hit) => Ok(hit),
                None => work().await,
            }
        };
        if let Ok(answer) = &outcome {
            let mut cache = self.cache.lock().expect("cache lock");
            if !cache.0.contains_key(&key) {
                if cache.1.len() >= CACHE_ENTRIES
                    && let Some(old) = cache.1.pop_front()
                {
                    cache.0.remove(&old);
                }
                cache.0.insert(key.clone(), answer.clone());
                cache.1.push_back(key.clone());
            }
        }
        drop(guard);
        outcome
    }

    /// Summarizes a document's text; `name` is its file name.
    pub async fn summarize(&self, name: &str, text: &str) -> Result<String, LlmError> {
        let key = self.cache_key("summary", name, text);
        self.cached(key, || self.summarize_uncached(name, text))
            .await
    }

    async fn summarize_uncached(&self, name: &str, text: &str) -> Result<String, LlmError> {
        let probe = self.admit()?;
        let mut guard = ProbeGuard {
            llm: self,
            armed: probe,
        };
        let mut max_chars = self.cfg.max_input_chars;
        let mut splits = 0;
        let outcome = loop {
            match self.map_reduce(name, text, max_chars, 0, probe).await {
                Err(LlmError::ContextOverflow) if splits < MAX_SPLITS => {
                    splits += 1;
                    max_chars = (max_chars / 2).max(100);
                }
                other => break other,
            }
        };
        guard.armed = false;
        self.record_outcome(outcome, probe)
    }

    /// Whether a document may call the server: `Ok(true)` if it is the half-open probe.
    fn admit(&self) -> Result<bool, LlmError> {
        let mut b = self.breaker.lock().expect("breaker lock");
        match *b {
            Breaker::Closed { .. } => Ok(false),
            Breaker::Open { failures, until } if Instant::now() < until => {
                Err(LlmError::CircuitOpen(failures))
            }
            Breaker::Open { failures, .. } => {
                *b = Breaker::Probing { failures };
                Ok(true)
            }
            Breaker::Probing { failures } => Err(LlmError::CircuitOpen(failures)),
        }
    }

    /// Counts a document's outcome on the breaker: a success closes it, failures in a row
    /// or a failed probe open it.
    fn record_outcome(
        &self,
        outcome: Result<String, LlmError>,
        probe: bool,
    ) -> Result<String, LlmError> {
        let mut b = self.breaker.lock().expect("breaker lock");
        let reopen = |failures| Breaker::Open {
            failures,
            until: Instant::now() + self.cfg.circuit_cooldown,
        };
        *b = match (&outcome, *b) {
            (Ok(_), _) => {
                self.successes.fetch_add(1, Ordering::SeqCst);
                Breaker::default()
            }
            // Held back by the circuit: says nothing new about the server.
            (Err(LlmError::CircuitOpen(_)), state) => state,
            (Err(_), Breaker::Closed { failures }) if failures + 1 >= self.cfg.circuit_failures => {
                reopen(failures + 1)
            }
            (Err(_), Breaker::Closed { failures }) => Breaker::Closed {
                failures: failures + 1,
            },
            (Err(_), Breaker::Probing { failures }) if probe => reopen(failures + 1),
            // A document let through before the circuit opened: it is open already.
            (Err(_), state) => state,
        };
        let open = !matches!(*b, Breaker::Closed { .. });
        metrics::gauge!(m::LLM_CIRCUIT_OPEN, "pipeline" => self.pipeline.clone()).set(if open {
            1.0
        } else {
            0.0
        });
        drop(b);
        self.breaker_changed.notify_waiters();
        outcome
    }

    /// Waits until a document whose summary just failed for a transient reason may try again:
    /// after `circuit_cooldown`, or as soon as another document's summary succeeds; while the
    /// circuit is open, until its cooldown ends (the first document then probes); while a
    /// probe is out, until its outcome is known. Sends nothing itself.
    pub async fn wait_to_retry(&self) {
        let earliest = Instant::now() + self.cfg.circuit_cooldown;
        let successes = self.successes.load(Ordering::SeqCst);
        loop {
            // Registered before the state is read, so that no change is missed in between.
            let changed = self.breaker_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let wake = match *self.breaker.lock().expect("breaker lock") {
                Breaker::Closed { .. }
                    if now >= earliest || self.successes.load(Ordering::SeqCst) != successes =>
                {
                    return;
                }
                Breaker::Closed { .. } => Some(earliest),
                Breaker::Open { until, .. } if now >= until => return,
                Breaker::Open { until, .. } => Some(until),
                Breaker::Probing { .. } => None,
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    async fn map_reduce(
        &self,
        name: &str,
        text: &str,
        max_chars: usize,
        round: u32,
        probe: bool,
    ) -> Result<String, LlmError> {
        let parts = split_parts(text, max_chars);
        if parts.len() <= 1 {
            return self.complete(name, text, probe).await;
        }
        // The parts go out together; the limiter decides how many are in flight.
        let summaries = futures_util::future::try_join_all(
            parts.iter().map(|part| self.complete(name, part, probe)),
        )
        .await?;
        let joined = summaries.join("\n\n");
        if joined.chars().count() > max_chars {
            // The summaries themselves are long: one more round, while they shrink.
            if round + 1 >= MAX_ROUNDS || joined.chars().count() >= text.chars().count() {
                return Err(LlmError::NotConverging);
            }
            return Box::pin(self.map_reduce(name, &joined, max_chars, round + 1, probe)).await;
        }
        self.complete(name, &joined, probe).await
    }

    /// The prompt `template` filled in for a document.
    fn fill(&self, template: &str, name: &str, text: &str) -> String {
        template
            .replace("{name}", name)
            .replace("{language}", &self.language)
            .replace("{text}", text)
    }

    /// One summary request; `probe` when the document probes a half-open circuit.
    async fn complete(&self, name: &str, text: &str, probe: bool) -> Result<String, LlmError> {
        self.request(self.fill(&self.cfg.prompt, name, text), None, probe)
            .await
    }

    /// Extracts the object the pipeline's schema describes from a document's text (its first
    /// `max_input_chars`). `Ok(None)` when extraction is off.
    pub async fn extract(&self, name: &str, text: &str) -> Result<Option<Value>, LlmError> {
        let Some(x) = &self.cfg.extract else {
            return Ok(None);
        };
        let task = format!("extract\0{}\0{}\0{}", x.name, x.schema, x.prompt);
        let key = self.cache_key(&task, name, text);
        let object = self
            .cached(key, || self.extract_uncached(name, text))
            .await?;
        Ok(Some(
            serde_json::from_str(&object).expect("cached objects are JSON this client wrote"),
        ))
    }

    /// Asks for the object until an answer matches the schema; returns it as JSON text.
    async fn extract_uncached(&self, name: &str, text: &str) -> Result<String, LlmError> {
        let (Some(x), Some(validator)) = (&self.cfg.extract, &self.validator) else {
            unreachable!("extraction is configured")
        };
        // A paused circuit pauses extraction too; probing is left to summaries.
        if let Breaker::Open { failures, .. } | Breaker::Probing { failures } =
            *self.breaker.lock().expect("breaker lock")
        {
            return Err(LlmError::CircuitOpen(failures));
        }
        let text: String = text.chars().take(self.cfg.max_input_chars).collect();
        let prompt = self.fill(&x.prompt, name, &text);
        let format = json!({
            "type": "json_schema",
            "json_schema": {"name": x.name, "schema": x.schema, "strict": true},
        });
        let count = |outcome: &'static str| {
            metrics::counter!(m::LLM_EXTRACTIONS, "pipeline" => self.pipeline.clone(), "outcome" => outcome)
                .increment(1);
        };
        let mut reason = String::new();
        for _ in 0..x.max_attempts {
            let answer = match self.request(prompt.clone(), Some(&format), false).await {
                Ok(answer) => answer,
                Err(e) => {
                    count("failed");
                    return Err(e);
                }
            };
            match check_extraction(validator, &answer) {
                Ok(object) => {
                    count("valid");
                    return Ok(object.to_string());
                }
                Err(why) => {
                    count("invalid");
                    reason = why;
                }
            }
        }
        count("failed");
        Err(LlmError::NoValidExtraction {
            attempts: x.max_attempts,
            reason,
        })
    }

    /// One chat completion, retried as configured (backon: jittered exponential backoff,
    /// `Retry-After` taking the place of the planned delay).
    async fn request(
        &self,
        prompt: String,
        response_format: Option<&Value>,
        probe: bool,
    ) -> Result<String, LlmError> {
        let tokens = (prompt.chars().count() / 4) as u32 + self.cfg.max_tokens;
        let mut body = json!({
            "model": self.cfg.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
        });
        if let Some(format) = response_format {
            body["response_format"] = format.clone();
        }
        let key = self
            .cfg
            .api_key_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok());
        let body = &body;
        let key = key.as_deref();
        (|| self.try_once(body, key, tokens, probe))
            .retry(
                // Delays of 0.25-0.5 s, doubling up to 15-30 s.
                ExponentialBuilder::default()
                    .with_min_delay(BACKOFF_BASE / 2)
                    .with_max_delay(BACKOFF_MAX / 2)
                    .with_max_times(self.cfg.max_retries as usize)
                    .with_jitter(),
            )
            .when(|e: &TryError| e.retryable)
            // A server may ask for a long pause; the stage waits at most BACKOFF_MAX.
            .adjust(|e, planned| planned.map(|p| e.retry_after.map_or(p, |d| d.min(BACKOFF_MAX))))
            .await
            .map_err(|e| e.error)
    }

    /// One try of a chat completion. It waits for room under the concurrency limit and gives
    /// it back before returning, so that a retry's pause holds no room. A try that gets room
    /// after the circuit opened is not sent, unless it belongs to the probe.
    async fn try_once(
        &self,
        body: &Value,
        key: Option<&str>,
        tokens: u32,
        probe: bool,
    ) -> Result<String, TryError> {
        self.wait_for_quota(tokens).await;
        let permit = self.limiter.acquire().await;
        if !probe
            && let Breaker::Open { failures, .. } | Breaker::Probing { failures } =
                *self.breaker.lock().expect("breaker lock")
        {
            return Err(TryError::fatal(LlmError::CircuitOpen(failures)));
        }
        let url = format!("{}/chat/completions", self.cfg.base_url);
        let started = Instant::now();
        let mut request = self.client.post(&url).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let outcome = request.send().await;
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!(m::LLM_REQUEST_SECONDS, "pipeline" => self.pipeline.clone())
            .record(seconds);
        let response = match outcome {
            Ok(response) => response,
            Err(e) => {
                permit.finish(Outcome::Overloaded);
                metrics::counter!(m::LLM_REQUESTS, "pipeline" => self.pipeline.clone(), "code" => "unreachable")
                    .increment(1);
                return Err(TryError {
                    error: LlmError::Unreachable(e.to_string()),
                    retryable: true,
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        metrics::counter!(m::LLM_REQUESTS, "pipeline" => self.pipeline.clone(), "code" => status.as_u16().to_string())
            .increment(1);
        if status.is_success() {
            return match response.json::<Value>().await {
                Ok(answer) => {
                    permit.finish(Outcome::Answered(started.elapsed()));
                    self.read_answer(&answer).map_err(TryError::fatal)
                }
                // The answer did not arrive in time: as a timeout before it, worth retrying.
                Err(e) if e.is_timeout() => {
                    permit.finish(Outcome::Overloaded);
                    Err(TryError {
                        error: LlmError::Unreachable(e.to_string()),
                        retryable: true,
                        retry_after: None,
                    })
                }
                Err(e) => {
                    permit.finish(Outcome::Neutral);
                    Err(TryError::fatal(LlmError::BadAnswer(e.to_string())))
                }
            };
        }
        let overloaded = is_overload_status(status.as_u16());
        permit.finish(if overloaded {
            Outcome::Overloaded
        } else {
            Outcome::Neutral
        });
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        if status.as_u16() == 400 && mentions_context(&text) {
            return Err(TryError::fatal(LlmError::ContextOverflow));
        }
        Err(TryError {
            error: LlmError::Status {
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            },
            retryable: overloaded,
            retry_after,
        })
    }

    /// Waits until the per-minute ceilings have room for a request of about `tokens` tokens.
    async fn wait_for_quota(&self, tokens: u32) {
        if self.requests_per_minute.is_none() && self.tokens_per_minute.is_none() {
            return;
        }
        let started = Instant::now();
        if let Some(requests) = &self.requests_per_minute {
            requests.until_ready().await;
        }
        if let Some((budget, ceiling)) = &self.tokens_per_minute {
            // A request larger than a whole minute's ceiling waits for a full minute's room.
            let n = NonZeroU32::new(tokens.min(ceiling.get())).unwrap_or(NonZeroU32::MIN);
            let _fits = budget.until_n_ready(n).await;
        }
        metrics::histogram!(m::LLM_QUOTA_WAIT_SECONDS, "pipeline" => self.pipeline.clone())
            .record(started.elapsed().as_secs_f64());
    }

    fn read_answer(&self, answer: &Value) -> Result<String, LlmError> {
        let usage = &answer["usage"];
        for (field, direction) in [("prompt_tokens", "in"), ("completion_tokens", "out")] {
            if let Some(n) = usage[field].as_u64() {
                metrics::counter!(m::LLM_TOKENS, "pipeline" => self.pipeline.clone(), "direction" => direction)
                    .increment(n);
            }
        }
        answer["choices"][0]["message"]["content"]
            .as_str()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| LlmError::BadAnswer(answer.to_string().chars().take(300).collect()))
    }
}

/// The JSON object in an extraction answer, if it matches the schema; else why not. A
/// Markdown code fence around the object is tolerated.
fn check_extraction(validator: &jsonschema::Validator, answer: &str) -> Result<Value, String> {
    let trimmed = answer.trim();
    let inner = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(trimmed);
    let object: Value =
        serde_json::from_str(inner.trim()).map_err(|e| format!("not JSON ({e})"))?;
    let error = validator
        .iter_errors(&object)
        .next()
        .map(|e| format!("{e} at {}", e.instance_path()));
    match error {
        None => Ok(object),
        Some(e) => Err(e),
    }
}

/// Whether an error body says the input is longer than the model's context.
fn mentions_context(body: &str) -> bool {
    let body = body.to_lowercase();
    body.contains("context")
        && (body.contains("length") || body.contains("long") || body.contains("exceed"))
}

/// The language of the pipeline's first OCR language, in words for the prompt.
fn language_name(languages: &str) -> String {
    match languages.split('+').next().unwrap_or("eng") {
        "deu" => "German",
        "fra" => "French",
        "spa" => "Spanish",
        "ita" => "Italian",
        _ => "English",
    }
    .to_string()
}

/// Splits `text` into parts of at most `max_chars` characters, at page breaks (form feeds)
/// where it can, else at line ends, else anywhere.
pub fn split_parts(text: &str, max_chars: usize) -> Vec<String> {
    if text.chars().count() <= max_chars {
        return vec![text.to_string()];
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    for piece in pieces(text, max_chars) {
        if !current.is_empty() && current.chars().count() + piece.chars().count() > max_chars {
            parts.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts
}

/// The text cut at the coarsest boundary that gives pieces of at most `max_chars`.
fn pieces(text: &str, max_chars: usize) -> Vec<String> {
    for separator in ['\u{c}', '\n'] {
        let cut: Vec<String> = text
            .split_inclusive(separator)
            .map(str::to_string)
            .collect();
        if cut.iter().all(|p| p.chars().count() <= max_chars) {
            return cut;
        }
    }
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(max_chars.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_parts("abc", 10), ["abc"]);
    }

    #[test]
    fn long_text_splits_at_pages_first() {
        let text = "page one\u{c}page two\u{c}page three";
        let parts = split_parts(text, 12);
        assert_eq!(parts, ["page one\u{c}", "page two\u{c}", "page three"]);
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn a_long_page_splits_at_lines_then_anywhere() {
        let text = "aaaa\nbbbb\ncccccccccc";
        let parts = split_parts(text, 6);
        assert!(parts.iter().all(|p| p.chars().count() <= 6), "{parts:?}");
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn extraction_answers_are_checked_against_the_schema() {
        let schema = json!({"type": "object", "properties": {"title": {"type": "string"}},
            "required": ["title"], "additionalProperties": false});
        let v = jsonschema::validator_for(&schema).unwrap();
        assert_eq!(
            check_extraction(&v, r#"{"title": "A"}"#).unwrap(),
            json!({"title": "A"})
        );
        assert!(check_extraction(&v, "```json\n{\"title\": \"A\"}\n```").is_ok());
        assert!(check_extraction(&v, r#"{"title": 3}"#).is_err());
        assert!(check_extraction(&v, r#"{"name": "A"}"#).is_err());
        assert!(check_extraction(&v, "The title is A").is_err());
    }

    /// A client whose circuit cools down for `cooldown`; no request is ever sent.
    fn client(cooldown: Duration) -> LlmSummarizer {
        let mut cfg = crate::config::Pipeline::embedded_default().summarize.llm;
        cfg.circuit_cooldown = cooldown;
        LlmSummarizer::new(&cfg, "eng", "test")
    }

    fn set(llm: &LlmSummarizer, state: Breaker) {
        *llm.breaker.lock().unwrap() = state;
    }

    #[tokio::test]
    async fn a_document_tries_again_after_the_cooldown_or_a_success() {
        let llm = Arc::new(client(Duration::from_millis(300)));
        let started = Instant::now();
        llm.wait_to_retry().await;
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Another document's success ends the pause early.
        let llm = Arc::new(client(Duration::from_secs(3600)));
        let other = llm.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = other.record_outcome(Ok("a summary".into()), false);
        });
        tokio::time::timeout(Duration::from_secs(60), llm.wait_to_retry())
            .await
            .expect("a success ends the wait");
    }

    #[tokio::test]
    async fn a_document_waits_for_the_circuit_and_for_the_probe() {
        let llm = Arc::new(client(Duration::from_millis(100)));
        // Open: until the cooldown ends.
        let started = Instant::now();
        set(
            &llm,
            Breaker::Open {
                failures: 5,
                until: started + Duration::from_millis(300),
            },
        );
        llm.wait_to_retry().await;
        assert!(started.elapsed() >= Duration::from_millis(300));

        // A probe is out: until its outcome; a failed probe reopens the circuit, whose
        // cooldown is waited out too.
        set(&llm, Breaker::Probing { failures: 5 });
        let other = llm.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let failed = LlmError::Unreachable("refused".into());
            let _ = other.record_outcome(Err(failed), true);
        });
        llm.wait_to_retry().await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(
            *llm.breaker.lock().unwrap(),
            Breaker::Open { failures: 6, .. }
        ));
    }

    #[test]
    fn only_failures_that_may_pass_are_transient() {
        let status = |status| LlmError::Status {
            status,
            body: String::new(),
        };
        for transient in [
            LlmError::Unreachable("connection refused".into()),
            LlmError::CircuitOpen(5),
            status(429),
            status(500),
            status(503),
        ] {
            assert!(transient.is_transient(), "{transient}");
        }
        for permanent in [
            status(400),
            status(401),
            status(404),
            LlmError::ContextOverflow,
            LlmError::NotConverging,
            LlmError::BadAnswer("{}".into()),
        ] {
            assert!(!permanent.is_transient(), "{permanent}");
        }
    }

    #[test]
    fn context_overflow_answers_are_recognized() {
        assert!(mentions_context(
            "This model's maximum context length is 4096 tokens"
        ));
        assert!(!mentions_context("invalid api key"));
    }
}
