//! The job journal: one SQLite database (WAL, synchronous writes) in which every accepted job
//! is recorded, durably, before its 202 is sent, and marked finished when its result is
//! saved. On start the daemon resumes every job the journal holds as unfinished, so a crash
//! or `kill -9` loses no accepted job. Each finished page of an unfinished job is checkpointed
//! (its result record), so a resumed job skips the pages it had done; so is an LLM summary, so
//! a resumed job does not ask the server again. The journal also answers
//! `Idempotency-Key` lookups and the `GET /v1/jobs` listing.
//!
//! Accepts go through one writer thread that records every job waiting in one transaction
//! (group commit): one fsync for many submissions, so durability does not cap intake.
//!
//! SQLite is compiled into pagemill (rusqlite's `bundled` feature): nothing to install.
//! SQLite blocks, so async code reaches the journal through a [`JournalHandle`], whose calls
//! run on tokio's blocking threads.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::model::error::ErrorRecord;
use crate::service::jobs::{JobState, JobStatus, SinkDelivery};

/// A job as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalJob {
    pub id: String,
    pub pipeline: String,
    pub name: String,
    /// Where its upload waits in the spool.
    pub spool_path: String,
    pub bytes: u64,
    pub sha256: String,
    /// Unique per tenant.
    pub idempotency_key: Option<String>,
    /// The tenant (API key name) that submitted it; none when the daemon serves without keys.
    pub tenant: Option<String>,
    /// `accepted` until finished, then `done`, `failed` or `cancelled`.
    pub state: String,
    /// Milliseconds since the Unix epoch.
    pub submitted_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error_code: Option<String>,
    /// Where the result JSON was written.
    pub result_path: Option<String>,
}

impl JournalJob {
    /// This job as a status: what is known of a job this process does not run itself.
    pub fn status(&self) -> JobStatus {
        let job = self;
        let state = match job.state.as_str() {
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "running" => JobState::Running,
            _ => JobState::Queued,
        };
        JobStatus {
            id: job.id.clone(),
            pipeline: job.pipeline.clone(),
            name: job.name.clone(),
            state,
            submitted_at: humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(job.submitted_at_ms as u64),
            )
            .to_string(),
            bytes: job.bytes,
            tenant: job.tenant.clone(),
            pages: Default::default(),
            timings: Default::default(),
            error: job.error_code.as_ref().map(|code| ErrorRecord {
                code: code.clone(),
                message: format!("the job failed ({code})"),
            }),
            sinks: Default::default(),
        }
    }
}

/// The unfinished jobs of the journal, and the entries set aside as unreadable.
#[derive(Debug, Default)]
pub struct Unfinished {
    pub jobs: Vec<JournalJob>,
    pub quarantined: Vec<String>,
}

/// What [`Journal::accept`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The job is recorded.
    New,
    /// A job with the same idempotency key exists; `same_body` if its document hashed alike.
    Existing { id: String, same_body: bool },
}

/// Filters of `GET /v1/jobs`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<String>,
    pub pipeline: Option<String>,
    /// Only jobs submitted at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only jobs with a larger id (ids grow with time): the paging cursor.
    pub after: Option<String>,
    /// Only the jobs of this tenant.
    pub tenant: Option<String>,
    pub limit: u32,
}

pub struct Journal {
    conn: Mutex<Connection>,
    /// To the group-commit writer: jobs to record, each with where to send the outcome.
    accepts: Mutex<mpsc::Sender<AcceptRequest>>,
}

type AcceptRequest = (JournalJob, mpsc::Sender<rusqlite::Result<Accepted>>);

/// Jobs recorded by one commit at most.
const MAX_GROUP: usize = 256;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The columns a job is read from; `tenant` is stored as '' for no tenant, so that the
/// idempotency keys of untenanted jobs are unique among themselves too.
const COLUMNS: &str = "id, pipeline, name, spool_path, bytes, sha256, idempotency_key, state, \
                       submitted_at_ms, finished_at_ms, error_code, result_path, tenant";

