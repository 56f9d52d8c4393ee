//! Taking work: each node fetches from the job queue only as many jobs as it has free slots,
//! runs them through its own pipeline, and acknowledges each once its record says finished.
//!
//! - Two durable pull consumers per pipeline, shared by every node: jobs (`pagemill_<pipeline>`)
//!   and ranges of split jobs (`pagemill_ranges_<pipeline>`), taken in turn; explicit acks,
//!   the layout's `ack_wait` and [`MAX_DELIVER`]. Messages are fetched with one-shot
//!   `fetch().max_messages(k)` for `k` free slots: async-nats' long-lived `messages()`
//!   prefetches far more than a node has room for, and its `stream()` pulls again after a
//!   reconnect even with no free slot (a job ran twice). Every fetch has a timeout, and each
//!   message is taken in a task of its own: a request or download stalled by a failover holds one
//!   slot for a while, never the node's intake.
//! - A split job's message stays with the node that split it, which coordinates it (lease and
//!   in-progress acks as for a running job) and assembles it when its ranges are done.
//! - A fetched job is claimed in its KV record (state `running`, a [`Lease`] naming this node),
//!   by compare-and-set. A job whose lease another node renewed within `ack_wait` is left to it
//!   (redelivered while merely slow there); a stale lease is taken over; a finished job is
//!   acknowledged.
//! - While the job runs, every third of `ack_wait` the message gets an in-progress ack and the
//!   lease a fresh heartbeat; each change of the job's status is shared in the store, and a
//!   cancel request from any node is followed.
//! - The document comes from the Object Store into this node's spool; the job is handed to the
//!   pipeline as any other, which reads its checkpoints from the cluster store (pages finished
//!   by a node that died are not read again). When its record says finished, the message is
//!   acknowledged with `double_ack` (which waits for the server's confirmation); a job that
//!   failed is terminated (`Term`) instead, so it is not delivered again.
//! - Leaving ([`Cluster::leave`]): jobs still running are handed back (nak without delay, the
//!   lease dropped), for another node to resume from their checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::queue::{QueuedJob, document_object};
use super::split::{self, RangeTask, Split};
use super::store::{ClusterStore, Lease};
use super::{Cluster, ClusterError, layout};
use crate::pipeline::messages::JobRequest;
use crate::pipeline::supervisor::PipelineHandle;
use crate::runtime::metrics as m;
use crate::service::intake::Intake;
use crate::service::jobs::{JobState, JobStatus};
use crate::service::journal;
use crate::service::store::JobStore;

/// Deliveries of one job at most.
pub const MAX_DELIVER: i64 = 5;
/// How often a coordinating node looks whether a split job's ranges are all done.
const RANGES_POLL: Duration = Duration::from_secs(1);
/// Wait before fetching again when the queue had nothing.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Attempts at claiming a job or fetching its document through NATS trouble before it is
/// handed back (about a minute, with [`wait_out_trouble`]'s waits).
const TRANSIENT_ATTEMPTS: u32 = 14;
/// Wait before a job that could not be claimed (NATS trouble) is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long a fetch may go unanswered before it is given up on. async-nats' `fetch()` has no
/// timeout of its own, and a request lost while a server fails over would stop the node taking
/// work. (The request's own `expires` is no help: with it, nats-server 2.9 holds a request to
/// an empty queue until it expires instead of answering "no messages" at once, which delays
/// every turn between jobs and ranges.)
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long fetching a document may take at least; larger documents get more
/// ([`download_deadline`]). A read stalled by a failover is tried again instead of waiting.
const DOWNLOAD_MIN: Duration = Duration::from_secs(30);
/// The slowest rate a document download is allowed beyond [`DOWNLOAD_MIN`], in bytes/s.
const DOWNLOAD_MIN_RATE: u64 = 4 * 1024 * 1024;

/// The durable consumer name of `pipeline`'s jobs.
pub fn consumer_name(pipeline: &str) -> String {
    format!("pagemill_{pipeline}")
}

/// The durable consumer name of the ranges of `pipeline`'s split jobs.
pub fn ranges_consumer_name(pipeline: &str) -> String {
    format!("pagemill_ranges_{pipeline}")
}

/// Starts taking `pipeline`'s jobs and ranges of split jobs, at most `slots` at a time, until
/// intake stops accepting. An existing consumer with another `ack_wait` or `max_deliver` stops
/// the node, naming it.
pub async fn spawn(
    cluster: Arc<Cluster>,
    store: Arc<ClusterStore>,
    intake: Arc<Intake>,
    handle: Arc<PipelineHandle>,
    slots: usize,
) -> Result<(), ClusterError> {
    let pipeline = handle.pipeline.name.clone();
    let jobs = open_consumer(
        &cluster,
        layout::JOBS_STREAM,
        consumer_name(&pipeline),
        layout::jobs_subject(&pipeline),
    )
    .await?;
    let ranges = open_consumer(
        &cluster,
        layout::RANGES_STREAM,
        ranges_consumer_name(&pipeline),
        layout::ranges_subject(&pipeline),
    )
    .await?;
    for (stream, consumer) in [
        (layout::JOBS_STREAM, &jobs),
        (layout::RANGES_STREAM, &ranges),
    ] {
        let name = consumer.cached_info().name.clone();
        tokio::spawn(requeue_exhausted(
            cluster.clone(),
            store.clone(),
            stream,
            name,
        ));
    }
    let worker = Arc::new(Worker {
        cluster,
        store,
        intake,
        handle,
        coordinating: Default::default(),
        taking: Default::default(),
    });
    tokio::spawn(worker.run(jobs, ranges, slots.max(1)));
    Ok(())
}

