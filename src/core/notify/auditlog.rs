//! The per-user audit log (docs/CONTRACT.md section 12): how entries are keyed in the user's
//! Durable Object, its cursors, its retention, and the messages between the Worker and the
//! object. Pure; the object is `edge::auditlog_object`, its client `edge::auditlog`.
//!
//! Entries are keyed `e/<16 hex of u64::MAX - seq>`, `seq` being assigned by the object one
//! by one: storage lists keys in ascending order, so the newest entry comes first and a page
//! of the trail, newest first, is one list call starting at the cursor.

use crate::core::objectop::{operation, Message, OpTable};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Prefix of the audit entries.
pub const ENTRY_PREFIX: &str = "e/";
/// Prefix of the dedup index: change id → entry key. A change recorded twice is stored once.
pub const ID_PREFIX: &str = "id/";
/// Prefix of the webhook outbox: events not yet handed to the queue, oldest first.
pub const OUTBOX_PREFIX: &str = "o/";
/// The object's next sequence number.
pub const SEQ_KEY: &str = "seq";

/// How long an entry is kept: the contract promises at least 90 days; 400 covers a yearly
/// review with margin, and at a few hundred bytes an entry a busy user's log stays small.
pub const RETENTION_SECS: i64 = 400 * 86_400;
/// How often the retention sweep runs when nothing else wakes the object.
pub const LOG_SWEEP_INTERVAL_MS: u64 = 86_400_000;
/// Entries looked at per sweep; a full page re-arms the alarm at once.
pub const SWEEP_PAGE: usize = 200;
/// How soon the object retries handing its outbox to the queue after a failed send.
pub const OUTBOX_RETRY_MS: u64 = 10_000;
/// How soon the sweep runs again after a full page (more entries past retention may wait).
pub const SWEEP_AGAIN_MS: u64 = 1_000;
/// Outbox events sent per attempt (the rest wait for the next alarm, which comes at once).
pub const OUTBOX_PAGE: usize = 50;

/// Prefix of the user's keys as the object counts them for the per-user cap (`MAX_KEYS_PER_USER`,
/// docs/CONTRACT.md section 4): `k/<key id>` → the key's expiry (unix seconds, JSON; `null`
/// for none). A revoked key's entry is removed; an expired one stops counting.
pub const LIVE_KEY_PREFIX: &str = "k/";
/// The day's count of changes made by the user's keys and settings sessions.
pub const BUDGET_KEY: &str = "budget";
/// Key changes (create, roll, revoke, `PATCH`) a user's keys and settings sessions may make in
/// one UTC day; past it, 429 `too_many_changes` until the next day. Each change writes at most
/// two audit entries, so with [`RETENTION_SECS`] this bounds a user's trail (and its outbox)
/// whatever its keys do. The admin, leak reports and the Cron Trigger are not counted.
pub const MAX_CHANGES_PER_USER_PER_DAY: u32 = 1_000;

const DAY_SECS: i64 = 86_400;

/// One user's count of changes today ([`MAX_CHANGES_PER_USER_PER_DAY`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBudget {
    /// The UTC day counted (its start, unix seconds).
    pub day: i64,
    pub used: u32,
}

impl ChangeBudget {
    /// Takes one change at `now` (unix seconds), or refuses with the seconds to the next day.
    pub fn take(&mut self, now: i64) -> Result<(), u64> {
        let day = now.div_euclid(DAY_SECS) * DAY_SECS;
        if self.day != day {
            *self = ChangeBudget { day, used: 0 };
        }
        if self.used >= MAX_CHANGES_PER_USER_PER_DAY {
            return Err((day + DAY_SECS - now).max(1) as u64);
        }
        self.used += 1;
        Ok(())
    }
}

/// How long a counted key may be missing from the user's KV index before the count drops it:
/// longer than KV takes to show a new key everywhere (about 60 s), so a key just made is never
/// dropped, while an entry for a key that never reached KV (its create broke off after it was
/// counted) stops counting after this.
pub const UNLISTED_GRACE_SECS: i64 = 300;

