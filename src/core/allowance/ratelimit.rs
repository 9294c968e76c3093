//! Per-key rate limiting by GCRA (the generic cell rate algorithm), docs/CONTRACT.md section 8.
//!
//! Why GCRA: one number of state per key (the theoretical arrival time, TAT), exact under any
//! interleaving once a single owner (the key's Durable Object) applies it, smooth refill instead
//! of window edges, and a burst of exactly `requests` from idle.
//!
//! Arithmetic is in integers scaled by `requests` so that a window that does not divide evenly
//! (60 s / 7) is still exact: with `n = requests` and `W = window` in ms, the emission interval
//! `W / n` becomes `W` and the burst tolerance `W - W / n` becomes `W * (n - 1)`, with times in
//! `ms * n`.

use serde::{Deserialize, Serialize};

pub use crate::core::limits::{RateLimit, MAX_RATE_REQUESTS, MAX_RATE_WINDOW_SECS};

const MS_PER_SEC: u128 = 1000;

/// What one request learned about its key's allowance: the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// `RateLimit-Limit`: requests per window.
    pub limit: u32,
    /// `RateLimit-Remaining` after this request.
    pub remaining: u32,
    /// `RateLimit-Reset`: seconds until a full allowance is back.
    pub reset_secs: u64,
    /// `Retry-After` when refused: seconds until one request is allowed again.
    pub retry_after_secs: u64,
}

fn ceil_div(a: u128, b: u128) -> u128 {
    a.div_ceil(b)
}

/// Applies one request at `now_ms` to the TAT (`ms * requests` units). Returns the new TAT
/// (unchanged when refused) and the decision.
pub fn gcra(tat: u128, now_ms: u64, limit: RateLimit) -> (u128, Decision) {
    let (tat, _, decision) = gcra_take(tat, now_ms, limit, 1);
    (tat, decision)
}

