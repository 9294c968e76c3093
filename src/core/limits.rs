//! The shapes of a limit (docs/CONTRACT.md sections 4, 13 and 17): a rate limit (`requests`
//! per `window_seconds`) and a run quota (`runs` per UTC day or month), with their bounds and
//! calendar periods. Plain values that a key's record, a pool and the configuration hold; the
//! arithmetic that applies them is in [`crate::core::ratelimit`] and [`crate::core::quota`].

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Bounds of a key's `rate_limit` (docs/CONTRACT.md section 4).
pub const MAX_RATE_REQUESTS: u32 = 1_000_000;
pub const MAX_RATE_WINDOW_SECS: u32 = 86_400;

/// `rate_limit` of a key: `requests` per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_seconds: u32,
}

impl RateLimit {
    /// Parses `DEFAULT_RATE_LIMIT`, e.g. `600/60`.
    pub fn parse(s: &str) -> Option<Self> {
        let (r, w) = s.trim().split_once('/')?;
        let rl = RateLimit {
            requests: r.trim().parse().ok()?,
            window_seconds: w.trim().parse().ok()?,
        };
        rl.is_valid().then_some(rl)
    }

    pub fn is_valid(&self) -> bool {
        (1..=MAX_RATE_REQUESTS).contains(&self.requests)
            && (1..=MAX_RATE_WINDOW_SECS).contains(&self.window_seconds)
    }

    /// Whether `self` allows no more than `other`: no larger burst (`requests`) and no higher
    /// sustained rate (`requests / window_seconds`, compared by cross-multiplication, exact).
    pub fn within(&self, other: &RateLimit) -> bool {
        self.requests <= other.requests
            && u64::from(self.requests) * u64::from(other.window_seconds)
                <= u64::from(other.requests) * u64::from(self.window_seconds)
    }
}

/// `600/60`: the form [`RateLimit::parse`] reads (also how the Worker tells the key's object).
impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, self.window_seconds)
    }
}

/// Largest `runs` accepted (a trigger quota above this is no quota in practice).
pub const MAX_QUOTA_RUNS: u32 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

/// A key's quota: at most `runs` job triggers per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub runs: u32,
    pub period: Period,
}

impl Quota {
    /// Whether `self` never allows more than `other` (same period, no more runs).
    pub fn within(&self, other: &Quota) -> bool {
        self.period == other.period && self.runs <= other.runs
    }
}

fn midnight(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or(i64::MAX)
}

fn date_of(now: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp(now, 0)
        .unwrap_or_default()
        .date_naive()
}

impl Period {
    /// Unix seconds of the start of the period holding `now` (UTC midnight, or the first of
    /// the month at midnight).
    pub fn start(self, now: i64) -> i64 {
        let d = date_of(now);
        match self {
            Period::Day => midnight(d),
            Period::Month => midnight(d.with_day(1).unwrap_or(d)),
        }
    }

    /// Unix seconds of the end of the period holding `now` (the next period's start).
    pub fn end(self, now: i64) -> i64 {
        let d = date_of(now);
        let next = match self {
            Period::Day => d.succ_opt(),
            Period::Month => d
                .with_day(1)
                .and_then(|first| first.checked_add_months(Months::new(1))),
        };
        next.map_or(i64::MAX, midnight)
    }
}