/// One key as the user's object counts it under the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    /// Its expiry (unix seconds), if any: it stops counting then.
    pub e: Option<i64>,
    /// When it was counted (unix seconds).
    pub t: i64,
}

impl Counted {
    /// The entry as stored. Versions before this one wrote a bare expiry (a number) over the
    /// entry when a key's expiry was shortened: read as counted long ago with that expiry, so
    /// the reconciliation with KV's listing still applies to it.
    pub fn read(stored: &str) -> Option<Counted> {
        serde_json::from_str(stored).ok().or_else(|| {
            let e: i64 = serde_json::from_str(stored).ok()?;
            Some(Counted { e: Some(e), t: 0 })
        })
    }

    /// The same entry with its expiry shortened to `t` (never lengthened).
    pub fn shortened(self, t: i64) -> Counted {
        Counted {
            e: Some(self.e.map_or(t, |e| e.min(t))),
            t: self.t,
        }
    }
}

/// The object's count of live keys at `now`, and the entries to drop: expired ones, and ones
/// counted over [`UNLISTED_GRACE_SECS`] ago that a complete KV listing (`listed`: the ids of the
/// user's live keys) does not show (revoked, or never stored). Without a complete listing only
/// expired entries go.
pub fn reconcile(
    counted: &[(String, Counted)],
    listed: Option<&[String]>,
    now: i64,
) -> (u64, Vec<String>) {
    let mut live = 0;
    let mut gone = Vec::new();
    for (id, c) in counted {
        let expired = c.e.is_some_and(|t| now >= t);
        let unlisted = now - c.t > UNLISTED_GRACE_SECS
            && listed.is_some_and(|ids| !ids.iter().any(|l| l == id));
        if expired || unlisted {
            gone.push(id.clone());
        } else {
            live += 1;
        }
    }
    (live, gone)
}

/// Whether one more key may be admitted under `max`: the user's live keys are the larger of
/// the object's own count (exact: every create passes here one at a time) and the KV listing's
/// (`listed`), which still covers keys made before the object counted them.
pub fn admits(own: u64, listed: u64, max: u64) -> bool {
    own.max(listed) < max
}

/// Worker → object: count key `key_id` (expiring at `expires_at`) among the user's keys if
/// fewer than `max` are live at `now`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Admit {
    pub key_id: String,
    pub expires_at: Option<i64>,
    /// The user's live keys as the KV index lists them.
    pub listed: u64,
    /// Their ids, when the listing was read to its end ([`reconcile`]).
    pub listed_ids: Option<Vec<String>>,
    pub max: u64,
    pub now: i64,
}

/// Worker → object: key `key_id` was revoked (`expires_at` `None`: no longer counted) or its
/// expiry shortened to `expires_at`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Retire {
    pub key_id: String,
    pub expires_at: Option<i64>,
}

/// Object → Worker: whether the key was admitted (or a change allowed); `retry_after` with a
/// change refused for today.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Admitted {
    pub admitted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// Worker → object: take one of the day's changes at `now`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TakeChange {
    pub now: i64,
}

/// The storage key of sequence number `seq`.
pub fn entry_key(seq: u64) -> String {
    format!("{ENTRY_PREFIX}{:016x}", u64::MAX - seq)
}

/// The outbox key of sequence number `seq` (ascending: oldest sent first).
pub fn outbox_key(seq: u64) -> String {
    format!("{OUTBOX_PREFIX}{seq:016x}")
}

/// The public cursor of an entry key: its 16 hex digits.
pub fn cursor_of(entry_key: &str) -> Option<&str> {
    entry_key.strip_prefix(ENTRY_PREFIX)
}

/// The entry key a cursor names; `None` for anything this API did not hand out.
pub fn parse_cursor(cursor: &str) -> Option<String> {
    let ok = cursor.len() == 16
        && cursor
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| format!("{ENTRY_PREFIX}{cursor}"))
}

