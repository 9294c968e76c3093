//! Failed-authentication throttling: the Rate Limiting binding counts failures per client IP;
//! the isolate-local [`BlockList`] answers blocked IPs without touching storage.

use std::cell::RefCell;

use worker::RateLimiter;

use crate::core::throttle::BlockList;
use crate::core::Error;

/// The bucket for requests without a client IP (never the case behind Cloudflare).
const UNKNOWN_IP: &str = "unknown";

thread_local! {
    static BLOCKED: RefCell<BlockList> = RefCell::new(BlockList::default());
}

pub use crate::core::throttle::counts_as_failure;

/// Seconds left if this IP is blocked here.
pub fn blocked(ip: Option<&str>, now_ms: u64) -> Option<u64> {
    let ip = ip.unwrap_or(UNKNOWN_IP);
    BLOCKED.with(|b| b.borrow().check(ip, now_ms))
}

/// Counts one failure. Past the limit the IP is blocked and this request already gets 429;
/// otherwise the original error stands. Without the binding (or if it errors) the failure is
/// still refused as it was: throttling can only ever make an answer stricter.
pub async fn record_failure<T>(
    limiter: Option<RateLimiter>,
    ip: Option<&str>,
    now_ms: u64,
    failure: Error,
) -> Result<T, Error> {
    let ip = ip.unwrap_or(UNKNOWN_IP);
    let Some(limiter) = limiter else {
        return Err(failure);
    };
    match limiter.limit(ip.to_owned()).await {
        Ok(outcome) if !outcome.success => {
            BLOCKED.with(|b| b.borrow_mut().block(ip, now_ms));
            Err(Error::TooManyFailedAttempts {
                retry_after: crate::core::throttle::BLOCK_MS / 1000,
            })
        }
        _ => Err(failure),
    }
}
