//! One supervisor per pipeline: builds the stage chain, restarts it when a stage crashes, and
//! is the handle through which jobs are submitted.
//!
//! Stages are spawned sink-first, linked to the supervisor, each holding a [`Downstream`] to
//! the next. When a stage fails (a panic in its handler), the supervisor stops the whole
//! generation of stages, waits a capped exponential backoff, starts a new generation (the
//! senders are pointed at the new actors) and runs every unfinished job again from its journal
//! checkpoints, as [`crate::pipeline::recovery`] describes: a crash loses no job, and a job that keeps
//! crashing a stage ends `failed` with `internal`. Each restart is counted
//! (`pagemill_stage_restarts_total`, by the stage that crashed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::Pipeline;
use crate::pipeline::context::StageContext;
use crate::pipeline::edge::{Credit, Downstream, Edge};
use crate::pipeline::messages::{
    AssembleMsg, IngestMsg, JobFinished, JobRequest, OcrMsg, RenderMsg, SaveMsg, Submission,
    SummarizeMsg,
};
use crate::pipeline::progress::Progress;
use crate::pipeline::recovery::Recovery;
use crate::pipeline::stage::Stage;
use crate::runtime::metrics as m;
use crate::runtime::pool::CpuPool;
use crate::service::jobs::JobRegistry;
use crate::service::store::JobStore;
use crate::stages::assemble::AssembleStage;
use crate::stages::ingest::IngestStage;
use crate::stages::ocr::actor::OcrStage;
use crate::stages::render::RenderStage;
use crate::stages::save::{FileWriter, ResultWriter, SaveStage};
use crate::stages::summarize::SummarizeStage;

/// The downstream handles of every stage, kept so a restarted stage can be re-wired.
#[derive(Clone)]
pub struct Wiring {
    ingest: Downstream<IngestMsg>,
    render: Downstream<RenderMsg>,
    ocr: Downstream<OcrMsg>,
    assemble: Downstream<AssembleMsg>,
    summarize: Downstream<SummarizeMsg>,
    save: Downstream<SaveMsg>,
    writer: Arc<dyn ResultWriter>,
    finished: UnboundedSender<JobFinished>,
}

pub struct PipelineSupervisor;

pub struct SupervisorState {
    ctx: StageContext,
    wiring: Wiring,
    children: Vec<(ActorCell, Stage)>,
    restarts: u32,
    last_restart: Option<Instant>,
}

pub enum SupervisorMsg {}

/// Spawns one stage linked to `supervisor` and returns its cell.
async fn spawn_stage(
    kind: Stage,
    ctx: &StageContext,
    w: &Wiring,
    supervisor: ActorCell,
) -> Result<ActorCell, ActorProcessingErr> {
    let c = ctx.clone();
    let cell = match kind {
        Stage::Save => {
            let (a, _) = Actor::spawn_linked(
                None,
                SaveStage,
                (c, w.writer.clone(), w.finished.clone()),
                supervisor,
            )
            .await?;
            w.save.set(a.clone());
            a.get_cell()
        }
        Stage::Summarize => {
            let (a, _) =
                Actor::spawn_linked(None, SummarizeStage, (c, w.save.clone()), supervisor).await?;
            w.summarize.set(a.clone());
            a.get_cell()
        }
        Stage::Assemble => {
            let (a, _) =
                Actor::spawn_linked(None, AssembleStage, (c, w.summarize.clone()), supervisor)
                    .await?;
            w.assemble.set(a.clone());
            a.get_cell()
        }
        Stage::Ocr => {
            let (a, _) =
                Actor::spawn_linked(None, OcrStage, (c, w.assemble.clone()), supervisor).await?;
            w.ocr.set(a.clone());
            a.get_cell()
        }
        Stage::Render => {
            let (a, _) = Actor::spawn_linked(
                None,
                RenderStage,
                (c, w.ocr.clone(), w.assemble.clone()),
                supervisor,
            )
            .await?;
            w.render.set(a.clone());
            a.get_cell()
        }
        Stage::Ingest => {
            let (a, _) =
                Actor::spawn_linked(None, IngestStage, (c, w.render.clone()), supervisor).await?;
            w.ingest.set(a.clone());
            a.get_cell()
        }
    };
    Ok(cell)
}

/// Spawn order: the last stage first, so every stage's downstream exists when it starts.
fn spawn_order() -> impl Iterator<Item = Stage> {
    Stage::ALL.into_iter().rev()
}