/// Opens (creating it if missing) the durable consumer `name` of `stream` for `subject`, with
/// the layout's `ack_wait` and [`MAX_DELIVER`]; one with other settings is refused.
async fn open_consumer(
    cluster: &Cluster,
    stream: &str,
    name: String,
    subject: String,
) -> Result<jetstream::consumer::PullConsumer, ClusterError> {
    let ack_wait = cluster.layout().ack_wait;
    let stream = cluster
        .js
        .get_stream(stream)
        .await
        .map_err(|e| ClusterError::jetstream(format!("cannot open stream {stream}"), e))?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                max_deliver: MAX_DELIVER,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ClusterError::jetstream(format!("cannot open consumer {name}"), e))?;
    let found = &consumer.cached_info().config;
    let mismatch = |setting, found: String, wanted: String| ClusterError::Mismatch {
        what: format!("consumer {name}"),
        setting,
        found,
        wanted,
    };
    if found.ack_wait != ack_wait {
        return Err(mismatch(
            "ack_wait",
            humantime::format_duration(found.ack_wait).to_string(),
            humantime::format_duration(ack_wait).to_string(),
        ));
    }
    if found.max_deliver != MAX_DELIVER {
        return Err(mismatch(
            "max_deliver",
            found.max_deliver.to_string(),
            MAX_DELIVER.to_string(),
        ));
    }
    Ok(consumer)
}

/// Times a job whose deliveries ran out is queued again before it fails.
const MAX_REQUEUES: u32 = 3;

/// Follows the server's advisories of jobs whose deliveries ran out (`max_deliver`: e.g.
/// deliveries lost in transit while a server failed over, or nodes dying on the job), which
/// the consumer would never deliver again: the node that removes such a message first queues
/// the job again, up to [`MAX_REQUEUES`] times; then the job fails (`internal`) instead of
/// staying queued forever.
async fn requeue_exhausted(
    cluster: Arc<Cluster>,
    store: Arc<ClusterStore>,
    stream: &'static str,
    consumer: String,
) {
    #[derive(serde::Deserialize)]
    struct Exhausted {
        stream_seq: u64,
    }
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}");
    let mut advisories = match cluster.client.subscribe(subject).await {
        Ok(advisories) => advisories,
        Err(e) => {
            tracing::error!(consumer = %consumer, error = %e, "cannot follow jobs whose deliveries run out");
            return;
        }
    };
    while let Some(advisory) = advisories.next().await {
        let Ok(exhausted) = serde_json::from_slice::<Exhausted>(&advisory.payload) else {
            continue;
        };
        if let Err(e) = requeue(&cluster, &store, stream, exhausted.stream_seq).await {
            tracing::warn!(consumer = %consumer, error = %e, "cannot queue again a job whose deliveries ran out");
        }
    }
}

/// Queues again the job (or range) of message `sequence` of `stream`, whose deliveries ran
/// out, if this node is the one that removes the message; fails the job after
/// [`MAX_REQUEUES`].
async fn requeue(
    cluster: &Cluster,
    store: &ClusterStore,
    stream: &str,
    sequence: u64,
) -> Result<(), String> {
    let stream = cluster
        .js
        .get_stream(stream)
        .await
        .map_err(|e| e.to_string())?;
    let Ok(message) = stream.get_raw_message(sequence).await else {
        return Ok(()); // Gone: another node has it in hand.
    };
    if !matches!(stream.delete_message(sequence).await, Ok(true)) {
        return Ok(());
    }
    let queued: QueuedJob = serde_json::from_slice(&message.payload).map_err(|e| e.to_string())?;
    let id = queued.id.clone();
    let mut times = 0;
    let now = journal::now_ms();
    let updated = store
        .update(&id, |r| {
            if is_final(&r.job.state) {
                return false;
            }
            r.requeued += 1;
            times = r.requeued;
            r.lease = None;
            if times > MAX_REQUEUES {
                r.job.state = "failed".into();
                r.job.error_code = Some("internal".into());
                r.job.finished_at_ms = Some(now);
            }
            true
        })
        .await
        .map_err(|e| e.to_string())?;
    if updated.is_none() || times > MAX_REQUEUES {
        if times > MAX_REQUEUES {
            tracing::error!(job_id = %id, "a job's deliveries ran out {MAX_REQUEUES} times; it failed");
        }
        return Ok(());
    }
    let message_id = match queued.range {
        Some(task) => format!("{id}.r{}.q{times}", task.index),
        None => format!("{id}.q{times}"),
    };
    super::queue::publish(cluster, &queued, &message_id)
        .await
        .map_err(|e| e.to_string())?;
    tracing::warn!(job_id = %id, times, "queued again a job whose deliveries ran out");
    Ok(())
}