/// Whether an entry made at `at` (unix seconds) is past retention at `now`.
pub fn is_past_retention(at: i64, now: i64) -> bool {
    at < now - RETENTION_SECS
}

/// When the object's alarm runs next, after an alarm that flushed its outbox (`flushed`: the
/// outbox is empty) and swept (`more`: the sweep's page was full): the outbox first (events
/// must not wait a day), then the rest of a sweep, else the daily sweep.
pub fn next_alarm(now_ms: u64, flushed: bool, more: bool) -> u64 {
    now_ms
        + if !flushed {
            OUTBOX_RETRY_MS
        } else if more {
            SWEEP_AGAIN_MS
        } else {
            LOG_SWEEP_INTERVAL_MS
        }
}

/// What the object keeps per entry: the time (for the sweep) and the entry as shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    pub at: i64,
    pub entry: Value,
}

/// Worker → object: append one change. `event` is present when webhooks are configured: the
/// object then also keeps it in its outbox until the queue has it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Append {
    pub id: String,
    pub at: i64,
    pub entry: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// Worker → object: append several changes of the user in one call (the Cron Trigger's notices
/// of one page), each exactly as [`Append`].
#[derive(Debug, Serialize, Deserialize)]
pub struct AppendMany {
    pub changes: Vec<Append>,
}

/// Object → Worker: how many of an [`AppendMany`]'s changes were new.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppendedMany {
    pub stored: u32,
}

/// Object → Worker: whether the change was new (false: already recorded, nothing done).
#[derive(Debug, Serialize, Deserialize)]
pub struct Appended {
    pub stored: bool,
}

/// Worker → object: one page of the trail, from `start` (an entry key, from a cursor).
#[derive(Debug, Serialize, Deserialize)]
pub struct ListAsk {
    pub start: Option<String>,
    pub limit: usize,
}

/// Object → Worker: one page of the trail.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    pub results: Vec<Value>,
    pub next_cursor: Option<String>,
}

/// The operations of the log's object (`UserLogObject`): one table of paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOp {
    Append,
    /// Several changes in one call ([`AppendMany`]).
    AppendMany,
    List,
    /// Count a new key under the per-user cap ([`Admit`]).
    Admit,
    /// A counted key revoked or its expiry shortened ([`Retire`]).
    Retire,
    /// Take one of the day's changes ([`TakeChange`]).
    TakeChange,
}

impl OpTable for LogOp {
    const ALL: &'static [LogOp] = &[
        LogOp::Append,
        LogOp::AppendMany,
        LogOp::List,
        LogOp::Admit,
        LogOp::Retire,
        LogOp::TakeChange,
    ];

    fn path(self) -> &'static str {
        self.path()
    }
}

impl LogOp {
    pub const fn path(self) -> &'static str {
        match self {
            LogOp::Append => "/append",
            LogOp::AppendMany => "/append-many",
            LogOp::List => "/list",
            LogOp::Admit => "/admit",
            LogOp::Retire => "/retire",
            LogOp::TakeChange => "/take-change",
        }
    }
}