impl Actor for PipelineSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = (StageContext, Wiring);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (ctx, wiring): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut children = Vec::new();
        for kind in spawn_order() {
            let cell = spawn_stage(kind, &ctx, &wiring, myself.get_cell()).await?;
            children.push((cell, kind));
        }
        Ok(SupervisorState {
            ctx,
            wiring,
            children,
            restarts: 0,
            last_restart: None,
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, error) = event else {
            return Ok(());
        };
        let Some(pos) = state
            .children
            .iter()
            .position(|(c, _)| c.get_id() == cell.get_id())
        else {
            return Ok(());
        };
        let (_, kind) = state.children.remove(pos);
        let panic = error.to_string();
        tracing::error!(stage = kind.name(), error = %panic, "stage crashed; restarting the pipeline's stages");
        // The other stages hold parts of the same jobs: the whole generation goes, and the
        // jobs run again in the next one.
        for (cell, _) in state.children.drain(..) {
            cell.unlink(myself.get_cell());
            let _ = cell.kill_and_wait(Some(Duration::from_secs(10))).await;
        }
        // Backoff doubles with each restart and resets after a quiet minute.
        if state
            .last_restart
            .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
        {
            state.restarts = 0;
        }
        let sup = &state.ctx.pipeline.supervisor;
        let delay = sup
            .restart_backoff_initial
            .saturating_mul(1u32 << state.restarts.min(16))
            .min(sup.restart_backoff_max);
        tokio::time::sleep(delay).await;
        state.restarts += 1;
        state.last_restart = Some(Instant::now());
        Progress::add(&state.ctx.progress.restarts, 1);
        metrics::counter!(m::STAGE_RESTARTS, &state.ctx.labels(kind)).increment(1);
        for kind in spawn_order() {
            let cell = spawn_stage(kind, &state.ctx, &state.wiring, myself.get_cell()).await?;
            state.children.push((cell, kind));
        }
        let reruns = state.ctx.recovery.rerun(kind, &panic, sup.max_job_crashes);
        for rerun in &reruns {
            let s = &rerun.submission;
            state.ctx.jobs.update(&s.request.id, |status| {
                status.pages.rendered = 0;
                status.pages.ocred = 0;
            });
            s.span.in_scope(|| match &s.fail {
                None => tracing::warn!(attempt = s.attempt, crashes = rerun.crashes, "job runs again after a stage crashed"),
                Some(e) => tracing::error!(crashes = rerun.crashes, error = %e, "job fails: it crashed stages too often"),
            });
        }
        let ingest = state.wiring.ingest.clone();
        tokio::spawn(async move {
            for rerun in reruns {
                ingest
                    .send_with(|credit| IngestMsg::Job(rerun.submission, credit))
                    .await;
            }
        });
        Ok(())
    }
}

/// A running pipeline: submit jobs, watch them finish, stop it.
pub struct PipelineHandle {
    pub pipeline: Arc<Pipeline>,
    pub progress: Arc<Progress>,
    pub jobs: Arc<JobRegistry>,
    /// When the pipeline started; admission estimates its drain rate from here.
    pub started: Instant,
    recovery: Arc<Recovery>,
    ingest: Downstream<IngestMsg>,
    supervisor: ActorRef<SupervisorMsg>,
    join: tokio::task::JoinHandle<()>,
}

/// A registered job on its way to ingest.
struct Registered(Submission);

impl Registered {
    async fn await_send(self, handle: &PipelineHandle) {
        handle
            .ingest
            .send_with(|credit: Credit| IngestMsg::Job(self.0, credit))
            .await;
    }
}

/// Options for starting a pipeline; the defaults are what `pagemill` itself uses.
#[derive(Default)]
pub struct StartOptions {
    /// Where results go instead of the pipeline's `save.directory`.
    pub writer: Option<Arc<dyn ResultWriter>>,
    /// The job registry to report into; pipelines of one daemon share one.
    pub jobs: Option<Arc<JobRegistry>>,
    /// The job store to checkpoint finished pages in, and to resume jobs from.
    pub store: Option<Arc<dyn JobStore>>,
}

