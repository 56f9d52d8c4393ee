//! Save stage: writes each job's result record and reports the job finished.
//!
//! [`write_result_atomically`] writes `<id>.json` through a temporary file in the same
//! directory, flushed and renamed, so a reader never sees a partial result; the files of
//! `save.formats` ([`formats`]) are written the same way, before the JSON. Then the result
//! goes to the pipeline's other [`sinks`] (webhook, SQLite, PostgreSQL), and only then is the
//! job marked finished in the journal: a crash before that runs the job and its deliveries
//! again, which the sinks, idempotent by job id, absorb.

pub mod formats;
pub mod postgres;
pub mod searchable_pdf;
pub mod sinks;
pub mod sqlite;
pub mod webhook;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::OutputFormat;
use crate::model::result::JobResult;
use crate::pipeline::context::StageContext;
use crate::pipeline::events::{Discard, Discarded, Failed, JobSaved, Passed, Received};
use crate::pipeline::messages::{JobFinished, SaveMsg};
use crate::pipeline::stage::Stage;

/// Where results go. Implementations block (files, databases); the stage runs them off the
/// async threads.
pub trait ResultWriter: Send + Sync {
    /// Stores one result, replacing any earlier one with the same id; returns where it went.
    fn write(&self, result: &JobResult) -> std::io::Result<PathBuf>;
}

/// Writes `<directory>/<id>.json`, and `<id>.<format>` for each of `formats`.
pub struct FileWriter {
    pub directory: PathBuf,
    pub formats: Vec<OutputFormat>,
}

impl ResultWriter for FileWriter {
    fn write(&self, result: &JobResult) -> std::io::Result<PathBuf> {
        // Formats first: once the JSON is there, everything for the job is.
        for &format in &self.formats {
            let name = format!("{}.{}", result.id, formats::extension(format));
            let document = formats::render(format, result);
            write_atomically(&self.directory, &name, |file| file.write_all(&document))?;
        }
        write_result_atomically(&self.directory, result)
    }
}

/// Writes the result as pretty JSON into `<dir>/<id>.json` atomically.
pub fn write_result_atomically(dir: &Path, result: &JobResult) -> std::io::Result<PathBuf> {
    write_atomically(dir, &format!("{}.json", result.id), |file| {
        // Buffered: serde writes every token separately, one system call each unbuffered
        // (0.9 s for a 24-page result with its words; 10 ms buffered).
        let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
        serde_json::to_writer_pretty(&mut out, result)?;
        out.write_all(b"\n")?;
        out.flush()
    })
}

