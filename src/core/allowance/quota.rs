//! Job-trigger quotas (docs/CONTRACT.md section 13): at most `runs` triggers per UTC calendar
//! day or month, counted exactly by the key's object. This is the arithmetic: the periods and
//! the count; the object ([`crate::core::keystate`]) keeps the count, the glue carries it.

use serde::{Deserialize, Serialize};

pub use crate::core::limits::{Period, Quota, MAX_QUOTA_RUNS};

/// The share of a period's runs whose use is reported ahead of exhaustion (`quota.threshold`,
/// docs/CONTRACT.md section 14): early enough for a user to act before triggers are refused.
pub const THRESHOLD_PERCENT: u32 = 80;

/// The count whose run crosses [`THRESHOLD_PERCENT`] of `runs`: ceil(runs * 80 / 100), at
/// least 1 (so with `runs = 1` the threshold and the exhaustion are the same run).
pub fn threshold_runs(runs: u32) -> u32 {
    let share = (u64::from(runs) * u64::from(THRESHOLD_PERCENT)).div_ceil(100);
    u32::try_from(share).unwrap_or(runs).max(1)
}

/// The count of one key's runs in its current period, as its object keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCount {
    /// The period the count belongs to (its start, unix seconds); another period starts at 0.
    pub period: Option<Period>,
    pub start: i64,
    pub used: u32,
}

/// What the object answers about one trigger's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunVerdict {
    pub allowed: bool,
    /// Runs counted in this period, this one included when allowed.
    pub used: u32,
    /// Seconds until the period ends (the `Retry-After` of a refusal).
    pub retry_after_secs: u64,
    /// Set on the one run that used the last of the quota: the period's start, so the
    /// exhaustion is reported once per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted: Option<i64>,
    /// Set on the one run whose count first reaches [`threshold_runs`]: the period's start, so
    /// the threshold is reported once per period (the same run as `exhausted` when `runs` is 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
    /// The start of the period the run was counted in: a run given back is given back to that
    /// period only ([`RunCount::refund`]).
    #[serde(default)]
    pub start: i64,
}

impl RunCount {
    /// Runs used under `quota` in the period holding `now` (0 once a new period began). A count
    /// kept under the other period (the quota's period was changed, or isolates whose cached
    /// records disagree on it for a moment) still counts while its period overlaps the current
    /// one: alternating the period cannot reset the count.
    pub fn used(&self, quota: &Quota, now: i64) -> u32 {
        let Some(kept) = self.period else {
            return 0;
        };
        let start = quota.period.start(now);
        let overlaps = if kept == quota.period {
            self.start == start
        } else {
            self.start < quota.period.end(now) && kept.end(self.start) > start
        };
        if overlaps {
            self.used
        } else {
            0
        }
    }

    /// Gives back one run counted in the period that started at `start` (a trigger that took
    /// it was then refused elsewhere, docs/CONTRACT.md section 17). Once another period began,
    /// nothing is given back: the run counted in a period that no longer counts, and giving it
    /// back to the new one would be a free run.
    pub fn refund(&mut self, start: i64) {
        if self.period.is_some() && self.start == start {
            self.used = self.used.saturating_sub(1);
        }
    }

