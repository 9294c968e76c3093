//! Webhook delivery (docs/CONTRACT.md section 14), signed the Standard Webhooks way: the
//! secret is `whsec_` + base64 of the HMAC key; the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` is `v1,` + base64 of its
//! HMAC-SHA256. Pure; the queue consumer is `edge::webhooks`.

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The prefix Standard Webhooks gives a serialized secret.
const SECRET_PREFIX: &str = "whsec_";
/// Standard Webhooks asks for 24 to 64 bytes of key.
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;

/// The first redelivery waits this long when `WEBHOOK_RETRY_BASE_SECONDS` is unset.
pub const DEFAULT_RETRY_BASE_SECS: u32 = 30;
/// Cloudflare Queues delay a retry by at most 12 hours.
pub const MAX_RETRY_DELAY_SECS: u32 = 43_200;
/// How long one delivery may take before it counts as failed (and is retried).
pub const DELIVERY_TIMEOUT_MS: u32 = 10_000;

/// The HMAC key of a `whsec_<base64>` secret; `None` when it is not one (no webhooks are sent
/// then: a wrong secret would only produce signatures no receiver accepts).
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let key = Base64::decode_vec(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    (MIN_KEY_BYTES..=MAX_KEY_BYTES)
        .contains(&key.len())
        .then_some(key)
}

/// The `webhook-signature` value of `body` sent as `id` at `timestamp` (unix seconds).
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", Base64::encode_string(&mac.finalize().into_bytes()))
}

/// Whether a receiver's status acknowledges the event: any 2xx.
pub fn acknowledged(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The delay before the next delivery of an event first queued at `queued_ms` and failing at
/// `now_ms`: as long as it has waited so far (at least `base`), so the delays double -
/// base, base, 2 base, 4 base, ... - without the attempt count, which the runtime's
/// message does not expose to this Worker. At most the queue's maximum.
pub fn retry_delay_secs(base: u32, queued_ms: u64, now_ms: u64) -> u32 {
    let waited = (now_ms.saturating_sub(queued_ms) / 1000).min(MAX_RETRY_DELAY_SECS as u64) as u32;
    waited.max(base).clamp(1, MAX_RETRY_DELAY_SECS)
}

/// `WEBHOOK_RETRY_BASE_SECONDS`, or the default when unset or not a number from 1 to the max.
pub fn retry_base(var: Option<&str>) -> u32 {
    var.and_then(|v| v.parse().ok())
        .filter(|n| (1..=MAX_RETRY_DELAY_SECS).contains(n))
        .unwrap_or(DEFAULT_RETRY_BASE_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its reference libraries.
    #[test]
    fn signs_the_standard_webhooks_example() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
        assert!(decode_secret("whsec_not base64!").is_none());
        assert!(decode_secret("whsec_AAAA").is_none());
        assert_eq!(
            decode_secret(&format!("whsec_{}", "A".repeat(32)))
                .unwrap()
                .len(),
            24
        );
    }

    #[test]
    fn only_2xx_acknowledges() {
        assert!(acknowledged(200) && acknowledged(204));
        assert!(!acknowledged(500) && !acknowledged(301) && !acknowledged(404));
    }

    #[test]
    fn retry_delays_double_from_the_base_up_to_the_queue_maximum() {
        let t0 = 1_000_000;
        assert_eq!(retry_delay_secs(30, t0, t0), 30);
        assert_eq!(retry_delay_secs(30, t0, t0 + 30_000), 30);
        assert_eq!(retry_delay_secs(30, t0, t0 + 60_000), 60);
        assert_eq!(retry_delay_secs(30, t0, t0 + 120_000), 120);
        assert_eq!(
            retry_delay_secs(1, t0, t0 + 999_999_000),
            MAX_RETRY_DELAY_SECS
        );
        assert_eq!(retry_base(Some("2")), 2);
        assert_eq!(retry_base(Some("0")), DEFAULT_RETRY_BASE_SECS);
        assert_eq!(retry_base(None), DEFAULT_RETRY_BASE_SECS);
    }
}
