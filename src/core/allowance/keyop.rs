//! The operations of a key's Durable Object: one table of paths, and a typed question and
//! answer per operation, shared by the object (`edge::keystate_object`) and its client
//! (`edge::key_client`) so that neither spells a path or a message shape of its own.
//!
//! Transport: the hot [`Op::Hit`] is a body-less GET, its question (the key's rate limit) in
//! the query and its answer ([`Hit`] as JSON) in the [`HIT_ANSWER_HEADER`] header: body
//! streams dominated the cost of that call when measured. Every other operation is a POST
//! whose question and answer are [`encode`]d: JSON plus, where there is one, a raw body
//! beside it (an origin answer), never hex or a JSON array of numbers.

use serde::{Deserialize, Serialize};

use crate::core::idempotency::{Begin, IdemRecord, StoredResponse};
use crate::core::keystate::Hit;
pub use crate::core::objectop::{decode, encode, Ack, Message, Operation};
use crate::core::objectop::{operation, ObjectClass, OpTable};
use crate::core::pool::{PoolFigures, PoolGrant, PoolLimits, PoolRun};
use crate::core::quota::{Quota, RunCount, RunVerdict};
use crate::core::ratelimit::RateLimit;
use crate::core::usage::Series;

/// One operation of the key's object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Count one authenticated request (question in the URL, answer in a header).
    Hit,
    /// Count a job trigger and open its idempotency record, in one call.
    HitBegin,
    /// Finish an idempotency record: remember the answer, or forget the attempt.
    Complete,
    Revoke,
    Expire,
    Usage,
    /// Suspend or resume the key (docs/CONTRACT.md section 13).
    Disable,
    /// Count a job trigger without an `Idempotency-Key` against its rate limit and quota.
    Run,
    /// The usage series (docs/CONTRACT.md section 12).
    Series,
    /// Count one run against a quota in the object that counts a family of keys' runs (a key
    /// minted by, or rolled from, a key with a quota: docs/CONTRACT.md section 13).
    TakeRun,
    /// Take or free the slot of an imported key's PBKDF2 check (docs/CONTRACT.md section 15).
    CheckSlot,
    /// Give back one run a trigger took but did not use (a pool refused it after, or the
    /// key's quota did after its pools'): docs/CONTRACT.md section 17.
    RefundRun,
    /// A pool's object (section 17): set or clear the pool's limits.
    PoolSet,
    /// A pool's object: tokens of its rate limit (one request, or an isolate's lease).
    PoolTake,
    /// A pool's object: one run of its quota.
    PoolRun,
    /// A pool's object: its figures for `GET /v1/pools/...`.
    PoolStatus,
}

impl Op {
    pub const ALL: [Op; 16] = [
        Op::Hit,
        Op::HitBegin,
        Op::Complete,
        Op::Revoke,
        Op::Expire,
        Op::Usage,
        Op::Disable,
        Op::Run,
        Op::Series,
        Op::TakeRun,
        Op::CheckSlot,
        Op::RefundRun,
        Op::PoolSet,
        Op::PoolTake,
        Op::PoolRun,
        Op::PoolStatus,
    ];

    /// The path of the operation in calls to the object (the only table of them).
    pub const fn path(self) -> &'static str {
        match self {
            Op::Hit => "/hit",
            Op::HitBegin => "/hit-begin",
            Op::Complete => "/idem/complete",
            Op::Revoke => "/revoke",
            Op::Expire => "/expire",
            Op::Usage => "/usage",
            Op::Disable => "/disable",
            Op::Run => "/run",
            Op::Series => "/series",
            Op::TakeRun => "/take-run",
            Op::CheckSlot => "/check-slot",
            Op::RefundRun => "/refund-run",
            Op::PoolSet => "/pool/set",
            Op::PoolTake => "/pool/take",
            Op::PoolRun => "/pool/run",
            Op::PoolStatus => "/pool/status",
        }
    }

    pub fn from_path(path: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.path() == path)
    }
}

impl OpTable for Op {
    const ALL: &'static [Op] = &Op::ALL;

    fn path(self) -> &'static str {
        Op::path(self)
    }
}

/// [`Op::Hit`]'s question, in the URL: the key's limit, the tokens wanted (one for a single
/// request, more for a lease, docs/CONTRACT.md section 8) and the requests this isolate refused
/// from its over-limit cache since its last call (for the usage series, section 12), e.g.
/// `600/60&10&0`.
pub fn hit_query(limit: RateLimit, want: u32, refused: u32) -> String {
    format!("{limit}&{want}&{refused}")
}

/// The inverse of [`hit_query`]; `None` for anything malformed (or a want of 0).
pub fn parse_hit_query(q: &str) -> Option<(RateLimit, u32, u32)> {
    let mut parts = q.split('&');
    let limit = RateLimit::parse(parts.next()?)?;
    let want: u32 = parts.next()?.parse().ok()?;
    let refused: u32 = parts.next()?.parse().ok()?;
    (want >= 1 && parts.next().is_none()).then_some((limit, want, refused))
}

