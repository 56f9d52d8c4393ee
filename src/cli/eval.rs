//! `pagemill eval`: runs a pipeline over documents that have ground truth beside them
//! (`NAME.gt.txt` next to `NAME`) and prints the CER and word F1 of each and overall.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::eval::{WordMatch, char_errors, word_match};
use crate::model::result::JobResult;

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub pipeline: super::run::PipelineArgs,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Documents, or folders to search for documents with a `.gt.txt` beside them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// The figures for one document.
#[derive(Debug, Serialize)]
pub struct FileScore {
    pub file: String,
    pub pages: usize,
    /// Edit distance and reference length (normalized characters).
    pub char_errors: usize,
    pub reference_chars: usize,
    pub cer: f64,
    pub word_f1: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub pipeline: String,
    pub files: Vec<FileScore>,
    /// Sum of edit distances over sum of reference lengths.
    pub cer: f64,
    /// F1 over all words of all files.
    pub word_f1: f64,
}

fn ground_truth_of(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".gt.txt");
    PathBuf::from(name)
}

pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut pipeline = match args.pipeline.load() {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let files: Vec<PathBuf> = super::run::collect_inputs(&args.inputs)?
        .into_iter()
        .filter(|f| !f.to_string_lossy().ends_with(".gt.txt") && ground_truth_of(f).is_file())
        .collect();
    if files.is_empty() {
        eprintln!("error: no document with a .gt.txt beside it");
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let out = tempfile::tempdir()?;
    pipeline.save.directory = out.path().to_path_buf();
    let name = pipeline.name.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    let finished = runtime.block_on(super::run::run_batch(pipeline, files.clone()))?;

    let mut scores = Vec::new();
    let (mut errors, mut chars, mut words) = (0, 0, WordMatch::default());
    for (file, job) in files.iter().zip(&finished) {
        let reference = std::fs::read_to_string(ground_truth_of(file))?;
        let result: Option<JobResult> = job
            .result_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let text = result.as_ref().map_or("", |r| r.text.as_str());
        let (e, n) = char_errors(text, &reference);
        let w = word_match(text, &reference);
        errors += e;
        chars += n;
        words = words + w;
        scores.push(FileScore {
            file: file.display().to_string(),
            pages: result.as_ref().map_or(0, |r| r.pages.len()),
            char_errors: e,
            reference_chars: n,
            cer: e as f64 / n.max(1) as f64,
            word_f1: w.f1(),
            error: job.error.as_ref().map(|e| e.message.clone()),
        });
    }
    let report = EvalReport {
        pipeline: name,
        files: scores,
        cer: errors as f64 / chars.max(1) as f64,
        word_f1: words.f1(),
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &EvalReport) {
    let width = report
        .files
        .iter()
        .map(|f| f.file.len())
        .max()
        .unwrap_or(4)
        .max(7);
    println!(
        "{:<width$}  {:>5}  {:>10}  {:>8}  {:>7}",
        "file", "pages", "ref chars", "CER", "word F1"
    );
    for f in &report.files {
        println!(
            "{:<width$}  {:>5}  {:>10}  {:>7.2}%  {:>7.3}{}",
            f.file,
            f.pages,
            f.reference_chars,
            100.0 * f.cer,
            f.word_f1,
            f.error
                .as_ref()
                .map(|e| format!("  (failed: {e})"))
                .unwrap_or_default()
        );
    }
    println!(
        "{:<width$}  {:>5}  {:>10}  {:>7.2}%  {:>7.3}",
        "overall",
        report.files.iter().map(|f| f.pages).sum::<usize>(),
        report
            .files
            .iter()
            .map(|f| f.reference_chars)
            .sum::<usize>(),
        100.0 * report.cer,
        report.word_f1
    );
}
