//! Leased allowances (docs/CONTRACT.md section 8): each isolate decides a key's requests alone
//! from a batch of tokens its key's object granted, so the hot path makes no round trip.
//!
//! Why it stays safe: tokens leave the key's allowance when the object *grants* them (GCRA with a
//! cost, [`crate::core::ratelimit::gcra_take`]), never when an isolate uses them, so however many
//! isolates hold leases the object never hands out more than the limit allows. The only slack is
//! time: a token granted at `t` may be used until `t + LEASE_MS`, so in any interval a key is
//! served at most what GCRA allows over that interval stretched by `LEASE_MS`: its limit plus
//! `rate * LEASE_MS`. A batch never holds more than one lease period of the rate
//! ([`batch_cap`]), and a key whose `rate * LEASE_MS` is under one token gets batches of one:
//! the asking request uses it, nothing is held, and the key is exact (one object call per
//! request, as with `LEASE_MS = 0`). Tokens a lease did not use before its deadline are lost,
//! not returned: returning them could only give allowance back, and losing them keeps the bound
//! simple (an isolate never asks for more than it used recently, so little is lost).
//!
//! This module is the isolate's side, as plain data and arithmetic: the glue keeps one
//! [`LeaseTable`] per isolate, calls [`LeaseTable::take`] for each request, and reports the
//! object's answers back with [`LeaseTable::granted`] / [`LeaseTable::failed`]. Concurrent
//! requests of one isolate interleave only at awaits, so each call here is atomic.
//!
//! Length: the arithmetic is about 280 lines; the rest is its unit tests (the cross-isolate
//! property test lives in `tests/properties.rs` (property 6)).

use std::collections::HashMap;

use crate::core::keystate::Hit;
use crate::core::ratelimit::{Decision, RateLimit};

pub use crate::core::config::{DEFAULT_LEASE_MS, MAX_LEASE_MS};
/// A call to the object still unanswered after this long is presumed lost (its task was
/// cancelled, say): the next request asks again instead of waiting on it for ever.
pub const ASK_TIMEOUT_MS: u64 = 5000;
/// Keys whose lease an isolate remembers; past this the idle entries are dropped (a dropped
/// lease costs one object call, never correctness).
pub const MAX_LEASED_KEYS: usize = 10_000;

/// The largest batch for `limit`: one lease period of its rate, at least one token.
pub fn batch_cap(limit: RateLimit, lease_ms: u64) -> u32 {
    let per_lease =
        u64::from(limit.requests) * lease_ms / (u64::from(limit.window_seconds.max(1)) * 1000);
    per_lease.clamp(1, u64::from(u32::MAX)) as u32
}

/// Tokens granted together, usable until `deadline_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    tokens: u32,
    deadline_ms: u64,
}

/// One key's lease in this isolate.
#[derive(Debug, Default)]
struct Entry {
    /// At most two (the current one and its renewal), earliest deadline first.
    batches: Vec<Batch>,
    /// What the object said the key has left at the latest grant, counting that batch unused.
    remaining_at_grant: u32,
    /// Uses since the latest grant (for `RateLimit-Remaining` and the next batch's size).
    used_since_grant: u32,
    granted_last: u32,
    granted_at_ms: u64,
    limit: u32,
    reset_secs: u64,
    /// The object refused (over the limit): refused here, without asking, until then.
    refused_until_ms: u64,
    /// When one token is back as the object said: the `Retry-After` a refusal from the cache
    /// reports, even when the cache asks again sooner ([`LeaseTable::hold_refusal_until`]).
    retry_at_ms: u64,
    /// Requests refused here from that cache, not yet reported to the object (its usage
    /// series counts them, docs/CONTRACT.md section 12).
    refused_unreported: u32,
    /// The object said revoked or expired: refused here for good.
    dead: Option<Hit>,
    /// The object said disabled: refused here without asking until then (one lease period),
    /// then asked again, so enabling the key is seen within the same bound as disabling it.
    disabled_until_ms: u64,
    /// The key's expiry as its object knows it (unix seconds).
    expires_at: Option<i64>,
    /// One call to the object for this key is in flight from this isolate.
    asking: bool,
    /// When that call was sent.
    asked_at_ms: u64,
    /// This isolate revoked or rolled the key then: an answer to a call sent before is not
    /// installed (its tokens predate the change).
    forgotten_at_ms: Option<u64>,
}