/// The jobs table, as created, and as an older journal's table is rebuilt into.
const JOBS_TABLE: &str = "CREATE TABLE IF NOT EXISTS jobs (
     id TEXT PRIMARY KEY,
     pipeline TEXT NOT NULL,
     name TEXT NOT NULL,
     spool_path TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     idempotency_key TEXT,
     state TEXT NOT NULL,
     submitted_at_ms INTEGER NOT NULL,
     finished_at_ms INTEGER,
     error_code TEXT,
     result_path TEXT,
     tenant TEXT NOT NULL DEFAULT ''
 );
 CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
 CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (tenant, idempotency_key);";

/// Rebuilds a journal's jobs table from before tenants (idempotency keys unique across all
/// jobs, no `tenant` column) into today's, keeping every row; its jobs have no tenant.
fn add_tenants(conn: &mut Connection) -> rusqlite::Result<()> {
    let has_tenant: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'tenant'")?
        .exists([])?;
    let has_jobs: bool = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'")?
        .exists([])?;
    if has_tenant || !has_jobs {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "ALTER TABLE jobs RENAME TO jobs_before_tenants;
         DROP INDEX IF EXISTS jobs_by_state;",
    )?;
    tx.execute_batch(JOBS_TABLE)?;
    tx.execute_batch(
        "INSERT INTO jobs (id, pipeline, name, spool_path, bytes, sha256, idempotency_key, state,
                           submitted_at_ms, finished_at_ms, error_code, result_path)
         SELECT id, pipeline, name, spool_path, bytes, sha256, idempotency_key, state,
                submitted_at_ms, finished_at_ms, error_code, result_path
         FROM jobs_before_tenants;
         DROP TABLE jobs_before_tenants;",
    )?;
    tx.commit()
}

fn row_to_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<JournalJob> {
    Ok(JournalJob {
        id: row.get(0)?,
        pipeline: row.get(1)?,
        name: row.get(2)?,
        spool_path: row.get(3)?,
        bytes: row.get::<_, i64>(4)? as u64,
        sha256: row.get(5)?,
        idempotency_key: row.get(6)?,
        state: row.get(7)?,
        submitted_at_ms: row.get(8)?,
        finished_at_ms: row.get(9)?,
        error_code: row.get(10)?,
        result_path: row.get(11)?,
        tenant: Some(row.get::<_, String>(12)?).filter(|t| !t.is_empty()),
    })
}

/// A connection to the journal database: WAL (readers never block the writer), FULL
/// synchronous (a commit is on disk when it returns).
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The group-commit writer: takes every accept request waiting (up to [`MAX_GROUP`]), records
/// them in one transaction, commits once, then answers each. A job that cannot be recorded
/// (its own error) is rolled back alone through a savepoint; a failed commit fails them all.
fn group_commits(mut conn: Connection, requests: mpsc::Receiver<AcceptRequest>) {
    let _exit = ExitLog;
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let recorded = (|| {
            // IMMEDIATE: the write lock is taken (waiting out other writers) before any read,
            // so a read snapshot never has to be upgraded while another connection writes.
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(group.len());
            for (job, _) in &group {
                let sp = tx.savepoint()?;
                let outcome = insert_job(&sp, job);
                if outcome.is_ok() {
                    sp.commit()?;
                } else {
                    drop(sp);
                }
                // An error that made SQLite roll the whole transaction back fails the group.
                if tx.is_autocommit() {
                    return Err(outcome.err().unwrap_or(rusqlite::Error::InvalidQuery));
                }
                outcomes.push(outcome);
            }
            tx.commit()?;
            Ok::<_, rusqlite::Error>(outcomes)
        })();
        match recorded {
            Ok(outcomes) => {
                for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(rusqlite::Error::InvalidParameterName(format!(
                        "journal commit failed: {e}"
                    ))));
                }
            }
        }
    }
}

/// Logs the group-commit writer's end: only a panic ends it while the journal is open.
struct ExitLog;