struct Worker {
    cluster: Arc<Cluster>,
    store: Arc<ClusterStore>,
    intake: Arc<Intake>,
    handle: Arc<PipelineHandle>,
    /// Split jobs this node coordinates (holds the message of, until their assembly).
    coordinating: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Jobs being taken: claimed or having their documents fetched, not yet running.
    taking: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// What claiming a fetched job found.
enum Claim {
    /// No record: the job was withdrawn.
    Missing,
    /// Finished already (a late redelivery).
    Finished,
    /// Another node holds a fresh lease.
    Held,
}

/// Counts a job this node holds until dropped, so that leaving waits for every hand-back.
struct Held(Arc<Cluster>);

impl Held {
    fn new(cluster: Arc<Cluster>) -> Held {
        cluster.held.fetch_add(1, Ordering::SeqCst);
        Held(cluster)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Worker {
    fn running(&self) -> usize {
        self.intake
            .jobs
            .usage(&self.handle.pipeline.name, None)
            .jobs as usize
    }

    /// Whether this node runs job `id` (or a range of it) now.
    fn runs_here(&self, id: &str) -> bool {
        self.intake
            .jobs
            .get(id)
            .is_some_and(|s| !s.state.is_final())
    }

    fn pipeline(&self) -> String {
        self.handle.pipeline.name.clone()
    }

    /// Takes work while there are free slots, from the job queue and the ranges of split jobs
    /// in turn, so that neither waits behind the other: a small job submitted after a big one
    /// was split waits for one range per node, not for the whole document.
    async fn run(
        self: Arc<Self>,
        jobs: jetstream::consumer::PullConsumer,
        ranges: jetstream::consumer::PullConsumer,
        slots: usize,
    ) {
        let pipeline = self.pipeline();
        let mut ranges_first = false;
        while !self.intake.is_shutting_down() {
            // Jobs being taken (claimed, their documents fetched) hold their slots too.
            let free = slots.saturating_sub(self.running() + self.taking_count());
            if free == 0 {
                let changed = self.intake.jobs.changed().notified();
                let _ = tokio::time::timeout(IDLE_POLL, changed).await;
                continue;
            }
            let order = if ranges_first {
                [(&ranges, false), (&jobs, true)]
            } else {
                [(&jobs, true), (&ranges, false)]
            };
            let mut taken_from_jobs = None;
            for (consumer, is_jobs) in order {
                for message in self.fetch(consumer, free).await {
                    taken_from_jobs = Some(is_jobs);
                    self.clone().start_taking(message);
                }
                if taken_from_jobs.is_some() {
                    break;
                }
            }
            match taken_from_jobs {
                // The other queue's turn next.
                Some(from_jobs) => ranges_first = from_jobs,
                None => tokio::time::sleep(IDLE_POLL).await,
            }
        }
        tracing::info!(pipeline = %pipeline, "stopped taking jobs from the cluster");
    }

    /// Fetches up to `max` messages of `consumer`, or none when the queue is empty or NATS
    /// does not answer in time.
    async fn fetch(
        &self,
        consumer: &jetstream::consumer::PullConsumer,
        max: usize,
    ) -> Vec<jetstream::Message> {
        let fetch = async {
            let batch = consumer.fetch().max_messages(max).messages().await?;
            Ok::<_, async_nats::Error>(batch.collect::<Vec<_>>().await)
        };
        let pipeline = self.pipeline();
        match tokio::time::timeout(FETCH_TIMEOUT, fetch).await {
            Ok(Ok(messages)) => messages
                .into_iter()
                .filter_map(|m| {
                    m.map_err(|e| tracing::debug!(pipeline = %pipeline, error = %e, "fetch ended"))
                        .ok()
                })
                .collect(),
            Ok(Err(e)) => {
                tracing::warn!(pipeline = %pipeline, error = %e, "cannot fetch jobs from the cluster");
                tokio::time::sleep(IDLE_POLL).await;
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(pipeline = %pipeline, "a fetch of jobs from the cluster got no answer; fetching again");
                Vec::new()
            }
        }
    }

    fn taking_count(&self) -> usize {
        self.taking.lock().expect("taking lock poisoned").len()
    }

    /// Takes a fetched message in a task of its own, so that a slow claim or download (a
    /// server failing over) holds one slot, not the node's whole intake. The job counts as
    /// being taken before this returns, so the next fetch sees its slot taken. One job (or
    /// range of it) is taken at a time: another delivery of it meanwhile is put off.
    fn start_taking(self: Arc<Self>, message: jetstream::Message) {
        let Ok(queued) = serde_json::from_slice::<QueuedJob>(&message.payload) else {
            tracing::error!(subject = %message.subject, "an unreadable job message is dropped");
            tokio::spawn(async move { message.ack_with(AckKind::Term).await });
            return;
        };
        let first = self
            .taking
            .lock()
            .expect("taking lock poisoned")
            .insert(queued.id.clone());
        tokio::spawn(async move {
            if !first {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return;
            }
            let id = queued.id.clone();
            self.clone().take(message, queued).await;
            self.taking
                .lock()
                .expect("taking lock poisoned")
                .remove(&id);
            self.intake.jobs.changed().notify_waiters();
        });
    }

    /// Claims a fetched job, fetches its document and hands it to the pipeline; a task then
    /// keeps it alive and acknowledges it when it is finished.
    async fn take(self: Arc<Self>, message: jetstream::Message, queued: QueuedJob) {
        let id = queued.id;
        if message.info().is_ok_and(|info| info.delivered > 1) {
            metrics::counter!(m::CLUSTER_REDELIVERIES, "pipeline" => self.pipeline()).increment(1);
        }
        if let Some(task) = queued.range {
            self.take_range(message, id, task).await;
            return;
        }
        if self.runs_here(&id) || self.coordinates(&id) {
            // Delivered again while this node runs it: the running task acknowledges it.
            let _ = message.ack_with(AckKind::Progress).await;
            return;
        }
        let me = self.cluster.node_name().to_string();
        let lease_timeout = self.cluster.layout().ack_wait.as_millis() as i64;
        let mut claim = Claim::Missing;
        let mut took_over = None;
        let mut attempt = 0;
        let claimed = loop {
            let now = journal::now_ms();
            let claimed = self
                .store
                .update(&id, |record| {
                    if is_final(&record.job.state) {
                        claim = Claim::Finished;
                        return false;
                    }
                    took_over = None;
                    if let Some(lease) = &record.lease
                        && lease.node != me
                    {
                        if now - lease.heartbeat_ms < lease_timeout {
                            claim = Claim::Held;
                            return false;
                        }
                        took_over = Some(lease.node.clone());
                    }
                    record.job.state = "running".into();
                    record.lease = Some(Lease {
                        node: me.clone(),
                        heartbeat_ms: now,
                    });
                    true
                })
                .await;
            match &claimed {
                Err(e) if e.is_unavailable() && attempt < TRANSIENT_ATTEMPTS => {
                    attempt += 1;
                    wait_out_trouble(&message, attempt).await;
                }
                _ => break claimed,
            }
        };
        let record = match (claimed, claim) {
            (Ok(Some(record)), _) => record,
            (Ok(None), Claim::Finished) => {
                let _ = message.double_ack().await;
                return;
            }
            (Ok(None), Claim::Held) => {
                let _ = message
                    .ack_with(AckKind::Nak(Some(self.cluster.layout().ack_wait)))
                    .await;
                return;
            }
            (Ok(None), Claim::Missing) => {
                drop_unless_early(&message, &id, "a queued job has no record").await;
                return;
            }
            (Err(e), _) => {
                tracing::warn!(job_id = %id, error = %e, "cannot claim a job; it comes back later");
                let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                return;
            }
        };
        if let Some(node) = took_over {
            metrics::counter!(m::CLUSTER_LEASE_TAKEOVERS, "pipeline" => self.pipeline())
                .increment(1);
            tracing::warn!(job_id = %id, from = %node, "took over a job whose node stopped renewing its lease");
        }
        // Claimed: the message's and the lease's clocks start again here, not at delivery.
        let _ = message.ack_with(AckKind::Progress).await;
        let held = Held::new(self.cluster.clone());
        let path = self.intake.spool().join(&id);
        if record.split.is_some() {
            // Split already (its coordinating node died or handed it back): this node waits
            // for its ranges and assembles it.
            self.coordinate(id, path, message, held);
            return;
        }
        if let Err(e) = self
            .download_patiently(&id, record.job.bytes, true, &path, &message)
            .await
        {
            tracing::warn!(job_id = %id, error = %e, "cannot fetch a job's document; it comes back later");
            self.release(&id).await;
            let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            return;
        }
        // The download may have taken a while: renewed before the pipeline's first heartbeat.
        let _ = message.ack_with(AckKind::Progress).await;
        if !self.renew_lease(&id, &me).await {
            let _ = tokio::fs::remove_file(&path).await;
            let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            return;
        }
        let pipeline = self.handle.pipeline.clone();
        let document = path.clone();
        let plan = tokio::task::spawn_blocking(move || split::plan(&document, &pipeline))
            .await
            .ok()
            .flatten();
        if let Some((pages, tasks)) = plan {
            if self.split(&id, pages, tasks, &message).await {
                self.coordinate(id, path, message, held);
            }
            return;
        }
        let mut request = JobRequest::new(id.clone(), record.job.name.clone(), path.clone());
        request.tenant = record.job.tenant.clone();
        self.handle.enqueue(request, record.job.bytes);
        let watch = self.intake.jobs.subscribe(&id);
        tracing::info!(job_id = %id, node = %me, "took a job from the cluster");
        tokio::spawn(self.keep_alive(id, path, message, watch, held));
    }

    /// Splits job `id` into the ranges `tasks` (heaviest first) and queues them on the ranges
    /// stream; the job's own message stays with this node, which coordinates the job. Returns
    /// whether the job was split; if not (NATS trouble past [`TRANSIENT_ATTEMPTS`]), the
    /// job's message comes back later, unsplit.
    async fn split(
        &self,
        id: &str,
        pages: u32,
        tasks: Vec<RangeTask>,
        message: &jetstream::Message,
    ) -> bool {
        let mut by_index = tasks.clone();
        by_index.sort_by_key(|t| t.index);
        let plan = Split {
            pages,
            ranges: by_index.iter().map(|t| t.range).collect(),
            done: vec![false; by_index.len()],
            assembling: false,
        };
        let recorded = self
            .store
            .update(id, |r| {
                if is_final(&r.job.state) {
                    return false;
                }
                r.split = Some(plan.clone());
                true
            })
            .await;
        match recorded {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = message.double_ack().await;
                return false;
            }
            Err(e) => {
                tracing::warn!(job_id = id, error = %e, "cannot record a job's split; it comes back later");
                self.release(id).await;
                let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                return false;
            }
        }
        for task in &tasks {
            let queued = QueuedJob {
                id: id.to_string(),
                pipeline: self.pipeline(),
                range: Some(*task),
            };
            // Deduplicated by its message id: published again after trouble, queued once.
            let message_id = format!("{id}.r{}", task.index);
            let mut attempt = 0;
            while let Err(e) = super::queue::publish(&self.cluster, &queued, &message_id).await {
                if attempt == TRANSIENT_ATTEMPTS {
                    tracing::warn!(job_id = id, error = %e, "cannot queue a range of a split job; the job comes back later");
                    let _ = self.store.update(id, |r| r.split.take().is_some()).await;
                    self.release(id).await;
                    let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                    return false;
                }
                attempt += 1;
                wait_out_trouble(message, attempt).await;
            }
        }
        tracing::info!(
            job_id = id,
            pages,
            ranges = tasks.len(),
            "split a job into page ranges"
        );
        true
    }

    /// Whether this node coordinates split job `id`.
    fn coordinates(&self, id: &str) -> bool {
        self.coordinating
            .lock()
            .expect("coordinating lock poisoned")
            .contains(id)
    }

    /// Coordinates split job `id`: keeps its message and lease (so the job counts once in the
    /// queue's admission, and another node takes over if this one dies) until every range is
    /// done, then assembles it here: the whole job runs with every page restored from its
    /// checkpoints. Hands the job back if this node leaves first.
    fn coordinate(
        self: Arc<Self>,
        id: String,
        path: PathBuf,
        message: jetstream::Message,
        held: Held,
    ) {
        self.coordinating
            .lock()
            .expect("coordinating lock poisoned")
            .insert(id.clone());
        tokio::spawn(async move {
            let assemble = self.wait_for_ranges(&id, &path, &message).await;
            self.coordinating
                .lock()
                .expect("coordinating lock poisoned")
                .remove(&id);
            if let Some(record) = assemble {
                self.assemble(id, path, record, message, held).await;
            }
        });
    }

    /// Waits until every range of split job `id` is done, keeping its message and lease;
    /// returns its record then, or `None` when the job ended otherwise, the lease was lost or
    /// the job was handed back.
    async fn wait_for_ranges(
        &self,
        id: &str,
        path: &std::path::Path,
        message: &jetstream::Message,
    ) -> Option<super::store::JobRecord> {
        let me = self.cluster.node_name().to_string();
        let mut leaving = self.cluster.leaving.subscribe();
        let mut heartbeat = tokio::time::interval(self.cluster.layout().ack_wait / 3);
        let mut look = tokio::time::interval(RANGES_POLL);
        let mut cancels = self.store.cancel_requests(id).await.ok();
        loop {
            if *leaving.borrow_and_update() {
                self.hand_back(id, path, message.clone()).await;
                return None;
            }
            tokio::select! {
                _ = leaving.changed() => {}
                request = next_cancel(&mut cancels) => {
                    if request {
                        // Ranges running on other nodes see the job ended and stop.
                        tracing::info!(job_id = %id, "cancel requested for a split job");
                        let _ = self.store.finish(id, "cancelled", Some("cancelled".into()), None).await;
                    } else {
                        cancels = None;
                    }
                }
                _ = heartbeat.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                    if !self.renew_lease(id, &me).await {
                        let _ = tokio::fs::remove_file(path).await;
                        return None;
                    }
                }
                _ = look.tick() => {
                    let Ok(Some((record, _))) = self.store.record(id).await else {
                        continue;
                    };
                    if is_final(&record.job.state) {
                        // A range failed, or the job was cancelled.
                        let _ = tokio::fs::remove_file(path).await;
                        let _ = if record.job.state == "failed" {
                            message.double_ack_with(AckKind::Term).await
                        } else {
                            message.double_ack().await
                        };
                        return None;
                    }
                    if record.split.as_ref().is_some_and(Split::all_done) {
                        return Some(record);
                    }
                }
            }
        }
    }