/// The header carrying [`Op::Hit`]'s answer.
pub const HIT_ANSWER_HEADER: &str = "x-hit";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoke {
    pub revoked_at: String,
}
operation!(KeyState: Revoke => Op::Revoke.path(), Ack);

/// A shortened expiry (unix seconds), from a roll with grace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expire {
    pub expires_at: i64,
}
operation!(KeyState: Expire => Op::Expire.path(), Ack);

/// Suspends (`true`) or resumes (`false`) the key; every request of it obeys the object's flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDisabled {
    pub disabled: bool,
}
operation!(KeyState: SetDisabled => Op::Disable.path(), Suspension);

/// The object's suspension after a [`SetDisabled`]: whether the flag flipped, and its flip count
/// (`KeyState::disabled_seq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub changed: bool,
    pub seq: u64,
}
impl Message for Suspension {}

/// A job trigger of a key with a quota and no `Idempotency-Key`: counted by the object (rate
/// limit, then quota), never from a lease, so the quota is exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub rate_limit: RateLimit,
    pub quota: Quota,
}
operation!(KeyState: Run => Op::Run.path(), Ran);

/// One run of a key whose quota is counted in another key's object (its family's counter):
/// the calling key's own `quota` applies to the family's count, so each key's quota bounds
/// its runs and those of every key it minted or was rolled into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeRun {
    pub quota: Quota,
}
operation!(KeyState: TakeRun => Op::TakeRun.path(), RunVerdict);
impl Message for RunVerdict {}

/// Takes (`take`) or frees the key's PBKDF2 check slot ([`crate::core::legacy::CheckSlot`]), after a
/// check that `failed` or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSlot {
    pub take: bool,
    #[serde(default)]
    pub failed: bool,
}
operation!(KeyState: CheckSlot => Op::CheckSlot.path(), SlotAnswer);

/// Whether the slot was taken; if not, in how many seconds to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotAnswer {
    pub granted: bool,
    pub retry_after: u64,
}
impl Message for SlotAnswer {}

/// Gives back one run counted in the period that started at `start` (never below zero, never
/// to another period: [`RunCount::refund`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRun {
    pub start: i64,
}
operation!(KeyState: RefundRun => Op::RefundRun.path(), Ack);

/// Sets a pool's limits in its object (`None`: the pool is deleted and stops applying).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSet {
    pub limits: Option<PoolLimits>,
}
operation!(KeyState: PoolSet => Op::PoolSet.path(), Ack);

