//! The SQLite sink (`save.sqlite`): one row per job in a table of a user-named database.
//!
//! The database and table are created if missing. Rows are keyed by job id and written with
//! an upsert, so a job delivered twice (a retry, a restart) is still one row. Each write is
//! its own transaction; the connection is opened on first use and reopened after an error.

use std::sync::Mutex;

use rusqlite::{Connection, params};

use crate::config::SqliteSinkConfig;
use crate::model::result::JobResult;

use super::sinks::{ResultRow, SinkError};

pub struct SqliteSink {
    pub cfg: SqliteSinkConfig,
    conn: Mutex<Option<Connection>>,
}

impl SqliteSink {
    pub fn new(cfg: SqliteSinkConfig) -> SqliteSink {
        SqliteSink {
            cfg,
            conn: Mutex::new(None),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        if let Some(dir) = self.cfg.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(&self.cfg.path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS \"{}\" (
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
                 result TEXT NOT NULL,
                 saved_at TEXT NOT NULL,
                 tenant TEXT
             )",
            self.cfg.table
        ))?;
        // A table made before tenants gains the column.
        let has_tenant = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{}') WHERE name = 'tenant'",
                self.cfg.table.replace('\'', "''")
            ))?
            .exists([])?;
        if !has_tenant {
            conn.execute_batch(&format!(
                "ALTER TABLE \"{}\" ADD COLUMN tenant TEXT",
                self.cfg.table
            ))?;
        }
        Ok(conn)
    }

    /// Writes (or replaces) the row of `result`; `body` is its saved JSON.
    pub fn upsert(&self, result: &JobResult, body: &[u8]) -> Result<(), SinkError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_none() {
            *conn = Some(self.open().map_err(|e| self.error(e))?);
        }
        let row = ResultRow::of(result);
        let written = conn.as_ref().expect("opened above").execute(
            &format!(
                "INSERT INTO \"{}\" (id, pipeline, name, sha256, state, error_code, pages,
                     summary_engine, summary, text, result, saved_at, tenant)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?12)
                 ON CONFLICT (id) DO UPDATE SET
                     pipeline = excluded.pipeline, name = excluded.name,
                     sha256 = excluded.sha256, state = excluded.state,
                     error_code = excluded.error_code, pages = excluded.pages,
                     summary_engine = excluded.summary_engine, summary = excluded.summary,
                     text = excluded.text, result = excluded.result,
                     saved_at = excluded.saved_at, tenant = excluded.tenant",
                self.cfg.table
            ),
            params![
                row.id,
                row.pipeline,
                row.name,
                row.sha256,
                row.state,
                row.error_code,
                row.pages,
                row.summary_engine,
                row.summary,
                row.text,
                String::from_utf8_lossy(body),
                row.tenant,
            ],
        );
        written.map(|_| ()).map_err(|e| {
            // Start over with a fresh connection next time.
            *conn = None;
            self.error(e)
        })
    }

    /// A failed statement as a sink error: a row the table refuses (a constraint it breaks, a
    /// value of the wrong type or size) is refused for good; anything else (busy, locked, I/O,
    /// a database that cannot be opened yet) may pass.
    fn error(&self, e: rusqlite::Error) -> SinkError {
        let message = format!("SQLite {}: {e}", self.cfg.path.display());
        let refused = matches!(
            e.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::ConstraintViolation
                    | rusqlite::ErrorCode::TypeMismatch
                    | rusqlite::ErrorCode::TooBig
            )
        );
        if refused {
            SinkError::Permanent(message)
        } else {
            SinkError::Transient(message)
        }
    }
}
