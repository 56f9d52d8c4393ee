//! `pagemill serve`: the daemon. Loads pipelines, starts their stage trees on one CPU pool and
//! serves the HTTP API until SIGINT/SIGTERM; then it stops admitting, lets accepted jobs finish
//! (up to the shutdown timeout) and exits. A second signal exits at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::keys::KeysFileArg;
use crate::config::{Pipeline, load_pipeline};
use crate::http::server::{self, EdgeLimits, TlsFiles};
use crate::http::{Access, AppState, DEFAULT_MAX_EVENT_STREAMS_PER_TENANT, EventStreams};
use crate::pipeline::supervisor::{PipelineHandle, StartOptions};
use crate::runtime::pool::CpuPool;
use crate::service::cluster::{self, Cluster, ClusterOptions, Layout};
use crate::service::intake::Intake;
use crate::service::jobs::JobRegistry;
use crate::service::journal::{Journal, JournalHandle};
use crate::service::keys::{KEYS_FILE_CHECK, KeyRing};
use crate::service::store::JobStore;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Pipeline YAML files, or folders of them (default: the built-in default pipeline).
    #[arg(long)]
    pub pipelines: Vec<PathBuf>,
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where uploaded documents wait until their job is finished.
    #[arg(long, default_value = "data/spool")]
    pub spool: PathBuf,
    /// The job journal (SQLite): accepted jobs survive crashes and restarts.
    #[arg(long, default_value = "data/journal.sqlite")]
    pub journal: PathBuf,
    /// CPU pool threads (default: the largest `pool.threads` of the pipelines).
    #[arg(long)]
    pub threads: Option<usize>,
    /// How long a stopping daemon lets accepted jobs finish, e.g. "30s".
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub keys: KeysFileArg,
    /// Serve the API without keys on an address other than loopback (anyone who can reach
    /// the port may submit, read and cancel every job).
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// `/metrics` needs an `admin` key (it is open otherwise).
    #[arg(long)]
    pub metrics_require_key: bool,
    /// Serve HTTPS with this certificate chain (PEM); read again on SIGHUP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Event streams (`/v1/jobs/{id}/events`) one tenant may hold open at once.
    #[arg(long, default_value_t = DEFAULT_MAX_EVENT_STREAMS_PER_TENANT)]
    pub max_event_streams_per_tenant: usize,
    /// Time a client has to send a request's headers, e.g. "10s".
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub header_read_timeout: Duration,
    /// Forget finished jobs (journal rows and result files) this long after they finish,
    /// e.g. "30d"; 0 keeps them forever.
    #[arg(long, value_parser = parse_retention, default_value = "0")]
    pub retain_finished_jobs: Duration,
    /// Longest pause in an upload's body before it is dropped (408), e.g. "30s".
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub upload_idle_timeout: Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Cluster mode: the flags of `pagemill serve --cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Join a cluster through NATS JetStream at these servers, e.g.
    /// `nats://10.0.0.1:4222,nats://10.0.0.2:4222`. A user and password
    /// (PAGEMILL_NATS_USER, PAGEMILL_NATS_PASSWORD) or a token (PAGEMILL_NATS_TOKEN) come from
    /// the environment.
    #[arg(long, value_name = "URLS")]
    pub cluster: Option<String>,
    /// This node's name in the cluster (default: the host name).
    #[arg(long, requires = "cluster")]
    pub node_name: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, requires = "cluster", value_name = "FILE")]
    pub nats_credentials: Option<PathBuf>,
    /// The CA (PEM) that signed the NATS servers' certificates; TLS is then required.
    #[arg(long, requires = "cluster", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Jobs the cluster's queue holds at most; past it submissions get 429. Every node of a
    /// cluster must agree.
    #[arg(long, requires = "cluster", default_value_t = cluster::layout::DEFAULT_MAX_QUEUED_JOBS)]
    pub cluster_max_queued_jobs: i64,
    /// Bytes of job messages the cluster's queue holds at most, e.g. "64MiB".
    #[arg(long, requires = "cluster", default_value = "64MiB")]
    pub cluster_max_queued_bytes: bytesize::ByteSize,
    /// Copies of each stream and bucket (3 in a 3-server NATS cluster).
    #[arg(long, requires = "cluster", default_value_t = 1)]
    pub cluster_replicas: usize,
    /// How long the cluster's queue waits for a node's acknowledgement of a job before
    /// delivering it to another (running jobs renew it every third of this). Every node of a
    /// cluster must agree.
    #[arg(long, requires = "cluster", default_value = "30s", value_parser = humantime::parse_duration)]
    pub cluster_ack_wait: Duration,
    /// Jobs of each pipeline this node runs at once, taken from the cluster's queue
    /// (default: the CPU pool's threads).
    #[arg(long, requires = "cluster")]
    pub cluster_jobs_per_node: Option<usize>,
}

