//! The system's notices about a key's use (docs/CONTRACT.md sections 12 and 14): a quota's
//! threshold (`quota.threshold`, 80 %) and exhaustion (`quota.exhausted`), and a rate limit
//! exceeded (`rate_limit.exceeded`, at most once per subject per UTC hour). Which run or
//! refusal gives rise to a notice, and the notice itself, are decided here; the glue only
//! records them.
//!
//! A notice is about a [`Subject`]: today a key. Shared limits (per user or per workspace) are
//! expected to emit the same notices with `data.pool` in place of a key id; they would be one
//! more variant here, with their own dedup tag, and the callers would not change.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::core::events::{Actor, Change, ChangeKind};
use crate::core::pool::{PoolKind, PoolRef};
use crate::core::quota::{Quota, RunVerdict, THRESHOLD_PERCENT};
use crate::core::ratelimit::RateLimit;
use crate::core::time::format_time;

/// `data.percent` of `quota.exhausted`.
pub const EXHAUSTED_PERCENT: u32 = 100;

/// Seconds in the period of the rate-limit notice: at most one per subject per UTC hour.
pub const NOTICE_HOUR_SECS: i64 = 3_600;

/// Subjects an isolate remembers having notified this hour. Past it the memory is cleared:
/// the worst that does is one more (deduplicated) call per subject, while the memory of an
/// isolate that sees a great many rate-limited keys stays small.
pub const MAX_REMEMBERED_SUBJECTS: usize = 4_096;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// An API key: its id and its user's.
    Key { id: &'a str, user_id: &'a str },
    /// A shared limit (docs/CONTRACT.md section 17): a user's pool notices in the user's trail,
    /// a workspace's in the workspace's; `data.pool` names it.
    Pool(&'a PoolRef),
}

impl Subject<'_> {
    /// Names the subject in dedup ids and in the isolate's memory. A key's is its id alone,
    /// which keeps the ids of `quota.exhausted` notices recorded before subjects existed; a
    /// pool's is its storage name (`pool:...`, never a key id).
    pub fn tag(&self) -> String {
        match self {
            Subject::Key { id, .. } => (*id).to_owned(),
            Subject::Pool(pool) => pool.storage_name(),
        }
    }

    fn change(&self, kind: ChangeKind, mut details: Value, dedup: String) -> Change {
        let mut change = match self {
            Subject::Key { id, user_id } => Change::new(kind, Actor::System, user_id, Some(id)),
            Subject::Pool(pool) => {
                details["pool"] = serde_json::to_value(pool).unwrap_or(Value::Null);
                match pool.kind {
                    PoolKind::User => Change::new(kind, Actor::System, &pool.id, None),
                    PoolKind::Workspace => Change::for_workspace(kind, Actor::System, &pool.id),
                }
            }
        }
        .with_details(details);
        change.dedup = Some(dedup);
        change
    }
}

/// The notices that one run of `subject` under `quota` gives rise to, in the order they are
/// recorded: the threshold first, then the exhaustion (with `runs = 1` one run is both). Each
/// is once per subject and period: its id is built from the subject and the period's start.
pub fn run_notices(subject: &Subject<'_>, quota: &Quota, run: &RunVerdict) -> Vec<Change> {
    let marks = [
        (ChangeKind::QuotaThreshold, run.threshold, THRESHOLD_PERCENT),
        (ChangeKind::QuotaExhausted, run.exhausted, EXHAUSTED_PERCENT),
    ];
    marks
        .into_iter()
        .filter_map(|(kind, start, percent)| {
            let start = start?;
            let details = json!({
                "quota": quota,
                "period_start": format_time(start),
                "percent": percent,
            });
            let tag = subject.tag();
            let dedup = match kind {
                ChangeKind::QuotaExhausted => format!("quota:{tag}:{start}"),
                _ => format!("quota-threshold:{tag}:{start}"),
            };
            Some(subject.change(kind, details, dedup))
        })
        .collect()
}