impl Drop for ExitLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the journal writer stopped: submissions will be refused");
        }
    }
}

/// Records `job` unless its idempotency key is taken (inside the caller's transaction).
fn insert_job(tx: &rusqlite::Connection, job: &JournalJob) -> rusqlite::Result<Accepted> {
    if let Some(key) = &job.idempotency_key {
        let existing: Option<(String, String)> = tx
            .query_row(
                "SELECT id, sha256 FROM jobs WHERE idempotency_key = ?1 AND tenant = ?2",
                params![key, job.tenant.as_deref().unwrap_or("")],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, sha256)) = existing {
            return Ok(Accepted::Existing {
                id,
                same_body: sha256 == job.sha256,
            });
        }
    }
    tx.execute(
        &format!(
            "INSERT INTO jobs ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            job.id,
            job.pipeline,
            job.name,
            job.spool_path,
            job.bytes as i64,
            job.sha256,
            job.idempotency_key,
            job.state,
            job.submitted_at_ms,
            job.finished_at_ms,
            job.error_code,
            job.result_path,
            job.tenant.as_deref().unwrap_or("")
        ],
    )?;
    Ok(Accepted::New)
}

impl Journal {
    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Journal> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = connect(path)?;
        add_tenants(&mut conn)?;
        conn.execute_batch(JOBS_TABLE)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS dead_letters (
                 job_id TEXT NOT NULL,
                 sink TEXT NOT NULL,
                 error TEXT NOT NULL,
                 at_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS deliveries (
                 job_id TEXT NOT NULL,
                 sink TEXT NOT NULL,
                 state TEXT NOT NULL,
                 attempts INTEGER NOT NULL,
                 error TEXT,
                 at_ms INTEGER NOT NULL,
                 PRIMARY KEY (job_id, sink)
             );
             CREATE TABLE IF NOT EXISTS summaries (
                 job_id TEXT PRIMARY KEY,
                 record TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS pages (
                 job_id TEXT NOT NULL,
                 number INTEGER NOT NULL,
                 record TEXT NOT NULL,
                 PRIMARY KEY (job_id, number)
             );",
        )?;
        let writer = connect(path)?;
        let (accepts, requests) = mpsc::channel();
        std::thread::Builder::new()
            .name("pagemill-journal".into())
            .spawn(move || group_commits(writer, requests))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Journal {
            conn: Mutex::new(conn),
            accepts: Mutex::new(accepts),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("journal lock poisoned")
    }

    /// Records an accepted job, unless its idempotency key is already taken. Durable when it
    /// returns `New`. Jobs accepted at the same moment share one commit (one fsync), so
    /// durability does not cap how fast submissions are taken.
    pub fn accept(&self, job: &JournalJob) -> rusqlite::Result<Accepted> {
        let (reply, outcome) = mpsc::channel();
        let stopped = || rusqlite::Error::InvalidParameterName("the journal writer stopped".into());
        self.accepts
            .lock()
            .expect("journal lock poisoned")
            .send((job.clone(), reply))
            .map_err(|_| stopped())?;
        outcome.recv().map_err(|_| stopped())?
    }

    /// Marks a job finished: `done`, `failed` or `cancelled`; its checkpoints go.
    pub fn finish(
        &self,
        id: &str,
        state: &str,
        error_code: Option<&str>,
        result_path: Option<&str>,
    ) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE jobs SET state = ?2, error_code = ?3, finished_at_ms = ?4, result_path = ?5
             WHERE id = ?1",
            params![id, state, error_code, now_ms(), result_path],
        )?;
        tx.execute("DELETE FROM pages WHERE job_id = ?1", params![id])?;
        tx.execute("DELETE FROM summaries WHERE job_id = ?1", params![id])?;
        tx.commit()
    }

    /// Forgets up to `batch` jobs that finished before `cutoff_ms` (ms since the epoch), with
    /// every row about them; returns them, for their result files to go too. Unfinished jobs
    /// are never touched.
    pub fn prune_finished(&self, cutoff_ms: i64, batch: u32) -> rusqlite::Result<Vec<JournalJob>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pruned: Vec<JournalJob> = tx
            .prepare(&format!(
                "SELECT {COLUMNS} FROM jobs
                 WHERE state IN ('done', 'failed', 'cancelled') AND finished_at_ms < ?1
                 ORDER BY finished_at_ms LIMIT ?2"
            ))?
            .query_map(params![cutoff_ms, batch], row_to_job)?
            .collect::<rusqlite::Result<_>>()?;
        for job in &pruned {
            for table in ["deliveries", "dead_letters", "pages", "summaries"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE job_id = ?1"),
                    params![job.id],
                )?;
            }
            tx.execute("DELETE FROM jobs WHERE id = ?1", params![job.id])?;
        }
        tx.commit()?;
        Ok(pruned)
    }

    /// Records a result that a sink could not take after every retry.
    pub fn dead_letter(&self, job_id: &str, sink: &str, error: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO dead_letters (job_id, sink, error, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![job_id, sink, error, now_ms()],
        )?;
        Ok(())
    }

    /// Records how a job's delivery to a sink ended (replacing an earlier record: a job run
    /// again after a restart is delivered again).
    pub fn record_delivery(
        &self,
        job_id: &str,
        sink: &str,
        delivery: &SinkDelivery,
    ) -> rusqlite::Result<()> {
        let state = serde_json::to_value(delivery.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.conn().execute(
            "INSERT OR REPLACE INTO deliveries (job_id, sink, state, attempts, error, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                job_id,
                sink,
                state,
                delivery.attempts,
                delivery.error,
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// How a job's deliveries to its sinks ended, by sink.
    pub fn deliveries(&self, job_id: &str) -> rusqlite::Result<BTreeMap<String, SinkDelivery>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT sink, state, attempts, error FROM deliveries WHERE job_id = ?1")?;
        let rows = stmt.query_map(params![job_id], |r| {
            let state: String = r.get(1)?;
            Ok((r.get::<_, String>(0)?, state, r.get(2)?, r.get(3)?))
        })?;
        let mut found = BTreeMap::new();
        for row in rows {
            let (sink, state, attempts, error) = row?;
            if let Ok(state) = serde_json::from_value(serde_json::Value::String(state)) {
                found.insert(
                    sink,
                    SinkDelivery {
                        state,
                        attempts,
                        error,
                    },
                );
            }
        }
        Ok(found)
    }

    /// Records a finished page of an unfinished job (its result record as JSON), so that a
    /// resumed job does not do that page again.
    pub fn checkpoint_page(&self, job_id: &str, number: u32, record: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO pages (job_id, number, record) VALUES (?1, ?2, ?3)",
            params![job_id, number, record],
        )?;
        Ok(())
    }

    /// Records the summary of an unfinished job (as JSON), so that a resumed job does not ask
    /// the LLM again.
    pub fn checkpoint_summary(&self, job_id: &str, record: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO summaries (job_id, record) VALUES (?1, ?2)",
            params![job_id, record],
        )?;
        Ok(())
    }

    /// The checkpointed summary of a job, if any.
    pub fn summary_checkpoint(&self, job_id: &str) -> rusqlite::Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT record FROM summaries WHERE job_id = ?1",
                params![job_id],
                |r| r.get(0),
            )
            .optional()
    }

    /// The checkpointed pages of a job: page number to record JSON.
    pub fn checkpoints(&self, job_id: &str) -> rusqlite::Result<HashMap<u32, String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT number, record FROM pages WHERE job_id = ?1")?;
        stmt.query_map(params![job_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    pub fn get(&self, id: &str) -> rusqlite::Result<Option<JournalJob>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                row_to_job,
            )
            .optional()
    }

    /// Jobs accepted and not finished, oldest first: what a restart resumes. An entry that
    /// cannot be read (a damaged row) is set aside as `quarantined` and reported in
    /// [`Unfinished::quarantined`], so one bad entry does not stop the others.
    pub fn unfinished(&self) -> rusqlite::Result<Unfinished> {
        let conn = self.conn();
        let rowids: Vec<i64> = conn
            .prepare("SELECT rowid FROM jobs WHERE state = 'accepted' ORDER BY rowid")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut found = Unfinished::default();
        for rowid in rowids {
            let job = conn.query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE rowid = ?1"),
                params![rowid],
                row_to_job,
            );
            match job {
                Ok(job) => found.jobs.push(job),
                Err(e) => {
                    conn.execute(
                        "UPDATE jobs SET state = 'quarantined', error_code = 'corrupt_entry'
                         WHERE rowid = ?1",
                        params![rowid],
                    )?;
                    found.quarantined.push(format!("entry {rowid}: {e}"));
                }
            }
        }
        Ok(found)
    }

    /// Jobs matching `filter`, in id (= submission) order. Unreadable (quarantined) entries
    /// are left out.
    pub fn list(&self, filter: &ListFilter) -> rusqlite::Result<Vec<JournalJob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs
             WHERE state <> 'quarantined'
               AND (?1 IS NULL OR state = ?1)
               AND (?2 IS NULL OR pipeline = ?2)
               AND (?3 IS NULL OR submitted_at_ms >= ?3)
               AND (?4 IS NULL OR id > ?4)
               AND (?6 IS NULL OR tenant = ?6)
             ORDER BY id LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.state,
                filter.pipeline,
                filter.since_ms,
                filter.after,
                filter.limit,
                filter.tenant
            ],
            row_to_job,
        )?;
        Ok(rows.filter_map(Result::ok).collect())
    }
}

