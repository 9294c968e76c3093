//! Failed-authentication throttling per client IP (docs/CONTRACT.md section 2, first row), the local half.
//!
//! Failures are counted by the Workers Rate Limiting binding (default 30 per 60 s, per
//! location). Once it refuses an IP, that IP goes on this isolate's block list for the rest of
//! the period, and its requests are answered 429 before any storage read. Successful
//! authentications are never counted, so a client with a valid key is not slowed by guessers.

use std::collections::HashMap;

use super::error::Error;

/// How long an IP stays blocked here once the binding refuses it (the binding's period).
pub const BLOCK_MS: u64 = 60_000;
/// Bound on the block list, so a flood of addresses cannot grow an isolate's memory.
pub const MAX_BLOCKED: usize = 10_000;

/// Whether an error is a failed authentication attempt (a credential was presented and was
/// wrong). A missing header is not a guess.
pub fn counts_as_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::MalformedApiKey
            | Error::InvalidApiKey
            | Error::RevokedApiKey
            | Error::ExpiredApiKey
            | Error::InvalidAdminToken
    )
}

/// IPs blocked until a time (unix ms).
#[derive(Debug, Default)]
pub struct BlockList {
    until: HashMap<String, u64>,
}

impl BlockList {
    /// Seconds left for a blocked IP (at least 1), or `None`.
    pub fn check(&self, ip: &str, now_ms: u64) -> Option<u64> {
        self.until
            .get(ip)
            .filter(|&&until| until > now_ms)
            .map(|until| (until - now_ms).div_ceil(1000).max(1))
    }

    pub fn block(&mut self, ip: &str, now_ms: u64) {
        if self.until.len() >= MAX_BLOCKED {
            self.until.retain(|_, until| *until > now_ms);
            if self.until.len() >= MAX_BLOCKED {
                // Still full of live entries: drop the one that ends soonest.
                if let Some(k) = self
                    .until
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(k, _)| k.clone())
                {
                    self.until.remove(&k);
                }
            }
        }
        self.until.insert(ip.to_owned(), now_ms + BLOCK_MS);
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_credentials_that_were_wrong() {
        assert!(counts_as_failure(&Error::MalformedApiKey));
        assert!(counts_as_failure(&Error::InvalidApiKey));
        assert!(counts_as_failure(&Error::RevokedApiKey));
        assert!(counts_as_failure(&Error::ExpiredApiKey));
        assert!(counts_as_failure(&Error::InvalidAdminToken));
        assert!(!counts_as_failure(&Error::MissingApiKey));
        assert!(!counts_as_failure(&Error::PermissionDenied("x")));
        assert!(!counts_as_failure(&Error::NotFound));
    }

    #[test]
    fn blocks_expire() {
        let mut b = BlockList::default();
        assert_eq!(b.check("1.2.3.4", 0), None);
        b.block("1.2.3.4", 1_000);
        assert_eq!(b.check("1.2.3.4", 1_000), Some(60));
        assert_eq!(b.check("1.2.3.4", 60_500), Some(1));
        assert_eq!(b.check("1.2.3.4", 61_000), None);
        assert_eq!(b.check("5.6.7.8", 1_000), None);
    }

    #[test]
    fn the_list_is_bounded() {
        let mut b = BlockList::default();
        for i in 0..(MAX_BLOCKED + 50) {
            b.block(&format!("ip{i}"), 1_000 + i as u64);
        }
        assert!(b.len() <= MAX_BLOCKED);
        assert!(b.check(&format!("ip{}", MAX_BLOCKED + 49), 2_000).is_some());
    }
}