operation!(UserLog: Append => LogOp::Append.path(), Appended);
operation!(UserLog: AppendMany => LogOp::AppendMany.path(), AppendedMany);
operation!(UserLog: ListAsk => LogOp::List.path(), Page);
operation!(UserLog: Admit => LogOp::Admit.path(), Admitted);
operation!(UserLog: Retire => LogOp::Retire.path(), Admitted);
operation!(UserLog: TakeChange => LogOp::TakeChange.path(), Admitted);
impl Message for Appended {}
impl Message for AppendedMany {}
impl Message for Page {}
impl Message for Admitted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortened_entry_keeps_its_shape_and_old_bare_numbers_still_read() {
        let c = Counted { e: None, t: 100 };
        assert_eq!(
            c.shortened(500),
            Counted {
                e: Some(500),
                t: 100
            }
        );
        let later = Counted {
            e: Some(400),
            t: 100,
        };
        assert_eq!(later.shortened(500).e, Some(400), "never lengthened");
        let json = serde_json::to_string(&c.shortened(500)).unwrap();
        assert_eq!(
            Counted::read(&json),
            Some(Counted {
                e: Some(500),
                t: 100
            })
        );
        assert_eq!(Counted::read("500"), Some(Counted { e: Some(500), t: 0 }));
        assert_eq!(Counted::read("garbage"), None);
    }

    #[test]
    fn every_log_operation_has_its_own_path() {
        crate::core::objectop::assert_distinct_paths::<LogOp>();
    }

    #[test]
    fn a_users_changes_are_bounded_per_utc_day() {
        // Finding 12 of the security review.
        let day = 2_000_000_000i64.div_euclid(DAY_SECS) * DAY_SECS;
        let mut b = ChangeBudget::default();
        for _ in 0..MAX_CHANGES_PER_USER_PER_DAY {
            assert_eq!(b.take(day + 10), Ok(()));
        }
        assert_eq!(b.take(day + 100), Err((DAY_SECS - 100) as u64));
        assert_eq!(b.take(day + DAY_SECS - 1), Err(1));
        // The next day starts afresh.
        assert_eq!(b.take(day + DAY_SECS), Ok(()));
        assert_eq!(b.used, 1);
    }

    #[test]
    fn the_cap_counts_live_keys_exactly_and_never_fewer_than_kv_lists() {
        // Finding 14 of the security review.
        let now = 10_000;
        let c = |id: &str, e: Option<i64>, t: i64| (id.to_owned(), Counted { e, t });
        let counted = [
            c("open", None, now - 10_000),
            c("later", Some(now + 1), now - 10),
            c("expired", Some(now), now - 10),
            c("fresh_unlisted", None, now - 10),
            c("stale_unlisted", None, now - UNLISTED_GRACE_SECS - 1),
            c("at_grace_unlisted", None, now - UNLISTED_GRACE_SECS),
        ];
        let listed = ["open".to_owned(), "later".to_owned()];
        let (live, gone) = reconcile(&counted, Some(&listed), now);
        assert_eq!(
            live, 4,
            "open, later, the one just made that KV does not show yet, and one exactly at the grace"
        );
        assert_eq!(gone, ["expired", "stale_unlisted"]);
        // Without a complete listing, only what expired goes (a broken-off create counts on,
        // erring on the safe side).
        let (live, gone) = reconcile(&counted, None, now);
        assert_eq!((live, gone.len()), (5, 1));
        assert!(admits(2, 0, 3));
        assert!(!admits(3, 0, 3), "the object's own count is exact");
        assert!(
            !admits(0, 3, 3),
            "keys made before the object counted still count"
        );
        assert!(!admits(2, 3, 3));
    }

    #[test]
    fn newer_entries_sort_first() {
        let (a, b, c) = (entry_key(0), entry_key(1), entry_key(1_000_000));
        assert!(c < b && b < a);
        assert!(outbox_key(1) < outbox_key(2));
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let k = entry_key(42);
        let c = cursor_of(&k).unwrap();
        assert_eq!(parse_cursor(c), Some(k));
        for bad in [
            "",
            "xyz",
            "FFFFFFFFFFFFFFFF",
            "e/ffffffffffffffff",
            "fffffffffffffff",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_outbox_comes_before_the_sweep() {
        assert_eq!(next_alarm(0, false, true), OUTBOX_RETRY_MS);
        assert_eq!(next_alarm(0, true, true), SWEEP_AGAIN_MS);
        assert_eq!(next_alarm(0, true, false), LOG_SWEEP_INTERVAL_MS);
    }

    #[test]
    fn retention_keeps_at_least_ninety_days() {
        let now = 2_000_000_000;
        assert!(!is_past_retention(now - 90 * 86_400, now));
        assert!(!is_past_retention(now - RETENTION_SECS, now));
        assert!(is_past_retention(now - RETENTION_SECS - 1, now));
    }
}