    /// Renews this node's lease on job `id`; `false` when another node has taken it over
    /// (this node then stops its copy), `true` otherwise (also when NATS cannot be reached).
    async fn renew_lease(&self, id: &str, me: &str) -> bool {
        let now = journal::now_ms();
        let renewed = self
            .store
            .update(id, |r| match &mut r.lease {
                Some(lease) if lease.node == me => {
                    lease.heartbeat_ms = now;
                    true
                }
                _ => false,
            })
            .await;
        match renewed {
            Ok(Some(_)) => true,
            Ok(None) => {
                tracing::warn!(job_id = %id, "lost a job's lease to another node; stopping it here");
                false
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "cannot renew a job's lease");
                true
            }
        }
    }

    /// Assembles split job `id`, whose ranges are all done: the whole job runs here, every
    /// page restored from its checkpoint, and is summarized and saved as an unsplit run.
    async fn assemble(
        self: Arc<Self>,
        id: String,
        path: PathBuf,
        record: super::store::JobRecord,
        message: jetstream::Message,
        held: Held,
    ) {
        let me = self.cluster.node_name().to_string();
        let marked = self
            .store
            .update(&id, |r| {
                let mine = r.lease.as_ref().is_some_and(|l| l.node == me);
                match &mut r.split {
                    Some(split) if mine && !is_final(&r.job.state) => {
                        split.assembling = true;
                        true
                    }
                    _ => false,
                }
            })
            .await;
        if !matches!(marked, Ok(Some(_))) {
            // Lost to another node, finished, or NATS trouble: the message decides again.
            let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            return;
        }
        if !path.exists()
            && let Err(e) = self
                .download_patiently(&id, record.job.bytes, true, &path, &message)
                .await
        {
            tracing::warn!(job_id = %id, error = %e, "cannot fetch a split job's document; it comes back later");
            self.release(&id).await;
            let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            return;
        }
        let mut request = JobRequest::new(id.clone(), record.job.name.clone(), path.clone());
        request.tenant = record.job.tenant.clone();
        self.handle.enqueue(request, record.job.bytes);
        let watch = self.intake.jobs.subscribe(&id);
        tracing::info!(job_id = %id, node = %me, "assembling a split job");
        self.keep_alive(id, path, message, watch, held).await;
    }