impl PipelineHandle {
    /// Builds the stage chain of `pipeline` on `pool` and starts it. The receiver yields one
    /// [`JobFinished`] per job, after its result is saved.
    pub async fn start(
        pipeline: Pipeline,
        pool: CpuPool,
        options: StartOptions,
    ) -> anyhow::Result<(PipelineHandle, UnboundedReceiver<JobFinished>)> {
        let pipeline = Arc::new(pipeline);
        let ocr = pipeline.ocr.clone();
        pool.spawn_on_every_thread(move || crate::stages::ocr::warm_engines_on_this_thread(&ocr));
        let progress = Arc::new(Progress::default());
        let jobs = options.jobs.unwrap_or_default();
        let ctx = StageContext {
            pipeline: pipeline.clone(),
            pool,
            progress: progress.clone(),
            jobs: jobs.clone(),
            store: options.store.clone(),
            recovery: Arc::new(Recovery::default()),
        };
        let (finished_tx, finished_rx) = unbounded_channel();
        let writer = options.writer.unwrap_or_else(|| {
            Arc::new(FileWriter {
                directory: pipeline.save.directory.clone(),
                formats: pipeline.save.formats.clone(),
            })
        });
        let e = &pipeline.edges;
        let name = pipeline.name.as_str();
        let wiring = Wiring {
            ingest: Downstream::new(Edge::new(name, Stage::Ingest.name(), e.ingest_documents)),
            render: Downstream::new(Edge::new(name, Stage::Render.name(), e.render_documents)),
            ocr: Downstream::new(Edge::new(name, Stage::Ocr.name(), e.ocr_pages)),
            assemble: Downstream::new(Edge::new(name, Stage::Assemble.name(), e.assemble_pages)),
            summarize: Downstream::new(Edge::new(
                name,
                Stage::Summarize.name(),
                e.summarize_documents,
            )),
            save: Downstream::new(Edge::new(name, Stage::Save.name(), e.save_documents)),
            writer,
            finished: finished_tx,
        };
        for stage in Stage::ALL {
            let workers = if stage == Stage::Ocr {
                pipeline.pool.threads
            } else {
                1
            };
            let labels = [
                ("pipeline", pipeline.name.clone()),
                ("stage", stage.name().to_string()),
            ];
            metrics::gauge!(m::STAGE_WORKERS, &labels).set(workers as f64);
            metrics::counter!(m::STAGE_RESTARTS, &labels).increment(0);
            metrics::counter!(m::STAGE_DISCARDED, &labels).increment(0);
            for error_type in crate::model::error::JobError::CODES {
                metrics::counter!(m::STAGE_ERRORS, "pipeline" => pipeline.name.clone(), "stage" => stage.name(), "error_type" => error_type).increment(0);
            }
        }
        // Series whose label values are known start at 0, so that rates and ratios over them
        // are 0 rather than no data before the first failure.
        for outcome in ["done", "failed", "cancelled"] {
            metrics::counter!(m::JOBS_COMPLETED, "pipeline" => pipeline.name.clone(), "outcome" => outcome).increment(0);
        }
        for outcome in crate::pipeline::messages::PageOutcome::LABELS {
            metrics::counter!(m::PAGES, "pipeline" => pipeline.name.clone(), "outcome" => outcome)
                .increment(0);
        }
        let ingest = wiring.ingest.clone();
        let recovery = ctx.recovery.clone();
        let (supervisor, join) = Actor::spawn(None, PipelineSupervisor, (ctx, wiring))
            .await
            .map_err(anyhow::Error::from)?;
        Ok((
            PipelineHandle {
                pipeline,
                progress,
                jobs,
                started: Instant::now(),
                recovery,
                ingest,
                supervisor,
                join,
            },
            finished_rx,
        ))
    }

    /// Submits a job, waiting while the ingest edge is full (backpressure).
    pub async fn submit(&self, request: JobRequest) {
        self.register(&request, 0).await_send(self).await;
    }

    /// Registers a job of `bytes` bytes now (its status is visible at once) and hands it to
    /// ingest in the background, where it waits for room on the ingest edge.
    pub fn enqueue(self: &Arc<Self>, request: JobRequest, bytes: u64) {
        let registered = self.register(&request, bytes);
        let this = self.clone();
        tokio::spawn(async move { registered.await_send(&this).await });
    }

    fn register(&self, request: &JobRequest, bytes: u64) -> Registered {
        Progress::add(&self.progress.jobs_submitted, 1);
        let cancel = self.jobs.register(
            &request.id,
            &self.pipeline.name,
            &request.name,
            bytes,
            request.tenant.as_deref(),
        );
        let span = crate::pipeline::job::job_span(&request.id, &self.pipeline.name);
        crate::pipeline::job::stage_span(
            &span,
            Stage::Ingest.name(),
            &request.id,
            &self.pipeline.name,
        )
        .in_scope(|| tracing::info!(name = %request.name, bytes, "job queued"));
        let submission = Submission::new(request.clone(), cancel, span);
        self.recovery.admit(&submission);
        Registered(submission)
    }

    /// Whether the stage supervisor is still running.
    pub fn is_running(&self) -> bool {
        !self.join.is_finished()
    }

    /// Stops every stage. Jobs still inside are dropped.
    pub async fn stop(self) {
        self.supervisor.stop(None);
        let _ = self.join.await;
    }
}
