//! The command line: `pagemill serve`, `run`, `eval`, `validate` and `keys`.

pub mod eval;
pub mod keys;
pub mod run;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::load_pipeline;

#[derive(Debug, Parser)]
#[command(
    name = "pagemill",
    version,
    about = "Turns documents into structured, summarized text"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `pagemill=debug,warn`; overrides `RUST_LOG`. Defaults to
    /// `info` for `serve` and `warn` otherwise.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the fields of the current span and its parents.
    Json,
}

impl Cli {
    /// Installs the global log subscriber (stderr) as the options say.
    pub fn init_logging(&self) {
        use tracing_subscriber::EnvFilter;
        let default_level = match self.command {
            Command::Serve(_) => "info",
            _ => "warn",
        };
        let filter = match &self.log_level {
            Some(level) => EnvFilter::new(level),
            None => {
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level))
            }
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .init(),
        }
        crate::stages::render::lept::send_messages_to_the_log();
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline over files or folders and write one result JSON per document.
    Run(run::RunArgs),
    /// Serve the HTTP jobs API on the given pipelines.
    Serve(Box<serve::ServeArgs>),
    /// Run a pipeline over documents with `.gt.txt` ground truth; print CER and word F1.
    Eval(eval::EvalArgs),
    /// Manage the API keys the daemon accepts.
    Keys(keys::KeysArgs),
    /// Check pipeline files and print every problem found.
    Validate {
        /// Pipeline YAML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;

/// Runs the parsed command line.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Run(args) => run::run(args),
        Command::Eval(args) => eval::eval(args),
        Command::Serve(args) => serve::serve(*args),
        Command::Keys(args) => keys::keys(args),
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match load_pipeline(file) {
            Ok(p) => println!("{}: ok (pipeline `{}`)", file.display(), p.name),
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}
