//! Why a request to an LLM server failed, and whether trying again may help.

/// A request to an LLM server that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM server could not be reached: {0}")]
    Unreachable(String),
    #[error("the LLM server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the LLM server's answer has no message: {0}")]
    BadAnswer(String),
    #[error("the document does not fit the model's context even in small parts")]
    ContextOverflow,
    #[error("the summaries of the parts do not get shorter than the parts")]
    NotConverging,
    #[error("the LLM failed {0} documents in a row; requests are paused")]
    CircuitOpen(u32),
    #[error("{attempts} answers did not match the extraction schema; the last: {reason}")]
    NoValidExtraction { attempts: u32, reason: String },
}

impl LlmError {
    /// Whether the failure may pass by itself, so that waiting and trying again can mend it:
    /// the server cannot be reached or timed out, answered 429 or 5xx, or the circuit holds
    /// requests back. Other answers (400, 401, 404, a context overflow even in small parts, an
    /// answer without a message) would be the same the next time.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Unreachable(_) | LlmError::CircuitOpen(_) => true,
            LlmError::Status { status, .. } => is_overload_status(*status),
            LlmError::BadAnswer(_)
            | LlmError::ContextOverflow
            | LlmError::NotConverging
            | LlmError::NoValidExtraction { .. } => false,
        }
    }
}

/// Whether an HTTP status says the server is overloaded or failing for now: 429 or 5xx.
pub(crate) fn is_overload_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}
