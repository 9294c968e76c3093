//! Usage per key, kept by the key's object (docs/CONTRACT.md section 12): requests per hour for
//! the last 48 hours and per day for the last 30 days, allowed and refused by the rate limit
//! apart, job triggers apart.
//!
//! How exact it is under leases (section 8): `allowed` counts tokens when the object grants
//! them, so a lease's batch is counted whole when it is handed to an isolate. A batch starts
//! at one token and is at most rate x LEASE_MS, and an isolate holds at most two (the one in
//! use and one renewal ahead), so `allowed` is at least the requests served and at most
//! 2 x rate x LEASE_MS per isolate above them (tokens left unused when a lease runs out are
//! counted, not returned); with `LEASE_MS = 0` it is exact. `refused` counts the object's own refusals plus those an isolate answered from its
//! over-limit cache, reported with its next call to the object (an isolate that ends before
//! it calls again loses its last few). `triggers` are job triggers (`POST .../run`), counted
//! exactly, one per attempt the object allows.
//!
//! Storage is sparse (only hours and days with use), pruned to the window on every change, so
//! a key's state stays a few hundred bytes at most.

use serde::{Deserialize, Serialize};

use crate::core::time::format_time;

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// Hours in the hourly series.
pub const HOURS: u64 = 48;
/// Days in the daily series.
pub const DAYS: u64 = 30;

/// What a count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Tokens granted (requests allowed).
    Allowed = 0,
    /// Requests refused by the rate limit.
    Refused = 1,
    /// Job triggers allowed.
    Triggers = 2,
}

/// `(period index, [allowed, refused, triggers])`, oldest first, only periods with use.
type Buckets = Vec<(u64, [u32; 3])>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, rename = "h")]
    hours: Buckets,
    #[serde(default, rename = "d")]
    days: Buckets,
}

impl Usage {
    /// Adds `n` of `what` at `now_ms`.
    pub fn add(&mut self, what: Count, n: u32, now_ms: u64) {
        if n == 0 {
            return;
        }
        add(&mut self.hours, now_ms / HOUR_MS, HOURS, what, n);
        add(&mut self.days, now_ms / DAY_MS, DAYS, what, n);
    }

    /// The dense series at `now_ms`: 48 hours and 30 days, oldest first, each ending with the
    /// current (partial) period.
    pub fn series(&self, now_ms: u64) -> Series {
        Series {
            hourly: dense(&self.hours, now_ms / HOUR_MS, HOURS, HOUR_MS),
            daily: dense(&self.days, now_ms / DAY_MS, DAYS, DAY_MS),
        }
    }
}

fn add(buckets: &mut Buckets, index: u64, keep: u64, what: Count, n: u32) {
    match buckets.last_mut() {
        Some((i, counts)) if *i == index => {
            counts[what as usize] = counts[what as usize].saturating_add(n)
        }
        // A clock that went backwards (another machine's object after a move) adds to the
        // newest bucket rather than reordering the series.
        Some((i, counts)) if *i > index => {
            counts[what as usize] = counts[what as usize].saturating_add(n)
        }
        _ => {
            let mut counts = [0; 3];
            counts[what as usize] = n;
            buckets.push((index, counts));
        }
    }
    let newest = buckets.last().map_or(index, |(i, _)| *i);
    buckets.retain(|(i, _)| i + keep > newest);
}

fn dense(buckets: &Buckets, current: u64, len: u64, period_ms: u64) -> Vec<Point> {
    let first = (current + 1).saturating_sub(len);
    (first..=current)
        .map(|index| {
            let counts = buckets
                .iter()
                .find(|(i, _)| *i == index)
                .map_or([0; 3], |(_, c)| *c);
            Point {
                start: format_time((index * period_ms / 1000) as i64),
                allowed: counts[Count::Allowed as usize],
                refused: counts[Count::Refused as usize],
                triggers: counts[Count::Triggers as usize],
            }
        })
        .collect()
}

/// One period of the series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The period's start, RFC 3339.
    pub start: String,
    pub allowed: u32,
    pub refused: u32,
    pub triggers: u32,
}

/// What `GET /v1/api-keys/{id}/usage` shows (with the key id and how it is counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    pub hourly: Vec<Point>,
    pub daily: Vec<Point>,
}

/// How `allowed` is counted, as the usage answer states it.
pub const COUNTED: &str = "allowed: tokens granted to isolates, at least the requests served and at most two lease batches per isolate above them (exact with LEASE_MS=0); refused: by the key's object, and by isolates at their next call to it; triggers: exact";

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000 / DAY_MS * DAY_MS; // a UTC midnight

    #[test]
    fn counts_land_in_their_hour_and_day() {
        let mut u = Usage::default();
        u.add(Count::Allowed, 3, T0 + 10);
        u.add(Count::Refused, 2, T0 + 20);
        u.add(Count::Triggers, 1, T0 + HOUR_MS + 5);
        u.add(Count::Allowed, 0, T0 + HOUR_MS + 5);
        let s = u.series(T0 + HOUR_MS + 6);
        assert_eq!(s.hourly.len(), HOURS as usize);
        assert_eq!(s.daily.len(), DAYS as usize);
        let last = &s.hourly[HOURS as usize - 1];
        let before = &s.hourly[HOURS as usize - 2];
        assert_eq!((last.allowed, last.refused, last.triggers), (0, 0, 1));
        assert_eq!((before.allowed, before.refused, before.triggers), (3, 2, 0));
        assert_eq!(before.start, format_time((T0 / 1000) as i64));
        let today = &s.daily[DAYS as usize - 1];
        assert_eq!((today.allowed, today.refused, today.triggers), (3, 2, 1));
        assert_eq!(s.daily[0].allowed, 0);
    }

    #[test]
    fn old_periods_leave_the_window_and_storage() {
        let mut u = Usage::default();
        for h in 0..100 {
            u.add(Count::Allowed, 1, T0 + h * HOUR_MS);
        }
        assert_eq!(u.hours.len(), HOURS as usize, "only 48 hours are kept");
        assert!(u.days.len() <= DAYS as usize);
        let s = u.series(T0 + 99 * HOUR_MS);
        assert!(s.hourly.iter().all(|p| p.allowed == 1));
        // Two days later with no use, the hourly series is empty, the daily one is not.
        let later = u.series(T0 + 99 * HOUR_MS + 2 * DAY_MS);
        assert!(later.hourly.iter().all(|p| p.allowed == 0));
        assert_eq!(later.daily.iter().map(|p| p.allowed).sum::<u32>(), 100);
    }

    #[test]
    fn counts_saturate_and_a_clock_going_back_keeps_order() {
        let mut u = Usage::default();
        u.add(Count::Allowed, u32::MAX, T0 + HOUR_MS);
        u.add(Count::Allowed, 5, T0 + HOUR_MS);
        u.add(Count::Allowed, 1, T0);
        assert_eq!(u.hours, vec![(T0 / HOUR_MS + 1, [u32::MAX, 0, 0])]);
    }

    #[test]
    fn round_trips_compactly() {
        let mut u = Usage::default();
        u.add(Count::Allowed, 7, T0);
        let json = serde_json::to_string(&u).unwrap();
        assert!(json.len() < 80, "{json}");
        assert_eq!(serde_json::from_str::<Usage>(&json).unwrap(), u);
        assert_eq!(
            serde_json::from_str::<Usage>("{}").unwrap(),
            Usage::default()
        );
    }
}
