//! Why a cluster node cannot start or cannot reach the cluster: one error type, each kind with
//! a bounded `error_type()` for metric labels.

/// A cluster operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The command line or environment does not describe a usable connection.
    #[error("{0}")]
    Options(String),
    /// No NATS server of the list answered.
    #[error("cannot connect to NATS at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    /// A stream or bucket exists with settings other than the ones this node needs.
    #[error(
        "{what} exists with {setting} = {found}, but this node needs {wanted}; change the node's \
         flags, or change or remove {what} (e.g. `nats stream edit`)"
    )]
    Mismatch {
        what: String,
        setting: &'static str,
        found: String,
        wanted: String,
    },
    /// JetStream refused or failed a request.
    #[error("{what}: {reason}")]
    JetStream { what: String, reason: String },
    /// NATS is not reachable now; the request may succeed later.
    #[error("NATS is unreachable: {0}")]
    Unreachable(String),
}

impl ClusterError {
    /// A bounded label for metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            ClusterError::Options(_) => "options",
            ClusterError::Connect { .. } => "connect",
            ClusterError::Mismatch { .. } => "mismatch",
            ClusterError::JetStream { .. } => "jetstream",
            ClusterError::Unreachable(_) => "unreachable",
        }
    }

    /// A JetStream failure of `what`, from any error.
    pub(crate) fn jetstream(what: impl Into<String>, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::JetStream {
            what: what.into(),
            reason: e.to_string(),
        }
    }
}