/// The start (unix seconds) of the UTC hour holding `now`.
pub fn hour_start(now: i64) -> i64 {
    now.div_euclid(NOTICE_HOUR_SECS) * NOTICE_HOUR_SECS
}

/// `rate_limit.exceeded` for `subject` under `limit`, in the hour starting `hour_start`: one
/// entry however many isolates record it that hour (its id is the subject and the hour).
pub fn rate_limit_exceeded(subject: &Subject<'_>, limit: RateLimit, hour_start: i64) -> Change {
    let details = json!({
        "limit": {"requests": limit.requests, "window_seconds": limit.window_seconds},
        "hour_start": format_time(hour_start),
    });
    let dedup = format!("rate-limit:{}:{hour_start}", subject.tag());
    subject.change(ChangeKind::RateLimitExceeded, details, dedup)
}

/// An isolate's memory of the rate-limit notices it has sent: so that a client hammering a
/// rate-limited key costs at most one recording per isolate, subject and hour, not one per
/// refused request.
#[derive(Debug, Default)]
pub struct HourlyNotices {
    /// Subject tag -> start of the hour it was last notified in.
    sent: HashMap<String, i64>,
}

impl HourlyNotices {
    /// Whether a refusal of `tag` at `now` is to be notified: the hour's start when this
    /// isolate has not notified it yet this hour (and it is now remembered), else `None`.
    pub fn due(&mut self, tag: &str, now: i64) -> Option<i64> {
        let hour = hour_start(now);
        if self.sent.get(tag) == Some(&hour) {
            return None;
        }
        if self.sent.len() >= MAX_REMEMBERED_SUBJECTS && !self.sent.contains_key(tag) {
            self.sent.clear();
        }
        self.sent.insert(tag.to_owned(), hour);
        Some(hour)
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::quota::{Period, RunCount};
    use crate::core::time::parse_time;

    fn t(s: &str) -> i64 {
        parse_time(s).unwrap()
    }

    const KEY: Subject<'static> = Subject::Key {
        id: "key_1",
        user_id: "alice",
    };

    fn verdicts(runs: u32, now: i64) -> Vec<Vec<Change>> {
        let q = Quota {
            runs,
            period: Period::Day,
        };
        let mut c = RunCount::default();
        (0..runs + 2)
            .map(|_| run_notices(&KEY, &q, &c.take(&q, now)))
            .collect()
    }

    #[test]
    fn five_runs_notify_the_threshold_on_the_fourth_and_the_exhaustion_on_the_fifth() {
        let now = t("2026-05-20T13:00:00Z");
        let notes = verdicts(5, now);
        let kinds: Vec<Vec<&str>> = notes
            .iter()
            .map(|n| n.iter().map(|c| c.kind.name()).collect())
            .collect();
        let none: Vec<&str> = vec![];
        assert_eq!(
            kinds,
            vec![
                none.clone(),
                none.clone(),
                none.clone(),
                vec!["quota.threshold"],
                vec!["quota.exhausted"],
                none.clone(),
                none
            ]
        );
        let threshold = &notes[3][0];
        assert_eq!(threshold.actor, Actor::System);
        assert_eq!(threshold.key_id.as_deref(), Some("key_1"));
        assert_eq!(threshold.user_id, "alice");
        let event = threshold.event();
        assert_eq!(event.kind, "quota.threshold");
        assert_eq!(event.data["percent"], 80);
        assert_eq!(event.data["period_start"], "2026-05-20T00:00:00Z");
        assert_eq!(event.data["quota"], json!({"runs": 5, "period": "day"}));
        let exhausted = notes[4][0].event();
        assert_eq!(exhausted.data["percent"], 100);
        assert_ne!(event.id, exhausted.id);
    }