impl Entry {
    /// A request refused here from the over-limit cache: counted for the next report.
    fn refuse_over_limit(&mut self, now_ms: u64) -> Hit {
        let wait_ms = self
            .retry_at_ms
            .max(self.refused_until_ms)
            .saturating_sub(now_ms);
        self.refused_unreported = self.refused_unreported.saturating_add(1);
        Hit::Counted {
            decision: Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_secs: self.reset_secs,
                retry_after_secs: wait_ms.div_ceil(1000).max(1),
            },
            expires_at: self.expires_at,
            granted: 0,
        }
    }

    fn tokens(&self) -> u32 {
        self.batches.iter().map(|b| b.tokens).sum()
    }

    /// The next batch's size: double the last one when half of it went in under half a lease
    /// period (a hot key ramps up quickly), else what was used since the last grant (an idle
    /// isolate asks for one); never above the cap.
    fn demand(&self, now_ms: u64, lease_ms: u64, cap: u32) -> u32 {
        let busy = self.used_since_grant.saturating_mul(2) >= self.granted_last.max(1)
            && now_ms < self.granted_at_ms.saturating_add(lease_ms / 2);
        let want = if busy {
            self.granted_last.saturating_mul(2)
        } else {
            self.used_since_grant
        };
        want.clamp(1, cap)
    }
}

/// What [`LeaseTable::take`] decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Decided here: the verdict (allowed from the lease, or refused: over the limit until its
    /// `Retry-After`, revoked, expired), and when the lease is half spent, a background renewal
    /// to start now for `renew` tokens.
    Decided { verdict: Hit, renew: Option<u32> },
    /// Another request of this isolate is asking the key's object: wait a moment (its answer
    /// serves this request too), then take again.
    Wait,
    /// Ask the key's object for `want` tokens (this request uses the first).
    Ask { want: u32 },
}

/// The leases of one isolate, by key id.
#[derive(Debug, Default)]
pub struct LeaseTable {
    entries: HashMap<String, Entry>,
}

impl LeaseTable {
    /// Decides one request of `key` at `now_ms`. `cap` is [`batch_cap`] of the key's limit.
    pub fn take(&mut self, key: &str, now_ms: u64, lease_ms: u64, cap: u32) -> Take {
        if !self.entries.contains_key(key) {
            self.make_room(now_ms);
        }
        let e = self.entries.entry(key.to_owned()).or_default();
        if let Some(dead) = &e.dead {
            return Take::Decided {
                verdict: dead.clone(),
                renew: None,
            };
        }
        if e.expires_at.is_some_and(|t| (now_ms / 1000) as i64 >= t) {
            e.dead = Some(Hit::Expired);
            e.batches.clear();
            return Take::Decided {
                verdict: Hit::Expired,
                renew: None,
            };
        }
        if now_ms < e.disabled_until_ms {
            return Take::Decided {
                verdict: Hit::Disabled,
                renew: None,
            };
        }
        e.batches.retain(|b| b.tokens > 0 && now_ms < b.deadline_ms);
        if now_ms < e.refused_until_ms {
            return Take::Decided {
                verdict: e.refuse_over_limit(now_ms),
                renew: None,
            };
        }
        if let Some(batch) = e.batches.first_mut() {
            batch.tokens -= 1;
            e.used_since_grant = e.used_since_grant.saturating_add(1);
            // Renew ahead of need: when half the tokens are gone, or three quarters of the
            // lease period (so a steady key renews about once per period, before it runs dry).
            let half_spent = e.tokens().saturating_mul(2) <= e.granted_last
                || now_ms >= e.granted_at_ms.saturating_add(lease_ms * 3 / 4);
            let renew = (half_spent && !e.asking).then(|| {
                e.asking = true;
                e.asked_at_ms = now_ms;
                e.demand(now_ms, lease_ms, cap)
            });
            return Take::Decided {
                verdict: Hit::Counted {
                    decision: Decision {
                        allowed: true,
                        limit: e.limit,
                        remaining: e.remaining_at_grant.saturating_sub(e.used_since_grant),
                        reset_secs: e.reset_secs,
                        retry_after_secs: 0,
                    },
                    expires_at: e.expires_at,
                    granted: 1,
                },
                renew,
            };
        }
        // A batch of one is used by the request that asks: nothing to share, so requests of a
        // small-limit key ask side by side rather than queue behind each other's round trip.
        if cap > 1 && e.asking && now_ms < e.asked_at_ms.saturating_add(ASK_TIMEOUT_MS) {
            return Take::Wait;
        }
        e.asking = true;
        e.asked_at_ms = now_ms;
        Take::Ask {
            want: e.demand(now_ms, lease_ms, cap),
        }
    }

