//! The `edges:`, `admission:` and `supervisor:` sections: how much may wait between stages and in the whole pipeline, and how crashed stages are restarted.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::check::Checker;
use super::check::ConfigIssue;
use crate::limits;

/// Document bytes accepted into one pipeline and not yet finished.
pub const DEFAULT_ADMISSION_BYTES: u64 = 1024 * 1024 * 1024;
/// Pages accepted by the daemon into one pipeline and not yet finished.
pub const DEFAULT_ADMISSION_PAGES: u64 = 1000;
/// Of those, the pages one tenant (API key) may hold, so that one tenant cannot fill the
/// whole budget.
pub const DEFAULT_ADMISSION_PAGES_PER_TENANT: u64 = 500;
/// Crashes of a stage one job may cause before it fails with `internal` instead of running
/// again.
pub const DEFAULT_MAX_JOB_CRASHES: u32 = 2;
/// Restart backoff of a crashed stage.
pub const DEFAULT_RESTART_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub const DEFAULT_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The capacity of each edge a pipeline leaves out.
pub const DEFAULT_EDGES: EdgesConfig = EdgesConfig {
    ingest_documents: 2,
    render_documents: 2,
    ocr_pages: 8,
    assemble_pages: 4,
    summarize_documents: 2,
    save_documents: 2,
};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEdges {
    /// Submitted documents waiting to be read and opened.
    #[serde(default)]
    pub ingest_documents: Option<Spanned<usize>>,
    /// Opened documents waiting to be rendered.
    #[serde(default)]
    pub render_documents: Option<Spanned<usize>>,
    /// Rendered pages waiting for or in OCR: bounds the page images in memory.
    #[serde(default)]
    pub ocr_pages: Option<Spanned<usize>>,
    /// Finished pages waiting to be assembled into their document.
    #[serde(default)]
    pub assemble_pages: Option<Spanned<usize>>,
    /// Assembled documents waiting for the summarizer.
    #[serde(default)]
    pub summarize_documents: Option<Spanned<usize>>,
    /// Summarized documents waiting to be saved.
    #[serde(default)]
    pub save_documents: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    /// Pages accepted and not yet finished; a job counts one page until it is opened.
    #[serde(default)]
    pub max_pages_in_system: Option<Spanned<u64>>,
    /// Of those, the pages one tenant (API key) may hold.
    #[serde(default)]
    pub max_pages_per_tenant: Option<Spanned<u64>>,
    /// Bytes of documents accepted and not yet finished, e.g. "1GiB".
    #[serde(default)]
    pub max_bytes_in_system: Option<Spanned<ByteSize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSupervisor {
    /// First delay before restarting a crashed stage, e.g. "100ms".
    #[serde(default, with = "humantime_serde::option")]
    pub restart_backoff_initial: Option<Duration>,
    /// Longest delay between restarts, e.g. "10s".
    #[serde(default, with = "humantime_serde::option")]
    pub restart_backoff_max: Option<Duration>,
    /// Crashes of a stage one job may cause before it fails with `internal`.
    #[serde(default)]
    pub max_job_crashes: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct EdgesConfig {
    pub ingest_documents: usize,
    pub render_documents: usize,
    pub ocr_pages: usize,
    pub assemble_pages: usize,
    pub summarize_documents: usize,
    pub save_documents: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AdmissionConfig {
    pub max_pages_in_system: u64,
    pub max_pages_per_tenant: u64,
    pub max_bytes_in_system: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SupervisorConfig {
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    pub max_job_crashes: u32,
}

/// Checks `edges:`, `admission:` and `supervisor:`; admission must hold at least one
/// document of `max_document_bytes`.
pub(crate) fn validate(
    c: &mut Checker<'_>,
    edges_raw: &RawEdges,
    admission_raw: &RawAdmission,
    supervisor_raw: &RawSupervisor,
    max_document_bytes: u64,
) -> (EdgesConfig, AdmissionConfig, SupervisorConfig) {
    let e = edges_raw;
    let mut edge = |v: &Option<Spanned<usize>>, key: &str, default: usize| {
        c.in_range(v, key, default, 1, limits::MAX_EDGE_CAPACITY)
    };
    let edges = EdgesConfig {
        ingest_documents: edge(
            &e.ingest_documents,
            "edges.ingest_documents",
            DEFAULT_EDGES.ingest_documents,
        ),
        render_documents: edge(
            &e.render_documents,
            "edges.render_documents",
            DEFAULT_EDGES.render_documents,
        ),
        ocr_pages: edge(&e.ocr_pages, "edges.ocr_pages", DEFAULT_EDGES.ocr_pages),
        assemble_pages: edge(
            &e.assemble_pages,
            "edges.assemble_pages",
            DEFAULT_EDGES.assemble_pages,
        ),
        summarize_documents: edge(
            &e.summarize_documents,
            "edges.summarize_documents",
            DEFAULT_EDGES.summarize_documents,
        ),
        save_documents: edge(
            &e.save_documents,
            "edges.save_documents",
            DEFAULT_EDGES.save_documents,
        ),
    };

    let admission = AdmissionConfig {
        max_pages_in_system: c.in_range(
            &admission_raw.max_pages_in_system,
            "admission.max_pages_in_system",
            DEFAULT_ADMISSION_PAGES,
            1,
            10_000_000,
        ),
        max_pages_per_tenant: c.in_range(
            &admission_raw.max_pages_per_tenant,
            "admission.max_pages_per_tenant",
            DEFAULT_ADMISSION_PAGES_PER_TENANT,
            1,
            10_000_000,
        ),
        max_bytes_in_system: match &admission_raw.max_bytes_in_system {
            None => DEFAULT_ADMISSION_BYTES,
            Some(s) if s.value.as_u64() < max_document_bytes => {
                c.push(
                    s,
                    "admission.max_bytes_in_system must be at least limits.max_document_bytes"
                        .into(),
                );
                DEFAULT_ADMISSION_BYTES
            }
            Some(s) => s.value.as_u64(),
        },
    };

    let supervisor = SupervisorConfig {
        restart_backoff_initial: supervisor_raw
            .restart_backoff_initial
            .unwrap_or(DEFAULT_RESTART_BACKOFF_INITIAL),
        restart_backoff_max: supervisor_raw
            .restart_backoff_max
            .unwrap_or(DEFAULT_RESTART_BACKOFF_MAX),
        max_job_crashes: match &supervisor_raw.max_job_crashes {
            None => DEFAULT_MAX_JOB_CRASHES,
            Some(s) if s.value == 0 => {
                c.push(s, "supervisor.max_job_crashes must be at least 1".into());
                DEFAULT_MAX_JOB_CRASHES
            }
            Some(s) => s.value,
        },
    };
    if supervisor.restart_backoff_max < supervisor.restart_backoff_initial {
        c.issues.push(ConfigIssue {
            file: c.file.to_path_buf(),
            line: 0,
            column: 0,
            message: "supervisor.restart_backoff_max must not be below restart_backoff_initial"
                .into(),
        });
    }
    (edges, admission, supervisor)
}
