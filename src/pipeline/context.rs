//! The context every stage actor of a pipeline starts with.

use std::sync::Arc;

use crate::config::Pipeline;
use crate::pipeline::progress::Progress;
use crate::pipeline::recovery::Recovery;
use crate::pipeline::stage::Stage;
use crate::runtime::metrics as m;
use crate::runtime::pool::CpuPool;
use crate::service::jobs::JobRegistry;
use crate::service::store::JobStore;

/// What every stage of a pipeline shares.
#[derive(Clone)]
pub struct StageContext {
    pub pipeline: Arc<Pipeline>,
    pub pool: CpuPool,
    pub progress: Arc<Progress>,
    pub jobs: Arc<JobRegistry>,
    /// Where finished pages, summaries and deliveries are recorded (none in tests that run
    /// a pipeline bare).
    pub store: Option<Arc<dyn JobStore>>,
    /// The jobs inside the pipeline, to run again if a stage crashes.
    pub recovery: Arc<Recovery>,
}

impl StageContext {
    /// The `pipeline` and `stage` metric labels.
    pub fn labels(&self, stage: Stage) -> [(&'static str, String); 2] {
        [
            ("pipeline", self.pipeline.name.clone()),
            ("stage", stage.name().to_string()),
        ]
    }

    /// Counts items into a stage. Each ends as exactly one of sent, error or discarded.
    pub(super) fn count_received(&self, stage: Stage, n: u64) {
        metrics::counter!(m::STAGE_RECEIVED, &self.labels(stage)).increment(n);
    }

    /// Counts items a stage passed on in good order.
    pub(super) fn count_sent(&self, stage: Stage, n: u64) {
        metrics::counter!(m::STAGE_SENT, &self.labels(stage)).increment(n);
    }

    /// Counts an item that failed in a stage, by error type.
    pub(super) fn count_error(&self, stage: Stage, error_type: &'static str) {
        metrics::counter!(m::STAGE_ERRORS, "pipeline" => self.pipeline.name.clone(), "stage" => stage.name(), "error_type" => error_type).increment(1);
    }

    /// Counts items a stage dropped unprocessed.
    pub(super) fn count_discarded(&self, stage: Stage, n: u64) {
        metrics::counter!(m::STAGE_DISCARDED, &self.labels(stage)).increment(n);
    }
}
