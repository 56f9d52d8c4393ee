//! The stages of a pipeline, in flow order, and the messages that pass between them.
//!
//! ```text
//! ingest ──► render ──► ocr ──► assemble ──► summarize ──► save
//!               └──── text-layer pages ──────►┘
//! ```
//! Each stage keeps its pure work (callable from tests and benches) apart from the actor that
//! schedules it. Every message that crosses an edge carries the [`Credit`](crate::edge::Credit)
//! that bounds that edge.

pub mod assemble;
pub mod ingest;
pub mod ocr;
pub mod render;
pub mod save;
pub mod summarize;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ractor::ActorRef;

use crate::edge::{Credit, Edge};
use crate::model::result::SourceRecord;

/// The stages of every pipeline, in the order a job goes through them. This is the one list
/// of them: their names are the `stage` metric label and log field, and the supervisor
/// spawns them in the reverse order (downstream first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Ingest,
    Render,
    Ocr,
    Assemble,
    Summarize,
    Save,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Ingest,
        Stage::Render,
        Stage::Ocr,
        Stage::Assemble,
        Stage::Summarize,
        Stage::Save,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Render => "render",
            Stage::Ocr => "ocr",
            Stage::Assemble => "assemble",
            Stage::Summarize => "summarize",
            Stage::Save => "save",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Identity of one job, shared by every message about it.
#[derive(Debug)]
pub struct JobInfo {
    pub id: String,
    pub pipeline: Arc<str>,
    /// When the job was submitted; the job's total time counts from here.
    pub submitted: Instant,
    /// Set when the job is cancelled: stages skip its remaining pages.
    pub cancel: Arc<AtomicBool>,
    /// Set when this attempt at the job was replaced by a new one after a stage crashed
    /// ([`crate::recovery`]): stages drop its messages.
    pub superseded: Arc<AtomicBool>,
    /// How many times the job was run again after a stage crashed (0 the first time).
    pub attempt: u32,
    /// One span per stage, children of the job's span; every log line about the job is
    /// emitted in one of them, so it carries the job id, pipeline and stage.
    stage_spans: [tracing::Span; Stage::ALL.len()],
}

impl JobInfo {
    pub fn new(
        id: String,
        pipeline: Arc<str>,
        submitted: Instant,
        cancel: Arc<AtomicBool>,
        job_span: &tracing::Span,
    ) -> JobInfo {
        let stage_spans =
            Stage::ALL.map(|stage| stage_span(job_span, stage.name(), &id, &pipeline));
        JobInfo {
            id,
            pipeline,
            submitted,
            cancel,
            superseded: Arc::new(AtomicBool::new(false)),
            attempt: 0,
            stage_spans,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Whether a newer attempt at this job has replaced this one: what is left of it is
    /// dropped.
    pub fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Relaxed)
    }

    /// The span of this job in `stage`.
    pub fn span(&self, stage: Stage) -> &tracing::Span {
        &self.stage_spans[stage as usize]
    }
}

/// The span of one job: its id and pipeline, for the life of the job. Job and stage spans
/// have the `error` level so that they are on whenever any log line is: a warning logged
/// under `--log-level warn` still says which job it is about.
pub fn job_span(id: &str, pipeline: &str) -> tracing::Span {
    tracing::error_span!("job", job_id = %id, pipeline = %pipeline)
}

/// The span of a job in one stage, a child of its job span. It repeats the job's fields so
/// that a log line's innermost span alone says which job, pipeline and stage it is about.
pub fn stage_span(
    job_span: &tracing::Span,
    stage: &str,
    id: &str,
    pipeline: &str,
) -> tracing::Span {
    tracing::error_span!(parent: job_span, "stage", stage = %stage, job_id = %id, pipeline = %pipeline)
}

/// A job's document as ingest found it.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub record: SourceRecord,
    pub ingest_ms: u64,
}

/// The next stage and the bounded edge into it. The supervisor sets the actor when it spawns
/// the stage and swaps it when it restarts a crashed one; senders always reach the live one.
pub struct Downstream<M: ractor::Message> {
    pub edge: Edge,
    actor: Arc<RwLock<Option<ActorRef<M>>>>,
}

impl<M: ractor::Message> Clone for Downstream<M> {
    fn clone(&self) -> Self {
        Downstream {
            edge: self.edge.clone(),
            actor: self.actor.clone(),
        }
    }
}

impl<M: ractor::Message> Downstream<M> {
    /// An edge whose stage is not spawned yet.
    pub fn new(edge: Edge) -> Self {
        Downstream {
            edge,
            actor: Arc::new(RwLock::new(None)),
        }
    }

    /// Points senders at a (re)started actor.
    pub fn set(&self, actor: ActorRef<M>) {
        *self.actor.write().expect("downstream lock poisoned") = Some(actor);
    }

    /// Waits for room on the edge, then sends the message built around the credit.
    pub async fn send_with(&self, build: impl FnOnce(Credit) -> M) {
        let credit = self.edge.acquire().await;
        self.send_now(build(credit));
    }

    /// Sends a message that already holds its credit (or needs none).
    pub fn send_now(&self, msg: M) {
        let actor = self.actor.read().expect("downstream lock poisoned").clone();
        match actor.map(|a| a.send_message(msg)) {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::error!(error = %e, "a stage is gone; message dropped"),
            None => tracing::error!("a stage was never started; message dropped"),
        }
    }
}
