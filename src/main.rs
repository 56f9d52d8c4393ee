//! The `pagemill` binary: makes sure Tesseract runs single-threaded, then hands over to the CLI.

use std::process::ExitCode;

use clap::Parser;

/// The fallback if Tesseract's OpenMP calls do not reach pagemill's serial runtime
/// (`runtime::openmp`): libgomp reads this once, when the process starts; setting it later from
/// inside the process has no effect. Without either, each page spawns one OpenMP thread per core
/// on top of pagemill's own pool, and costs several times the CPU.
const OMP_THREAD_LIMIT: &str = "OMP_THREAD_LIMIT";

fn main() -> ExitCode {
    if !pagemill::runtime::openmp::serves_tesseract()
        && std::env::var(OMP_THREAD_LIMIT).as_deref() != Ok("1")
    {
        return reexec_with_single_threaded_openmp();
    }
    let cli = pagemill::cli::Cli::parse();
    cli.init_logging();
    match pagemill::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Replaces this process with itself, `OMP_THREAD_LIMIT=1` added to the environment.
fn reexec_with_single_threaded_openmp() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find the pagemill executable to restart it: {e}");
            return ExitCode::from(1);
        }
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(OMP_THREAD_LIMIT, "1")
        .exec();
    eprintln!("error: cannot restart pagemill with {OMP_THREAD_LIMIT}=1: {err}");
    ExitCode::from(1)
}