    #[test]
    fn a_single_run_quota_notifies_both_threshold_first() {
        let notes = verdicts(1, t("2026-05-20T13:00:00Z"));
        let kinds: Vec<_> = notes[0].iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![ChangeKind::QuotaThreshold, ChangeKind::QuotaExhausted]
        );
        assert!(notes[1..].iter().all(Vec::is_empty));
    }

    #[test]
    fn notices_are_once_per_key_and_period() {
        let now = t("2026-05-20T13:00:00Z");
        let again = verdicts(5, t("2026-05-20T23:00:00Z"));
        let first = verdicts(5, now);
        assert_eq!(first[3][0].id(), again[3][0].id(), "same day: the same id");
        let tomorrow = verdicts(5, t("2026-05-21T01:00:00Z"));
        assert_ne!(first[3][0].id(), tomorrow[3][0].id());
        // The exhaustion's id is unchanged from before thresholds existed.
        let start = t("2026-05-20T00:00:00Z");
        assert_eq!(
            first[4][0].dedup.as_deref(),
            Some(format!("quota:key_1:{start}").as_str())
        );
        let other = Subject::Key {
            id: "key_2",
            user_id: "alice",
        };
        let q = Quota {
            runs: 1,
            period: Period::Day,
        };
        let run = RunCount::default().take(&q, now);
        assert_ne!(
            run_notices(&other, &q, &run)[0].id(),
            run_notices(&KEY, &q, &run)[0].id()
        );
    }

    #[test]
    fn a_rate_limit_notice_carries_the_limit_and_the_hour() {
        let limit = RateLimit {
            requests: 2,
            window_seconds: 60,
        };
        let hour = hour_start(t("2026-05-20T13:59:59Z"));
        assert_eq!(hour, t("2026-05-20T13:00:00Z"));
        let change = rate_limit_exceeded(&KEY, limit, hour);
        let event = change.event();
        assert_eq!(event.kind, "rate_limit.exceeded");
        assert_eq!(event.data["actor"], json!({"type": "system"}));
        assert_eq!(
            event.data["limit"],
            json!({"requests": 2, "window_seconds": 60})
        );
        assert_eq!(event.data["hour_start"], "2026-05-20T13:00:00Z");
        assert_eq!(event.data.get("percent"), None);
        // Every isolate's notice of that hour is the same entry; the next hour's is another.
        assert_eq!(change.id(), rate_limit_exceeded(&KEY, limit, hour).id());
        let next = rate_limit_exceeded(&KEY, limit, hour + NOTICE_HOUR_SECS);
        assert_ne!(change.id(), next.id());
    }

    #[test]
    fn an_isolate_notifies_each_key_once_per_hour() {
        let mut memory = HourlyNotices::default();
        assert!(memory.is_empty());
        let now = t("2026-05-20T13:10:00Z");
        assert_eq!(memory.due("key_1", now), Some(t("2026-05-20T13:00:00Z")));
        for s in 1..3_000 {
            assert_eq!(memory.due("key_1", now + s), None, "hammered: no more");
        }
        assert!(memory.due("key_2", now).is_some(), "another key is its own");
        assert_eq!(memory.due("key_2", now + 60), None);
        let next_hour = t("2026-05-20T14:00:00Z");
        assert_eq!(memory.due("key_1", next_hour), Some(next_hour));
        assert_eq!(memory.due("key_1", next_hour + 1), None);
        assert_eq!(memory.len(), 2);
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut memory = HourlyNotices::default();
        let now = t("2026-05-20T13:10:00Z");
        for i in 0..MAX_REMEMBERED_SUBJECTS {
            assert!(memory.due(&format!("key_{i}"), now).is_some());
        }
        assert_eq!(memory.len(), MAX_REMEMBERED_SUBJECTS);
        // A key already remembered does not clear it.
        assert_eq!(memory.due("key_0", now), None);
        assert_eq!(memory.len(), MAX_REMEMBERED_SUBJECTS);
        // One more key clears it and starts again from that key.
        assert!(memory.due("key_new", now).is_some());
        assert_eq!(memory.len(), 1);
        assert!(!memory.is_empty());
        // A key forgotten that way may be notified again: the dedup id keeps that one entry.
        assert!(memory.due("key_0", now).is_some());
    }
}
