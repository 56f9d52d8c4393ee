//! The webhook sink (`save.webhook`): POSTs each result JSON to a URL, at least once.
//!
//! The body is the result as saved; `Idempotency-Key` and `X-Pagemill-Job` carry the job id,
//! so a receiver that sees a job twice (after a retry, or a restart that ran the job again)
//! can tell. With `secret_env` set, `X-Pagemill-Signature: sha256=<hex>` is the HMAC-SHA256 of
//! the body under that secret. A transport error or a non-2xx answer fails the attempt; the
//! retries and dead letters are those of every sink ([`super::sinks`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::WebhookConfig;

use super::sinks::SinkError;

/// The HMAC-SHA256 signature header value of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The webhook sink of a pipeline.
pub struct WebhookSink {
    pub cfg: WebhookConfig,
    client: reqwest::Client,
}

impl WebhookSink {
    pub fn new(cfg: WebhookConfig) -> WebhookSink {
        WebhookSink {
            cfg,
            client: reqwest::Client::new(),
        }
    }

    /// One delivery attempt: POSTs `body` (the result JSON of job `job_id`).
    pub async fn post(&self, job_id: &str, body: &[u8]) -> Result<(), SinkError> {
        let mut request = self
            .client
            .post(&self.cfg.url)
            .timeout(self.cfg.timeout)
            .header("content-type", "application/json")
            .header("idempotency-key", job_id)
            .header("x-pagemill-job", job_id)
            .body(body.to_vec());
        let secret = self
            .cfg
            .secret_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok());
        if let Some(secret) = secret {
            request = request.header("x-pagemill-signature", signature(secret.as_bytes(), body));
        }
        let response = request
            .send()
            .await
            .map_err(|e| SinkError::Transient(e.to_string()))?;
        answer_to_outcome(response.status())
    }
}

/// What a receiver's status code means for the delivery: a 2xx took it; a 4xx refused it for
/// good, except 408 (timeout), 425 (too early) and 429 (too many requests), which ask to come
/// back; anything else is the receiver failing, which may pass.
fn answer_to_outcome(status: reqwest::StatusCode) -> Result<(), SinkError> {
    let message = format!("the receiver answered {status}");
    match status.as_u16() {
        200..=299 => Ok(()),
        408 | 425 | 429 => Err(SinkError::Transient(message)),
        400..=499 => Err(SinkError::Permanent(message)),
        _ => Err(SinkError::Transient(message)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_errors_are_final_except_those_that_ask_to_come_back() {
        use reqwest::StatusCode as S;
        let transient = |s: S| super::answer_to_outcome(s).unwrap_err().is_transient();
        assert!(super::answer_to_outcome(S::NO_CONTENT).is_ok());
        assert!(!transient(S::BAD_REQUEST));
        assert!(!transient(S::UNPROCESSABLE_ENTITY));
        assert!(!transient(S::NOT_FOUND));
        assert!(transient(S::TOO_MANY_REQUESTS));
        assert!(transient(S::REQUEST_TIMEOUT));
        assert!(transient(S::SERVICE_UNAVAILABLE));
        assert!(transient(S::INTERNAL_SERVER_ERROR));
    }

    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
