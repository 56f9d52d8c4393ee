//! The cluster's view in this node's metrics: every few seconds, the messages of the job queue
//! and of the ranges stream, and each pipeline consumer's waiting and unacknowledged jobs, as
//! JetStream reports them, and whether this node is connected. The counters of redeliveries,
//! lease takeovers and jobs handed back are counted where they happen ([`super::worker`]).

use std::sync::Arc;
use std::time::Duration;

use super::{Cluster, layout};
use crate::runtime::metrics as m;

/// How often the queue's state is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples the queue's state every [`SAMPLE_EVERY`] for `pipelines`, and starts their counters
/// at 0 so that a rate exists before the first event.
pub fn spawn(cluster: Arc<Cluster>, pipelines: Vec<String>) {
    for pipeline in &pipelines {
        for counter in [
            m::CLUSTER_REDELIVERIES,
            m::CLUSTER_LEASE_TAKEOVERS,
            m::CLUSTER_JOBS_HANDED_BACK,
        ] {
            metrics::counter!(counter, "pipeline" => pipeline.clone()).increment(0);
        }
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let connected = cluster.is_connected();
            metrics::gauge!(m::CLUSTER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
            if !connected {
                continue;
            }
            if let Err(e) = sample(&cluster, &pipelines).await {
                tracing::debug!(error = %e, "cannot read the cluster queue's state");
            }
        }
    });
}

async fn sample(cluster: &Cluster, pipelines: &[String]) -> Result<(), async_nats::Error> {
    let mut stream = cluster.js.get_stream(layout::JOBS_STREAM).await?;
    let messages = stream.info().await?.state.messages;
    metrics::gauge!(m::CLUSTER_QUEUED_JOBS).set(messages as f64);
    let mut ranges = cluster.js.get_stream(layout::RANGES_STREAM).await?;
    let messages = ranges.info().await?.state.messages;
    metrics::gauge!(m::CLUSTER_QUEUED_RANGES).set(messages as f64);
    for pipeline in pipelines {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(&super::worker::consumer_name(pipeline))
            .await?;
        let info = consumer.info().await?;
        metrics::gauge!(m::CLUSTER_JOBS_WAITING, "pipeline" => pipeline.clone())
            .set(info.num_pending as f64);
        metrics::gauge!(m::CLUSTER_ACKS_PENDING, "pipeline" => pipeline.clone())
            .set(info.num_ack_pending as f64);
    }
    Ok(())
}
