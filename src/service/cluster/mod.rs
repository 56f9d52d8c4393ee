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
//! own pipelines; big documents are split into page ranges that every node shares
//! ([`split`]). [`metrics`] adds the cluster's view to the node's metrics. The stages never
//! know which mode they run in. Without `--cluster` none of this runs.

pub mod error;
pub mod layout;
pub mod metrics;
pub mod options;
pub mod queue;
pub mod split;
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
    /// The stream under [`Cluster::jobs`], read directly for all the latest values under a
    /// key prefix.
    jobs_stream: jetstream::stream::Stream,
    /// Documents, results and the files written beside them.
    objects: jetstream::object_store::ObjectStore,
    options: ClusterOptions,
    layout: Layout,
    /// Set when this node leaves: the jobs it holds are handed back.
    leaving: tokio::sync::watch::Sender<bool>,
    /// Jobs this node holds (taken from the queue and not yet acknowledged or handed back).
    held: std::sync::atomic::AtomicUsize,
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
        layout::ensure_stream(&js, layout.ranges_stream()).await?;
        layout::ensure_stream(&js, layout.jobs_bucket()).await?;
        layout::ensure_stream(&js, layout.objects_bucket()).await?;
        let jobs = js.get_key_value(layout::JOBS_BUCKET).await.map_err(|e| {
            ClusterError::jetstream(format!("cannot open bucket {}", layout::JOBS_BUCKET), e)
        })?;
        let jobs_stream = js
            .get_stream(format!("KV_{}", layout::JOBS_BUCKET))
            .await
            .map_err(|e| {
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
            jobs_stream,
            objects,
            options,
            layout,
            leaving: tokio::sync::watch::Sender::new(false),
            held: Default::default(),
        }))
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.options.node_name
    }

    /// The settings every node of the cluster shares.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the connection to NATS is up now.
    pub fn is_connected(&self) -> bool {
        self.reachable().is_ok()
    }

    /// Leaves the cluster: hands back the jobs this node still runs (for another node to
    /// resume from their checkpoints), then drains the connection (what was sent reaches the
    /// servers) and closes it.
    pub async fn leave(&self) {
        use std::sync::atomic::Ordering;
        self.leaving.send_replace(true);
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        while self.held.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if let Err(e) = self.client.drain().await {
            tracing::warn!(error = %e, "the connection to NATS did not drain");
        }
    }

    /// The latest value of every key of the job bucket under `prefix` (e.g. `page.<id>.`),
    /// skipping removed keys: one ordered consumer over the bucket's stream, last value per
    /// key, instead of a request per key.
    pub(crate) async fn latest_under(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, bytes::Bytes)>, ClusterError> {
        use futures_util::StreamExt;
        self.reachable()?;
        let key_prefix = format!("$KV.{}.", layout::JOBS_BUCKET);
        let failed = |e: &dyn std::fmt::Display| {
            ClusterError::jetstream(format!("cannot read the keys under {prefix}"), e)
        };
        let consumer = self
            .jobs_stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: format!("{key_prefix}{prefix}>"),
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let mut found = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(found);
        }
        let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
        loop {
            // A key removed between the consumer's creation and its delivery is never
            // delivered: a pause ends the read rather than waiting for it.
            let next = tokio::time::timeout(REQUEST_TIMEOUT, messages.next()).await;
            let Ok(Some(message)) = next else { break };
            let message = message.map_err(|e| failed(&e))?;
            let info = message.info().map_err(|e| failed(&e))?;
            let pending = info.pending;
            let removed = message.headers.as_ref().is_some_and(|h| {
                h.get("KV-Operation").is_some() || h.get("Nats-Marker-Reason").is_some()
            });
            if !removed && let Some(key) = message.subject.strip_prefix(key_prefix.as_str()) {
                found.push((key.to_string(), message.payload.clone()));
            }
            if pending == 0 {
                break;
            }
        }
        Ok(found)
    }

    /// Removes the keys of the job bucket matching `keys` (a key, or a pattern such as
    /// `page.<id>.>`) with their history, leaving no markers behind.
    pub(crate) async fn purge_keys(&self, keys: &str) -> Result<(), ClusterError> {
        self.reachable()?;
        self.jobs_stream
            .purge()
            .filter(format!("$KV.{}.{keys}", layout::JOBS_BUCKET))
            .await
            .map_err(|e| ClusterError::jetstream(format!("cannot remove the keys {keys}"), e))?;
        Ok(())
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
