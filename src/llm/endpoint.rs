//! The flow control of one LLM server, shared by every pipeline that calls it.
//!
//! Flow control protects the server, so it belongs to the server, not to a pipeline: two
//! pipelines pointing at the same `base_url` share one [`Endpoint`], hence one adaptive
//! concurrency limit ([`super::limiter`]), one circuit breaker and one pair of per-minute
//! ceilings. Together they never send more requests at once than the limit, and a circuit
//! opened by one pipeline's failures holds the other's requests back too. What is the
//! pipeline's own stays in [`super::llm::LlmSummarizer`]: cache, prompt, model, timeouts,
//! retries, extraction schema, fallback.
//!
//! - Endpoints are found by their base URL, trailing `/` trimmed ([`Endpoint::shared`]), in a
//!   process-wide registry that holds them weakly: an endpoint lives as long as a pipeline
//!   uses it. The API key is not part of the key: the server's capacity (and a provider's
//!   quota, which is counted per organization or project) is the same whichever key calls it.
//! - The first pipeline to use an endpoint sets its flow settings ([`FlowSettings`]:
//!   concurrency, per-minute ceilings, circuit). A later pipeline with other values gets the
//!   endpoint as it is, and a warning says which values it ignores. Pipelines are started in
//!   file-name order, so the first is the first file.
//! - A `Retry-After` pause holds back every request to the server, not only the retry of
//!   the one it answered ([`Endpoint::hold_off`]).
//! - The circuit breaker counts documents, in a row, whose summary failed for a reason that
//!   says something about the server ([`LlmError::is_transient`]): unreachable, timeouts, 429,
//!   5xx. A pipeline's own mistake (401 for its key, 404 for its model, 400) does not pause
//!   the others.
//!
//! Emits `pagemill_llm_circuit_open` and, through the limiter,
//! `pagemill_llm_requests_in_flight` and `pagemill_llm_concurrency_limit` (label `endpoint`:
//! the base URL without credentials).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::error::LlmError;
use super::limiter::Limiter;
use crate::config::LlmConfig;
use crate::runtime::metrics as m;

/// The endpoints pipelines use now, by normalized base URL.
static ENDPOINTS: LazyLock<Mutex<HashMap<String, Weak<Endpoint>>>> = LazyLock::new(Mutex::default);

/// The settings of a pipeline's `summarize.llm` that belong to the endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSettings {
    pub concurrency_initial: usize,
    pub concurrency_max: usize,
    /// 0 for no ceiling.
    pub max_requests_per_minute: u32,
    /// 0 for no ceiling.
    pub max_tokens_per_minute: u32,
    pub circuit_failures: u32,
    pub circuit_cooldown: Duration,
}

impl FlowSettings {
    pub fn of(cfg: &LlmConfig) -> FlowSettings {
        FlowSettings {
            concurrency_initial: cfg.concurrency_initial,
            concurrency_max: cfg.concurrency_max,
            max_requests_per_minute: cfg.max_requests_per_minute,
            max_tokens_per_minute: cfg.max_tokens_per_minute,
            circuit_failures: cfg.circuit_failures,
            circuit_cooldown: cfg.circuit_cooldown,
        }
    }

    /// The settings that differ from `other`'s, as `key: ours (theirs)`, with the pipeline
    /// YAML's key names.
    pub fn differences(&self, other: &FlowSettings) -> Vec<String> {
        let mut out = Vec::new();
        let mut compare = |key: &str, ours: String, theirs: String| {
            if ours != theirs {
                out.push(format!("{key}: {ours} ({theirs})"));
            }
        };
        compare(
            "concurrency.initial",
            self.concurrency_initial.to_string(),
            other.concurrency_initial.to_string(),
        );
        compare(
            "concurrency.max",
            self.concurrency_max.to_string(),
            other.concurrency_max.to_string(),
        );
        compare(
            "max_requests_per_minute",
            self.max_requests_per_minute.to_string(),
            other.max_requests_per_minute.to_string(),
        );
        compare(
            "max_tokens_per_minute",
            self.max_tokens_per_minute.to_string(),
            other.max_tokens_per_minute.to_string(),
        );
        compare(
            "circuit_failures",
            self.circuit_failures.to_string(),
            other.circuit_failures.to_string(),
        );
        compare(
            "circuit_cooldown",
            humantime::format_duration(self.circuit_cooldown).to_string(),
            humantime::format_duration(other.circuit_cooldown).to_string(),
        );
        out
    }
}

/// The circuit breaker's state; failures count documents in a row the server failed.
#[derive(Debug, Clone, Copy)]
enum Breaker {
    /// Requests go out.
    Closed { failures: u32 },
    /// No request until `until`.
    Open { failures: u32, until: Instant },
    /// One document is probing the server; the others are held back meanwhile.
    Probing { failures: u32 },
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::Closed { failures: 0 }
    }
}