    /// Takes a range of a split job: its pages are rendered, OCRed and checkpointed here.
    async fn take_range(self: Arc<Self>, message: jetstream::Message, id: String, task: RangeTask) {
        let record = match self.store.record(&id).await {
            Ok(Some((record, _))) => record,
            Ok(None) => {
                drop_unless_early(&message, &id, "a queued range has no job record").await;
                return;
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "cannot read a split job; its range comes back later");
                let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                return;
            }
        };
        let Some(plan) = &record.split else {
            drop_unless_early(&message, &id, "a queued range's job is not split").await;
            return;
        };
        if is_final(&record.job.state) {
            let _ = message.double_ack().await;
            return;
        }
        if plan.done.get(task.index) == Some(&true) {
            // Done already (delivered again after its acknowledgement was lost).
            let _ = message.double_ack().await;
            return;
        }
        if self.runs_here(&id) {
            // One range of a job at a time on a node: another node takes this one.
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
        let held = Held::new(self.cluster.clone());
        let path = self.intake.spool().join(format!("{id}.r{}", task.index));
        if let Err(e) = self
            .download_patiently(&id, record.job.bytes, false, &path, &message)
            .await
        {
            tracing::warn!(job_id = %id, error = %e, "cannot fetch a split job's document; its range comes back later");
            let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            return;
        }
        let mut request = JobRequest::new(id.clone(), record.job.name.clone(), path.clone());
        request.tenant = record.job.tenant.clone();
        request.pages = Some(task.range);
        self.handle.enqueue(request, record.job.bytes);
        let watch = self.intake.jobs.subscribe(&id);
        tracing::info!(job_id = %id, first = task.range.first, last = task.range.last, "took a range of a split job");
        tokio::spawn(self.keep_range_alive(id, task, path, message, watch, held));
    }

