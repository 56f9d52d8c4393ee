//! The streams and buckets a cluster shares, and making sure they exist as this node needs
//! them: created when missing, refused (naming the setting) when an existing one differs.
//!
//! - The job queue: a WorkQueue stream ([`JOBS_STREAM`]) with one subject per pipeline
//!   (`pagemill.jobs.<pipeline>`); its limits on messages and bytes, with discard new, are
//!   the cluster's admission: a full queue refuses the publish, and the submission gets 429.
//!   A job's message stays in it until the job is finished, split or not, so admission counts
//!   every job once, whatever its pages.
//! - The ranges of split jobs: a second WorkQueue stream ([`RANGES_STREAM`], subjects
//!   `pagemill.ranges.<pipeline>`) without limits: its pages were admitted with their job,
//!   and a split never finds the queue full. Its own consumer lets nodes take ranges and
//!   whole jobs in turn.
//! - The job records: a KV bucket ([`JOBS_BUCKET`]). async-nats' bucket creation fails on
//!   nats-server 2.9, so the bucket's stream `KV_<bucket>` is made here with the KV layout
//!   (subjects `$KV.<bucket>.>`, per-subject history, rollups allowed, deletes denied, direct
//!   get, discard new) and then opened as a bucket.
//! - Documents and results: an Object Store bucket ([`OBJECTS_BUCKET`]), its stream
//!   `OBJ_<bucket>` made the same way.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::error::ClusterError;

/// The WorkQueue stream of jobs waiting for a node.
pub const JOBS_STREAM: &str = "PAGEMILL_JOBS";
/// Subjects of [`JOBS_STREAM`]: this prefix, then the pipeline's name.
pub const JOBS_SUBJECT_PREFIX: &str = "pagemill.jobs";
/// The WorkQueue stream of page ranges of split jobs.
pub const RANGES_STREAM: &str = "PAGEMILL_RANGES";
/// Subjects of [`RANGES_STREAM`]: this prefix, then the pipeline's name.
pub const RANGES_SUBJECT_PREFIX: &str = "pagemill.ranges";
/// The KV bucket of job records and idempotency keys.
pub const JOBS_BUCKET: &str = "pagemill_jobs";
/// The Object Store bucket of documents and results.
pub const OBJECTS_BUCKET: &str = "pagemill_objects";
/// Jobs the queue holds at most, unless `--cluster-max-queued-jobs`.
pub const DEFAULT_MAX_QUEUED_JOBS: i64 = 10_000;
/// Bytes of job messages the queue holds at most, unless `--cluster-max-queued-bytes`.
pub const DEFAULT_MAX_QUEUED_BYTES: i64 = 64 * 1024 * 1024;
/// The queue's wait for an acknowledgement, unless `--cluster-ack-wait`.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Revisions a job record keeps (the latest is all a node reads).
const JOB_RECORD_HISTORY: i64 = 1;
/// How long a publish with the same `Nats-Msg-Id` counts as a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The sizes and copies of what the cluster shares; every node of a cluster must agree.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Jobs waiting in the queue at most (messages of [`JOBS_STREAM`]).
    pub max_queued_jobs: i64,
    /// Bytes waiting in the queue at most.
    pub max_queued_bytes: i64,
    /// Copies of every stream (1, or 3 in a 3-server cluster).
    pub replicas: usize,
    /// How long the queue waits for a node's acknowledgement (or in-progress ack) of a job
    /// before delivering it again; a job's lease goes stale after as long without a heartbeat.
    pub ack_wait: Duration,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            max_queued_jobs: DEFAULT_MAX_QUEUED_JOBS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            replicas: 1,
            ack_wait: DEFAULT_ACK_WAIT,
        }
    }
}

impl Layout {
    /// The job queue's stream.
    pub fn jobs_stream(&self) -> stream::Config {
        stream::Config {
            name: JOBS_STREAM.into(),
            subjects: vec![format!("{JOBS_SUBJECT_PREFIX}.*")],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: self.max_queued_jobs,
            max_bytes: self.max_queued_bytes,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        }
    }

