//! The state each key's Durable Object keeps, and every decision it makes, as plain Rust.
//!
//! One object per key id is the single owner of that key's rate-limit state, its revocation and
//! last use, and its idempotency records, so each is exact across isolates and locations: the
//! runtime delivers one event at a time to an object (input gates), and the glue applies these
//! functions between reading and writing its storage. The idempotency records' own decisions
//! are in [`crate::core::idempotency`]; the operations the object answers, in [`crate::core::keyop`].

use serde::{Deserialize, Serialize};

use crate::core::idempotency::{begin, Begin, Found, IdemRecord};
use crate::core::pool::PoolLimits;
use crate::core::quota::{Quota, RunCount, RunVerdict};
use crate::core::ratelimit::{gcra_take, Decision, RateLimit};
use crate::core::usage::{Count, Usage};

/// Rate limit, revocation, expiry override and last use of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// GCRA theoretical arrival time, in `ms * requests` (see [`crate::core::ratelimit`]). Kept as a
    /// decimal string: it exceeds the integers JavaScript storage holds exactly.
    #[serde(with = "u128_string")]
    pub tat: u128,
    /// The limit `tat` was computed under; a different limit starts afresh.
    pub limit: Option<RateLimit>,
    pub last_used_ms: Option<u64>,
    pub revoked_at: Option<String>,
    /// A shortened expiry (roll with grace), seen everywhere at once.
    pub expires_at: Option<i64>,
    /// Idempotency records the object holds (live or not yet swept), for their bound. Written
    /// in the same storage transaction as the record it counts.
    #[serde(default)]
    pub idem_records: u32,
    /// Requests per hour and day (docs/CONTRACT.md section 12).
    #[serde(default)]
    pub usage: Usage,
    /// Suspended (docs/CONTRACT.md section 13): refused like a revoked key, but reversible.
    #[serde(default)]
    pub disabled: bool,
    /// How many times `disabled` has flipped: names each suspension and resumption, so that
    /// recording one twice (a retry, or a request that read a lagging record) is one entry.
    #[serde(default)]
    pub disabled_seq: u64,
    /// Job triggers counted against the key's quota in its current period.
    #[serde(default)]
    pub runs: RunCount,
    /// A pool's object only: the pool's limits, authoritative over KV's copy (docs/CONTRACT.md
    /// section 17; [`crate::core::pool::PoolState`]). `None` in a key's object, or a deleted pool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolLimits>,
}

/// What [`KeyState::open_trigger`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The attempt's fate; `None` when its run was refused (nothing opened).
    pub decision: Option<Begin>,
    /// The idempotency record to write under the slot.
    pub store: Option<IdemRecord>,
    /// The run taken (or refused) for a new attempt of a key with a quota.
    pub run: Option<RunVerdict>,
    /// Whether the state changed with the record (one more record, or a run): written in the
    /// same commit as the record, so the two never disagree.
    pub save: bool,
}

/// What the object answers for one authenticated request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Hit {
    Revoked,
    Expired,
    /// Suspended: refused, and (unlike revoked or expired) only until enabled again.
    Disabled,
    Counted {
        decision: Decision,
        /// The expiry this object knows (a roll with grace shortens it here first): what a key
        /// minting keys is held to (docs/CONTRACT.md section 4).
        #[serde(default)]
        expires_at: Option<i64>,
        /// Tokens taken from the allowance by this call (a lease's batch; 0 when refused).
        #[serde(default = "one")]
        granted: u32,
    },
}

fn one() -> u32 {
    1
}

impl Hit {
    /// Whether the request was counted and allowed by the rate limit (the key is live, not
    /// suspended, and within its allowance): what a run, or an idempotency record, may follow.
    pub fn allowed(&self) -> bool {
        matches!(self, Hit::Counted { decision, .. } if decision.allowed)
    }
}

impl KeyState {
    /// Checks the revocation and expiry this object knows, then counts the request.
    pub fn hit(&mut self, limit: RateLimit, now_ms: u64) -> Hit {
        self.grant(limit, 1, now_ms)
    }

    /// Checks the revocation and expiry this object knows, then takes up to `want` tokens from
    /// the allowance at once (a lease, docs/CONTRACT.md section 8). The last use is recorded at
    /// each grant.
    pub fn grant(&mut self, limit: RateLimit, want: u32, now_ms: u64) -> Hit {
        self.grant_as(limit, want, now_ms, Count::Allowed)
    }