/// Writes `<dir>/<name>` through a temporary file in the same directory (written, fsynced,
/// renamed, directory fsynced), creating the directory if needed: readers see the whole file
/// or none of it, and a power loss after this returns cannot take it back.
fn write_atomically(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let target = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(".pagemill-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    fill(tmp.as_file_mut())?;
    let mut perms = tmp.as_file().metadata()?.permissions();
    // Temporary files are private (0600); results are for other users and tools too.
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    tmp.as_file().set_permissions(perms)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

/// Delivers a saved result to each of the pipeline's sinks (all at once), showing every
/// attempt in the job's status; each delivery's end is journaled, and a delivery that failed
/// every retry becomes a dead letter there (the result stays in the results directory).
async fn deliver_to_sinks(
    ctx: &StageContext,
    sinks: &[Arc<sinks::Sink>],
    result: &Arc<JobResult>,
    written: &Path,
) {
    let body = match tokio::fs::read(written).await {
        Ok(body) => Arc::new(body),
        Err(e) => {
            tracing::error!(job_id = %result.id, error = %e, "cannot read the result for its sinks");
            return;
        }
    };
    let deliveries = sinks.iter().map(|sink| {
        let body = body.clone();
        async move {
            let progress = |d: &crate::service::jobs::SinkDelivery| {
                ctx.jobs.update(&result.id, |s| {
                    s.sinks.insert(sink.name().to_string(), d.clone());
                })
            };
            let delivery =
                sinks::deliver(sink, &ctx.pipeline.name, result, &body, progress).await;
            if let Some(error) = &delivery.error {
                tracing::warn!(job_id = %result.id, sink = sink.name(), attempts = delivery.attempts,
                    %error, "delivery failed");
            }
            (sink.name(), delivery)
        }
    });
    let ended = futures_util::future::join_all(deliveries).await;
    if let Some(journal) = &ctx.store {
        for (sink, delivery) in ended {
            if let Err(e) = journal.record_delivery(&result.id, sink, delivery).await {
                tracing::warn!(sink, error = %e, "cannot journal a delivery");
            }
        }
    }
}

/// Removes temporary files a killed process left in a results directory.
pub fn remove_leftover_temporaries(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".pagemill-") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

pub struct SaveStage;

pub struct SaveState {
    ctx: StageContext,
    writer: Arc<dyn ResultWriter>,
    sinks: Vec<Arc<sinks::Sink>>,
    finished: UnboundedSender<JobFinished>,
}

impl Actor for SaveStage {
    type Msg = SaveMsg;
    type State = SaveState;
    type Arguments = (
        StageContext,
        Arc<dyn ResultWriter>,
        UnboundedSender<JobFinished>,
    );

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (ctx, writer, finished): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SaveState {
            sinks: sinks::Sink::from_pipeline(&ctx.pipeline),
            ctx,
            writer,
            finished,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SaveMsg::Result(info, mut result, credit) = msg;
        state.ctx.recovery.handling(Stage::Save, Some(&info.id));
        Received {
            stage: Stage::Save,
            items: 1,
        }
        .emit(&state.ctx);
        if info.is_superseded() {
            Discarded {
                job_id: &info.id,
                stage: Stage::Save,
                items: 1,
                why: Discard::Superseded,
            }
            .emit(&state.ctx);
            return Ok(());
        }
        let started = Instant::now();
        result.timings.total_ms = info.submitted.elapsed().as_millis() as u64;
        let writer = state.writer.clone();
        let written = tokio::task::spawn_blocking(move || {
            let path = writer.write(&result);
            (result, path)
        })
        .await;
        let (result, path) = match written {
            Ok((result, Ok(path))) => {
                Passed {
                    stage: Stage::Save,
                    items: 1,
                }
                .emit(&state.ctx);
                (result, Some(path))
            }
            Ok((result, Err(e))) => {
                info.span(Stage::Save)
                    .in_scope(|| tracing::error!(error = %e, "cannot save the result"));
                Failed {
                    stage: Stage::Save,
                    error_type: "io",
                }
                .emit(&state.ctx);
                let mut result = result;
                result
                    .error
                    .get_or_insert(crate::model::error::JobError::Io(e.to_string()).to_record());
                (result, None)
            }
            Err(join) => return Err(join.into()),
        };
        JobSaved {
            info: &info,
            result: &result,
            seconds: started.elapsed().as_secs_f64(),
        }
        .emit(&state.ctx);
        let outcome = result.outcome();
        let span = info.span(Stage::Save);
        let result = Arc::new(result);
        if let Some(written) = &path {
            deliver_to_sinks(&state.ctx, &state.sinks, &result, written).await;
        }
        // The journal learns the job is over before anyone else does, so a shutdown or crash
        // from here on cannot run it again. A result that could not be written leaves the job
        // unfinished there: the next start runs it again.
        if let (Some(journal), Some(written)) = (&state.ctx.store, &path) {
            let code = result.error.as_ref().map(|e| e.code.clone());
            let written = written.to_string_lossy().into_owned();
            if let Err(error) = journal
                .finish(&result.id, outcome, code, Some(written))
                .await
            {
                span.in_scope(|| {
                    tracing::error!(
                        %error,
                        "cannot journal the finished job; it will run again"
                    )
                });
            }
        }
        state.ctx.recovery.finished(&result.id);
        state
            .ctx
            .jobs
            .finished(&result.id, result.error.clone(), path.clone());
        let _ = state.finished.send(JobFinished {
            id: result.id.clone(),
            name: result.source.name.clone(),
            error: result.error.clone(),
            result_path: path,
            pages: result.pages.len() as u32,
        });

        drop(credit);
        Ok(())
    }
}
