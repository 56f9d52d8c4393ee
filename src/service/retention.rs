//! Retention: a daemon that runs for months keeps finished jobs only as long as it is told
//! (`--retain-finished-jobs`), so its journal and results directories stop growing.
//!
//! A background task forgets, in small batches, the jobs that finished longer ago than the
//! retention: their journal rows (the job, its deliveries and dead letters) and their files
//! in the results directory (`<id>.json`, every other output `<id>.<format>` and the pages'
//! previews in `<id>.previews/`). Unfinished jobs are
//! never touched. A finished job's page checkpoints and its upload in the spool are gone
//! already: they go as it finishes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::OutputFormat;
use crate::service::journal::now_ms;
use crate::service::store::JobStore;

/// Jobs forgotten per store call, so a large backlog never holds the journal for long.
const PRUNE_BATCH: u32 = 200;
/// How often the task looks for jobs past the retention, at most.
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// Starts forgetting jobs finished more than `retention` ago (looking every tenth of it, at
/// least every minute).
pub fn spawn(store: Arc<dyn JobStore>, retention: Duration) {
    let pause = (retention / 10).clamp(Duration::from_millis(100), LONGEST_PAUSE);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(pause).await;
            let cutoff = now_ms() - retention.as_millis() as i64;
            loop {
                let pruned = match store.prune_finished(cutoff, PRUNE_BATCH).await {
                    Ok(pruned) => pruned,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot forget finished jobs; trying again later");
                        break;
                    }
                };
                for job in &pruned {
                    if let Some(result) = &job.result_path {
                        remove_outputs(Path::new(result), &job.id).await;
                    }
                }
                if !pruned.is_empty() {
                    tracing::debug!(
                        jobs = pruned.len(),
                        "forgot finished jobs past the retention"
                    );
                }
                if pruned.len() < PRUNE_BATCH as usize {
                    break;
                }
            }
        }
    });
}

/// Removes a job's result file and every other output written beside it (`<id>.<format>`,
/// and its pages' previews).
async fn remove_outputs(result: &Path, id: &str) {
    let _ = tokio::fs::remove_file(result).await;
    let Some(dir) = result.parent() else {
        return;
    };
    for format in OutputFormat::ALL {
        let name = format!("{id}.{}", crate::stages::save::formats::extension(format));
        let _ = tokio::fs::remove_file(dir.join(name)).await;
    }
    let _ = tokio::fs::remove_dir_all(crate::stages::save::formats::previews_dir(dir, id)).await;
}