impl ClusterArgs {
    /// The options and layout of the cluster to join, if one is named.
    fn to_join(&self) -> Result<Option<(ClusterOptions, Layout)>, cluster::ClusterError> {
        let Some(servers) = &self.cluster else {
            return Ok(None);
        };
        let options = ClusterOptions::new(
            servers,
            self.node_name.clone(),
            self.nats_credentials.clone(),
            self.nats_tls_ca.clone(),
        )?;
        if self.cluster_ack_wait < Duration::from_secs(1) {
            return Err(cluster::ClusterError::Options(
                "--cluster-ack-wait must be at least 1s".into(),
            ));
        }
        let layout = Layout {
            max_queued_jobs: self.cluster_max_queued_jobs,
            max_queued_bytes: i64::try_from(self.cluster_max_queued_bytes.as_u64())
                .unwrap_or(i64::MAX),
            replicas: self.cluster_replicas,
            ack_wait: self.cluster_ack_wait,
        };
        Ok(Some((options, layout)))
    }
}

/// Loads every pipeline named on the command line, reporting all problems at once.
fn load_pipelines(paths: &[PathBuf]) -> Result<Vec<Pipeline>, Vec<String>> {
    if paths.is_empty() {
        return Ok(vec![Pipeline::embedded_default()]);
    }
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| vec![format!("{}: {e}", path.display())])?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut pipelines: Vec<Pipeline> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match load_pipeline(file) {
            Ok(p) if pipelines.iter().any(|q| q.name == p.name) => errors.push(format!(
                "{}: a pipeline named `{}` is already loaded",
                file.display(),
                p.name
            )),
            Ok(p) => pipelines.push(p),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() && pipelines.is_empty() {
        errors.push("no pipeline files found".into());
    }
    if errors.is_empty() {
        Ok(pipelines)
    } else {
        Err(errors)
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let pipelines = match load_pipelines(&args.pipelines) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let keys = match KeyRing::open(&args.keys.path) {
        Ok(keys) => Arc::new(keys),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let loopback = args.listen.ip().is_loopback();
    if keys.is_empty() && !loopback && !args.allow_unauthenticated {
        eprintln!(
            "error: no API keys in {} and {} is not a loopback address: anyone who can reach it \
             could submit, read and cancel every job. Add a key (`pagemill keys add NAME`), \
             listen on 127.0.0.1, or pass --allow-unauthenticated.",
            args.keys.path.display(),
            args.listen
        );
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match TlsFiles::open(cert, key) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::from(super::EXIT_USAGE));
            }
        },
        _ => None,
    };
    let join = match args.cluster.to_join() {
        Ok(join) => join,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    crate::runtime::sched::request_short_slice_for_this_thread();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(crate::runtime::sched::request_short_slice_for_this_thread)
        .build()?;
    runtime.block_on(run(args, pipelines, keys, tls, join))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(
    args: ServeArgs,
    pipelines: Vec<Pipeline>,
    keys: Arc<KeyRing>,
    tls: Option<Arc<TlsFiles>>,
    join: Option<(ClusterOptions, Layout)>,
) -> anyhow::Result<()> {
    let metrics = crate::runtime::telemetry::install()?;
    let threads = args
        .threads
        .unwrap_or_else(|| pipelines.iter().map(|p| p.pool.threads).max().unwrap_or(1));
    let pool = CpuPool::below_edge_priority(threads)?;
    crate::runtime::telemetry::spawn_upkeep(metrics.clone(), pool.clone());
    let jobs = Arc::new(JobRegistry::default());
    let journal = Journal::open(&args.journal)
        .with_context(|| format!("cannot open the journal {}", args.journal.display()))?;
    let mut store: Arc<dyn JobStore> = Arc::new(JournalHandle::new(Arc::new(journal)));
    // In a cluster, everything kept about jobs (records, checkpoints, deliveries, results)
    // lives in the cluster's buckets, and accepted jobs go to the cluster's queue.
    let cluster = match join {
        None => None,
        Some((options, layout)) => {
            let names: Vec<String> = pipelines.iter().map(|p| p.name.clone()).collect();
            let cluster = Cluster::join(options, layout, &names).await?;
            let cluster_store = Arc::new(cluster::store::ClusterStore::new(cluster.clone()));
            store = cluster_store.clone();
            Some((cluster, cluster_store))
        }
    };
    let mut handles = BTreeMap::new();
    for mut pipeline in pipelines {
        pipeline.pool.threads = threads;
        let name = pipeline.name.clone();
        let options = StartOptions {
            writer: None,
            jobs: Some(jobs.clone()),
            store: Some(store.clone()),
        };
        let (handle, mut finished) = PipelineHandle::start(pipeline, pool.clone(), options).await?;
        let spool = args.spool.clone();
        // The save stage has journaled the job finished; its upload is no longer needed. A
        // job whose result could not be written stays unfinished in the journal and keeps its
        // upload: the next start runs it again.
        tokio::spawn(async move {
            while let Some(done) = finished.recv().await {
                if done.result_path.is_some() {
                    let _ = tokio::fs::remove_file(spool.join(&done.id)).await;
                }
            }
        });
        tracing::info!(pipeline = %name, "pipeline started");
        handles.insert(name, Arc::new(handle));
    }
    let mut intake = Intake::new(handles, jobs, store, args.spool.clone())
        .with_upload_idle_timeout(args.upload_idle_timeout);
    if let Some((cluster, _)) = &cluster {
        intake = intake.with_queue(Arc::new(cluster::queue::NatsQueue::new(cluster.clone())));
    }
    let intake = Arc::new(intake);
    if let Some((cluster, cluster_store)) = &cluster {
        let slots = args.cluster.cluster_jobs_per_node.unwrap_or(threads);
        for handle in intake.pipelines().values() {
            cluster::worker::spawn(
                cluster.clone(),
                cluster_store.clone(),
                intake.clone(),
                handle.clone(),
                slots,
            )
            .await?;
        }
        cluster::metrics::spawn(
            cluster.clone(),
            intake.pipelines().keys().cloned().collect(),
        );
    }
    for handle in intake.pipelines().values() {
        crate::stages::save::remove_leftover_temporaries(&handle.pipeline.save.directory);
    }
    intake.resume_unfinished().await?;
    if !args.retain_finished_jobs.is_zero() {
        crate::service::retention::spawn(intake.store.clone(), args.retain_finished_jobs);
        tracing::info!(
            retention = %humantime::format_duration(args.retain_finished_jobs),
            "finished jobs are forgotten after the retention"
        );
    }
    let open_without_keys = args.listen.ip().is_loopback() || args.allow_unauthenticated;
    if keys.is_empty() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            address = %args.listen,
            "serving without API keys on a network address (--allow-unauthenticated): anyone who can reach it may submit, read and cancel every job"
        );
    }
    tracing::info!(keys = %args.keys.path.display(), tenants = keys.len(), "API keys");
    reread_on_change(keys.clone(), tls.clone());
    let state = Arc::new(AppState {
        intake: intake.clone(),
        metrics: Some(metrics),
        access: Access {
            keys,
            open_without_keys,
            metrics_need_key: args.metrics_require_key,
        },
        event_streams: Arc::new(EventStreams::new(args.max_event_streams_per_tenant)),
    });

    let shutdown = {
        let intake = intake.clone();
        let timeout = args.shutdown_timeout;
        async move {
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!(
                timeout = %humantime::format_duration(timeout),
                "stopping: no new jobs; waiting for accepted ones"
            );
            intake.stop_accepting();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            });
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline && !intake.all_idle() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let bound = |addr: SocketAddr| {
        println!("pagemill listening on {scheme}://{addr}");
        let _ = std::io::stdout().flush();
        tracing::info!(address = %addr, threads, "listening");
    };
    let limits = EdgeLimits {
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout,
        ..EdgeLimits::default()
    };
    server::serve(state.clone(), args.listen, limits, tls, bound, shutdown).await?;
    if let Some((cluster, _)) = &cluster {
        cluster.leave().await;
        tracing::info!("left the cluster");
    }
    pool.on_every_thread(crate::stages::ocr::release_engines_on_this_thread);
    tracing::info!("stopped");
    Ok(())
}

