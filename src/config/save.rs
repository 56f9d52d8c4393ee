//! The `save:` section: the results directory, output formats and sinks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::check::Checker;
use super::check::table_name;

/// Where results go unless a pipeline says otherwise.
pub const DEFAULT_RESULTS_DIR: &str = "results";

/// The longest side of a page's preview image, in pixels, unless a pipeline says otherwise.
pub const DEFAULT_PREVIEW_MAX_PX: u32 = 1600;
/// The smallest preview side a pipeline may ask for (0, no previews, aside).
const MIN_PREVIEW_MAX_PX: u32 = 100;
/// The largest preview side a pipeline may ask for.
const MAX_PREVIEW_MAX_PX: u32 = 10_000;

/// Retries of a failed delivery, for every sink, unless the pipeline says otherwise.
pub const DEFAULT_SINK_MAX_RETRIES: u32 = 5;
/// How long one delivery attempt to a webhook or PostgreSQL may take.
pub const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSave {
    /// Directory result JSON files are written to (relative to the working directory).
    #[serde(default)]
    pub directory: Option<Spanned<PathBuf>>,
    /// Files written beside each result JSON: `txt`, `hocr`, `alto`, `tsv`, `pdf`.
    #[serde(default)]
    pub formats: Option<Vec<OutputFormat>>,
    /// The longest side, in pixels, of the PNG preview kept of each OCRed page (served at
    /// `/v1/jobs/{id}/pages/{n}/preview`); 0: no previews.
    #[serde(default)]
    pub preview_max_px: Option<Spanned<u32>>,
    /// POST each result to a URL as well.
    #[serde(default)]
    pub webhook: RawWebhook,
    /// Also keep each result as a row of a table in an SQLite database.
    #[serde(default)]
    pub sqlite: RawSqliteSink,
    /// Also keep each result as a row of a table in PostgreSQL.
    #[serde(default)]
    pub postgres: RawPostgresSink,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSqliteSink {
    /// The database file (created if missing); empty: no SQLite sink.
    #[serde(default)]
    pub path: Option<Spanned<PathBuf>>,
    /// The results table (created if missing).
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    /// Retries of a failed delivery before it becomes a dead letter.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresSink {
    /// Connection string (`host=... user=... dbname=...` or a `postgresql://` URL); empty: no
    /// PostgreSQL sink.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// The results table (created if missing).
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    /// Retries of a failed delivery before it becomes a dead letter.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
    /// Time for one delivery attempt (connecting included).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Where results are POSTed; empty: no webhook.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// Environment variable with the HMAC-SHA256 signing secret; empty: unsigned.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Retries of a failed delivery before it becomes a dead letter.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
    /// Time for one delivery attempt.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// A file written beside the result JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Plain text, pages separated by form feeds (`<id>.txt`).
    Txt,
    /// hOCR: XHTML with page, block, line and word boxes (`<id>.hocr`).
    Hocr,
    /// ALTO XML (`<id>.alto.xml`).
    Alto,
    /// One row per word: page, box, confidence, text (`<id>.tsv`).
    Tsv,
    /// Searchable PDF: each OCRed page's image with its words as invisible text (`<id>.pdf`).
    Pdf,
}

impl OutputFormat {
    /// Every format, e.g. to find every file a job's result left.
    pub const ALL: [OutputFormat; 5] = [
        OutputFormat::Txt,
        OutputFormat::Hocr,
        OutputFormat::Alto,
        OutputFormat::Tsv,
        OutputFormat::Pdf,
    ];

    /// The format a name stands for, as pipelines write it (`txt`, `hocr`, ...).
    pub fn from_name(name: &str) -> Option<OutputFormat> {
        OutputFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format's name, as pipelines write it.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Txt => "txt",
            OutputFormat::Hocr => "hocr",
            OutputFormat::Alto => "alto",
            OutputFormat::Tsv => "tsv",
            OutputFormat::Pdf => "pdf",
        }
    }

    /// The media type of the format's files.
    pub fn media_type(self) -> &'static str {
        match self {
            OutputFormat::Txt => "text/plain; charset=utf-8",
            OutputFormat::Hocr => "application/xhtml+xml",
            OutputFormat::Alto => "application/xml",
            OutputFormat::Tsv => "text/tab-separated-values; charset=utf-8",
            OutputFormat::Pdf => "application/pdf",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SaveConfig {
    pub directory: PathBuf,
    pub formats: Vec<OutputFormat>,
    /// The longest side of each OCRed page's preview image; 0: none.
    pub preview_max_px: u32,
    pub webhook: Option<WebhookConfig>,
    pub sqlite: Option<SqliteSinkConfig>,
    pub postgres: Option<PostgresSinkConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SqliteSinkConfig {
    pub path: PathBuf,
    pub table: String,
    pub max_retries: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostgresSinkConfig {
    /// Not serialized: it may hold a password.
    #[serde(skip)]
    pub url: String,
    pub table: String,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookConfig {
    pub url: String,
    pub secret_env: Option<String>,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// Checks `save:`.
pub(crate) fn validate(c: &mut Checker<'_>, raw: &RawSave) -> SaveConfig {
    let directory = match &raw.directory {
        None => PathBuf::from(DEFAULT_RESULTS_DIR),
        Some(s) if s.value.as_os_str().is_empty() => {
            c.push(s, "save.directory must not be empty".into());
            PathBuf::new()
        }
        Some(s) => s.value.clone(),
    };

    let preview_max_px = match &raw.preview_max_px {
        None => DEFAULT_PREVIEW_MAX_PX,
        Some(s)
            if s.value != 0 && !(MIN_PREVIEW_MAX_PX..=MAX_PREVIEW_MAX_PX).contains(&s.value) =>
        {
            c.push(
                s,
                format!(
                    "save.preview_max_px must be 0 (no previews) or between {MIN_PREVIEW_MAX_PX} and {MAX_PREVIEW_MAX_PX}, got {}",
                    s.value
                ),
            );
            DEFAULT_PREVIEW_MAX_PX
        }
        Some(s) => s.value,
    };

    let w = &raw.webhook;
    let webhook = match &w.url {
        Some(u) if u.value.is_empty() => None,
        Some(u) if !(u.value.starts_with("http://") || u.value.starts_with("https://")) => {
            c.push(
                u,
                format!("save.webhook.url {:?} is not an http(s) URL", u.value),
            );
            None
        }
        Some(u) => Some(WebhookConfig {
            url: u.value.clone(),
            secret_env: w.secret_env.clone().filter(|v| !v.is_empty()),
            max_retries: c.in_range(
                &w.max_retries,
                "save.webhook.max_retries",
                DEFAULT_SINK_MAX_RETRIES,
                0,
                100,
            ),
            timeout: w.timeout.unwrap_or(DEFAULT_SINK_TIMEOUT),
        }),
        None => None,
    };
    let sqlite = raw.sqlite.path.as_ref().and_then(|p| {
        if p.value.as_os_str().is_empty() {
            return None;
        }
        let s = &raw.sqlite;
        Some(SqliteSinkConfig {
            path: p.value.clone(),
            table: table_name(c, &s.table, "save.sqlite.table"),
            max_retries: c.in_range(
                &s.max_retries,
                "save.sqlite.max_retries",
                DEFAULT_SINK_MAX_RETRIES,
                0,
                100,
            ),
        })
    });
    let postgres = raw.postgres.url.as_ref().and_then(|u| {
        if u.value.is_empty() {
            return None;
        }
        let s = &raw.postgres;
        if let Err(e) = u.value.parse::<tokio_postgres::Config>() {
            c.push(
                u,
                format!("save.postgres.url is not a connection string: {e}"),
            );
        }
        Some(PostgresSinkConfig {
            url: u.value.clone(),
            table: table_name(c, &s.table, "save.postgres.table"),
            max_retries: c.in_range(
                &s.max_retries,
                "save.postgres.max_retries",
                DEFAULT_SINK_MAX_RETRIES,
                0,
                100,
            ),
            timeout: s.timeout.unwrap_or(DEFAULT_SINK_TIMEOUT),
        })
    });
    SaveConfig {
        directory,
        formats: raw.formats.clone().unwrap_or_default(),
        preview_max_px,
        webhook,
        sqlite,
        postgres,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_is_named_as_pipelines_write_it() {
        for format in OutputFormat::ALL {
            let written = serde_json::to_value(format).unwrap();
            assert_eq!(written, format.name(), "{format:?}");
            assert_eq!(OutputFormat::from_name(format.name()), Some(format));
        }
        assert_eq!(OutputFormat::from_name("docx"), None);
    }
}