    /// [`Self::grant`], counting what is granted in the usage series as `what` (a job trigger
    /// is counted apart from other requests). A refusal counts one refused request; a revoked,
    /// expired or disabled key counts nothing (it is not a use of the allowance).
    pub fn grant_as(&mut self, limit: RateLimit, want: u32, now_ms: u64, what: Count) -> Hit {
        if self.revoked_at.is_some() {
            return Hit::Revoked;
        }
        if let Some(t) = self.expires_at {
            if (now_ms / 1000) as i64 >= t {
                return Hit::Expired;
            }
        }
        if self.disabled {
            return Hit::Disabled;
        }
        if self.limit != Some(limit) {
            self.tat = 0;
            self.limit = Some(limit);
        }
        let (tat, granted, decision) = gcra_take(self.tat, now_ms, limit, want);
        self.tat = tat;
        if decision.allowed {
            self.last_used_ms = Some(now_ms);
            self.usage.add(what, granted, now_ms);
        } else {
            self.usage.add(Count::Refused, 1, now_ms);
        }
        Hit::Counted {
            decision,
            expires_at: self.expires_at,
            granted,
        }
    }

    pub fn revoke(&mut self, at: &str) {
        if self.revoked_at.is_none() {
            self.revoked_at = Some(at.to_owned());
        }
    }

    /// One more idempotency record (a new slot was filled).
    pub fn record_added(&mut self) {
        self.idem_records = self.idem_records.saturating_add(1);
    }

    /// Idempotency records deleted (forgotten or swept).
    pub fn records_removed(&mut self, n: u32) {
        self.idem_records = self.idem_records.saturating_sub(n);
    }

    /// Counts one job trigger against `quota` at `now` (unix seconds), or refuses it.
    pub fn take_run(&mut self, quota: &Quota, now: i64) -> RunVerdict {
        self.runs.take(quota, now)
    }

    /// A job trigger without an `Idempotency-Key` of a key with a quota: the rate limit, then
    /// (if it allowed the request) one run, counted together so the quota is exact.
    pub fn run(
        &mut self,
        limit: RateLimit,
        quota: &Quota,
        now_ms: u64,
    ) -> (Hit, Option<RunVerdict>) {
        let hit = self.grant_as(limit, 1, now_ms, Count::Triggers);
        let run = hit
            .allowed()
            .then(|| self.take_run(quota, (now_ms / 1000) as i64));
        (hit, run)
    }

    /// The idempotent trigger's decision once its request was counted and allowed and the
    /// record under its slot read (docs/CONTRACT.md sections 6 and 13): replay, conflict, in
    /// flight, full, or a new attempt; a new attempt takes one run of `quota` (a replay, a
    /// conflict or an attempt in flight sends nothing to the origin, so takes none), and a
    /// refused run opens no record. The object writes what [`Opened`] says, in one commit.
    pub fn open_trigger(
        &mut self,
        found: Found<'_>,
        fingerprint: &str,
        lease_ms: u64,
        quota: Option<&Quota>,
        now_ms: u64,
    ) -> Opened {
        let opening = begin(found, fingerprint, now_ms, lease_ms, self.idem_records);
        let mut run = None;
        if let (Begin::Proceed { .. }, Some(quota)) = (&opening.decision, quota) {
            let verdict = self.take_run(quota, (now_ms / 1000) as i64);
            run = Some(verdict);
            if !verdict.allowed {
                return Opened {
                    decision: None,
                    store: None,
                    run,
                    save: false,
                };
            }
        }
        if opening.store.is_some() && opening.adds_record {
            self.record_added();
        }
        let save = opening.store.is_some() && (opening.adds_record || run.is_some());
        Opened {
            decision: Some(opening.decision),
            store: opening.store,
            run,
            save,
        }
    }

    /// Records an expiry; never extends one already known.
    pub fn expire_at(&mut self, t: i64) {
        self.expires_at = Some(self.expires_at.map_or(t, |old| old.min(t)));
    }
}

mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_without_granted_grants_one() {
        let h: Hit = serde_json::from_str(
            r#"{"outcome":"counted","decision":{"allowed":true,"limit":5,"remaining":4,"reset_secs":12,"retry_after_secs":0},"expires_at":null}"#,
        )
        .unwrap();
        assert!(matches!(h, Hit::Counted { granted: 1, .. }));
    }

    const RL: RateLimit = RateLimit {
        requests: 2,
        window_seconds: 10,
    };

    #[test]
    fn revocation_and_expiry_win_over_counting() {
        let mut s = KeyState::default();
        assert!(matches!(s.hit(RL, 1_000), Hit::Counted { decision, .. } if decision.allowed));
        assert_eq!(s.last_used_ms, Some(1_000));
        s.expire_at(100);
        s.expire_at(200);
        assert_eq!(s.expires_at, Some(100), "an expiry is never extended");
        assert_eq!(s.hit(RL, 100_000), Hit::Expired);
        assert!(matches!(s.hit(RL, 99_999), Hit::Counted { .. }));
        s.revoke("2026-01-01T00:00:00Z");
        s.revoke("2027-01-01T00:00:00Z");
        assert_eq!(s.revoked_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(s.hit(RL, 1_000), Hit::Revoked);
    }

    #[test]
    fn disabled_refuses_until_enabled_and_after_revoked_and_expired() {
        let mut s = KeyState {
            disabled: true,
            ..KeyState::default()
        };
        assert_eq!(s.hit(RL, 1_000), Hit::Disabled);
        assert_eq!(s.tat, 0, "a disabled key takes nothing from its allowance");
        s.expire_at(1);
        assert_eq!(s.hit(RL, 1_000), Hit::Expired);
        let mut s = KeyState {
            disabled: true,
            ..KeyState::default()
        };
        s.revoke("2026-01-01T00:00:00Z");
        assert_eq!(s.hit(RL, 1_000), Hit::Revoked);
        let mut s = KeyState {
            disabled: true,
            ..KeyState::default()
        };
        s.disabled = false;
        assert!(matches!(s.hit(RL, 1_000), Hit::Counted { decision, .. } if decision.allowed));
        // The answer travels as JSON in a header: the new outcome has its own tag.
        assert_eq!(
            serde_json::to_string(&Hit::Disabled).unwrap(),
            r#"{"outcome":"disabled"}"#
        );
    }

    #[test]
    fn grants_and_refusals_are_counted_in_usage() {
        let mut s = KeyState::default();
        s.grant(RL, 2, 5_000);
        s.grant_as(RL, 1, 5_001, Count::Triggers);
        let series = s.usage.series(5_002);
        let now = series.hourly.last().unwrap();
        assert_eq!((now.allowed, now.refused, now.triggers), (2, 1, 0));
        s.revoke("2026-01-01T00:00:00Z");
        s.grant(RL, 1, 5_003);
        assert_eq!(s.usage.series(5_004).hourly.last(), Some(now));
    }

    #[test]
    fn refused_requests_do_not_update_last_use() {
        let mut s = KeyState::default();
        s.hit(RL, 1);
        s.hit(RL, 2);
        assert!(matches!(s.hit(RL, 3), Hit::Counted { decision, .. } if !decision.allowed));
        assert_eq!(s.last_used_ms, Some(2));
    }

    #[test]
    fn state_round_trips_through_json_with_a_huge_tat() {
        let s = KeyState {
            tat: u128::from(u64::MAX) * 1_000_000,
            limit: Some(RL),
            ..KeyState::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"tat\":\""));
        assert_eq!(serde_json::from_str::<KeyState>(&json).unwrap(), s);
    }

    #[test]
    fn record_count_never_wraps_and_old_states_read_as_zero() {
        let mut s: KeyState = serde_json::from_str(
            r#"{"tat":"0","limit":null,"last_used_ms":null,"revoked_at":null,"expires_at":null}"#,
        )
        .unwrap();
        assert_eq!(s.idem_records, 0);
        assert!(!s.disabled);
        assert_eq!(s.runs, RunCount::default());
        s.records_removed(3);
        assert_eq!(s.idem_records, 0);
        s.record_added();
        s.record_added();
        s.records_removed(1);
        assert_eq!(s.idem_records, 1);
    }

    mod triggers {
        use super::super::*;
        use crate::core::idempotency::{StoredResponse, MAX_IDEMPOTENCY_RECORDS};
        use crate::core::quota::Period;

        const Q: Quota = Quota {
            runs: 1,
            period: Period::Day,
        };
        const NOW: u64 = 1_700_000_000_000;

        #[test]
        fn a_new_attempt_takes_a_run_and_opens_a_record_in_one_commit() {
            let mut s = KeyState::default();
            let o = s.open_trigger(Found::Empty, "fp", 30_000, Some(&Q), NOW);
            assert_eq!(o.decision, Some(Begin::Proceed { attempt: NOW }));
            assert!(o.store.is_some() && o.save);
            assert!(o.run.unwrap().allowed);
            assert_eq!(s.idem_records, 1);
            assert_eq!(s.runs.used, 1);
        }

        #[test]
        fn a_refused_run_opens_no_record() {
            let mut s = KeyState::default();
            s.take_run(&Q, (NOW / 1000) as i64);
            let o = s.open_trigger(Found::Empty, "fp", 30_000, Some(&Q), NOW);
            assert_eq!(o.decision, None);
            assert_eq!(o.store, None);
            assert!(!o.run.unwrap().allowed);
            assert_eq!(s.idem_records, 0);
        }

        #[test]
        fn a_replay_or_an_attempt_in_flight_takes_no_run() {
            let mut s = KeyState::default();
            let done = IdemRecord::Done {
                fingerprint: "fp".into(),
                stored_ms: NOW,
                response: StoredResponse::new(201, vec![], Some(b"{}".to_vec())),
            };
            let o = s.open_trigger(Found::Record(&done), "fp", 30_000, Some(&Q), NOW + 1);
            assert!(matches!(o.decision, Some(Begin::Replay { .. })));
            assert_eq!((o.run, o.store, o.save), (None, None, false));
            let flying = IdemRecord::InFlight {
                fingerprint: "fp".into(),
                started_ms: NOW,
                lease_ms: 30_000,
            };
            let o = s.open_trigger(Found::Record(&flying), "fp", 30_000, Some(&Q), NOW + 1);
            assert_eq!(o.decision, Some(Begin::InProgress));
            assert_eq!(o.run, None);
            assert_eq!(s.runs.used, 0);
        }

        #[test]
        fn a_lapsed_record_taken_over_adds_no_record_and_saves_only_a_run() {
            let lapsed = IdemRecord::InFlight {
                fingerprint: "fp".into(),
                started_ms: NOW - 60_000,
                lease_ms: 30_000,
            };
            let mut s = KeyState::default();
            let o = s.open_trigger(Found::Record(&lapsed), "fp", 30_000, None, NOW);
            assert_eq!(o.decision, Some(Begin::Proceed { attempt: NOW }));
            assert!(o.store.is_some());
            assert!(
                !o.save,
                "the slot was already counted, and no run was taken"
            );
            assert_eq!(s.idem_records, 0);
            let o = s.open_trigger(Found::Record(&lapsed), "fp", 30_000, Some(&Q), NOW);
            assert!(o.save, "the run is written with the record");
            assert_eq!(s.idem_records, 0);
            assert_eq!(s.runs.start, Period::Day.start((NOW / 1000) as i64));
        }

        #[test]
        fn a_full_key_opens_nothing_and_takes_no_run() {
            let mut s = KeyState {
                idem_records: MAX_IDEMPOTENCY_RECORDS,
                ..KeyState::default()
            };
            let o = s.open_trigger(Found::Empty, "fp", 30_000, Some(&Q), NOW);
            assert_eq!(o.decision, Some(Begin::Full));
            assert_eq!((o.run, o.store), (None, None));
        }

        #[test]
        fn a_quota_trigger_takes_a_run_only_when_its_rate_limit_allows() {
            let limit = RateLimit {
                requests: 1,
                window_seconds: 60,
            };
            let big = Quota {
                runs: 10,
                period: Period::Day,
            };
            let mut s = KeyState::default();
            let (hit, run) = s.run(limit, &big, NOW);
            assert!(hit.allowed() && run.unwrap().allowed);
            let (hit, run) = s.run(limit, &big, NOW + 1);
            assert!(!hit.allowed());
            assert_eq!(run, None, "a rate-limited trigger takes no run");
            assert_eq!(s.runs.used, 1);
            assert_eq!(s.runs.start, Period::Day.start((NOW / 1000) as i64));
        }
    }
}