/// Keeps the key ring in step with its file: read again when the file changes (checked every
/// [`KEYS_FILE_CHECK`]) and at once on SIGHUP, which also reads the TLS certificate and key
/// again. A file that cannot be read leaves what was read before in force, and says why in
/// the log.
fn reread_on_change(keys: Arc<KeyRing>, tls: Option<Arc<TlsFiles>>) {
    tokio::spawn(async move {
        let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let mut tick = tokio::time::interval(KEYS_FILE_CHECK);
        loop {
            let outcome = tokio::select! {
                _ = hangup.recv() => {
                    if let Some(tls) = &tls {
                        match tls.reload() {
                            Ok(()) => tracing::info!("TLS certificate read again"),
                            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot read the TLS certificate; keeping the one read before"),
                        }
                    }
                    keys.reload().map(Some)
                }
                _ = tick.tick() => keys.reload_if_changed(),
            };
            match outcome {
                Ok(Some(count)) => tracing::info!(tenants = count, "API keys read again"),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the API keys; keeping the ones read before")
                }
            }
        }
    });
}

/// A retention: `0` (forever) or a duration such as `30d`.
fn parse_retention(text: &str) -> Result<Duration, humantime::DurationError> {
    match text.trim() {
        "0" => Ok(Duration::ZERO),
        other => humantime::parse_duration(other),
    }
}
