//! The queue consumer: POSTs each event the user logs handed to the `EVENTS` queue to
//! `WEBHOOK_URL`, signed the Standard Webhooks way ([`crate::core::webhook`]). A 2xx acks the
//! message; anything else, a timeout or a network error retries it with a doubling delay,
//! up to the queue's `max_retries`, then the dead-letter queue. At least once: the receiver
//! deduplicates by `webhook-id`, the event's stable id.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{
    console_log, event, AbortController, Context, Date, Delay, Env, Fetch, Headers, Message,
    MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder, Request, RequestInit,
    RequestRedirect,
};

use crate::core::names::{
    CONTENT_TYPE, JSON_TYPE, WEBHOOK_RETRY_BASE_VAR, WEBHOOK_SECRET, WEBHOOK_URL_VAR,
};
use crate::core::webhook::{
    acknowledged, decode_secret, retry_base, retry_delay_secs, signature, DELIVERY_TIMEOUT_MS,
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use crate::core::Cause;

#[event(queue)]
pub async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    // The one reader of vars and secrets outside `Config` (every request's are read there, once
    // per isolate): the queue consumer needs only its three, and a gateway whose other vars are
    // wrong must still deliver the events it recorded.
    let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
    let base = retry_base(var(WEBHOOK_RETRY_BASE_VAR).as_deref());
    let url = var(WEBHOOK_URL_VAR).filter(|u| !u.is_empty());
    let key = env
        .secret(WEBHOOK_SECRET)
        .ok()
        .and_then(|s| decode_secret(&s.to_string()));
    let (Some(url), Some(key)) = (url, key) else {
        // Unconfigured since the events were queued (or a secret that is not whsec_<base64>):
        // kept for when it is fixed, then the dead-letter queue.
        console_log!(
            "{}",
            serde_json::json!({"level": "error", "webhook": "not_configured"})
        );
        batch.retry_all_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(base)
                .build(),
        );
        return Ok(());
    };
    for msg in batch.messages()? {
        let delivered = deliver(&url, &key, msg.body()).await;
        log_delivery(&msg, delivered);
        match delivered {
            Ok(status) if acknowledged(status) => msg.ack(),
            _ => {
                let now = Date::now().as_millis();
                let delay = retry_delay_secs(base, msg.timestamp().as_millis(), now);
                msg.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(delay)
                        .build(),
                );
            }
        }
    }
    Ok(())
}

/// One delivery: the receiver's status, or `Err` on a network failure or timeout.
async fn deliver(url: &str, key: &[u8], body: &str) -> Result<u16, Cause> {
    let id = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
        .ok_or(Cause::WebhookEventId)?;
    let timestamp = (Date::now().as_millis() / 1000) as i64;
    let headers = Headers::new();
    let set = |k, v: &str| headers.set(k, v).map_err(|_| Cause::WebhookHeaders);
    set(CONTENT_TYPE, JSON_TYPE)?;
    set(HEADER_ID, &id)?;
    set(HEADER_TIMESTAMP, &timestamp.to_string())?;
    set(HEADER_SIGNATURE, &signature(key, &id, timestamp, body))?;
    let mut init = RequestInit::new();
    // A redirect is not followed: the signed event goes to WEBHOOK_URL and nowhere else (a
    // moved or compromised receiver could point anywhere); a 3xx is a failed delivery, retried.
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()))
        .with_redirect(RequestRedirect::Manual);
    let req = Request::new_with_init(url, &init).map_err(|_| Cause::WebhookRequest)?;
    let abort = AbortController::default();
    let signal = abort.signal();
    let fetch = Fetch::Request(req);
    let pending = Box::pin(fetch.send_with_signal(&signal));
    let timeout = Delay::from(Duration::from_millis(DELIVERY_TIMEOUT_MS as u64));
    futures_util::pin_mut!(timeout);
    let outcome = match select(pending, timeout).await {
        Either::Left((Ok(resp), _)) => Ok(resp.status_code()),
        Either::Left((Err(_), _)) => Err(Cause::WebhookNetwork),
        Either::Right(_) => {
            abort.abort();
            Err(Cause::WebhookTimeout)
        }
    };
    outcome
}

/// One line per delivery attempt: the event id and outcome, never the body.
fn log_delivery(msg: &Message<String>, delivered: Result<u16, Cause>) {
    let (status, cause) = match delivered {
        Ok(s) => (Some(s), None),
        Err(c) => (None, Some(c.name())),
    };
    let id = serde_json::from_str::<serde_json::Value>(msg.body())
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
    console_log!(
        "{}",
        serde_json::json!({"webhook": id, "status": status, "cause": cause})
    );
}
