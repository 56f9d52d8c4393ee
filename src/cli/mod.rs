//! The command line: `pagemill serve`, `pagemill run` and `pagemill validate`.

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline over files or folders and write one result JSON per document.
    Run(run::RunArgs),
    /// Serve the HTTP jobs API on the given pipelines.
    Serve(serve::ServeArgs),
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
        Command::Serve(args) => serve::serve(args),
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
