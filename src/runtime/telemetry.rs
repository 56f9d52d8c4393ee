//! Prometheus exposition: installs the recorder (histograms with buckets, not summaries),
//! keeps it tidy, and adds process and CPU pool metrics.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::runtime::metrics as m;
use crate::runtime::pool::CpuPool;

/// Installs the global recorder. Call once per process.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(m::SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(m::OCR_CONFIDENCE.to_string()),
            m::CONFIDENCE_BUCKETS,
        )?
        .install_recorder()?;
    m::describe();
    metrics::gauge!(m::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Every few seconds: drains old histogram samples and samples process and pool metrics.
pub fn spawn_upkeep(handle: PrometheusHandle, pool: CpuPool) {
    let process = metrics_process::Collector::new(m::PROCESS_PREFIX);
    process.describe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
            process.collect();
            let stats = pool.stats();
            metrics::gauge!(m::POOL_THREADS).set(stats.threads as f64);
            metrics::gauge!(m::POOL_QUEUED).set(stats.queued as f64);
            metrics::counter!(m::POOL_BUSY_SECONDS).absolute(stats.busy_seconds as u64);
        }
    });
}
