//! The webhook sink (`save.webhook`): POSTs each result JSON to a URL, at least once.
//!
//! The body is the result as saved; `Idempotency-Key` and `X-Pagemill-Job` carry the job id,
//! so a receiver that sees a job twice (after a retry, or a restart that ran the job again)
//! can tell. With `secret_env` set, `X-Pagemill-Signature: sha256=<hex>` is the HMAC-SHA256 of
//! the body under that secret. Failed attempts (transport errors, non-2xx answers) are retried
//! with jittered exponential backoff (backon); when retries run out the delivery is recorded as
//! a dead letter in the journal, and the result stays in the results directory.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::WebhookConfig;
use crate::metrics as m;

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

/// Delivers one result; returns the number of attempts, or the last error.
pub async fn deliver(
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    pipeline: &str,
    job_id: &str,
    body: &[u8],
) -> Result<usize, String> {
    let secret = cfg
        .secret_env
        .as_ref()
        .and_then(|var| std::env::var(var).ok());
    let signed = secret.map(|s| signature(s.as_bytes(), body));
    let mut attempts = 0;
    let attempt = || {
        attempts += 1;
        let mut request = client
            .post(&cfg.url)
            .timeout(cfg.timeout)
            .header("content-type", "application/json")
            .header("idempotency-key", job_id)
            .header("x-pagemill-job", job_id)
            .body(body.to_vec());
        if let Some(signed) = &signed {
            request = request.header("x-pagemill-signature", signed);
        }
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered {status}"))
            }
        }
    };
    let delivered = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(30))
                .with_max_times(cfg.max_retries as usize)
                .with_jitter(),
        )
        .notify(|_, _| {
            metrics::counter!(m::SINK_DELIVERIES, "pipeline" => pipeline.to_string(), "sink" => "webhook", "outcome" => "retried")
                .increment(1);
        })
        .await;
    let outcome = if delivered.is_ok() {
        "delivered"
    } else {
        "dead_letter"
    };
    metrics::counter!(m::SINK_DELIVERIES, "pipeline" => pipeline.to_string(), "sink" => "webhook", "outcome" => outcome)
        .increment(1);
    delivered.map(|()| attempts)
}

#[cfg(test)]
mod tests {
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
