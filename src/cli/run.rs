//! `pagemill run`: a batch over files and folders through the same intake and actor pipeline
//! as the daemon, with a journal that lives as long as the batch.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Pipeline, load_pipeline};
use crate::model::error::ErrorRecord;
use crate::pipeline::messages::JobFinished;
use crate::pipeline::progress::Progress;
use crate::pipeline::supervisor::{PipelineHandle, StartOptions};
use crate::runtime::pool::CpuPool;
use crate::service::intake::Intake;
use crate::service::jobs::JobRegistry;
use crate::service::journal::{Journal, JournalHandle};
use crate::service::source::FileSource;
use crate::service::store::JobStore;

/// The pipeline a batch command runs: `--pipeline` and `--threads`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Pipeline YAML file (default: the built-in default pipeline).
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// CPU pool threads (default: the pipeline's `pool.threads`).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl PipelineArgs {
    /// Loads the pipeline with `--threads` applied; on a configuration error, prints every
    /// problem and gives the usage exit code.
    pub fn load(&self) -> Result<Pipeline, ExitCode> {
        let mut pipeline = match &self.pipeline {
            Some(path) => load_pipeline(path).map_err(|e| {
                eprintln!("{e}");
                ExitCode::from(super::EXIT_USAGE)
            })?,
            None => Pipeline::embedded_default(),
        };
        if let Some(threads) = self.threads {
            pipeline.pool.threads = threads.max(1);
        }
        Ok(pipeline)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Directory for result JSON files (default: the pipeline's `save.directory`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Documents, or folders to read documents from (recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// Expands folders into the files inside them, sorted, skipping hidden files.
pub fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).with_context(|| format!("{}", input.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(input, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut pipeline = match args.pipeline.load() {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if let Some(out) = args.out {
        pipeline.save.directory = out;
    }
    let files = match collect_inputs(&args.inputs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let finished = runtime.block_on(run_batch(pipeline, files))?;
    let failures = finished.iter().filter(|f| f.error.is_some()).count();
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs every file through intake and the pipeline, showing progress; returns every finished
/// job, in the order of `files`. Files pagemill cannot take (unreadable, of a type it does not
/// read, too large) are refused by intake as an upload would be, and come back failed with
/// intake's code and no result.
pub async fn run_batch(
    pipeline: Pipeline,
    files: Vec<PathBuf>,
) -> anyhow::Result<Vec<JobFinished>> {
    let pool = CpuPool::new(pipeline.pool.threads)?;
    let out_dir = pipeline.save.directory.clone();
    let name = pipeline.name.clone();
    // A batch keeps its journal for its own lifetime: checkpoints let a crashed stage resume
    // its jobs, and nothing needs it after the batch.
    let scratch = tempfile::tempdir()?;
    let journal = Journal::open(&scratch.path().join("journal.sqlite"))?;
    let store: Arc<dyn JobStore> = Arc::new(JournalHandle::new(Arc::new(journal)));
    let jobs = Arc::new(JobRegistry::default());
    let options = StartOptions {
        writer: None,
        jobs: Some(jobs.clone()),
        store: Some(store.clone()),
    };
    let (handle, mut finished) = PipelineHandle::start(pipeline, pool.clone(), options).await?;
    let handle = Arc::new(handle);
    let progress = handle.progress.clone();
    let pipelines = BTreeMap::from([(name.clone(), handle)]);
    let spool = scratch.path().join("spool");
    let intake = Arc::new(Intake::new(pipelines, jobs, store, spool));
    let total_jobs = files.len();
    let (taken_tx, mut taken) = tokio::sync::mpsc::unbounded_channel();
    let feeder = tokio::spawn(intake.clone().drain(name, FileSource::new(files), taken_tx));

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} pages  {per_sec}  ETA {eta}  {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut failures = Vec::new();
    // Each document's place in the batch, by job id, and jobs that finished before intake's
    // report of them arrived.
    let mut place = HashMap::new();
    let mut early: HashMap<String, JobFinished> = HashMap::new();
    let mut all: Vec<Option<JobFinished>> = (0..total_jobs).map(|_| None).collect();
    let mut done = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while done < total_jobs {
        let event = tokio::select! {
            Some(taken) = taken.recv() => match taken.job {
                Ok(id) => match early.remove(&id) {
                    Some(event) => (taken.index, event),
                    None => {
                        place.insert(id, taken.index);
                        continue;
                    }
                },
                Err(e) => (taken.index, JobFinished {
                    id: String::new(),
                    name: taken.name,
                    error: Some(ErrorRecord { code: e.code().into(), message: e.to_string() }),
                    result_path: None,
                    pages: 0,
                }),
            },
            event = finished.recv() => {
                // The pipeline has stopped: no more jobs will finish.
                let Some(event) = event else { break };
                match place.get(&event.id) {
                    Some(&index) => (index, event),
                    None => {
                        early.insert(event.id.clone(), event);
                        continue;
                    }
                }
            }
            _ = ticker.tick() => {
                if let Some(bar) = &bar {
                    bar.set_length(Progress::get(&progress.pages_total));
                    bar.set_position(Progress::get(&progress.pages_finished));
                    bar.set_message(format!("{done}/{total_jobs} documents"));
                }
                continue;
            }
        };
        let (index, event) = event;
        done += 1;
        let line = match (&event.error, &event.result_path) {
            (None, Some(path)) => format!(
                "done   {} ({} pages) -> {}",
                event.name,
                event.pages,
                path.display()
            ),
            (Some(e), _) => format!("failed {}: {} ({})", event.name, e.message, e.code),
            (None, None) => format!("done   {}", event.name),
        };
        if let Some(e) = &event.error {
            failures.push(format!("{}: {} ({})", event.name, e.message, e.code));
        }
        match &bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
        all[index] = Some(event);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    feeder.await?;
    let handles: Vec<_> = intake.pipelines().values().cloned().collect();
    drop(intake);
    for handle in handles {
        if let Ok(handle) = Arc::try_unwrap(handle) {
            handle.stop().await;
        }
    }
    pool.on_every_thread(crate::stages::ocr::release_engines_on_this_thread);
    eprintln!(
        "{} of {total_jobs} documents done, {} failed; results in {}",
        total_jobs - failures.len(),
        failures.len(),
        out_dir.display()
    );
    for f in &failures {
        eprintln!("error: {f}");
    }
    Ok(all.into_iter().flatten().collect())
}