/// GCRA with a cost: takes up to `want` tokens at once (at least one is asked for), as many as
/// the allowance holds, found by one division rather than a loop. Returns the new TAT, the
/// number taken (0 when refused, TAT unchanged) and the decision after taking them. One call
/// with `want = k` takes exactly what `k` single calls at the same instant would.
pub fn gcra_take(tat: u128, now_ms: u64, limit: RateLimit, want: u32) -> (u128, u32, Decision) {
    let n = u128::from(limit.requests.max(1));
    let window = u128::from(limit.window_seconds.max(1)) * MS_PER_SEC;
    let now = u128::from(now_ms) * n;
    let interval = window;
    let tolerance = window * (n - 1);
    let base = tat.max(now);
    if base - now > tolerance {
        let retry_ms = ceil_div(base - now - tolerance, n);
        let reset_ms = ceil_div(base - now, n);
        return (
            tat,
            0,
            Decision {
                allowed: false,
                limit: limit.requests,
                remaining: 0,
                reset_secs: ceil_div(reset_ms, MS_PER_SEC) as u64,
                retry_after_secs: ceil_div(retry_ms, MS_PER_SEC).max(1) as u64,
            },
        );
    }
    // The k-th token (from 1) conforms while base + (k - 1) * interval - now <= tolerance.
    let fits = (tolerance - (base - now)) / interval + 1;
    let taken = fits.min(u128::from(want.max(1)));
    let new_tat = base + taken * interval;
    let used = new_tat - now;
    let remaining = (window * n).saturating_sub(used) / interval;
    let reset_ms = ceil_div(used, n);
    (
        new_tat,
        taken as u32,
        Decision {
            allowed: true,
            limit: limit.requests,
            remaining: remaining as u32,
            reset_secs: ceil_div(reset_ms, MS_PER_SEC) as u64,
            retry_after_secs: 0,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_PER_MINUTE: RateLimit = RateLimit {
        requests: 5,
        window_seconds: 60,
    };

    #[test]
    fn a_burst_of_exactly_the_limit_then_refusal() {
        let mut tat = 0;
        let now = 1_800_000_000_000;
        let mut remaining = vec![];
        for _ in 0..5 {
            let (t, d) = gcra(tat, now, FIVE_PER_MINUTE);
            assert!(d.allowed);
            remaining.push(d.remaining);
            tat = t;
        }
        assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
        let (t, d) = gcra(tat, now, FIVE_PER_MINUTE);
        assert!(!d.allowed);
        assert_eq!(t, tat, "a refused request consumes nothing");
        assert_eq!(d.retry_after_secs, 12);
        assert_eq!(d.reset_secs, 60);
    }

    #[test]
    fn allowance_refills_smoothly() {
        let now = 1_000_000;
        let mut tat = 0;
        for _ in 0..5 {
            tat = gcra(tat, now, FIVE_PER_MINUTE).0;
        }
        assert!(!gcra(tat, now + 11_999, FIVE_PER_MINUTE).1.allowed);
        let (_, d) = gcra(tat, now + 12_000, FIVE_PER_MINUTE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // After a whole idle window the full burst is back.
        let (_, d) = gcra(tat, now + 60_000, FIVE_PER_MINUTE);
        assert_eq!(d.remaining, 4);
    }

    #[test]
    fn uneven_windows_are_exact() {
        let seven = RateLimit {
            requests: 7,
            window_seconds: 60,
        };
        let mut tat = 0;
        let now = 5_000;
        for i in 0..7 {
            let (t, d) = gcra(tat, now, seven);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 6 - i);
            tat = t;
        }
        assert!(!gcra(tat, now, seven).1.allowed);
    }

    #[test]
    fn large_limits_do_not_overflow() {
        let big = RateLimit {
            requests: 1_000_000,
            window_seconds: 86_400,
        };
        let (tat, d) = gcra(0, u64::MAX / 2, big);
        assert!(d.allowed);
        assert_eq!(d.remaining, 999_999);
        assert!(tat > 0);
    }

    const DEFAULT: RateLimit = RateLimit {
        requests: 600,
        window_seconds: 60,
    };

    #[test]
    fn default_rate_limit_parsing() {
        assert_eq!(RateLimit::parse("600/60"), Some(DEFAULT));
        assert_eq!(RateLimit::parse("0/60"), None);
        assert_eq!(RateLimit::parse("600"), None);
        assert_eq!(RateLimit::parse("5/86401"), None);
    }

    #[test]
    fn rate_limit_display_round_trips() {
        let rl = RateLimit {
            requests: 1_000_000,
            window_seconds: 86_400,
        };
        assert_eq!(rl.to_string(), "1000000/86400");
        assert_eq!(RateLimit::parse(&rl.to_string()), Some(rl));
        assert_eq!(RateLimit::parse(&DEFAULT.to_string()), Some(DEFAULT));
    }

    #[test]
    fn within_compares_burst_and_rate() {
        let ten_per_minute = RateLimit {
            requests: 10,
            window_seconds: 60,
        };
        assert!(ten_per_minute.within(&ten_per_minute));
        assert!(RateLimit {
            requests: 5,
            window_seconds: 60
        }
        .within(&ten_per_minute));
        // Same burst, higher rate.
        assert!(!RateLimit {
            requests: 10,
            window_seconds: 30
        }
        .within(&ten_per_minute));
        // Lower rate, larger burst.
        assert!(!RateLimit {
            requests: 20,
            window_seconds: 3600
        }
        .within(&ten_per_minute));
        assert!(!RateLimit {
            requests: 1_000_000,
            window_seconds: 1
        }
        .within(&ten_per_minute));
    }

    #[test]
    fn taking_k_at_once_equals_k_single_takes() {
        for limit in [
            FIVE_PER_MINUTE,
            DEFAULT,
            RateLimit {
                requests: 7,
                window_seconds: 60,
            },
        ] {
            for start_tat in [0u128, 30_000 * u128::from(limit.requests)] {
                for want in 1..=12u32 {
                    let now = 1_000;
                    let (batch_tat, taken, batch) = gcra_take(start_tat, now, limit, want);
                    let (mut tat, mut singles, mut last) = (start_tat, 0u32, None);
                    for _ in 0..want {
                        let (t, d) = gcra(tat, now, limit);
                        if !d.allowed {
                            break;
                        }
                        tat = t;
                        singles += 1;
                        last = Some(d);
                    }
                    assert_eq!(taken, singles, "{limit} want {want}");
                    assert_eq!(batch_tat, tat);
                    if let Some(d) = last {
                        assert_eq!(batch, d);
                    } else {
                        assert!(!batch.allowed);
                    }
                }
            }
        }
    }
}