    /// Installs the object's answer to a call sent at `sent_ms`. With `for_request`, the asking
    /// request uses the first token and gets its verdict back; a background renewal keeps every
    /// token for later requests.
    pub fn granted(
        &mut self,
        key: &str,
        answer: &Hit,
        sent_ms: u64,
        lease_ms: u64,
        for_request: bool,
    ) -> Hit {
        let e = self.entries.entry(key.to_owned()).or_default();
        e.asking = false;
        if e.forgotten_at_ms.is_some_and(|at| sent_ms <= at) {
            // Asked before this isolate revoked or rolled the key: its verdict still answers
            // the request that asked, but none of its tokens are kept.
            return answer.clone();
        }
        let (decision, expires_at, granted) = match answer {
            Hit::Revoked | Hit::Expired => {
                e.dead = Some(answer.clone());
                e.batches.clear();
                return answer.clone();
            }
            Hit::Disabled => {
                e.batches.clear();
                e.disabled_until_ms = sent_ms.saturating_add(lease_ms);
                return answer.clone();
            }
            Hit::Counted {
                decision,
                expires_at,
                granted,
            } => (*decision, *expires_at, *granted),
        };
        e.disabled_until_ms = 0;
        e.expires_at = expires_at;
        e.limit = decision.limit;
        e.reset_secs = decision.reset_secs;
        if !decision.allowed || granted == 0 {
            // Over the limit: the object says when one token is back; refuse until then.
            e.refused_until_ms = sent_ms.saturating_add(decision.retry_after_secs * 1000);
            e.retry_at_ms = e.refused_until_ms;
            return answer.clone();
        }
        e.refused_until_ms = 0;
        // The object's figure excludes every token this isolate holds: add back the unused ones
        // (this batch, and what is left of the previous one), so the figure reads as if each
        // request had called the object.
        e.batches
            .retain(|b| b.tokens > 0 && sent_ms < b.deadline_ms);
        let held = e.tokens();
        e.remaining_at_grant = decision
            .remaining
            .saturating_add(granted)
            .saturating_add(held);
        e.granted_last = granted;
        e.granted_at_ms = sent_ms;
        e.used_since_grant = u32::from(for_request);
        let kept = granted - u32::from(for_request);
        if kept > 0 {
            e.batches.push(Batch {
                tokens: kept,
                deadline_ms: sent_ms.saturating_add(lease_ms),
            });
            e.batches.sort_by_key(|b| b.deadline_ms);
            // Never more than a renewal ahead: the oldest batch goes first.
            while e.batches.len() > 2 {
                e.batches.remove(0);
            }
        }
        Hit::Counted {
            decision: Decision {
                remaining: e.remaining_at_grant.saturating_sub(e.used_since_grant),
                ..decision
            },
            expires_at,
            granted,
        }
    }

    /// A refusal this isolate already knows for `key` at `now_ms` (revoked, expired, suspended,
    /// or over the limit until its `Retry-After`, counted as a request refused here like
    /// [`Self::take`]'s), taking nothing; `None` when only the key's object can tell. For a
    /// request that would read a large body before its object call (the idempotent trigger).
    pub fn known_refusal(&mut self, key: &str, now_ms: u64) -> Option<Hit> {
        let e = self.entries.get_mut(key)?;
        if let Some(dead) = &e.dead {
            return Some(dead.clone());
        }
        if now_ms < e.disabled_until_ms {
            return Some(Hit::Disabled);
        }
        (now_ms < e.refused_until_ms).then(|| e.refuse_over_limit(now_ms))
    }

    /// Notes an over-limit refusal the key's object answered to a call made outside the lease
    /// (a job trigger's, sent at `sent_ms`), so this isolate refuses the key's next requests
    /// without asking (or reading their bodies) until one token is back.
    pub fn note_refusal(&mut self, key: &str, answer: &Hit, sent_ms: u64) {
        let Hit::Counted {
            decision,
            expires_at,
            ..
        } = answer
        else {
            return;
        };
        if decision.allowed {
            return;
        }
        if !self.entries.contains_key(key) {
            self.make_room(sent_ms);
        }
        let e = self.entries.entry(key.to_owned()).or_default();
        e.limit = decision.limit;
        e.reset_secs = decision.reset_secs;
        e.expires_at = *expires_at;
        e.refused_until_ms = sent_ms.saturating_add(decision.retry_after_secs * 1000);
        e.retry_at_ms = e.refused_until_ms;
    }

    /// Holds a cached over-limit refusal of `key` no later than `until_ms`. A pool's refusal is
    /// held at most one lease period (docs/CONTRACT.md section 17): a pool deleted or raised
    /// meanwhile is then asked again, where a key's refusal is held to its `Retry-After`.
    pub fn hold_refusal_until(&mut self, key: &str, until_ms: u64) {
        if let Some(e) = self.entries.get_mut(key) {
            e.refused_until_ms = e.refused_until_ms.min(until_ms);
        }
    }