    /// Keeps a range's message alive while its pages are read, shares its progress and
    /// follows cancel requests; then records the range done (the job's coordinating node
    /// assembles it after the last one) or ends the job with the range's error.
    async fn keep_range_alive(
        self: Arc<Self>,
        id: String,
        task: RangeTask,
        path: PathBuf,
        message: jetstream::Message,
        watch: Option<tokio::sync::watch::Receiver<JobStatus>>,
        _held: Held,
    ) {
        let Some(mut watch) = watch else {
            let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            return;
        };
        let mut leaving = self.cluster.leaving.subscribe();
        let mut tick = tokio::time::interval(self.cluster.layout().ack_wait / 3);
        tick.tick().await;
        let mut cancels = self.store.cancel_requests(&id).await.ok();
        let status_key = super::store::range_status_key(&id, task.index);
        let last = loop {
            let status = watch.borrow_and_update().clone();
            self.store.put_status(status_key.clone(), &status).await;
            if status.state.is_final() {
                break status;
            }
            if *leaving.borrow_and_update() {
                let _ = tokio::fs::remove_file(&path).await;
                if message.ack_with(AckKind::Nak(None)).await.is_ok() {
                    metrics::counter!(m::CLUSTER_JOBS_HANDED_BACK, "pipeline" => self.pipeline())
                        .increment(1);
                }
                return;
            }
            tokio::select! {
                changed = watch.changed() => if changed.is_err() { return },
                _ = leaving.changed() => {}
                request = next_cancel(&mut cancels) => {
                    if request {
                        self.intake.jobs.cancel(&id);
                    } else {
                        cancels = None;
                    }
                }
                _ = tick.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                    // Another range failed, or the job was cancelled: this one stops too.
                    if let Ok(Some((record, _))) = self.store.record(&id).await
                        && is_final(&record.job.state)
                    {
                        self.intake.jobs.cancel(&id);
                    }
                }
            }
        };
        let _ = tokio::fs::remove_file(&path).await;
        match last.state {
            JobState::Done => {
                let results = self.handle.pipeline.save.directory.clone();
                if let Err(e) = self.store.put_previews(&id, &results, task.range).await {
                    tracing::warn!(job_id = %id, error = %e, "cannot share a range's previews");
                }
                let recorded = self
                    .store
                    .update(&id, |r| {
                        if is_final(&r.job.state) {
                            return false;
                        }
                        let Some(plan) = &mut r.split else {
                            return false;
                        };
                        if let Some(done) = plan.done.get_mut(task.index) {
                            *done = true;
                        }
                        true
                    })
                    .await;
                if let Err(e) = recorded {
                    tracing::warn!(job_id = %id, error = %e, "cannot record a range done; it is read again");
                    let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                    return;
                }
                let _ = message.double_ack().await;
            }
            JobState::Cancelled => {
                let _ = self
                    .store
                    .finish(&id, "cancelled", Some("cancelled".into()), None)
                    .await;
                let _ = message.double_ack().await;
            }
            _ => {
                // A page of the range failed: the job fails with its error.
                let code = last.error.as_ref().map(|e| e.code.clone());
                let _ = self.store.finish(&id, "failed", code, None).await;
                let _ = message.double_ack_with(AckKind::Term).await;
            }
        }
    }

    /// Puts a job this node holds back in the queue's hands: state `accepted`, no lease.
    async fn release(&self, id: &str) {
        let me = self.cluster.node_name().to_string();
        let released = self
            .store
            .update(id, |r| {
                if is_final(&r.job.state) || r.lease.as_ref().is_some_and(|l| l.node != me) {
                    return false;
                }
                r.job.state = "accepted".into();
                r.lease = None;
                true
            })
            .await;
        if let Err(e) = released {
            tracing::warn!(job_id = id, error = %e, "cannot release a job's lease; it goes stale instead");
        }
    }

    /// Renews the job's message and lease until the pipeline finishes it, sharing its status
    /// and following cancel requests, then acknowledges it; hands it back if this node leaves
    /// first.
    async fn keep_alive(
        self: Arc<Self>,
        id: String,
        path: PathBuf,
        message: jetstream::Message,
        watch: Option<tokio::sync::watch::Receiver<JobStatus>>,
        _held: Held,
    ) {
        let me = self.cluster.node_name().to_string();
        let mut leaving = self.cluster.leaving.subscribe();
        if let Some(mut watch) = watch {
            let heartbeat = self.cluster.layout().ack_wait / 3;
            let mut tick = tokio::time::interval(heartbeat);
            tick.tick().await;
            let mut cancels = match self.store.cancel_requests(&id).await {
                Ok(cancels) => Some(cancels),
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "cannot follow cancel requests for a job");
                    None
                }
            };
            loop {
                let status = watch.borrow_and_update().clone();
                self.store
                    .put_status(super::store::status_key(&id), &status)
                    .await;
                if status.state.is_final() {
                    break;
                }
                if *leaving.borrow_and_update() {
                    self.hand_back(&id, &path, message).await;
                    return;
                }
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { break },
                    _ = leaving.changed() => {}
                    request = next_cancel(&mut cancels) => {
                        if request {
                            tracing::info!(job_id = %id, "cancel requested from another node");
                            self.intake.jobs.cancel(&id);
                        } else {
                            cancels = None;
                        }
                    }
                    _ = tick.tick() => {
                        let _ = message.ack_with(AckKind::Progress).await;
                        if !self.renew_lease(&id, &me).await {
                            // Another node took the job over while this one could not
                            // renew its lease: it is that node's now.
                            self.intake.jobs.cancel(&id);
                            let _ = tokio::fs::remove_file(&path).await;
                            return;
                        }
                    }
                }
            }
        }
        let _ = tokio::fs::remove_file(&path).await;
        match self.store.record(&id).await {
            Ok(Some((record, _))) if is_final(&record.job.state) => {
                let outcome = if record.job.state == "failed" {
                    message.double_ack_with(AckKind::Term).await
                } else {
                    message.double_ack().await
                };
                if let Err(e) = outcome {
                    tracing::warn!(job_id = %id, error = %e, "the acknowledgement of a finished job was not confirmed; a redelivery finds it finished");
                }
            }
            _ => {
                // Not recorded finished: another delivery runs it again.
                self.release(&id).await;
                let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            }
        }
    }

    /// Gives a running job back to the queue at once, for another node to resume it from its
    /// checkpoints.
    async fn hand_back(&self, id: &str, path: &std::path::Path, message: jetstream::Message) {
        self.release(id).await;
        match message.ack_with(AckKind::Nak(None)).await {
            Ok(()) => {
                metrics::counter!(m::CLUSTER_JOBS_HANDED_BACK, "pipeline" => self.pipeline())
                    .increment(1);
                tracing::info!(job_id = id, "handed a running job back to the cluster");
            }
            Err(e) => {
                tracing::warn!(job_id = id, error = %e, "cannot hand a job back; it is delivered again after ack_wait")
            }
        }
        let _ = tokio::fs::remove_file(path).await;
    }

    /// [`Worker::download`] of a document of `bytes`, tried again through NATS trouble (an
    /// error, or a read stalled past [`download_deadline`]) while `message` is kept, and while
    /// the job is unfinished (and, if `leased`, this node holds its lease).
    async fn download_patiently(
        &self,
        id: &str,
        bytes: u64,
        leased: bool,
        path: &std::path::Path,
        message: &jetstream::Message,
    ) -> Result<(), ClusterError> {
        let mut attempt = 0;
        loop {
            let deadline = download_deadline(bytes);
            let download = tokio::time::timeout(deadline, self.download(id, path));
            let outcome = download.await.unwrap_or_else(|_| {
                Err(ClusterError::Unreachable(format!(
                    "fetching the document took more than {}",
                    humantime::format_duration(deadline)
                )))
            });
            match outcome {
                Err(e) if attempt < TRANSIENT_ATTEMPTS && self.still_wanted(id, leased).await => {
                    attempt += 1;
                    tracing::debug!(job_id = id, error = %e, attempt, "cannot fetch a job's document yet");
                    wait_out_trouble(message, attempt).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Whether job `id` is still this node's to fetch: not finished and, if `leased`, its lease
    /// this node's. While the record cannot be read, it is.
    async fn still_wanted(&self, id: &str, leased: bool) -> bool {
        let me = self.cluster.node_name();
        match self.store.record(id).await {
            Ok(Some((record, _))) => {
                !is_final(&record.job.state)
                    && (!leased || record.lease.as_ref().is_some_and(|l| l.node == me))
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Copies job `id`'s document from the Object Store to `path`, durably.
    async fn download(&self, id: &str, path: &std::path::Path) -> Result<(), ClusterError> {
        let io = |e: std::io::Error| ClusterError::jetstream("cannot write the document", e);
        let mut object = self
            .cluster
            .objects
            .get(document_object(id))
            .await
            .map_err(|e| ClusterError::jetstream("cannot read the document", e))?;
        tokio::fs::create_dir_all(self.intake.spool())
            .await
            .map_err(io)?;
        let partial = path.with_extension("part");
        let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
        tokio::io::copy(&mut object, &mut file).await.map_err(io)?;
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        tokio::fs::rename(&partial, path).await.map_err(io)?;
        Ok(())
    }
}

/// Deliveries of a message whose job record is missing (or not yet split, for a range) before
/// it is dropped: a record is read from any copy of the bucket, and a copy may not have the
/// latest write yet when the message arrives.
const MISSING_RECORD_DELIVERIES: i64 = 3;

/// Drops `message` (job `id`, `why` it looks orphaned) once it was delivered
/// [`MISSING_RECORD_DELIVERIES`] times; before, it comes back a second later to be read again.
async fn drop_unless_early(message: &jetstream::Message, id: &str, why: &str) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(i64::MAX);
    if delivered < MISSING_RECORD_DELIVERIES {
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        return;
    }
    tracing::warn!(job_id = %id, delivered, "{why}; dropped");
    let _ = message.ack_with(AckKind::Term).await;
}

/// How long fetching a document of `bytes` may take before it is tried again.
fn download_deadline(bytes: u64) -> Duration {
    DOWNLOAD_MIN + Duration::from_secs(bytes / DOWNLOAD_MIN_RATE)
}

/// Waits before trying again through NATS trouble (a server failing over), keeping the
/// message with an in-progress ack: a job delivered during a failover is not handed back, so
/// the trouble does not use up its deliveries.
async fn wait_out_trouble(message: &jetstream::Message, attempt: u32) {
    let _ = message.ack_with(AckKind::Progress).await;
    let delay = Duration::from_millis(500 << attempt.min(4)).min(Duration::from_secs(5));
    tokio::time::sleep(delay).await;
}

/// Waits for the next cancel request: `true` for one, `false` when the watch ended (then it
/// is not followed any more); never returns without a watch.
async fn next_cancel(cancels: &mut Option<jetstream::kv::Watch>) -> bool {
    let Some(watch) = cancels else {
        return std::future::pending().await;
    };
    loop {
        match watch.next().await {
            Some(Ok(entry)) if entry.operation == jetstream::kv::Operation::Put => return true,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return false,
        }
    }
}

fn is_final(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled")
}
