//! Times as the contract writes them: RFC 3339, UTC, to the second.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats unix seconds as RFC 3339 UTC, to the second (`2026-01-02T03:04:05Z`).
pub fn format_time(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses RFC 3339 (any offset) to unix seconds; fractions are dropped (an expiry therefore
/// never lands later than asked).
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

/// The earlier of two optional expiries (`None` is "never").
pub fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2030-01-01T01:00:00+01:00"), Some(1_893_456_000));
        assert_eq!(parse_time("2030-01-01"), None);
    }
}