/// One LLM server's flow control: the state every pipeline calling it shares.
pub struct Endpoint {
    /// The base URL, trailing `/` trimmed: the registry's key.
    url: String,
    /// The base URL without credentials: the `endpoint` metric label.
    label: String,
    /// The pipeline that created the endpoint, whose settings apply.
    first_pipeline: String,
    settings: FlowSettings,
    /// Requests in flight to the server, adapted to its answers.
    limiter: Limiter,
    breaker: Mutex<Breaker>,
    /// Woken at each change of the breaker, for documents waiting to try again.
    breaker_changed: tokio::sync::Notify,
    /// Summaries the server wrote: a document waiting to try again goes as soon as another
    /// one succeeds.
    successes: AtomicU64,
    /// No request goes out before this: the pause the server last asked for with
    /// `Retry-After`, whichever pipeline's request it answered.
    held_until: Mutex<Option<Instant>>,
    /// Requests per minute, when a ceiling is set.
    requests_per_minute: Option<DefaultDirectRateLimiter>,
    /// Estimated tokens per minute and that ceiling, when one is set.
    tokens_per_minute: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    circuit_gauge: metrics::Gauge,
}

/// A document's leave to call the server, from [`Endpoint::admit`]. Its outcome goes back
/// through [`Admission::finish`]; a probe dropped before that (its document abandoned)
/// reopens the circuit at once, so that the next document probes instead of the circuit
/// staying half-open for ever.
pub struct Admission<'a> {
    endpoint: &'a Endpoint,
    probe: bool,
    finished: bool,
}

impl Admission<'_> {
    /// Whether this document is the half-open circuit's probe: its requests go out even
    /// though the circuit is not closed.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Counts the document's outcome on the breaker and hands it back.
    pub fn finish(mut self, outcome: Result<String, LlmError>) -> Result<String, LlmError> {
        self.finished = true;
        self.endpoint.record_outcome(outcome, self.probe)
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.probe && !self.finished {
            let mut b = self.endpoint.breaker.lock().expect("breaker lock");
            if let Breaker::Probing { failures } = *b {
                *b = Breaker::Open {
                    failures,
                    until: Instant::now(),
                };
            }
            drop(b);
            self.endpoint.breaker_changed.notify_waiters();
        }
    }
}

impl Endpoint {
    /// The endpoint at `base_url` that pipelines use now, else a new one with `settings`.
    /// `pipeline` asks for it: when the endpoint exists with other settings, a warning names
    /// the values `pipeline` does not get.
    pub fn shared(base_url: &str, settings: FlowSettings, pipeline: &str) -> Arc<Endpoint> {
        let url = normalize(base_url);
        let mut endpoints = ENDPOINTS.lock().expect("endpoint registry lock");
        if let Some(endpoint) = endpoints.get(&url).and_then(Weak::upgrade) {
            let ignored = settings.differences(&endpoint.settings);
            if !ignored.is_empty() {
                tracing::warn!(
                    pipeline,
                    endpoint = %endpoint.label,
                    first_pipeline = %endpoint.first_pipeline,
                    ignored = %ignored.join(", "),
                    "this pipeline's summarize.llm flow settings differ from those of the \
                     pipeline that first used the endpoint; the first pipeline's apply to \
                     both (ignored: this pipeline's value, then the one in force)"
                );
            }
            return endpoint;
        }
        endpoints.retain(|_, endpoint| endpoint.strong_count() > 0);
        let endpoint = Arc::new(Endpoint::new(&url, settings, pipeline));
        endpoints.insert(url, Arc::downgrade(&endpoint));
        endpoint
    }

    /// An endpoint of its own, outside the registry; `pipeline` is recorded as its first.
    pub fn new(base_url: &str, settings: FlowSettings, pipeline: &str) -> Endpoint {
        let url = normalize(base_url);
        let label = without_credentials(&url);
        let circuit_gauge = metrics::gauge!(m::LLM_CIRCUIT_OPEN, "endpoint" => label.clone());
        // Present from the start, so dashboards and alerts see zeros rather than nothing.
        circuit_gauge.set(0.0);
        Endpoint {
            limiter: Limiter::new(
                settings.concurrency_initial,
                settings.concurrency_max,
                &label,
            ),
            requests_per_minute: NonZeroU32::new(settings.max_requests_per_minute)
                .map(|n| RateLimiter::direct(Quota::per_minute(n))),
            tokens_per_minute: NonZeroU32::new(settings.max_tokens_per_minute)
                .map(|n| (RateLimiter::direct(Quota::per_minute(n)), n)),
            url,
            label,
            first_pipeline: pipeline.to_string(),
            settings,
            breaker: Mutex::default(),
            breaker_changed: tokio::sync::Notify::new(),
            successes: AtomicU64::new(0),
            held_until: Mutex::default(),
            circuit_gauge,
        }
    }

