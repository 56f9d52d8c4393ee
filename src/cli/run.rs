//! `pagemill run`: a batch over files and folders through the same actor pipeline.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Pipeline, load_pipeline};
use crate::pipeline::messages::{JobFinished, JobRequest};
use crate::pipeline::progress::Progress;
use crate::pipeline::supervisor::{PipelineHandle, StartOptions};
use crate::runtime::pool::CpuPool;

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

/// Runs every file through the pipeline, showing progress; returns every finished job, in
/// the order of `files`.
pub async fn run_batch(
    pipeline: Pipeline,
    files: Vec<PathBuf>,
) -> anyhow::Result<Vec<JobFinished>> {
    let pool = CpuPool::new(pipeline.pool.threads)?;
    let out_dir = pipeline.save.directory.clone();
    let (handle, mut finished) =
        PipelineHandle::start(pipeline, pool.clone(), StartOptions::default()).await?;
    let handle = Arc::new(handle);
    let total_jobs = files.len();
    let feeder = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for (i, path) in files.into_iter().enumerate() {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let id = format!("{:04}-{}", i + 1, uuid::Uuid::now_v7().simple());
                handle.submit(JobRequest::new(id, name, path)).await;
            }
        })
    };

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
    let progress = handle.progress.clone();
    let mut failures = Vec::new();
    let mut all = Vec::with_capacity(total_jobs);
    let mut done = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while done < total_jobs {
        tokio::select! {
            event = finished.recv() => {
                let Some(event) = event else { break };
                done += 1;
                let line = match (&event.error, &event.result_path) {
                    (None, Some(path)) => format!("done   {} ({} pages) -> {}", event.name, event.pages, path.display()),
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
                all.push(event);
            }
            _ = ticker.tick() => {
                if let Some(bar) = &bar {
                    bar.set_length(Progress::get(&progress.pages_total));
                    bar.set_position(Progress::get(&progress.pages_finished));
                    bar.set_message(format!("{done}/{total_jobs} documents"));
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    feeder.await?;
    if let Ok(handle) = Arc::try_unwrap(handle) {
        handle.stop().await;
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
    // Job ids start with the file's position in the batch.
    all.sort_by_key(|f| f.id.split('-').next().and_then(|n| n.parse::<usize>().ok()));
    Ok(all)
}