    /// The stream of split jobs' ranges: no limits, as their jobs were admitted already.
    pub fn ranges_stream(&self) -> stream::Config {
        stream::Config {
            name: RANGES_STREAM.into(),
            subjects: vec![format!("{RANGES_SUBJECT_PREFIX}.*")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        }
    }

    /// The job records' bucket, as the stream under it.
    pub fn jobs_bucket(&self) -> stream::Config {
        stream::Config {
            name: format!("KV_{JOBS_BUCKET}"),
            subjects: vec![format!("$KV.{JOBS_BUCKET}.>")],
            max_messages_per_subject: JOB_RECORD_HISTORY,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        }
    }

    /// The Object Store bucket, as the stream under it.
    pub fn objects_bucket(&self) -> stream::Config {
        stream::Config {
            name: format!("OBJ_{OBJECTS_BUCKET}"),
            subjects: vec![
                format!("$O.{OBJECTS_BUCKET}.C.>"),
                format!("$O.{OBJECTS_BUCKET}.M.>"),
            ],
            allow_rollup: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// The subject a pipeline's jobs are published on.
pub fn jobs_subject(pipeline: &str) -> String {
    format!("{JOBS_SUBJECT_PREFIX}.{pipeline}")
}

/// The subject the ranges of a pipeline's split jobs are published on.
pub fn ranges_subject(pipeline: &str) -> String {
    format!("{RANGES_SUBJECT_PREFIX}.{pipeline}")
}

/// Whether `pipeline` can be a subject token (letters, digits, `_`, `-`).
pub fn is_subject_token(pipeline: &str) -> bool {
    !pipeline.is_empty()
        && pipeline
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Creates the stream `want` describes if it is missing; if it exists, checks that every
/// setting this node relies on is the same, and names the first that is not.
pub async fn ensure_stream(
    js: &jetstream::Context,
    want: stream::Config,
) -> Result<(), ClusterError> {
    let what = format!("stream {}", want.name);
    match js.get_stream(&want.name).await {
        Ok(stream) => compare(&what, &want, &stream.cached_info().config),
        Err(e) if is_not_found(&e) => {
            js.create_stream(want.clone())
                .await
                .map_err(|e| ClusterError::jetstream(format!("cannot create {what}"), e))?;
            tracing::info!(stream = %want.name, "created a stream");
            Ok(())
        }
        Err(e) => Err(ClusterError::jetstream(format!("cannot read {what}"), e)),
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The settings of a stream that this node relies on, by name, as text.
fn settings(c: &stream::Config) -> Vec<(&'static str, String)> {
    let mut subjects = c.subjects.clone();
    subjects.sort();
    vec![
        ("subjects", subjects.join(",")),
        ("retention", format!("{:?}", c.retention)),
        ("discard", format!("{:?}", c.discard)),
        ("storage", format!("{:?}", c.storage)),
        ("num_replicas", c.num_replicas.max(1).to_string()),
        ("max_msgs", limit(c.max_messages)),
        ("max_bytes", limit(c.max_bytes)),
        ("max_msgs_per_subject", limit(c.max_messages_per_subject)),
        ("allow_rollup_hdrs", c.allow_rollup.to_string()),
        ("deny_delete", c.deny_delete.to_string()),
        ("allow_direct", c.allow_direct.to_string()),
    ]
}

/// A limit as the server reports it: 0 and -1 both mean none.
fn limit(n: i64) -> String {
    if n <= 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// The first setting in which `found` differs from `want`.
fn compare(what: &str, want: &stream::Config, found: &stream::Config) -> Result<(), ClusterError> {
    for ((setting, wanted), (_, found)) in settings(want).into_iter().zip(settings(found)) {
        if wanted != found {
            return Err(ClusterError::Mismatch {
                what: what.to_string(),
                setting,
                found,
                wanted,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_streams_have_the_layout_async_nats_reads() {
        let kv = Layout::default().jobs_bucket();
        assert_eq!(kv.name, "KV_pagemill_jobs");
        assert_eq!(kv.subjects, ["$KV.pagemill_jobs.>"]);
        assert!(kv.allow_rollup && kv.deny_delete && kv.allow_direct);
        assert_eq!(kv.discard, stream::DiscardPolicy::New);
        let queue = Layout::default().jobs_stream();
        assert_eq!(queue.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(queue.discard, stream::DiscardPolicy::New);
    }

    #[test]
    fn a_difference_names_the_setting() {
        let want = Layout::default().jobs_stream();
        let mut found = want.clone();
        assert!(compare("stream X", &want, &found).is_ok());
        found.max_messages = 5;
        let e = compare("stream X", &want, &found).unwrap_err().to_string();
        assert!(e.contains("max_msgs = 5"), "{e}");
        assert!(e.contains("10000"), "{e}");
        found.max_messages = want.max_messages;
        found.retention = stream::RetentionPolicy::Limits;
        let e = compare("stream X", &want, &found).unwrap_err().to_string();
        assert!(e.contains("retention"), "{e}");
    }

    #[test]
    fn zero_and_minus_one_are_both_no_limit() {
        let want = Layout::default().jobs_bucket();
        let mut found = want.clone();
        found.max_messages = -1;
        found.max_bytes = -1;
        assert!(compare("kv", &want, &found).is_ok());
    }

    #[test]
    fn pipeline_names_must_be_subject_tokens() {
        assert!(is_subject_token("default"));
        assert!(is_subject_token("scans-de_2"));
        assert!(!is_subject_token("a.b"));
        assert!(!is_subject_token("a b"));
        assert!(!is_subject_token(""));
    }
}
