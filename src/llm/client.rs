//! The LLM summarizer: an OpenAI-compatible chat completions client (`POST
//! {base_url}/chat/completions`), as served by vLLM, llama.cpp's server, Ollama, LM Studio and
//! OpenAI.
//!
//! - Long documents are split on page, then line boundaries into parts of at most
//!   `max_input_chars`; each part is summarized, then the parts' summaries are summarized
//!   (map-reduce). A server that answers that the context is too long gets parts half as long.
//! - A request answered 429 or 5xx, or that times out or cannot connect, is retried up to
//!   `max_retries` times with jittered exponential backoff (backon); a `Retry-After` pause
//!   holds back every request to that server, from any pipeline, not only the retry.
//! - Summaries and extracted objects are cached by document text, model, prompt and
//!   parameters, so reprocessing a document does not call the server again; identical
//!   documents at the same time wait for the first one's answer.
//! - Flow control belongs to the server and is shared with every pipeline calling it
//!   ([`super::endpoint`]):
//!   - a circuit breaker: after `circuit_failures` documents in a row the server failed, no
//!     request is sent for `circuit_cooldown` (the fallback answers at once); then one
//!     document probes (half-open) while the others still get the fallback, and its success
//!     closes the circuit;
//!   - an adaptive limit of requests in flight ([`super::limiter`]): documents wait for
//!     room, retries wait without holding it, and the parts of a long document go out
//!     together under the same limit;
//!   - optional ceilings of requests and (estimated) tokens per minute (governor's GCRA): a
//!     request waits for them before it waits for room under the concurrency limit.
//! - Failures that may pass by themselves ([`LlmError::is_transient`]) can be waited out:
//!   [`LlmSummarizer::wait_to_retry`] returns when a document whose retries ran out may try
//!   again, as the circuit allows. The stage does that with `fallback: none`.
//! - Structured extraction, when the pipeline gives a JSON Schema: the document's text (its
//!   first `max_input_chars`) is sent with `response_format: json_schema`, the answer is
//!   checked against the schema, and a non-matching answer is asked for again up to
//!   `max_attempts` times.
//!
//! Emits `pagemill_llm_requests_total`, `pagemill_llm_request_duration_seconds`,
//! `pagemill_llm_tokens_total` and `pagemill_llm_quota_wait_seconds` (labels `pipeline` and
//! `endpoint`), `pagemill_llm_cache_hits_total` and `pagemill_llm_extractions_total` (label
//! `pipeline`); the endpoint emits the circuit, in-flight and limit gauges.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::endpoint::{Endpoint, FlowSettings};
use super::error::{LlmError, is_overload_status};
use super::limiter::{Limiter, Outcome};
use crate::config::LlmConfig;
use crate::runtime::metrics as m;

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
    /// The server's flow control, shared with the other pipelines that call it.
    endpoint: Arc<Endpoint>,
    /// The extraction schema, compiled once; none when extraction is off.
    validator: Option<jsonschema::Validator>,
}

impl LlmSummarizer {
    /// The client of `pipeline`, on the endpoint every pipeline at `cfg.base_url` shares.
    pub fn new(cfg: &LlmConfig, languages: &str, pipeline: &str) -> LlmSummarizer {
        // Present from the start, so dashboards and alerts see zeros rather than nothing.
        metrics::counter!(m::LLM_FALLBACKS, "pipeline" => pipeline.to_string()).increment(0);
        metrics::counter!(m::LLM_CACHE_HITS, "pipeline" => pipeline.to_string()).increment(0);
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
            endpoint: Endpoint::shared(&cfg.base_url, FlowSettings::of(cfg), pipeline),
            validator,
        }
    }

    /// The server's flow control, shared with the other pipelines that call it.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The limit of requests in flight to the server (the endpoint's).
    pub fn limiter(&self) -> &Limiter {
        self.endpoint.limiter()
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
        let admission = self.endpoint.admit()?;
        let probe = admission.is_probe();
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
        admission.finish(outcome)
    }

    /// Waits until a document whose summary just failed for a transient reason may try
    /// again, as the endpoint's circuit allows ([`Endpoint::wait_to_retry`]).
    pub async fn wait_to_retry(&self) {
        self.endpoint.wait_to_retry().await
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
        if let Some(failures) = self.endpoint.paused() {
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

    /// One try of a chat completion. It waits for room under the concurrency limit and for
    /// the end of any `Retry-After` pause, and gives the room back before returning, so that
    /// a retry's own pause holds no room. A try that gets room
    /// after the circuit opened is not sent, unless it belongs to the probe.
    async fn try_once(
        &self,
        body: &Value,
        key: Option<&str>,
        tokens: u32,
        probe: bool,
    ) -> Result<String, TryError> {
        if let Some(waited) = self.endpoint.wait_for_quota(tokens).await {
            metrics::histogram!(m::LLM_QUOTA_WAIT_SECONDS, &self.labels())
                .record(waited.as_secs_f64());
        }
        let permit = self.endpoint.limiter().acquire().await;
        self.endpoint.wait_out_hold().await;
        if !probe && let Some(failures) = self.endpoint.paused() {
            return Err(TryError::fatal(LlmError::CircuitOpen(failures)));
        }
        let url = format!("{}/chat/completions", self.endpoint.url());
        let started = Instant::now();
        let mut request = self.client.post(&url).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let outcome = request.send().await;
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!(m::LLM_REQUEST_SECONDS, &self.labels()).record(seconds);
        let response = match outcome {
            Ok(response) => response,
            Err(e) => {
                permit.finish(Outcome::Overloaded);
                self.count_request("unreachable".into());
                return Err(TryError {
                    error: LlmError::Unreachable(e.to_string()),
                    retryable: true,
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        self.count_request(status.as_u16().to_string());
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
        if let Some(pause) = retry_after {
            self.endpoint.hold_off(pause, BACKOFF_MAX);
        }
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

    /// The `pipeline` and `endpoint` labels of request metrics.
    fn labels(&self) -> [(&'static str, String); 2] {
        [
            ("pipeline", self.pipeline.clone()),
            ("endpoint", self.endpoint.label().to_string()),
        ]
    }

    /// Counts a request by its answer's `code`: the HTTP status, or `unreachable`.
    fn count_request(&self, code: String) {
        let [pipeline, endpoint] = self.labels();
        metrics::counter!(m::LLM_REQUESTS, &[pipeline, endpoint, ("code", code)]).increment(1);
    }

    fn read_answer(&self, answer: &Value) -> Result<String, LlmError> {
        let usage = &answer["usage"];
        for (field, direction) in [("prompt_tokens", "in"), ("completion_tokens", "out")] {
            if let Some(n) = usage[field].as_u64() {
                let [pipeline, endpoint] = self.labels();
                metrics::counter!(
                    m::LLM_TOKENS,
                    &[pipeline, endpoint, ("direction", direction.to_string())]
                )
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