    /// The refusals to report with the next call to the key's object (and forgets them here:
    /// a call that fails loses them, as the contract says).
    pub fn refusals_to_report(&mut self, key: &str) -> u32 {
        self.entries
            .get_mut(key)
            .map_or(0, |e| std::mem::take(&mut e.refused_unreported))
    }

    /// The call to the object failed: what the lease holds still serves until its deadline, and
    /// the waiting requests take again (and ask themselves, failing closed if the object is
    /// still unreachable).
    pub fn failed(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.asking = false;
        }
    }

    /// Forgets a key's lease (this isolate revoked or rolled it at `now_ms`): the next request
    /// asks the key's object, and an answer to a call sent earlier brings no tokens back.
    pub fn forget(&mut self, key: &str, now_ms: u64) {
        self.entries.insert(
            key.to_owned(),
            Entry {
                forgotten_at_ms: Some(now_ms),
                ..Entry::default()
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the table bounded: drops entries with nothing in flight (their lease, if any, is
    /// lost: the next request of that key asks the object again), and calls presumed lost.
    fn make_room(&mut self, now_ms: u64) {
        if self.entries.len() >= MAX_LEASED_KEYS {
            self.entries
                .retain(|_, e| e.asking && now_ms < e.asked_at_ms.saturating_add(ASK_TIMEOUT_MS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ratelimit::gcra_take;

    const LEASE: u64 = 1000;

    fn rl(requests: u32, window_seconds: u32) -> RateLimit {
        RateLimit {
            requests,
            window_seconds,
        }
    }

    /// The key's object: GCRA with a cost, as `KeyState::hit` does it.
    struct Object {
        tat: u128,
        limit: RateLimit,
        calls: u32,
    }

    impl Object {
        fn grant(&mut self, want: u32, now: u64) -> Hit {
            self.calls += 1;
            let (tat, granted, decision) = gcra_take(self.tat, now, self.limit, want);
            self.tat = tat;
            Hit::Counted {
                decision,
                expires_at: None,
                granted,
            }
        }
    }

    /// The object's answer granting 10 tokens of a 600/60 key.
    fn ten_tokens(remaining: u32, reset_secs: u64, expires_at: Option<i64>) -> Hit {
        Hit::Counted {
            decision: Decision {
                allowed: true,
                limit: 600,
                remaining,
                reset_secs,
                retry_after_secs: 0,
            },
            expires_at,
            granted: 10,
        }
    }

    fn allowed(h: &Hit) -> bool {
        matches!(h, Hit::Counted { decision, .. } if decision.allowed)
    }

    /// One request at `now`, the object answering at once.
    fn request(t: &mut LeaseTable, o: &mut Object, now: u64) -> Hit {
        let cap = batch_cap(o.limit, LEASE);
        match t.take("k", now, LEASE, cap) {
            Take::Decided { verdict, renew } => {
                if let Some(want) = renew {
                    let answer = o.grant(want, now);
                    t.granted("k", &answer, now, LEASE, false);
                }
                verdict
            }
            Take::Ask { want } => {
                let answer = o.grant(want, now);
                t.granted("k", &answer, now, LEASE, true)
            }
            Take::Wait => panic!("nothing is in flight in this test"),
        }
    }

    #[test]
    fn a_refusal_known_here_is_answered_before_a_body_is_read() {
        // Finding 6 of the security review: a rate-limited key's idempotent trigger is refused
        // from what the isolate knows, before its body is read.
        let mut t = LeaseTable::default();
        assert_eq!(t.known_refusal("k", 1_000), None, "nothing known: ask");
        let refused = Hit::Counted {
            decision: Decision {
                allowed: false,
                limit: 5,
                remaining: 0,
                reset_secs: 60,
                retry_after_secs: 3,
            },
            expires_at: None,
            granted: 0,
        };
        t.note_refusal("k", &refused, 1_000);
        let known = t
            .known_refusal("k", 2_000)
            .expect("refused until a token is back");
        assert!(!allowed(&known));
        match known {
            Hit::Counted { decision, .. } => {
                assert_eq!(decision.retry_after_secs, 2);
                assert_eq!(decision.limit, 5);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.refusals_to_report("k"), 1, "counted for the usage series");
        assert_eq!(t.known_refusal("k", 4_000), None, "a token is back: ask");
        // An allowed answer notes nothing.
        let mut fresh = LeaseTable::default();
        fresh.note_refusal("k", &ten_tokens(4, 60, None), 1_000);
        assert_eq!(fresh.known_refusal("k", 1_001), None);
        // Revoked is known for good.
        let mut dead = LeaseTable::default();
        dead.granted("k", &Hit::Revoked, 1_000, LEASE, true);
        assert_eq!(dead.known_refusal("k", 9_999_999), Some(Hit::Revoked));
    }

    #[test]
    fn the_next_batch_doubles_only_for_a_hot_key() {
        let e = |used, granted, at| Entry {
            used_since_grant: used,
            granted_last: granted,
            granted_at_ms: at,
            ..Entry::default()
        };
        // Half of 10 used within half a lease (500 ms): double.
        assert_eq!(e(5, 10, 1_000).demand(1_499, LEASE, 100), 20);
        assert_eq!(
            e(5, 10, 1_000).demand(1_499, LEASE, 15),
            15,
            "never above the cap"
        );
        // At half a lease, or with less than half used: what was used.
        assert_eq!(e(5, 10, 1_000).demand(1_500, LEASE, 100), 5);
        assert_eq!(e(4, 10, 1_000).demand(1_100, LEASE, 100), 4);
        assert_eq!(
            e(0, 10, 1_000).demand(1_100, LEASE, 100),
            1,
            "an idle isolate asks for one"
        );
    }

    #[test]
    fn a_batch_is_spent_token_by_token_and_renewed_once_ahead_of_need() {
        let mut t = LeaseTable::default();
        let cap = 10;
        assert!(matches!(t.take("k", 0, LEASE, cap), Take::Ask { .. }));
        // The object grants 4: the asking request uses one, three are kept.
        let four = match ten_tokens(6, 60, None) {
            Hit::Counted {
                decision,
                expires_at,
                ..
            } => Hit::Counted {
                decision,
                expires_at,
                granted: 4,
            },
            other => other,
        };
        t.granted("k", &four, 0, LEASE, true);
        let renewals: Vec<Option<u32>> = (1..=3)
            .map(|i| match t.take("k", i, LEASE, cap) {
                Take::Decided { renew, .. } => renew,
                other => panic!("{other:?}"),
            })
            .collect();
        // Half of the 4 granted are spent at the first use from the lease (the asking request
        // used one): one renewal then, none while it is in flight.
        assert!(renewals[0].is_some(), "{renewals:?}");
        assert_eq!(&renewals[1..], [None, None]);
        // The kept tokens are spent: the next request must wait for the renewal in flight.
        assert!(matches!(t.take("k", 4, LEASE, cap), Take::Wait));
    }

    #[test]
    fn the_table_is_bounded_and_keeps_only_calls_still_in_flight() {
        let mut t = LeaseTable::default();
        assert!(t.is_empty());
        let cap = batch_cap(rl(600, 60), LEASE);
        for i in 0..MAX_LEASED_KEYS {
            // Each first request asks its key's object: a call in flight, sent at 0.
            assert!(matches!(
                t.take(&format!("k{i}"), 0, LEASE, cap),
                Take::Ask { .. }
            ));
        }
        assert_eq!(t.len(), MAX_LEASED_KEYS);
        // One more while every call is still in flight: none is dropped.
        t.take("late", ASK_TIMEOUT_MS - 1, LEASE, cap);
        assert_eq!(t.len(), MAX_LEASED_KEYS + 1);
        // At the timeout every call is presumed lost: all go but the new key's.
        t.take("new", ASK_TIMEOUT_MS, LEASE, cap);
        assert_eq!(t.len(), 2, "only calls sent within the timeout stay");
        assert!(!t.is_empty());
    }

    #[test]
    fn a_cached_refusal_ends_exactly_when_a_token_is_back() {
        let mut t = LeaseTable::default();
        let refused = Hit::Counted {
            decision: Decision {
                allowed: false,
                limit: 5,
                remaining: 0,
                reset_secs: 60,
                retry_after_secs: 2,
            },
            expires_at: None,
            granted: 0,
        };
        t.note_refusal("k", &refused, 1_000);
        assert!(t.known_refusal("k", 2_999).is_some());
        assert_eq!(
            t.known_refusal("k", 3_000),
            None,
            "a token is back at 1 000 + 2 s"
        );
    }

    #[test]
    fn a_pools_refusal_is_held_at_most_one_lease_period() {
        let mut t = LeaseTable::default();
        let refused = Hit::Counted {
            decision: Decision {
                allowed: false,
                limit: 5,
                remaining: 0,
                reset_secs: 60,
                retry_after_secs: 30,
            },
            expires_at: None,
            granted: 0,
        };
        t.granted("pool:user:u", &refused, 1_000, LEASE, true);
        t.hold_refusal_until("pool:user:u", 1_000 + LEASE);
        let known = t.known_refusal("pool:user:u", 1_999).unwrap();
        assert!(
            matches!(known, Hit::Counted { decision, .. } if decision.retry_after_secs == 30),
            "the Retry-After reported is still the object's: {known:?}"
        );
        assert_eq!(
            t.known_refusal("pool:user:u", 2_000),
            None,
            "asked again after one lease period, not after its 30 s Retry-After"
        );
        t.hold_refusal_until("unknown", 5);
        assert!(t.is_empty() || t.len() == 1, "an unknown entry is not made");
    }

    #[test]
    fn caps_follow_the_rate() {
        assert_eq!(batch_cap(rl(600, 60), 1000), 10);
        assert_eq!(
            batch_cap(rl(5, 60), 1000),
            1,
            "rate x LEASE_MS < 1: batches of one"
        );
        assert_eq!(batch_cap(rl(1_000_000, 1), 5000), 5_000_000);
        assert_eq!(batch_cap(rl(600, 60), 0), 1);
    }

    #[test]
    fn a_small_limit_is_exact_one_object_call_per_request() {
        let mut t = LeaseTable::default();
        let mut o = Object {
            tat: 0,
            limit: rl(5, 60),
            calls: 0,
        };
        let results: Vec<bool> = (0..8)
            .map(|i| allowed(&request(&mut t, &mut o, i)))
            .collect();
        assert_eq!(results, [true, true, true, true, true, false, false, false]);
        // Five grants, one refusal; the refusals after it come from the isolate's cache.
        assert_eq!(o.calls, 6);
        // Those two are reported to the object once, with the next call (the usage series).
        assert_eq!(t.refusals_to_report("k"), 2);
        assert_eq!(t.refusals_to_report("k"), 0);
        assert_eq!(t.refusals_to_report("unknown"), 0);
    }

    #[test]
    fn remaining_counts_down_from_the_objects_figure() {
        let mut t = LeaseTable::default();
        let mut o = Object {
            tat: 0,
            limit: rl(600, 60),
            calls: 0,
        };
        let mut seen = vec![];
        for i in 0..20 {
            if let Hit::Counted { decision, .. } = request(&mut t, &mut o, 1_000 + i) {
                seen.push(decision.remaining);
            }
        }
        // Strictly decreasing from 599: the same figures one call per request would give.
        assert_eq!(seen, (580..600).rev().collect::<Vec<u32>>());
    }

    #[test]
    fn a_hot_key_makes_few_object_calls() {
        let mut t = LeaseTable::default();
        let mut o = Object {
            tat: 0,
            limit: rl(1_000_000, 60),
            calls: 0,
        };
        for i in 0..10_000u64 {
            assert!(allowed(&request(&mut t, &mut o, 1_000 + i / 10)));
        }
        // 10,000 requests over one second of a 16,666/s key: the batch ramps to the cap.
        assert!(o.calls < 60, "{} object calls", o.calls);
    }

    #[test]
    fn over_the_limit_is_refused_here_until_retry_after() {
        let mut t = LeaseTable::default();
        let mut o = Object {
            tat: 0,
            limit: rl(2, 60),
            calls: 0,
        };
        assert!(allowed(&request(&mut t, &mut o, 0)));
        assert!(allowed(&request(&mut t, &mut o, 0)));
        let refused = request(&mut t, &mut o, 0);
        let calls = o.calls;
        let Hit::Counted { decision, .. } = refused else {
            panic!()
        };
        assert_eq!(decision.retry_after_secs, 30);
        for now in [1, 10_000, 29_999] {
            assert!(!allowed(&request(&mut t, &mut o, now)));
        }
        assert_eq!(o.calls, calls, "no object call while refused");
        assert!(allowed(&request(&mut t, &mut o, 30_000)));
    }

    #[test]
    fn revoked_and_expired_answers_end_the_lease() {
        let mut t = LeaseTable::default();
        let answer = ten_tokens(590, 1, Some(100));
        assert_eq!(t.take("k", 0, LEASE, 10), Take::Ask { want: 1 });
        t.granted("k", &answer, 0, LEASE, true);
        assert!(
            matches!(t.take("k", 1, LEASE, 10), Take::Decided { verdict, .. } if allowed(&verdict))
        );
        // The object's expiry holds in the isolate too, to the second.
        assert!(matches!(
            t.take("k", 100_000, LEASE, 10),
            Take::Decided {
                verdict: Hit::Expired,
                ..
            }
        ));
        let mut t = LeaseTable::default();
        t.take("k", 0, LEASE, 10);
        t.granted("k", &answer, 0, LEASE, true);
        t.granted("k", &Hit::Revoked, 1, LEASE, false);
        assert!(matches!(
            t.take("k", 2, LEASE, 10),
            Take::Decided {
                verdict: Hit::Revoked,
                ..
            }
        ));
        // The revoking isolate forgets at once: the next request asks the object.
        t.forget("k", 3);
        assert_eq!(t.take("k", 3, LEASE, 10), Take::Ask { want: 1 });
    }

    #[test]
    fn disabled_is_refused_here_for_one_lease_period_then_asked_again() {
        let mut t = LeaseTable::default();
        assert!(matches!(t.take("k", 0, LEASE, 10), Take::Ask { .. }));
        t.granted("k", &ten_tokens(50, 1, None), 0, LEASE, true);
        // Disabled elsewhere: this isolate's lease serves until its deadline at most...
        assert!(matches!(t.take("k", 10, LEASE, 10), Take::Decided { .. }));
        // ...and the renewal's answer ends it at once.
        t.granted("k", &Hit::Disabled, 20, LEASE, false);
        for now in [20, 500, 1019] {
            assert_eq!(
                t.take("k", now, LEASE, 10),
                Take::Decided {
                    verdict: Hit::Disabled,
                    renew: None
                },
                "at {now}"
            );
        }
        // One lease period later it asks again; enabled, the key is served.
        assert!(matches!(t.take("k", 1020, LEASE, 10), Take::Ask { .. }));
        let served = t.granted("k", &ten_tokens(40, 1, None), 1020, LEASE, true);
        assert!(allowed(&served));
        assert!(matches!(
            t.take("k", 1030, LEASE, 10),
            Take::Decided { verdict, .. } if allowed(&verdict)
        ));
    }

    #[test]
    fn one_call_in_flight_per_key_and_the_others_wait() {
        let mut t = LeaseTable::default();
        assert_eq!(t.take("k", 0, LEASE, 10), Take::Ask { want: 1 });
        assert_eq!(t.take("k", 0, LEASE, 10), Take::Wait);
        t.failed("k");
        // Failed: the next request asks itself (and fails closed if the object is still down).
        assert_eq!(t.take("k", 1, LEASE, 10), Take::Ask { want: 1 });
    }

    #[test]
    fn an_answer_to_a_call_sent_before_forget_brings_no_tokens() {
        let mut t = LeaseTable::default();
        let answer = ten_tokens(590, 1, None);
        // A background renewal sent at 5, the key revoked here at 6, the answer arriving at 7.
        t.take("k", 5, LEASE, 10);
        t.forget("k", 6);
        t.granted("k", &answer, 5, LEASE, false);
        assert_eq!(t.take("k", 7, LEASE, 10), Take::Ask { want: 1 });
    }

    #[test]
    fn small_limits_ask_side_by_side() {
        let mut t = LeaseTable::default();
        assert_eq!(t.take("k", 0, LEASE, 1), Take::Ask { want: 1 });
        assert_eq!(t.take("k", 0, LEASE, 1), Take::Ask { want: 1 });
        // A larger cap shares the one call in flight.
        assert_eq!(t.take("j", 0, LEASE, 10), Take::Ask { want: 1 });
        assert_eq!(t.take("j", 0, LEASE, 10), Take::Wait);
    }

    #[test]
    fn a_call_never_answered_stops_being_waited_on() {
        let mut t = LeaseTable::default();
        assert_eq!(t.take("k", 0, LEASE, 10), Take::Ask { want: 1 });
        assert_eq!(t.take("k", ASK_TIMEOUT_MS - 1, LEASE, 10), Take::Wait);
        assert_eq!(
            t.take("k", ASK_TIMEOUT_MS, LEASE, 10),
            Take::Ask { want: 1 }
        );
    }

    #[test]
    fn a_lease_serves_until_its_deadline_then_asks_again() {
        let mut t = LeaseTable::default();
        let answer = ten_tokens(500, 10, None);
        t.take("k", 0, LEASE, 10);
        t.granted("k", &answer, 0, LEASE, true);
        // The object is now unreachable: the lease still serves until its deadline...
        let mut served = 0;
        for now in [10, 20, 30, 999] {
            match t.take("k", now, LEASE, 10) {
                Take::Decided { verdict, renew } => {
                    assert!(allowed(&verdict));
                    served += 1;
                    if renew.is_some() {
                        t.failed("k");
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(served, 4);
        // ...and not after it.
        assert!(matches!(t.take("k", 1000, LEASE, 10), Take::Ask { .. }));
    }

    /// The renewal a request from the lease starts (`None`: none).
    fn renewal_at(t: &mut LeaseTable, now: u64) -> Option<u32> {
        match t.take("k", now, LEASE, 100) {
            Take::Decided { renew, .. } => renew,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_steady_key_renews_at_three_quarters_of_the_lease() {
        let mut t = LeaseTable::default();
        assert!(matches!(t.take("k", 0, LEASE, 100), Take::Ask { .. }));
        // 10 granted, one used by the asking request: 9 held, far from half spent.
        t.granted("k", &ten_tokens(590, 60, None), 0, LEASE, true);
        assert_eq!(renewal_at(&mut t, 749), None, "before 3/4 of the lease");
        assert!(renewal_at(&mut t, 750).is_some(), "at 3/4 of the lease");
    }

    #[test]
    fn an_allowed_answer_granting_nothing_is_a_refusal_until_its_retry_after() {
        let mut t = LeaseTable::default();
        let nothing = Hit::Counted {
            decision: Decision {
                allowed: true,
                limit: 600,
                remaining: 0,
                reset_secs: 60,
                retry_after_secs: 1,
            },
            expires_at: None,
            granted: 0,
        };
        t.granted("k", &nothing, 0, LEASE, true);
        assert_eq!(t.known_refusal("k", 999).map(|h| allowed(&h)), Some(false));
        assert_eq!(t.known_refusal("k", 1_000), None);
    }

    #[test]
    fn a_batch_past_its_deadline_is_not_counted_in_the_remaining_figure() {
        let mut t = LeaseTable::default();
        t.take("k", 0, LEASE, 100);
        t.granted("k", &ten_tokens(590, 60, None), 0, LEASE, true);
        // The next grant is sent exactly at the first batch's deadline: its 9 tokens are gone.
        let answer = t.granted("k", &ten_tokens(100, 60, None), LEASE, LEASE, true);
        match answer {
            Hit::Counted { decision, .. } => assert_eq!(decision.remaining, 100 + 10 - 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_grant_used_whole_by_its_request_keeps_both_held_batches() {
        let mut t = LeaseTable::default();
        t.take("k", 0, LEASE, 100);
        t.granted("k", &ten_tokens(590, 60, None), 0, LEASE, true); // 9 held until 1000
        t.granted("k", &ten_tokens(580, 60, None), 500, LEASE, false); // 10 more until 1500
        let one = match ten_tokens(570, 60, None) {
            Hit::Counted {
                decision,
                expires_at,
                ..
            } => Hit::Counted {
                decision,
                expires_at,
                granted: 1,
            },
            other => other,
        };
        // A grant of one token, used by its own request: nothing to keep, and nothing dropped.
        t.granted("k", &one, 600, LEASE, true);
        let served = (0..30)
            .take_while(|i| {
                matches!(t.take("k", 601 + i, LEASE, 100),
                    Take::Decided { verdict, .. } if allowed(&verdict))
            })
            .count();
        assert_eq!(served, 19);
    }

    #[test]
    fn disabled_is_known_here_until_exactly_one_lease_later() {
        let mut t = LeaseTable::default();
        t.granted("k", &Hit::Disabled, 1_000, LEASE, true);
        assert_eq!(t.known_refusal("k", 1_999), Some(Hit::Disabled));
        assert_eq!(t.known_refusal("k", 2_000), None);
    }

    #[test]
    fn a_refusal_noted_for_a_new_key_makes_room_in_a_full_table() {
        let mut t = LeaseTable::default();
        for i in 0..MAX_LEASED_KEYS {
            t.granted(&format!("k{i}"), &Hit::Disabled, 0, LEASE, true);
        }
        assert_eq!(t.len(), MAX_LEASED_KEYS);
        let refused = Hit::Counted {
            decision: Decision {
                allowed: false,
                limit: 5,
                remaining: 0,
                reset_secs: 60,
                retry_after_secs: 3,
            },
            expires_at: None,
            granted: 0,
        };
        t.note_refusal("new", &refused, 10);
        assert!(t.len() <= MAX_LEASED_KEYS, "{}", t.len());
        assert!(!t.is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut t = LeaseTable::default();
        for i in 0..(MAX_LEASED_KEYS + 10) {
            let key = format!("k{i}");
            t.take(&key, 0, LEASE, 1);
            t.failed(&key);
        }
        assert!(t.len() <= MAX_LEASED_KEYS);
    }
}
