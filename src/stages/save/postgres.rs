//! The PostgreSQL sink (`save.postgres`): one row per job in a table, created if missing.
//!
//! Rows are keyed by job id and written with `INSERT ... ON CONFLICT (id) DO UPDATE`, so a job
//! delivered twice is still one row; the result JSON is kept as `jsonb`. One connection per
//! pipeline, opened on first use and again after any error; each attempt (connecting
//! included) is bounded by `timeout`. Connections are unencrypted (a local or private
//! network database).
//!
//! Each new connection creates the table if it is missing, under a transaction-level advisory
//! lock: PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe against itself, and daemons
//! meeting a new database at once (cluster nodes) would otherwise see all but one of them fail
//! with a unique violation on the catalogue, which reads as a refused row.

use tokio::sync::Mutex;
use tokio_postgres::types::Json;
use tokio_postgres::{Client, NoTls};

use crate::config::PostgresSinkConfig;
use crate::model::result::JobResult;

use super::sinks::{ResultRow, SinkError};

/// The advisory lock taken while a table is created or brought up to date: "pagemill" in
/// ASCII, so that pagemill's daemons wait for each other and for nothing else.
const TABLE_SETUP_LOCK: i64 = 0x7061_6765_6d69_6c6c;

pub struct PostgresSink {
    pub cfg: PostgresSinkConfig,
    client: Mutex<Option<Client>>,
}

impl PostgresSink {
    pub fn new(cfg: PostgresSinkConfig) -> PostgresSink {
        PostgresSink {
            cfg,
            client: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.cfg.url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL sink connection closed");
            }
        });
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock({TABLE_SETUP_LOCK});
                 CREATE TABLE IF NOT EXISTS \"{}\" (
                     id TEXT PRIMARY KEY,
                     pipeline TEXT NOT NULL,
                     name TEXT NOT NULL,
                     sha256 TEXT NOT NULL,
                     state TEXT NOT NULL,
                     error_code TEXT,
                     pages INTEGER NOT NULL,
                     summary_engine TEXT,
                     summary TEXT,
                     text TEXT NOT NULL,
                     result JSONB NOT NULL,
                     saved_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                     tenant TEXT
                 );
                 ALTER TABLE \"{}\" ADD COLUMN IF NOT EXISTS tenant TEXT;
                 COMMIT",
                self.cfg.table, self.cfg.table
            ))
            .await?;
        Ok(client)
    }

    /// Writes (or replaces) the row of `result`; `body` is its saved JSON.
    pub async fn upsert(&self, result: &JobResult, body: &[u8]) -> Result<(), SinkError> {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| SinkError::Permanent(format!("result JSON: {e}")))?;
        let mut client = self.client.lock().await;
        let attempt = async {
            if client.is_none() {
                *client = Some(self.connect().await?);
            }
            let row = ResultRow::of(result);
            client
                .as_ref()
                .expect("connected above")
                .execute(
                    &format!(
                        "INSERT INTO \"{}\" (id, pipeline, name, sha256, state, error_code, pages,
                             summary_engine, summary, text, result, saved_at, tenant)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now(), $12)
                         ON CONFLICT (id) DO UPDATE SET
                             pipeline = EXCLUDED.pipeline, name = EXCLUDED.name,
                             sha256 = EXCLUDED.sha256, state = EXCLUDED.state,
                             error_code = EXCLUDED.error_code, pages = EXCLUDED.pages,
                             summary_engine = EXCLUDED.summary_engine,
                             summary = EXCLUDED.summary, text = EXCLUDED.text,
                             result = EXCLUDED.result, saved_at = EXCLUDED.saved_at,
                             tenant = EXCLUDED.tenant",
                        self.cfg.table
                    ),
                    &[
                        &row.id,
                        &row.pipeline,
                        &row.name,
                        &row.sha256,
                        &row.state,
                        &row.error_code,
                        &row.pages,
                        &row.summary_engine,
                        &row.summary,
                        &row.text,
                        &Json(&json),
                        &row.tenant,
                    ],
                )
                .await
        };
        let outcome = match tokio::time::timeout(self.cfg.timeout, attempt).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => classify(&e),
            Err(_) => SinkError::Transient(format!(
                "PostgreSQL: no answer within {:?}",
                self.cfg.timeout
            )),
        };
        // Start over with a fresh connection next time.
        *client = None;
        Err(outcome)
    }
}

/// A failed statement as a sink error: an error of SQLSTATE class 22 (data exception) or 23
/// (integrity constraint violation) is the row being refused, for good; anything else (no
/// connection, a server shutting down, serialization failures) may pass.
fn classify(e: &tokio_postgres::Error) -> SinkError {
    let message = match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => format!("PostgreSQL: {e}"),
    };
    match e.code().map(|state| state.code()) {
        Some(code) if code.starts_with("22") || code.starts_with("23") => {
            SinkError::Permanent(message)
        }
        _ => SinkError::Transient(message),
    }
}