    /// Counts one run under `quota` at `now`, or refuses it when the period's runs are spent.
    pub fn take(&mut self, quota: &Quota, now: i64) -> RunVerdict {
        let used = self.used(quota, now);
        let retry_after_secs = (quota.period.end(now) - now).max(1) as u64;
        if used >= quota.runs {
            return RunVerdict {
                allowed: false,
                used,
                retry_after_secs,
                exhausted: None,
                threshold: None,
                start: quota.period.start(now),
            };
        }
        let start = quota.period.start(now);
        *self = RunCount {
            period: Some(quota.period),
            start,
            used: used + 1,
        };
        RunVerdict {
            allowed: true,
            used: used + 1,
            retry_after_secs,
            exhausted: (used + 1 == quota.runs).then_some(start),
            // Counts rise one run at a time, so exactly one run of a period meets it.
            threshold: (used + 1 == threshold_runs(quota.runs)).then_some(start),
            start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::parse_time;

    fn t(s: &str) -> i64 {
        parse_time(s).unwrap()
    }

    #[test]
    fn a_refund_gives_back_one_run_of_its_own_period_only() {
        let q = Quota {
            runs: 2,
            period: Period::Day,
        };
        let now = t("2026-12-03T10:00:00Z");
        let day = Period::Day.start(now);
        let mut c = RunCount::default();
        c.refund(day);
        assert_eq!(c, RunCount::default(), "nothing to give back");
        let first = c.take(&q, now);
        assert_eq!((first.start, first.used), (day, 1));
        assert_eq!(c.take(&q, now).used, 2);
        assert!(!c.take(&q, now).allowed);
        c.refund(day);
        assert_eq!(c.used(&q, now), 1);
        assert!(c.take(&q, now).allowed, "the refunded run is usable again");
        let tomorrow = now + 86_400;
        c.take(&q, tomorrow);
        c.refund(day);
        assert_eq!(
            c.used(&q, tomorrow),
            1,
            "yesterday's run is not given back to today"
        );
        c.refund(Period::Day.start(tomorrow));
        c.refund(Period::Day.start(tomorrow));
        assert_eq!(c.used, 0, "never below zero");
    }

    #[test]
    fn a_day_starting_when_the_month_ends_is_not_this_months() {
        let month = Quota {
            runs: 5,
            period: Period::Month,
        };
        let next_month_first_day = RunCount {
            period: Some(Period::Day),
            start: t("2026-12-01T00:00:00Z"),
            used: 3,
        };
        assert_eq!(
            next_month_first_day.used(&month, t("2026-11-30T12:00:00Z")),
            0
        );
        assert_eq!(
            next_month_first_day.used(&month, t("2026-12-01T12:00:00Z")),
            3
        );
    }

    #[test]
    fn utc_calendar_periods() {
        let now = t("2026-02-28T23:59:59Z");
        assert_eq!(Period::Day.start(now), t("2026-02-28T00:00:00Z"));
        assert_eq!(Period::Day.end(now), t("2026-03-01T00:00:00Z"));
        assert_eq!(Period::Month.start(now), t("2026-02-01T00:00:00Z"));
        assert_eq!(Period::Month.end(now), t("2026-03-01T00:00:00Z"));
        let dec = t("2026-12-31T12:00:00Z");
        assert_eq!(Period::Month.end(dec), t("2027-01-01T00:00:00Z"));
        let leap = t("2028-02-29T00:00:00Z");
        assert_eq!(Period::Day.start(leap), leap, "midnight starts its own day");
        assert_eq!(Period::Month.end(leap), t("2028-03-01T00:00:00Z"));
    }

    #[test]
    fn exactly_n_runs_then_refused_until_the_period_ends() {
        let q = Quota {
            runs: 3,
            period: Period::Day,
        };
        let now = t("2026-05-05T23:59:00Z");
        let mut c = RunCount::default();
        let verdicts: Vec<RunVerdict> = (0..5).map(|_| c.take(&q, now)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| v.allowed).count(),
            3,
            "N allowed, never N+1"
        );
        assert_eq!(verdicts[2].exhausted, Some(t("2026-05-05T00:00:00Z")));
        assert_eq!(verdicts.iter().filter(|v| v.exhausted.is_some()).count(), 1);
        assert!(!verdicts[3].allowed);
        assert_eq!(verdicts[3].retry_after_secs, 60);
        assert_eq!(c.used(&q, now), 3);
        // A new day starts afresh.
        let tomorrow = t("2026-05-06T00:00:00Z");
        assert_eq!(c.used(&q, tomorrow), 0);
        assert!(c.take(&q, tomorrow).allowed);
    }

    #[test]
    fn a_changed_period_keeps_the_overlapping_count_and_a_lowered_quota_holds_at_once() {
        let day = Quota {
            runs: 5,
            period: Period::Day,
        };
        let now = t("2026-06-01T08:00:00Z");
        let mut c = RunCount::default();
        c.take(&day, now);
        c.take(&day, now);
        let month = Quota {
            runs: 5,
            period: Period::Month,
        };
        // Today's runs are this month's too (finding 9 of the security review: isolates that
        // disagree on the period used to reset each other's count).
        assert_eq!(c.used(&month, now), 2);
        let mut flip = c;
        for _ in 0..10 {
            flip.take(&month, now);
            flip.take(&day, now);
        }
        assert_eq!(
            flip.used(&day, now),
            5,
            "alternating periods never passes the quota"
        );
        // A count of another period that does not overlap this one is gone.
        let next_month = t("2026-07-02T08:00:00Z");
        assert_eq!(c.used(&month, next_month), 0);
        let mut monthly = RunCount::default();
        monthly.take(&month, t("2026-05-20T08:00:00Z"));
        assert_eq!(monthly.used(&day, now), 0, "May's runs are not June 1st's");
        assert_eq!(monthly.used(&day, t("2026-05-31T08:00:00Z")), 1);
        let lower = Quota {
            runs: 2,
            period: Period::Day,
        };
        assert!(!c.take(&lower, now).allowed);
    }

    #[test]
    fn the_threshold_is_80_percent_rounded_up() {
        assert_eq!(threshold_runs(1), 1);
        assert_eq!(threshold_runs(2), 2);
        assert_eq!(threshold_runs(3), 3);
        assert_eq!(threshold_runs(5), 4);
        assert_eq!(threshold_runs(10), 8);
        assert_eq!(threshold_runs(11), 9);
        assert_eq!(threshold_runs(MAX_QUOTA_RUNS), 80_000_000);
        assert_eq!(threshold_runs(0), 1, "never the 0th run");
    }

    /// The runs (1-based) of one period that carry `threshold` and `exhausted`, over `runs + 3`
    /// triggers (so refusals are included); and each verdict's `threshold`.
    fn marks(runs: u32, period: Period, now: i64) -> (Vec<usize>, Vec<usize>, Vec<Option<i64>>) {
        let q = Quota { runs, period };
        let mut c = RunCount::default();
        let verdicts: Vec<RunVerdict> = (0..runs + 3).map(|_| c.take(&q, now)).collect();
        let at = |f: fn(&RunVerdict) -> Option<i64>| {
            verdicts
                .iter()
                .enumerate()
                .filter(|(_, v)| f(v).is_some())
                .map(|(i, _)| i + 1)
                .collect::<Vec<_>>()
        };
        let starts = verdicts.iter().map(|v| v.threshold).collect();
        (at(|v| v.threshold), at(|v| v.exhausted), starts)
    }

    #[test]
    fn one_run_per_period_crosses_the_threshold() {
        let now = t("2026-05-20T13:00:00Z");
        let day = t("2026-05-20T00:00:00Z");
        let month = t("2026-05-01T00:00:00Z");
        for (runs, threshold, exhausted) in [(1, 1, 1), (2, 2, 2), (5, 4, 5), (10, 8, 10)] {
            for (period, start) in [(Period::Day, day), (Period::Month, month)] {
                let (th, ex, starts) = marks(runs, period, now);
                assert_eq!(th, vec![threshold], "runs={runs} {period:?}");
                assert_eq!(ex, vec![exhausted], "runs={runs} {period:?}");
                assert_eq!(starts[threshold - 1], Some(start), "the period's start");
            }
        }
        // A refused run never carries it, and the next period crosses it again.
        let q = Quota {
            runs: 5,
            period: Period::Day,
        };
        let mut c = RunCount::default();
        let today: Vec<_> = (0..8).map(|_| c.take(&q, now)).collect();
        assert!(today[5..]
            .iter()
            .all(|v| !v.allowed && v.threshold.is_none()));
        let tomorrow = t("2026-05-21T00:00:01Z");
        let next: Vec<_> = (0..4).map(|_| c.take(&q, tomorrow)).collect();
        assert_eq!(next[3].threshold, Some(t("2026-05-21T00:00:00Z")));
        assert!(next[..3].iter().all(|v| v.threshold.is_none()));
    }

    #[test]
    fn an_old_object_answer_without_the_marks_still_reads() {
        let v: RunVerdict =
            serde_json::from_str(r#"{"allowed":true,"used":1,"retry_after_secs":5}"#).unwrap();
        assert_eq!((v.exhausted, v.threshold), (None, None));
        let json = serde_json::to_string(&v).unwrap();
        assert!(!json.contains("threshold"), "{json}");
    }

    #[test]
    fn within_means_same_period_and_no_more_runs() {
        let q = |runs, period| Quota { runs, period };
        assert!(q(5, Period::Day).within(&q(5, Period::Day)));
        assert!(q(4, Period::Day).within(&q(5, Period::Day)));
        assert!(!q(6, Period::Day).within(&q(5, Period::Day)));
        assert!(!q(1, Period::Month).within(&q(5, Period::Day)));
    }
}