/// Up to `want` tokens of a pool's rate limit, at most one `lease_ms` of it; `refused`: the
/// requests the asking isolate refused from its cache since its last call (usage series).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTake {
    pub want: u32,
    pub lease_ms: u64,
    #[serde(default)]
    pub refused: u32,
}
operation!(KeyState: PoolTake => Op::PoolTake.path(), PoolGrant);
impl Message for PoolGrant {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRunAsk {}
operation!(KeyState: PoolRunAsk => Op::PoolRun.path(), PoolRun);
impl Message for PoolRun {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatusQuery {}
operation!(KeyState: PoolStatusQuery => Op::PoolStatus.path(), PoolFigures);
impl Message for PoolFigures {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ran {
    pub hit: Hit,
    /// Present when the request was counted and allowed by its rate limit.
    pub run: Option<RunVerdict>,
}
impl Message for Ran {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageQuery {}
operation!(KeyState: UsageQuery => Op::Usage.path(), KeyFacts);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesQuery {}
operation!(KeyState: SeriesQuery => Op::Series.path(), Series);
impl Message for Series {}

/// The facts the key's object holds that a key's summary shows (last use, the expiry it knows,
/// revocation, suspension, the quota's count): not a usage series ([`Series`] is that).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFacts {
    pub last_used_ms: Option<u64>,
    /// The expiry the object knows (a roll with grace shortens it here first).
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Whether the object knows the key revoked (a location's KV record may not say so yet).
    #[serde(default)]
    pub revoked: bool,
    /// Whether the object holds the key suspended (what requests obey).
    #[serde(default)]
    pub disabled: bool,
    /// How many times the suspension flipped ([`Suspension::seq`]).
    #[serde(default)]
    pub disabled_seq: u64,
    /// The quota's count (read against the record's quota, [`RunCount::used`]).
    #[serde(default)]
    pub runs: RunCount,
}
impl Message for KeyFacts {}

/// The job trigger's one call: count the request, then (if allowed) open its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitBegin {
    pub rate_limit: RateLimit,
    pub slot: String,
    pub fingerprint: String,
    /// How long this attempt holds its in-flight record.
    pub lease_ms: u64,
    /// The key's quota: a new attempt (not a replay) counts one run against it.
    #[serde(default)]
    pub quota: Option<Quota>,
}
operation!(KeyState: HitBegin => Op::HitBegin.path(), HitBegun);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitBegun {
    pub hit: Hit,
    /// Present when the request was counted and allowed.
    pub begin: Option<Begin>,
    /// With [`Begin::Full`]: seconds until the next clean-up of the key's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// With a quota: the run's count, when the attempt was new (a replay, a conflict or a
    /// record in flight counts nothing). A refused run opened no record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunVerdict>,
}
impl Message for HitBegun {
    fn payload(&mut self) -> Option<&mut Vec<u8>> {
        match &mut self.begin {
            Some(Begin::Replay { response }) => Some(&mut response.body),
            _ => None,
        }
    }
}

/// Finishes the attempt `attempt` (from [`Begin::Proceed`]): `answer` to remember, or `None`
/// to forget it (a 5xx, or no answer at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complete {
    pub slot: String,
    pub fingerprint: String,
    pub attempt: u64,
    pub answer: Option<StoredResponse>,
}
impl Message for Complete {
    fn payload(&mut self) -> Option<&mut Vec<u8>> {
        self.answer.as_mut().map(|a| &mut a.body)
    }
}
impl Operation for Complete {
    const OBJECT: ObjectClass = ObjectClass::KeyState;
    const PATH: &'static str = Op::Complete.path();
    type Answer = Ack;
}

/// A stored idempotency record is a message too: at rest it is bytes, its body raw.
impl Message for IdemRecord {
    fn payload(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            IdemRecord::Done { response, .. } => Some(&mut response.body),
            IdemRecord::InFlight { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_trait_gives_the_same_paths() {
        for op in Op::ALL {
            assert_eq!(OpTable::path(op), op.path());
        }
    }
    use crate::core::idempotency::MAX_STORED_BODY_BYTES;
    use crate::core::ratelimit::Decision;

    #[test]
    fn every_operation_has_its_own_path() {
        for op in Op::ALL {
            assert_eq!(Op::from_path(op.path()), Some(op));
            assert!(op.path().starts_with('/'));
        }
        let mut paths: Vec<_> = Op::ALL.iter().map(|op| op.path()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), Op::ALL.len());
        assert_eq!(Op::from_path("/nope"), None);
        assert_eq!(Op::from_path("/hit/"), None);
    }

    #[test]
    fn bodies_travel_raw_beside_the_json() {
        let body: Vec<u8> = (0..=255u8).cycle().take(MAX_STORED_BODY_BYTES).collect();
        let msg = Complete {
            slot: "idem:ab".into(),
            fingerprint: "f".into(),
            attempt: 3,
            answer: Some(StoredResponse::new(201, vec![], Some(body.clone()))),
        };
        let bytes = encode(msg.clone()).unwrap();
        // Raw: the framing adds the JSON only, not a hex or decimal copy of the body.
        assert!(bytes.len() < body.len() + 200, "{}", bytes.len());
        assert_eq!(decode::<Complete>(&bytes), Some(msg));
        assert_eq!(decode::<Complete>(&bytes[..3]), None);
    }

    #[test]
    fn hit_questions_round_trip() {
        let limit = RateLimit {
            requests: 600,
            window_seconds: 60,
        };
        assert_eq!(hit_query(limit, 10, 3), "600/60&10&3");
        assert_eq!(
            parse_hit_query(&hit_query(limit, 10, 3)),
            Some((limit, 10, 3))
        );
        for bad in [
            "600/60",
            "600/60&1",
            "600/60&0&0",
            "600/60&x&0",
            "600/60&1&-1",
            "600/60&1&0&0",
            "0/60&1&0",
            "&1&0",
        ] {
            assert_eq!(parse_hit_query(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let replay = HitBegun {
            hit: Hit::Counted {
                decision: Decision {
                    allowed: true,
                    limit: 5,
                    remaining: 4,
                    reset_secs: 12,
                    retry_after_secs: 0,
                },
                expires_at: Some(1_900_000_000),
                granted: 1,
            },
            begin: Some(Begin::Replay {
                response: StoredResponse::new(
                    201,
                    vec![("a".into(), "b".into())],
                    Some(b"{}".to_vec()),
                ),
            }),
            retry_after_secs: None,
            run: None,
        };
        assert_eq!(
            decode::<HitBegun>(&encode(replay.clone()).unwrap()),
            Some(replay)
        );
        let rec = IdemRecord::Done {
            fingerprint: "f".into(),
            stored_ms: 1,
            response: StoredResponse::new(200, vec![], Some(vec![0, 1, 2])),
        };
        assert_eq!(
            decode::<IdemRecord>(&encode(rec.clone()).unwrap()),
            Some(rec)
        );
        assert_eq!(decode::<Ack>(&encode(Ack {}).unwrap()), Some(Ack {}));
    }
}
