//! Sinks: the places a saved result is delivered to besides the results directory.
//!
//! A pipeline may name several (`save.webhook`, `save.sqlite`, `save.postgres`); each gets
//! every result at least once, after the result file is written and before the job is marked
//! finished in the journal, so a crash in between delivers it again on restart. Every sink is
//! idempotent by job id (an upsert keyed by id, an `Idempotency-Key` header), so a second
//! delivery replaces the first instead of adding to it. A failed attempt is retried with
//! jittered exponential backoff (backon), when it may pass later ([`SinkError::Transient`]: the
//! sink unreachable, busy or failing); a refusal that would repeat ([`SinkError::Permanent`]:
//! a 4xx answer, a row that breaks a constraint) is not retried. When retries run out, or at
//! once for a refusal, the delivery becomes a dead letter in the journal and the result stays
//! in the results directory. Each attempt shows in
//! the job's status (`sinks`) and in `pagemill_sink_deliveries_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::config::Pipeline;
use crate::model::result::JobResult;
use crate::runtime::metrics as m;
use crate::service::jobs::{DeliveryState, SinkDelivery};

use super::{postgres, sqlite, webhook};

/// A failed delivery attempt, and whether another attempt can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink may take the same result later: it was unreachable, busy, timed out, or
    /// failed on its side.
    #[error("{0}")]
    Transient(String),
    /// The sink refused this result for good: the same attempt would fail the same way.
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

/// One delivery target of a pipeline.
pub enum Sink {
    Webhook(webhook::WebhookSink),
    Sqlite(Arc<sqlite::SqliteSink>),
    Postgres(postgres::PostgresSink),
}

impl Sink {
    /// The sinks a pipeline's `save:` section names.
    pub fn from_pipeline(pipeline: &Pipeline) -> Vec<Arc<Sink>> {
        let save = &pipeline.save;
        let mut sinks = Vec::new();
        if let Some(cfg) = &save.webhook {
            sinks.push(Arc::new(Sink::Webhook(webhook::WebhookSink::new(
                cfg.clone(),
            ))));
        }
        if let Some(cfg) = &save.sqlite {
            sinks.push(Arc::new(Sink::Sqlite(Arc::new(sqlite::SqliteSink::new(
                cfg.clone(),
            )))));
        }
        if let Some(cfg) = &save.postgres {
            sinks.push(Arc::new(Sink::Postgres(postgres::PostgresSink::new(
                cfg.clone(),
            ))));
        }
        sinks
    }

    /// Every name [`Sink::name`] gives.
    pub const NAMES: [&'static str; 3] = ["webhook", "sqlite", "postgres"];

    /// The name used in job status, metrics and dead letters.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Webhook(_) => "webhook",
            Sink::Sqlite(_) => "sqlite",
            Sink::Postgres(_) => "postgres",
        }
    }

    fn max_retries(&self) -> u32 {
        match self {
            Sink::Webhook(s) => s.cfg.max_retries,
            Sink::Sqlite(s) => s.cfg.max_retries,
            Sink::Postgres(s) => s.cfg.max_retries,
        }
    }

    /// One attempt to deliver `result`, whose saved JSON is `body`.
    async fn deliver_once(
        &self,
        result: &Arc<JobResult>,
        body: &Arc<Vec<u8>>,
    ) -> Result<(), SinkError> {
        match self {
            Sink::Webhook(s) => s.post(&result.id, body).await,
            Sink::Sqlite(s) => {
                let (s, result, body) = (s.clone(), result.clone(), body.clone());
                tokio::task::spawn_blocking(move || s.upsert(&result, &body))
                    .await
                    .map_err(|e| SinkError::Transient(format!("the SQLite sink stopped: {e}")))?
            }
            Sink::Postgres(s) => s.upsert(result, body).await,
        }
    }
}

/// Delivers a result to `sink`, retrying attempts that failed transiently; `progress` sees the
/// delivery after every attempt. Returns the final state: delivered, or a dead letter with the last error.
pub async fn deliver(
    sink: &Arc<Sink>,
    pipeline: &str,
    result: &Arc<JobResult>,
    body: &Arc<Vec<u8>>,
    progress: impl Fn(&SinkDelivery),
) -> SinkDelivery {
    let attempts = AtomicU32::new(0);
    let name = sink.name();
    let attempt = || async {
        attempts.fetch_add(1, Ordering::Relaxed);
        sink.deliver_once(result, body).await
    };
    let delivered = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(30))
                .with_max_times(sink.max_retries() as usize)
                .with_jitter(),
        )
        .when(SinkError::is_transient)
        .notify(|error: &SinkError, _| {
            metrics::counter!(m::SINK_DELIVERIES, "pipeline" => pipeline.to_string(), "sink" => name, "outcome" => "retried")
                .increment(1);
            progress(&SinkDelivery {
                state: DeliveryState::Retrying,
                attempts: attempts.load(Ordering::Relaxed),
                error: Some(error.to_string()),
            });
        })
        .await;
    let delivery = SinkDelivery {
        state: if delivered.is_ok() {
            DeliveryState::Delivered
        } else {
            DeliveryState::DeadLetter
        },
        attempts: attempts.load(Ordering::Relaxed),
        error: delivered.err().map(|e| e.to_string()),
    };
    let outcome = match delivery.state {
        DeliveryState::Delivered => "delivered",
        _ => "dead_letter",
    };
    metrics::counter!(m::SINK_DELIVERIES, "pipeline" => pipeline.to_string(), "sink" => name, "outcome" => outcome)
        .increment(1);
    progress(&delivery);
    delivery
}

/// The columns every database sink's results table has, and what each holds.
pub struct ResultRow<'a> {
    pub id: &'a str,
    pub pipeline: &'a str,
    pub name: &'a str,
    pub sha256: &'a str,
    /// `done` or `failed`.
    pub state: &'a str,
    pub error_code: Option<&'a str>,
    pub pages: i32,
    pub summary_engine: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub text: &'a str,
    /// The tenant (API key name) that submitted the job.
    pub tenant: Option<&'a str>,
}

impl<'a> ResultRow<'a> {
    pub fn of(result: &'a JobResult) -> ResultRow<'a> {
        ResultRow {
            id: &result.id,
            pipeline: &result.pipeline,
            name: &result.source.name,
            sha256: &result.source.sha256,
            state: result.outcome(),
            error_code: result.error.as_ref().map(|e| e.code.as_str()),
            pages: i32::try_from(result.pages.len()).unwrap_or(i32::MAX),
            summary_engine: result.summary.as_ref().map(|s| s.engine.as_str()),
            summary: result.summary.as_ref().map(|s| s.text.as_str()),
            tenant: result.source.tenant.as_deref(),
            text: &result.text,
        }
    }
}
