//! Cluster mode: pagemill nodes share the work through NATS JetStream
//! (`pagemill serve --cluster nats://HOST:PORT[,...]`).
//!
//! A node connects with the options of [`options`], makes sure the streams and buckets of
//! [`layout`] exist as it needs them (or refuses to start, naming the setting that differs),
//! and then plugs into the job service through its two narrow interfaces: job records go to a
//! KV bucket through [`store::ClusterStore`] (a [`crate::service::store::JobStore`]), and
//! accepted jobs to a WorkQueue stream through [`queue::NatsQueue`] (a
//! [`crate::service::queue::JobQueue`]), their documents to an Object Store bucket. Each node
//! takes jobs from the queue as it has room for them ([`worker`]) and runs them through its
//! own pipelines. The stages never know which mode they run in. Without `--cluster` none of
//! this runs.

pub mod error;
pub mod layout;
pub mod options;
pub mod queue;
pub mod store;
pub mod worker;

use std::sync::Arc;

use async_nats::jetstream;

pub use error::ClusterError;
pub use layout::Layout;
pub use options::ClusterOptions;

/// When a request refused because NATS cannot be reached should be tried again, in seconds.
pub const UNREACHABLE_RETRY_AFTER_SECS: u64 = 5;
/// Longest wait for one JetStream request (a publish's acknowledgement, a KV read).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// This node's connection to the cluster and the shared streams and buckets, opened.
pub struct Cluster {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Job records and idempotency keys.
    jobs: jetstream::kv::Store,
    /// Documents and results.
    objects: jetstream::object_store::ObjectStore,
    options: ClusterOptions,
}

impl Cluster {
    /// Connects, creates what is missing and checks what exists; `pipelines` are the names
    /// this node serves (each becomes a subject of the job queue).
    pub async fn join(
        options: ClusterOptions,
        layout: Layout,
        pipelines: &[String],
    ) -> Result<Arc<Cluster>, ClusterError> {
        if let Some(bad) = pipelines.iter().find(|p| !layout::is_subject_token(p)) {
            return Err(ClusterError::Options(format!(
                "pipeline {bad:?} cannot be a NATS subject: in a cluster, pipeline names are \
                 letters, digits, `_` and `-`"
            )));
        }
        let servers = options
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterError::Options(format!("--cluster: {e}")))?;
        let client = options
            .connect_options()
            .await?
            .connect(servers)
            .await
            .map_err(|e| ClusterError::Connect {
                servers: options.servers_text(),
                reason: e.to_string(),
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        layout::ensure_stream(&js, layout.jobs_stream()).await?;
        layout::ensure_stream(&js, layout.jobs_bucket()).await?;
        layout::ensure_stream(&js, layout.objects_bucket()).await?;
        let jobs = js.get_key_value(layout::JOBS_BUCKET).await.map_err(|e| {
            ClusterError::jetstream(format!("cannot open bucket {}", layout::JOBS_BUCKET), e)
        })?;
        let objects = js
            .get_object_store(layout::OBJECTS_BUCKET)
            .await
            .map_err(|e| {
                ClusterError::jetstream(format!("cannot open bucket {}", layout::OBJECTS_BUCKET), e)
            })?;
        tracing::info!(
            servers = %options.servers_text(),
            node = %options.node_name,
            "joined the cluster"
        );
        Ok(Arc::new(Cluster {
            client,
            js,
            jobs,
            objects,
            options,
        }))
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.options.node_name
    }

    /// Fails at once, without waiting for a timeout, while the connection is down.
    fn reachable(&self) -> Result<(), ClusterError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(ClusterError::Unreachable(format!(
                "not connected to {} ({state:?})",
                self.options.servers_text()
            ))),
        }
    }
}
