//! Collecting every problem of a pipeline file with its position, while the domain config
//! is built section by section.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

/// One problem found in a pipeline file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: PathBuf,
    /// 1-based line, 0 when the position is unknown.
    pub line: u64,
    /// 1-based column, 0 when the position is unknown.
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in one pipeline file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// Bounded label for metrics and logs.
    pub fn error_type(&self) -> &'static str {
        "invalid_config"
    }
}

/// Collects value problems while building the domain config.
pub(crate) struct Checker<'a> {
    pub(crate) file: &'a Path,
    pub(crate) issues: Vec<ConfigIssue>,
}

impl Checker<'_> {
    pub(crate) fn push<T>(&mut self, at: &Spanned<T>, message: String) {
        self.issues.push(ConfigIssue {
            file: self.file.to_path_buf(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message,
        });
    }

    /// Returns the value (or the default) after checking it lies in `min..=max`.
    pub(crate) fn in_range<T>(
        &mut self,
        v: &Option<Spanned<T>>,
        key: &str,
        default: T,
        min: T,
        max: T,
    ) -> T
    where
        T: PartialOrd + Copy + fmt::Display,
    {
        match v {
            None => default,
            Some(s) if s.value < min || s.value > max => {
                self.push(
                    s,
                    format!("{key} must be between {min} and {max}, got {}", s.value),
                );
                default
            }
            Some(s) => s.value,
        }
    }
}

/// A sink's table name: a plain SQL identifier (it is written into statements), `results` by
/// default.
pub(crate) fn table_name(
    c: &mut Checker<'_>,
    table: &Option<Spanned<String>>,
    key: &str,
) -> String {
    let Some(t) = table else {
        return "results".into();
    };
    let mut chars = t.value.chars();
    let plain = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && t.value.len() <= 63
        && !t.value.to_ascii_lowercase().starts_with("sqlite_");
    if !plain {
        c.push(
            t,
            format!(
                "{key} {:?} must be a plain name: letters, digits and _, not starting with a digit or sqlite_",
                t.value
            ),
        );
    }
    t.value.clone()
}