    /// The base URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `endpoint` metric label: the base URL without credentials.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The flow settings in force (those of the first pipeline).
    pub fn settings(&self) -> &FlowSettings {
        &self.settings
    }

    /// The limit of requests in flight to the server.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Whether a document may call the server now: closed, or the cooldown is over and it
    /// becomes the probe; else the circuit holds it back.
    pub fn admit(&self) -> Result<Admission<'_>, LlmError> {
        let mut b = self.breaker.lock().expect("breaker lock");
        let probe = match *b {
            Breaker::Closed { .. } => false,
            Breaker::Open { failures, until } if Instant::now() < until => {
                return Err(LlmError::CircuitOpen(failures));
            }
            Breaker::Open { failures, .. } => {
                *b = Breaker::Probing { failures };
                true
            }
            Breaker::Probing { failures } => return Err(LlmError::CircuitOpen(failures)),
        };
        Ok(Admission {
            endpoint: self,
            probe,
            finished: false,
        })
    }

    /// The failures in a row, while the circuit holds requests back (open, or a probe out);
    /// `None` while it is closed. A request that is not the probe's is not sent then.
    pub fn paused(&self) -> Option<u32> {
        match *self.breaker.lock().expect("breaker lock") {
            Breaker::Closed { .. } => None,
            Breaker::Open { failures, .. } | Breaker::Probing { failures } => Some(failures),
        }
    }

    /// Counts a document's outcome on the breaker: a success closes it; failures that say
    /// the server is down or overloaded, in a row, or a failed probe, open it.
    fn record_outcome(
        &self,
        outcome: Result<String, LlmError>,
        probe: bool,
    ) -> Result<String, LlmError> {
        let mut b = self.breaker.lock().expect("breaker lock");
        let reopen = |failures| Breaker::Open {
            failures,
            until: Instant::now() + self.settings.circuit_cooldown,
        };
        *b = match (&outcome, *b) {
            (Ok(_), _) => {
                self.successes.fetch_add(1, Ordering::SeqCst);
                Breaker::default()
            }
            // Held back by the circuit: says nothing new about the server.
            (Err(LlmError::CircuitOpen(_)), state) => state,
            // The pipeline's own request was at fault (its key, model, prompt): the server
            // is no worse for it. A probe that fails so reopens: it did not show the server
            // well either.
            (Err(e), Breaker::Probing { failures }) if probe && !e.is_transient() => {
                reopen(failures)
            }
            (Err(e), state) if !e.is_transient() => state,
            (Err(_), Breaker::Closed { failures })
                if failures + 1 >= self.settings.circuit_failures =>
            {
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
        self.circuit_gauge.set(if open { 1.0 } else { 0.0 });
        drop(b);
        self.breaker_changed.notify_waiters();
        outcome
    }

    /// Waits until a document whose summary just failed for a transient reason may try again:
    /// after `circuit_cooldown`, or as soon as another document's summary succeeds (in any
    /// pipeline); while the circuit is open, until its cooldown ends (the first document then
    /// probes); while a probe is out, until its outcome is known. Sends nothing itself.
    pub async fn wait_to_retry(&self) {
        let earliest = Instant::now() + self.settings.circuit_cooldown;
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

    /// Holds every request to the server back for `pause` (at most `longest`), as its
    /// `Retry-After` asked: the other documents in flight would only be told the same.
    pub fn hold_off(&self, pause: Duration, longest: Duration) {
        let until = Instant::now() + pause.min(longest);
        let mut held = self.held_until.lock().expect("hold lock");
        if held.is_none_or(|at| at < until) {
            *held = Some(until);
        }
    }

    /// Waits out a pause the server asked for ([`Endpoint::hold_off`]); at once if none.
    pub async fn wait_out_hold(&self) {
        loop {
            let until = *self.held_until.lock().expect("hold lock");
            match until {
                Some(at) if at > Instant::now() => tokio::time::sleep_until(at.into()).await,
                // A later answer may have moved the hold while this one slept: look again.
                _ => return,
            }
        }
    }

    /// Waits until the per-minute ceilings have room for a request of about `tokens` tokens;
    /// returns how long it waited, `None` when there is no ceiling.
    pub async fn wait_for_quota(&self, tokens: u32) -> Option<Duration> {
        if self.requests_per_minute.is_none() && self.tokens_per_minute.is_none() {
            return None;
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
        Some(started.elapsed())
    }
}

/// The registry's key for a base URL: trailing `/` trimmed.
fn normalize(base_url: &str) -> String {
    base_url.trim_end_matches('/').to_string()
}

/// The URL without a `user:password@` part, which must not show in metrics.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cooldown: Duration) -> FlowSettings {
        let mut cfg = crate::config::Pipeline::embedded_default().summarize.llm;
        cfg.circuit_cooldown = cooldown;
        FlowSettings::of(&cfg)
    }

    /// An endpoint of its own whose circuit cools down for `cooldown`; nothing is sent.
    fn endpoint(cooldown: Duration) -> Arc<Endpoint> {
        Arc::new(Endpoint::new("http://test/v1", settings(cooldown), "test"))
    }

    fn set(endpoint: &Endpoint, state: Breaker) {
        *endpoint.breaker.lock().unwrap() = state;
    }

    #[test]
    fn pipelines_at_one_url_share_its_endpoint_and_the_first_settings() {
        let first = settings(Duration::from_secs(30));
        let mut other = first.clone();
        other.concurrency_max = 3;
        other.max_requests_per_minute = 60;
        let a = Endpoint::shared("http://registry-test:1/v1", first.clone(), "a");
        let b = Endpoint::shared("http://registry-test:1/v1/", other.clone(), "b");
        assert!(Arc::ptr_eq(&a, &b), "a trailing slash is the same server");
        assert_eq!(b.settings(), &first);
        assert_eq!(
            other.differences(&first),
            ["concurrency.max: 3 (16)", "max_requests_per_minute: 60 (0)"]
        );
        let c = Endpoint::shared("http://registry-test:2/v1", other.clone(), "c");
        assert!(!Arc::ptr_eq(&a, &c), "another server, another endpoint");

        // Once no pipeline uses it, the next one starts afresh with its own settings.
        drop((a, b));
        let d = Endpoint::shared("http://registry-test:1/v1", other.clone(), "d");
        assert_eq!(d.settings(), &other);
    }

    #[test]
    fn credentials_stay_out_of_the_metric_label() {
        assert_eq!(
            without_credentials("https://user:secret@llm.example/v1"),
            "https://llm.example/v1"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:8000/v1"),
            "http://127.0.0.1:8000/v1"
        );
        assert_eq!(
            without_credentials("http://host/v1/a@b"),
            "http://host/v1/a@b"
        );
    }

    #[test]
    fn only_failures_of_the_server_open_the_circuit() {
        let e = endpoint(Duration::from_secs(3600));
        let unauthorized = || LlmError::Status {
            status: 401,
            body: String::new(),
        };
        for _ in 0..10 {
            let _ = e.record_outcome(Err(unauthorized()), false);
        }
        assert_eq!(e.paused(), None, "401s are the pipeline's own fault");
        let failures = e.settings().circuit_failures;
        for _ in 0..failures {
            let _ = e.record_outcome(Err(LlmError::Unreachable("refused".into())), false);
        }
        assert_eq!(e.paused(), Some(failures));
        assert!(matches!(e.admit(), Err(LlmError::CircuitOpen(_))));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_document_probe() {
        let e = endpoint(Duration::from_secs(3600));
        set(
            &e,
            Breaker::Open {
                failures: 5,
                until: Instant::now(),
            },
        );
        let probe = e.admit().expect("the cooldown is over");
        assert!(probe.is_probe());
        assert!(e.admit().is_err(), "one probe at a time");
        drop(probe);
        assert!(e.admit().expect("the circuit reopened").is_probe());
    }

    #[tokio::test]
    async fn a_document_tries_again_after_the_cooldown_or_a_success() {
        let e = endpoint(Duration::from_millis(300));
        let started = Instant::now();
        e.wait_to_retry().await;
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Another document's success ends the pause early.
        let e = endpoint(Duration::from_secs(3600));
        let other = e.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = other.record_outcome(Ok("a summary".into()), false);
        });
        tokio::time::timeout(Duration::from_secs(60), e.wait_to_retry())
            .await
            .expect("a success ends the wait");
    }

    #[tokio::test]
    async fn a_document_waits_for_the_circuit_and_for_the_probe() {
        let e = endpoint(Duration::from_millis(100));
        // Open: until the cooldown ends.
        let started = Instant::now();
        set(
            &e,
            Breaker::Open {
                failures: 5,
                until: started + Duration::from_millis(300),
            },
        );
        e.wait_to_retry().await;
        assert!(started.elapsed() >= Duration::from_millis(300));

        // A probe is out: until its outcome; a failed probe reopens the circuit, whose
        // cooldown is waited out too.
        set(&e, Breaker::Probing { failures: 5 });
        let other = e.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let failed = LlmError::Unreachable("refused".into());
            let _ = other.record_outcome(Err(failed), true);
        });
        e.wait_to_retry().await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(
            *e.breaker.lock().unwrap(),
            Breaker::Open { failures: 6, .. }
        ));
    }
}