/// The journal as async code reaches it: each call runs on tokio's blocking threads, so no
/// caller blocks an async thread on SQLite or spawns the blocking task itself.
#[derive(Clone)]
pub struct JournalHandle(Arc<Journal>);

/// A journal call that failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the journal call did not finish: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

impl JournalHandle {
    pub fn new(journal: Arc<Journal>) -> JournalHandle {
        JournalHandle(journal)
    }

    async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Journal) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        let journal = self.0.clone();
        Ok(tokio::task::spawn_blocking(move || call(&journal)).await??)
    }

    /// See [`Journal::accept`].
    pub async fn accept(&self, job: JournalJob) -> Result<Accepted, JournalError> {
        self.run(move |j| j.accept(&job)).await
    }

    /// See [`Journal::finish`].
    pub async fn finish(
        &self,
        id: &str,
        state: &'static str,
        error_code: Option<String>,
        result_path: Option<String>,
    ) -> Result<(), JournalError> {
        let id = id.to_owned();
        self.run(move |j| j.finish(&id, state, error_code.as_deref(), result_path.as_deref()))
            .await
    }

    /// Records how a job's delivery to `sink` ended, and a dead letter if it became one.
    pub async fn record_delivery(
        &self,
        job_id: &str,
        sink: &'static str,
        delivery: SinkDelivery,
    ) -> Result<(), JournalError> {
        let id = job_id.to_owned();
        self.run(move |j| {
            j.record_delivery(&id, sink, &delivery)?;
            match (delivery.state, &delivery.error) {
                (crate::service::jobs::DeliveryState::DeadLetter, Some(error)) => {
                    j.dead_letter(&id, sink, error)
                }
                _ => Ok(()),
            }
        })
        .await
    }

    /// See [`Journal::deliveries`].
    pub async fn deliveries(
        &self,
        job_id: &str,
    ) -> Result<BTreeMap<String, SinkDelivery>, JournalError> {
        let id = job_id.to_owned();
        self.run(move |j| j.deliveries(&id)).await
    }

    /// See [`Journal::checkpoint_page`].
    pub async fn checkpoint_page(
        &self,
        job_id: &str,
        number: u32,
        record: String,
    ) -> Result<(), JournalError> {
        let id = job_id.to_owned();
        self.run(move |j| j.checkpoint_page(&id, number, &record))
            .await
    }

    /// See [`Journal::checkpoints`].
    pub async fn checkpoints(&self, job_id: &str) -> Result<HashMap<u32, String>, JournalError> {
        let id = job_id.to_owned();
        self.run(move |j| j.checkpoints(&id)).await
    }

    /// See [`Journal::checkpoint_summary`].
    pub async fn checkpoint_summary(
        &self,
        job_id: &str,
        record: String,
    ) -> Result<(), JournalError> {
        let id = job_id.to_owned();
        self.run(move |j| j.checkpoint_summary(&id, &record)).await
    }

    /// See [`Journal::summary_checkpoint`].
    pub async fn summary_checkpoint(&self, job_id: &str) -> Result<Option<String>, JournalError> {
        let id = job_id.to_owned();
        self.run(move |j| j.summary_checkpoint(&id)).await
    }

    /// See [`Journal::unfinished`].
    pub async fn unfinished(&self) -> Result<Unfinished, JournalError> {
        self.run(|j| j.unfinished()).await
    }

    /// See [`Journal::prune_finished`].
    pub async fn prune_finished(
        &self,
        cutoff_ms: i64,
        batch: u32,
    ) -> Result<Vec<JournalJob>, JournalError> {
        self.run(move |j| j.prune_finished(cutoff_ms, batch)).await
    }

    /// See [`Journal::get`].
    pub async fn get(&self, id: &str) -> Result<Option<JournalJob>, JournalError> {
        let id = id.to_owned();
        self.run(move |j| j.get(&id)).await
    }

    /// See [`Journal::list`].
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<JournalJob>, JournalError> {
        self.run(move |j| j.list(&filter)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, key: Option<&str>, sha: &str) -> JournalJob {
        JournalJob {
            id: id.into(),
            pipeline: "default".into(),
            name: "a.pdf".into(),
            spool_path: format!("spool/{id}"),
            bytes: 3,
            sha256: sha.into(),
            idempotency_key: key.map(Into::into),
            tenant: None,
            state: "accepted".into(),
            submitted_at_ms: now_ms(),
            finished_at_ms: None,
            error_code: None,
            result_path: None,
        }
    }

    #[test]
    fn jobs_survive_reopening_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        {
            let j = Journal::open(&path).unwrap();
            assert_eq!(j.accept(&job("a1", None, "x")).unwrap(), Accepted::New);
            assert_eq!(j.accept(&job("a2", None, "y")).unwrap(), Accepted::New);
            j.finish("a1", "done", None, Some("r/a1.json")).unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let open: Vec<String> = j
            .unfinished()
            .unwrap()
            .jobs
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(open, ["a2"]);
        assert_eq!(j.get("a1").unwrap().unwrap().state, "done");
    }

    #[test]
    fn an_unreadable_entry_is_quarantined_and_the_others_resume() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        j.accept(&job("a1", None, "x")).unwrap();
        j.conn()
            .execute(
                "INSERT INTO jobs (id, pipeline, name, spool_path, bytes, sha256, state,
                                   submitted_at_ms)
                 VALUES ('a0', 'default', 'x', 's', 'not a number', 'x', 'accepted', 0)",
                [],
            )
            .unwrap();
        j.accept(&job("a2", None, "y")).unwrap();
        let found = j.unfinished().unwrap();
        let ids: Vec<&str> = found.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a2"]);
        assert_eq!(found.quarantined.len(), 1, "{:?}", found.quarantined);
        // Set aside for good: the next start does not meet it again.
        assert!(j.unfinished().unwrap().quarantined.is_empty());
        let state: String = j
            .conn()
            .query_row("SELECT state FROM jobs WHERE id = 'a0'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(state, "quarantined");
    }

    #[test]
    fn page_checkpoints_last_until_the_job_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        j.accept(&job("a1", None, "x")).unwrap();
        j.checkpoint_page("a1", 2, "{\"n\":2}").unwrap();
        j.checkpoint_page("a1", 1, "{\"n\":1}").unwrap();
        let pages = j.checkpoints("a1").unwrap();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[&2], "{\"n\":2}");
        j.finish("a1", "done", None, None).unwrap();
        assert!(j.checkpoints("a1").unwrap().is_empty());
    }

    #[test]
    fn jobs_accepted_at_once_share_commits_and_each_gets_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let j = std::sync::Arc::new(Journal::open(&dir.path().join("j.sqlite")).unwrap());
        j.accept(&job("first", Some("k"), "aa")).unwrap();
        // 64 submissions at once: half reuse the key (with its body or another), half are new;
        // a duplicate id fails alone without taking its commit group down.
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let j = j.clone();
                std::thread::spawn(move || {
                    let job = match i % 4 {
                        0 => job(&format!("new-{i}"), None, "bb"),
                        1 => job(&format!("same-{i}"), Some("k"), "aa"),
                        2 => job(&format!("other-{i}"), Some("k"), "cc"),
                        _ => job("first", None, "dd"),
                    };
                    (i % 4, j.accept(&job))
                })
            })
            .collect();
        // Meanwhile the other connection writes too (page checkpoints), as during OCR.
        for n in 0..200 {
            j.checkpoint_page("first", n, "{}").unwrap();
        }
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (kind, outcome) in outcomes {
            match kind {
                0 => assert_eq!(outcome.unwrap(), Accepted::New),
                1 | 2 => assert_eq!(
                    outcome.unwrap(),
                    Accepted::Existing {
                        id: "first".into(),
                        same_body: kind == 1
                    }
                ),
                _ => assert!(outcome.is_err(), "a duplicate id is refused"),
            }
        }
        let listed = j
            .list(&ListFilter {
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(listed.len(), 1 + 16);
    }

    #[test]
    fn an_idempotency_key_maps_to_its_first_job() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        assert_eq!(j.accept(&job("a1", Some("k"), "x")).unwrap(), Accepted::New);
        assert_eq!(
            j.accept(&job("a2", Some("k"), "x")).unwrap(),
            Accepted::Existing {
                id: "a1".into(),
                same_body: true
            }
        );
        assert_eq!(
            j.accept(&job("a3", Some("k"), "z")).unwrap(),
            Accepted::Existing {
                id: "a1".into(),
                same_body: false
            }
        );
        assert!(j.get("a2").unwrap().is_none());
    }

    #[test]
    fn pruning_forgets_only_jobs_finished_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        for id in ["old-done", "old-failed", "running", "new-done"] {
            j.accept(&job(id, None, "x")).unwrap();
        }
        j.finish("old-done", "done", None, Some("results/old-done.json"))
            .unwrap();
        j.finish("old-failed", "failed", Some("invalid_pdf"), None)
            .unwrap();
        j.record_delivery(
            "old-done",
            "webhook",
            &SinkDelivery {
                state: crate::service::jobs::DeliveryState::DeadLetter,
                attempts: 3,
                error: Some("refused".into()),
            },
        )
        .unwrap();
        j.dead_letter("old-done", "webhook", "refused").unwrap();
        j.checkpoint_page("running", 1, "{}").unwrap();
        let cutoff = now_ms() + 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
        j.finish("new-done", "done", None, None).unwrap();

        let pruned = j.prune_finished(cutoff, 1).unwrap();
        assert_eq!(pruned.len(), 1, "one batch of 1");
        let more = j.prune_finished(cutoff, 10).unwrap();
        let mut ids: Vec<String> = pruned.iter().chain(&more).map(|p| p.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["old-done", "old-failed"]);
        assert!(j.get("old-done").unwrap().is_none());
        assert!(j.deliveries("old-done").unwrap().is_empty());
        let letters: i64 = j
            .conn()
            .query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))
            .unwrap();
        assert_eq!(letters, 0);
        assert!(j.get("running").unwrap().is_some());
        assert_eq!(j.checkpoints("running").unwrap().len(), 1);
        assert!(j.get("new-done").unwrap().is_some());
    }

    #[test]
    fn idempotency_keys_and_listings_are_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let of = |id: &str, tenant: Option<&str>, sha: &str| JournalJob {
            tenant: tenant.map(Into::into),
            ..job(id, Some("k"), sha)
        };
        assert_eq!(j.accept(&of("a1", Some("a"), "x")).unwrap(), Accepted::New);
        assert_eq!(j.accept(&of("b1", Some("b"), "y")).unwrap(), Accepted::New);
        assert_eq!(j.accept(&of("n1", None, "z")).unwrap(), Accepted::New);
        assert_eq!(
            j.accept(&of("b2", Some("b"), "y")).unwrap(),
            Accepted::Existing {
                id: "b1".into(),
                same_body: true
            }
        );
        assert_eq!(
            j.accept(&of("n2", None, "z")).unwrap(),
            Accepted::Existing {
                id: "n1".into(),
                same_body: true
            }
        );
        assert_eq!(j.get("a1").unwrap().unwrap().tenant.as_deref(), Some("a"));
        assert_eq!(j.get("n1").unwrap().unwrap().tenant, None);
        let of_tenant = |tenant: &str| -> Vec<String> {
            j.list(&ListFilter {
                tenant: Some(tenant.into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect()
        };
        assert_eq!(of_tenant("a"), ["a1"]);
        assert_eq!(of_tenant("b"), ["b1"]);
    }

    #[test]
    fn a_journal_from_before_tenants_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE jobs (
                     id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, name TEXT NOT NULL,
                     spool_path TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
                     idempotency_key TEXT UNIQUE, state TEXT NOT NULL,
                     submitted_at_ms INTEGER NOT NULL, finished_at_ms INTEGER,
                     error_code TEXT, result_path TEXT);
                 CREATE INDEX jobs_by_state ON jobs (state);
                 INSERT INTO jobs VALUES ('old', 'default', 'a.pdf', 'spool/old', 3, 'x', 'k',
                     'accepted', 1, NULL, NULL, NULL);",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let old = j.get("old").unwrap().unwrap();
        assert_eq!(
            (old.tenant, old.idempotency_key.as_deref()),
            (None, Some("k"))
        );
        assert_eq!(j.unfinished().unwrap().jobs.len(), 1);
        // The old key is still taken for untenanted jobs, and free for a tenant.
        assert!(matches!(
            j.accept(&job("n", Some("k"), "x")).unwrap(),
            Accepted::Existing { .. }
        ));
        let tenant_job = JournalJob {
            tenant: Some("a".into()),
            ..job("t", Some("k"), "x")
        };
        assert_eq!(j.accept(&tenant_job).unwrap(), Accepted::New);
        drop(j);
        // Opening again changes nothing more.
        assert_eq!(
            Journal::open(&path)
                .unwrap()
                .get("t")
                .unwrap()
                .unwrap()
                .tenant
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn listing_filters_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        for id in ["a1", "a2", "a3", "a4"] {
            j.accept(&job(id, None, "x")).unwrap();
        }
        j.finish("a2", "done", None, None).unwrap();
        j.finish("a3", "failed", Some("invalid_pdf"), None).unwrap();
        let ids = |f: ListFilter| -> Vec<String> {
            j.list(&f).unwrap().into_iter().map(|j| j.id).collect()
        };
        let all = ListFilter {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(ids(all.clone()), ["a1", "a2", "a3", "a4"]);
        assert_eq!(
            ids(ListFilter {
                state: Some("done".into()),
                ..all.clone()
            }),
            ["a2"]
        );
        assert_eq!(
            ids(ListFilter {
                after: Some("a2".into()),
                limit: 1,
                ..all.clone()
            }),
            ["a3"]
        );
        assert!(
            ids(ListFilter {
                pipeline: Some("other".into()),
                ..all.clone()
            })
            .is_empty()
        );
        assert!(
            ids(ListFilter {
                since_ms: Some(now_ms() + 60_000),
                ..all
            })
            .is_empty()
        );
    }
}
