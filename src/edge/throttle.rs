//! Failed-authentication throttling: the Rate Limiting binding counts failures per client
//! (IPv4 address, or IPv6 /64: [`client_key`]); the isolate-local [`BlockList`] answers blocked
//! clients without touching storage.

use std::cell::RefCell;

use worker::RateLimiter;

use super::fail::OrUnavailable;
use super::Ctx;
use crate::core::names::AUTH_FAILURES_BINDING;
use crate::core::throttle::{client_key, BlockList};
use crate::core::{Cause, Error};

/// The bucket for requests without a client IP (never the case behind Cloudflare).
const UNKNOWN_IP: &str = "unknown";

thread_local! {
    static BLOCKED: RefCell<BlockList> = RefCell::new(BlockList::default());
}

pub use crate::core::throttle::counts_as_failure;

/// Seconds left if this client is blocked here.
pub fn blocked(ip: Option<&str>, now_ms: u64) -> Option<u64> {
    let client = client_key(ip.unwrap_or(UNKNOWN_IP));
    BLOCKED.with(|b| b.borrow().check(&client, now_ms))
}

/// A request that authenticates needs the binding: without it failures could not be counted,
/// so guessing would be free. Fails closed (503) rather than skipping the count.
pub fn require_binding(ctx: &Ctx) -> Result<(), Error> {
    ctx.env
        .rate_limiter(AUTH_FAILURES_BINDING)
        .map(|_| ())
        .or_unavailable(Cause::AuthFailuresBinding)
}

/// Counts one failure. Past the limit the client is blocked and this request already gets 429;
/// otherwise the original error stands. Without the binding, or if it errors, the failure
/// cannot be counted and the request fails closed (503), with the cause in the log.
pub async fn record_failure<T>(
    limiter: Option<RateLimiter>,
    ip: Option<&str>,
    now_ms: u64,
    failure: Error,
) -> Result<T, Error> {
    let client = client_key(ip.unwrap_or(UNKNOWN_IP));
    let Some(limiter) = limiter else {
        return Err(Error::Unavailable(Cause::AuthFailuresBinding));
    };
    match limiter.limit(client.clone()).await {
        Ok(outcome) if !outcome.success => {
            BLOCKED.with(|b| b.borrow_mut().block(&client, now_ms));
            Err(Error::TooManyFailedAttempts {
                retry_after: crate::core::throttle::BLOCK_MS / 1000,
            })
        }
        Ok(_) => Err(failure),
        Err(_) => Err(Error::Unavailable(Cause::AuthFailuresLimit)),
    }
}
