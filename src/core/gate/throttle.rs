//! Failed-authentication throttling per client IP (docs/CONTRACT.md section 2, first row), the local half.
//!
//! Failures are counted by the Workers Rate Limiting binding (default 30 per 60 s, per
//! location). Once it refuses an IP, that IP goes on this isolate's block list for the rest of
//! the period, and its requests are answered 429 before any storage read. Successful
//! authentications are never counted, so a client with a valid key is not slowed by guessers.
//!
//! Clients are counted by [`client_key`]: an IPv6 client by its /64, since one subscriber is
//! usually given a whole /64 and could otherwise rotate through 2^64 addresses, each with a
//! fresh allowance.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use crate::core::error::Error;

/// How long an IP stays blocked here once the binding refuses it (the binding's period).
pub const BLOCK_MS: u64 = 60_000;
/// Bound on the block list, so a flood of addresses cannot grow an isolate's memory.
pub const MAX_BLOCKED: usize = 10_000;

/// Prefix length an IPv6 client is counted by: the usual size of one subscriber's allocation.
pub const IPV6_CLIENT_PREFIX_BITS: u32 = 64;

/// The bucket a client address is counted in, for the binding and the block list alike:
/// an IPv4 address as itself, an IPv6 address as its /64 (`2001:db8:1:2::/64`), an
/// IPv4-mapped IPv6 address as its IPv4 address (so those do not all share `::/64`), and a
/// value that is not an address as itself (never the case behind Cloudflare).
pub fn client_key(ip: &str) -> String {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let host_bits = 128 - IPV6_CLIENT_PREFIX_BITS;
                let network = (u128::from(v6) >> host_bits) << host_bits;
                format!("{}/{IPV6_CLIENT_PREFIX_BITS}", Ipv6Addr::from(network))
            }
        },
        Err(_) => ip.to_owned(),
    }
}

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
            // A try at an imported key while its one-time PBKDF2 check runs (section 15).
            | Error::KeyCheckInProgress { .. }
            // Settings: every refused link token (a missing or malformed one too, refused
            // before any object call: like a malformed key, it is still a guess) and a
            // well-formed cookie that the session's object refused (a guess that costs an
            // object call). Guessing is throttled like a key's. No cookie or a malformed one
            // is `MissingSession` and an ended session `SessionExpired`: neither counts.
            | Error::LinkExpired
            | Error::RefusedSession
            | Error::InvalidSignature
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
        assert!(counts_as_failure(&Error::LinkExpired));
        assert!(counts_as_failure(&Error::RefusedSession));
        // No cookie (a page opened without a session) and an ended session are no guesses.
        assert!(!counts_as_failure(&Error::MissingSession));
        assert!(!counts_as_failure(&Error::SessionExpired));
        assert!(!counts_as_failure(&Error::PermissionDenied("x")));
        assert!(!counts_as_failure(&Error::NotFound));
        // A try at an imported key whose check is running: counted, so that such tries (each an
        // object call) are throttled like guesses; an owner retrying after Retry-After makes few.
        assert!(counts_as_failure(&Error::KeyCheckInProgress {
            retry_after: 1
        }));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a = client_key("2001:db8:1:2::1");
        assert_eq!(a, "2001:db8:1:2::/64");
        for same in [
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            "2001:0db8:0001:0002:abcd::9",
            "2001:DB8:1:2:0:0:0:0",
            " 2001:db8:1:2::1 ",
        ] {
            assert_eq!(client_key(same), a, "{same}");
        }
        for other in ["2001:db8:1:3::1", "2001:db8::1", "2001:db9:1:2::1"] {
            assert_ne!(client_key(other), a, "{other}");
        }
        assert_eq!(client_key("::1"), "::/64");
    }

    #[test]
    fn ipv4_and_other_values_are_counted_as_themselves() {
        assert_eq!(client_key("203.0.113.7"), "203.0.113.7");
        assert_ne!(client_key("203.0.113.7"), client_key("203.0.113.8"));
        // IPv4-mapped IPv6 is the IPv4 client, not one /64 shared by every IPv4 address.
        assert_eq!(client_key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_ne!(
            client_key("::ffff:203.0.113.7"),
            client_key("::ffff:203.0.113.8")
        );
        assert_eq!(client_key("unknown"), "unknown");
        assert_eq!(client_key("not an ip"), "not an ip");
        assert_eq!(client_key(""), "");
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
        assert_eq!(b.len(), MAX_BLOCKED);
        assert!(b.check(&format!("ip{}", MAX_BLOCKED + 49), 2_000).is_some());
    }

    #[test]
    fn a_full_list_drops_its_ended_blocks_first_and_only_them() {
        let full = || {
            let mut b = BlockList::default();
            assert!(b.is_empty());
            for i in 0..MAX_BLOCKED {
                b.block(&format!("ip{i}"), 0);
            }
            assert!(!b.is_empty());
            b
        };
        // Every block ends at BLOCK_MS: one ms before, all are live and only one is dropped.
        let mut live = full();
        live.block("new", BLOCK_MS - 1);
        assert_eq!(live.len(), MAX_BLOCKED);
        assert!(live.check("new", BLOCK_MS - 1).is_some());
        // At BLOCK_MS all have ended: all are dropped, the new one stays.
        let mut ended = full();
        ended.block("new", BLOCK_MS);
        assert_eq!(ended.len(), 1);
    }
}
