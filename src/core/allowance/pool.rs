//! Shared limits, pools (docs/CONTRACT.md section 17): a rate limit and/or a run quota that
//! every key of a user, or every call naming a workspace, counts against together, so that a
//! user with five keys does not get five times the allowance.
//!
//! A pool lives in two places. Its definition is in KV (`pool:<kind>:<id>`), which tells an
//! isolate *which* pools apply to a request (cached per isolate for `LEASE_MS`, see
//! [`PoolDirectory`]). Its allowance, run count and its definition again are in its own
//! Durable Object (the key objects' class, named like the KV entry), which is authoritative:
//! every grant and every run uses the limits the object holds, so a change or a deletion holds
//! everywhere within a lease period and a round trip, whatever an isolate's cache says. The
//! rate limit is leased to isolates exactly like a key's ([`crate::core::lease`]), so the hot path
//! makes no round trip; a run quota is counted by the object on every trigger (exact).
//!
//! This module is the vocabulary and the rules: names, the body of `PUT`, which pools apply,
//! the isolate's directory, the object's side ([`PoolState`]) and the tightest allowance.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::error::FieldErrors;
use crate::core::fields::{parse_object, push};
use crate::core::keystate::{Hit, KeyState};
use crate::core::lease::batch_cap;
use crate::core::policy::parse_quota;
use crate::core::quota::{Quota, RunVerdict};
use crate::core::ratelimit::{gcra_take, Decision, RateLimit};
use crate::core::request::{is_user_id, parse_rate_limit};
use crate::core::route::is_workspace_id;
use crate::core::usage::Count;
use crate::core::Error;

/// Prefix of every pool's KV entry and object name: `pool:user:<id>`, `pool:workspace:<id>`.
pub const POOL_PREFIX: &str = "pool:";
/// Pools an isolate's directory remembers; past this it starts over (a forgotten entry costs
/// one KV read, never correctness).
pub const MAX_DIRECTORY_ENTRIES: usize = 10_000;
/// The fields of a pool's `PUT` body.
const POOL_FIELDS: [&str; 2] = ["rate_limit", "quota"];

/// Whose pool: a user's (every key of the user) or a workspace's (every call naming it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    User,
    Workspace,
}

impl PoolKind {
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::User => "user",
            PoolKind::Workspace => "workspace",
        }
    }

    /// The collection segment of the pool's path: `/v1/pools/users/{id}`.
    pub fn from_segment(segment: &str) -> Option<PoolKind> {
        match segment {
            "users" => Some(PoolKind::User),
            "workspaces" => Some(PoolKind::Workspace),
            _ => None,
        }
    }

    fn from_name(name: &str) -> Option<PoolKind> {
        match name {
            "user" => Some(PoolKind::User),
            "workspace" => Some(PoolKind::Workspace),
            _ => None,
        }
    }

    /// Whether `id` is a usable id of this kind: a user id or a workspace id as keys name them.
    fn accepts(self, id: &str) -> bool {
        match self {
            PoolKind::User => is_user_id(id),
            PoolKind::Workspace => is_workspace_id(id),
        }
    }
}

/// A pool's name: `{"kind": "user" | "workspace", "id"}` (events' `data.pool`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolRef {
    pub kind: PoolKind,
    pub id: String,
}

impl PoolRef {
    /// The pool named by a path's segments; 400 when the id is not one keys could name.
    pub fn parse(kind: PoolKind, id: &str) -> Result<PoolRef, Error> {
        if kind.accepts(id) {
            Ok(PoolRef {
                kind,
                id: id.to_owned(),
            })
        } else {
            let rule = match kind {
                PoolKind::User => "must be 1-128 characters of A-Z a-z 0-9 . _ @ : -",
                PoolKind::Workspace => "must be 1-64 characters of A-Z a-z 0-9 _ -",
            };
            Err(Error::field("id", rule))
        }
    }

    /// Its KV entry's key and its object's name alike.
    pub fn storage_name(&self) -> String {
        format!("{POOL_PREFIX}{}:{}", self.kind.name(), self.id)
    }

    /// The inverse of [`Self::storage_name`] (a KV listing's names).
    pub fn from_storage_name(name: &str) -> Option<PoolRef> {
        let rest = name.strip_prefix(POOL_PREFIX)?;
        let (kind, id) = rest.split_once(':')?;
        let kind = PoolKind::from_name(kind)?;
        kind.accepts(id).then(|| PoolRef {
            kind,
            id: id.to_owned(),
        })
    }
}

/// What a pool limits: at least one of a rate limit and a run quota (the shapes of a key's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// A pool as stored in KV and shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub kind: PoolKind,
    pub id: String,
    pub rate_limit: Option<RateLimit>,
    pub quota: Option<Quota>,
    pub created_at: String,
    pub updated_at: String,
}

impl Pool {
    pub fn limits(&self) -> PoolLimits {
        PoolLimits {
            rate_limit: self.rate_limit,
            quota: self.quota,
        }
    }

    pub fn pool_ref(&self) -> PoolRef {
        PoolRef {
            kind: self.kind,
            id: self.id.clone(),
        }
    }
}

/// A `PUT` body: `{"rate_limit"?: {requests, window_seconds}, "quota"?: {runs, period}}`, at
/// least one, nothing else; each field validated as a key's is.
pub fn parse_pool_body(body: &[u8]) -> Result<PoolLimits, Error> {
    let map = parse_object(body)?;
    let mut errors = FieldErrors::new();
    for k in map.keys() {
        if !POOL_FIELDS.contains(&k.as_str()) {
            push(&mut errors, k, "unknown field");
        }
    }
    let present = |f: &str| map.get(f).filter(|v| !v.is_null());
    let rate_limit = present("rate_limit").and_then(|v| parse_rate_limit(v, &mut errors));
    let quota = present("quota").and_then(|v| parse_quota(v, &mut errors));
    if errors.is_empty() && rate_limit.is_none() && quota.is_none() {
        push(
            &mut errors,
            "rate_limit",
            "a pool needs a rate_limit, a quota or both",
        );
    }
    if errors.is_empty() {
        Ok(PoolLimits { rate_limit, quota })
    } else {
        Err(Error::Validation(errors))
    }
}

/// The pools a forwarded call of `user_id`'s key naming `workspace` counts against, the user's
/// first (the order refusals are checked in).
/// Borrowed, so that a request no pool applies to builds nothing.
pub fn applicable<'a>(
    user_id: &'a str,
    workspace: Option<&'a str>,
) -> impl Iterator<Item = (PoolKind, &'a str)> {
    [
        (PoolKind::User, Some(user_id)),
        (PoolKind::Workspace, workspace),
    ]
    .into_iter()
    .filter_map(|(kind, id)| Some((kind, id?)))
}

/// The allowance the `RateLimit-*` headers show: the tightest of those that applied (fewest
/// remaining; on a tie, the longer wait for a full allowance).
pub fn tightest(decisions: impl IntoIterator<Item = Decision>) -> Option<Decision> {
    decisions
        .into_iter()
        .min_by_key(|d| (d.remaining, std::cmp::Reverse(d.reset_secs)))
}

/// The isolate's memory of which pools exist (KV's answer, present or absent), each for at
/// most its time to live: what a request consults to know which pools to count it against.
/// What [`PoolDirectory::lookup`] knows of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Known for now: the pool's limits, or that there is none.
    Fresh(Option<PoolLimits>),
    /// A pool that existed, known for longer than its time to live: its object (which holds
    /// its limits, and knows a change or a deletion at once) is asked again, not KV, whose
    /// copy may lag by KV's own cache time.
    Stale(PoolLimits),
    /// Never known, or known absent for too long: KV is read (a pool made since).
    Unknown,
}

/// Keyed by kind, then id, so that the hot path looks an id up without building a name.
#[derive(Debug, Default)]
pub struct PoolDirectory {
    entries: HashMap<PoolKind, HashMap<String, (Option<PoolLimits>, u64)>>,
}

impl PoolDirectory {
    /// What the isolate knows of a pool at `now_ms`.
    pub fn lookup(&self, kind: PoolKind, id: &str, now_ms: u64) -> Known {
        match self.entries.get(&kind).and_then(|m| m.get(id)) {
            Some((limits, until)) if *until > now_ms => Known::Fresh(*limits),
            Some((Some(limits), _)) => Known::Stale(*limits),
            _ => Known::Unknown,
        }
    }

    #[cfg(test)]
    fn get(&self, kind: PoolKind, id: &str, now_ms: u64) -> Option<Option<PoolLimits>> {
        match self.lookup(kind, id, now_ms) {
            Known::Fresh(limits) => Some(limits),
            _ => None,
        }
    }

    pub fn insert(&mut self, pool: &PoolRef, limits: Option<PoolLimits>, now_ms: u64, ttl_ms: u64) {
        if ttl_ms == 0 {
            return;
        }
        if self.len() >= MAX_DIRECTORY_ENTRIES {
            for map in self.entries.values_mut() {
                map.retain(|_, (_, until)| *until > now_ms);
            }
            if self.len() >= MAX_DIRECTORY_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries
            .entry(pool.kind)
            .or_default()
            .insert(pool.id.clone(), (limits, now_ms.saturating_add(ttl_ms)));
    }

    fn len(&self) -> usize {
        self.entries.values().map(HashMap::len).sum()
    }
}

/// The pool object's answer to a grant: the limits it holds (`None`: no such pool, it stops
/// applying) and, when they include a rate limit, the grant under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolGrant {
    pub limits: Option<PoolLimits>,
    pub hit: Option<Hit>,
}

/// The pool object's answer to a run: the limits it holds and, when they include a quota, the
/// run's verdict under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRun {
    pub limits: Option<PoolLimits>,
    pub run: Option<RunVerdict>,
}

/// What `GET /v1/pools/...` shows beside the definition: the rate limit's allowance now and
/// the runs used this period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFigures {
    pub limits: Option<PoolLimits>,
    pub remaining: Option<u32>,
    pub reset_secs: Option<u64>,
    pub quota_used: Option<u32>,
}

/// The pool's side of its object's state: the limits it holds, over the same allowance, run
/// count and usage series a key's object keeps ([`KeyState`]).
pub trait PoolState {
    fn set_pool(&mut self, limits: Option<PoolLimits>);
    fn pool_grant(&mut self, want: u32, lease_ms: u64, now_ms: u64) -> PoolGrant;
    fn pool_run(&mut self, now: i64) -> PoolRun;
    fn pool_figures(&self, now_ms: u64) -> PoolFigures;
}

impl PoolState for KeyState {
    fn set_pool(&mut self, limits: Option<PoolLimits>) {
        self.pool = limits;
    }

    /// Up to `want` tokens under the pool's own limit, never more than one lease period of it
    /// (an isolate's cached limit may be an older, larger one).
    fn pool_grant(&mut self, want: u32, lease_ms: u64, now_ms: u64) -> PoolGrant {
        let limits = self.pool;
        let hit = limits.and_then(|l| l.rate_limit).map(|limit| {
            let want = want.clamp(1, batch_cap(limit, lease_ms.max(1)));
            self.grant_as(limit, want, now_ms, Count::Allowed)
        });
        PoolGrant { limits, hit }
    }

    fn pool_run(&mut self, now: i64) -> PoolRun {
        let limits = self.pool;
        let run = limits.and_then(|l| l.quota).map(|quota| {
            let verdict = self.take_run(&quota, now);
            if verdict.allowed {
                self.usage.add(Count::Triggers, 1, (now as u64) * 1000);
            }
            verdict
        });
        PoolRun { limits, run }
    }

    fn pool_figures(&self, now_ms: u64) -> PoolFigures {
        let limits = self.pool;
        let rate = limits.and_then(|l| l.rate_limit).map(|limit| {
            let tat = if self.limit == Some(limit) {
                self.tat
            } else {
                0
            };
            let (_, taken, d) = gcra_take(tat, now_ms, limit, 1);
            let n = u128::from(limit.requests.max(1));
            let busy_ms = tat.saturating_sub(u128::from(now_ms) * n).div_ceil(n);
            let remaining = if d.allowed { d.remaining + taken } else { 0 };
            (remaining, busy_ms.div_ceil(1000) as u64)
        });
        PoolFigures {
            limits,
            remaining: rate.map(|r| r.0),
            reset_secs: rate.map(|r| r.1),
            quota_used: limits
                .and_then(|l| l.quota)
                .map(|q| self.runs.used(&q, (now_ms / 1000) as i64)),
        }
    }
}

/// The JSON a pool is shown as: its definition and, when its object answered, its figures.
pub fn pool_json(pool: &Pool, figures: Option<&PoolFigures>, now: i64) -> Value {
    let mut v = serde_json::json!({
        "kind": pool.kind,
        "id": pool.id,
        "rate_limit": pool.rate_limit,
        "quota": pool.quota,
        "created_at": pool.created_at,
        "updated_at": pool.updated_at,
    });
    if let Some(f) = figures {
        // The object's limits are what applies; KV's copy may lag a change for a moment.
        let limits = f.limits.unwrap_or_else(|| pool.limits());
        // No limits in the object while KV lists the pool: a deletion or a write that failed
        // half-way; not enforced until the pool is written again (section 17).
        v["in_force"] = Value::Bool(f.limits.is_some());
        v["usage"] = serde_json::json!({
            "rate_limit": limits.rate_limit.map(|rl| serde_json::json!({
                "limit": rl.requests,
                "remaining": f.remaining.unwrap_or(rl.requests),
                "reset": f.reset_secs.unwrap_or(0),
            })),
            "quota": limits.quota.map(|q| serde_json::json!({
                "runs": q.runs,
                "period": q.period,
                "used": f.quota_used.unwrap_or(0),
                "remaining": q.runs.saturating_sub(f.quota_used.unwrap_or(0)),
                "period_end": crate::core::time::format_time(q.period.end(now)),
            })),
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::quota::Period;

    const RL: RateLimit = RateLimit {
        requests: 3,
        window_seconds: 60,
    };
    const Q: Quota = Quota {
        runs: 2,
        period: Period::Day,
    };

    fn limits(rate_limit: Option<RateLimit>, quota: Option<Quota>) -> PoolLimits {
        PoolLimits { rate_limit, quota }
    }

    #[test]
    fn a_body_needs_a_rate_limit_or_a_quota_and_nothing_else() {
        let ok = parse_pool_body(br#"{"rate_limit": {"requests": 3, "window_seconds": 60}}"#);
        assert_eq!(ok.unwrap(), limits(Some(RL), None));
        let both = br#"{"rate_limit": {"requests": 3, "window_seconds": 60},
                        "quota": {"runs": 2, "period": "day"}}"#;
        assert_eq!(parse_pool_body(both).unwrap(), limits(Some(RL), Some(Q)));
        for bad in [
            &br#"{}"#[..],
            br#"{"rate_limit": null, "quota": null}"#,
            br#"{"rate_limit": {"requests": 0, "window_seconds": 60}}"#,
            br#"{"quota": {"runs": 0, "period": "day"}}"#,
            br#"{"quota": {"runs": 2, "period": "week"}}"#,
            br#"{"quota": {"runs": 2, "period": "day"}, "owner": "x"}"#,
            br#"[1]"#,
            b"not json",
        ] {
            let e = parse_pool_body(bad).unwrap_err();
            assert_eq!(
                e.code(),
                "validation_error",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ids_must_be_what_keys_name() {
        assert!(PoolRef::parse(PoolKind::User, "alice@example.com").is_ok());
        assert!(PoolRef::parse(PoolKind::Workspace, "ws-1").is_ok());
        for (kind, id) in [
            (PoolKind::Workspace, "a.b"),
            (PoolKind::Workspace, ""),
            (PoolKind::User, "a b"),
            (PoolKind::User, "a/b"),
            (PoolKind::User, &"u".repeat(129)),
            (PoolKind::Workspace, &"w".repeat(65)),
        ] {
            let e = PoolRef::parse(kind, id).unwrap_err();
            assert_eq!(e.code(), "validation_error", "{id}");
        }
    }

    #[test]
    fn storage_names_round_trip_and_kinds_do_not_collide() {
        let u = PoolRef::parse(PoolKind::User, "ws1").unwrap();
        let w = PoolRef::parse(PoolKind::Workspace, "ws1").unwrap();
        assert_eq!(u.storage_name(), "pool:user:ws1");
        assert_eq!(w.storage_name(), "pool:workspace:ws1");
        assert_eq!(PoolRef::from_storage_name("pool:user:ws1"), Some(u));
        assert_eq!(PoolRef::from_storage_name("pool:workspace:ws1"), Some(w));
        assert_eq!(PoolRef::from_storage_name("pool:team:x"), None);
        assert_eq!(PoolRef::from_storage_name("key:abc"), None);
        assert_eq!(PoolRef::from_storage_name("pool:workspace:a.b"), None);
        assert_eq!(PoolKind::from_segment("users"), Some(PoolKind::User));
        assert_eq!(
            PoolKind::from_segment("workspaces"),
            Some(PoolKind::Workspace)
        );
        assert_eq!(PoolKind::from_segment("user"), None);
    }

    #[test]
    fn the_users_pool_applies_always_the_workspaces_only_when_named() {
        let names = |ws| {
            applicable("u1", ws)
                .map(|(kind, id)| PoolRef::parse(kind, id).unwrap().storage_name())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None), ["pool:user:u1"]);
        assert_eq!(names(Some("ws1")), ["pool:user:u1", "pool:workspace:ws1"]);
    }

    #[test]
    fn tightest_is_fewest_remaining_then_longest_reset() {
        let d = |remaining, reset_secs| Decision {
            allowed: true,
            limit: 10,
            remaining,
            reset_secs,
            retry_after_secs: 0,
        };
        assert_eq!(tightest([d(5, 1), d(2, 1), d(9, 9)]), Some(d(2, 1)));
        assert_eq!(tightest([d(2, 1), d(2, 7)]), Some(d(2, 7)));
        assert_eq!(tightest(Vec::new()), None);
    }

    #[test]
    fn the_directory_remembers_absence_too_and_forgets_on_time() {
        let user = |id: &str| PoolRef::parse(PoolKind::User, id).unwrap();
        let mut dir = PoolDirectory::default();
        dir.insert(&user("a"), None, 1_000, 500);
        dir.insert(&user("b"), Some(limits(Some(RL), None)), 1_000, 500);
        assert_eq!(dir.get(PoolKind::User, "a", 1_499), Some(None));
        let b = dir.get(PoolKind::User, "b", 1_499);
        assert_eq!(b, Some(Some(limits(Some(RL), None))));
        assert_eq!(
            dir.get(PoolKind::Workspace, "b", 1_000),
            None,
            "kinds apart"
        );
        assert_eq!(
            dir.get(PoolKind::User, "a", 1_500),
            None,
            "stale: read KV again"
        );
        assert_eq!(
            dir.lookup(PoolKind::User, "a", 1_500),
            Known::Unknown,
            "absent: KV"
        );
        assert_eq!(
            dir.lookup(PoolKind::User, "b", 1_500),
            Known::Stale(limits(Some(RL), None)),
            "present: ask its object"
        );
        assert_eq!(dir.get(PoolKind::User, "c", 1_000), None);
        dir.insert(&user("d"), None, 1_000, 0);
        assert_eq!(
            dir.get(PoolKind::User, "d", 1_000),
            None,
            "LEASE_MS = 0 caches nothing"
        );
    }

    #[test]
    fn a_full_directory_drops_its_stale_entries_and_keeps_its_fresh_ones() {
        let mut dir = PoolDirectory::default();
        let user = |id: &str| PoolRef::parse(PoolKind::User, id).unwrap();
        let half = MAX_DIRECTORY_ENTRIES / 2;
        for i in 0..half {
            dir.insert(&user(&format!("stale{i}")), None, 0, 100);
        }
        // One ends exactly now: no longer fresh, dropped too.
        dir.insert(&user("edge"), None, 0, 1_000);
        for i in 0..MAX_DIRECTORY_ENTRIES - half - 1 {
            dir.insert(&user(&format!("fresh{i}")), None, 500, 10_000);
        }
        assert_eq!(dir.len(), MAX_DIRECTORY_ENTRIES);
        dir.insert(&user("new"), None, 1_000, 10_000);
        assert_eq!(
            dir.len(),
            MAX_DIRECTORY_ENTRIES - half,
            "stale and ending ones dropped"
        );
        assert_eq!(
            dir.lookup(PoolKind::User, "fresh0", 1_000),
            Known::Fresh(None)
        );
        assert_eq!(dir.lookup(PoolKind::User, "new", 1_000), Known::Fresh(None));
    }

    #[test]
    fn the_directory_is_bounded() {
        let mut dir = PoolDirectory::default();
        let user = |id: &str| PoolRef::parse(PoolKind::User, id).unwrap();
        for i in 0..MAX_DIRECTORY_ENTRIES {
            dir.insert(&user(&i.to_string()), None, 0, 10);
        }
        dir.insert(&user("new"), None, 100, 10);
        assert_eq!(dir.len(), 1, "all stale: dropped");
        assert_eq!(dir.get(PoolKind::User, "new", 105), Some(None));
    }

    #[test]
    fn the_object_grants_under_its_own_limits_never_more_than_a_lease() {
        let mut s = KeyState::default();
        assert_eq!(
            s.pool_grant(5, 1_000, 0),
            PoolGrant {
                limits: None,
                hit: None
            },
            "no pool: nothing applies"
        );
        s.set_pool(Some(limits(Some(RL), None)));
        // 3/60 s: a lease of 1 s holds under one token, so batches of one.
        let g = s.pool_grant(5, 1_000, 0);
        assert!(matches!(g.hit, Some(Hit::Counted { granted: 1, .. })));
        s.pool_grant(1, 1_000, 0);
        s.pool_grant(1, 1_000, 0);
        let refused = s.pool_grant(1, 1_000, 0);
        assert!(
            !refused.hit.unwrap().allowed(),
            "the fourth in the window is refused"
        );
        s.set_pool(Some(limits(None, Some(Q))));
        assert_eq!(
            s.pool_grant(1, 1_000, 0).hit,
            None,
            "a quota-only pool grants freely"
        );
        s.set_pool(None);
        assert_eq!(
            s.pool_grant(1, 1_000, 0).limits,
            None,
            "deleted: stops applying"
        );
    }

    #[test]
    fn a_large_pool_grants_batches_up_to_one_lease_of_its_rate() {
        let mut s = KeyState::default();
        let fast = RateLimit {
            requests: 6_000,
            window_seconds: 60,
        };
        s.set_pool(Some(limits(Some(fast), None)));
        let g = s.pool_grant(1_000, 1_000, 0);
        assert!(matches!(g.hit, Some(Hit::Counted { granted: 100, .. })));
    }

    #[test]
    fn runs_are_exact_and_figures_show_them() {
        let mut s = KeyState::default();
        s.set_pool(Some(limits(Some(RL), Some(Q))));
        let now = 1_700_000_000;
        assert!(s.pool_run(now).run.unwrap().allowed);
        let second = s.pool_run(now).run.unwrap();
        assert!(second.allowed && second.exhausted.is_some());
        let third = s.pool_run(now).run.unwrap();
        assert!(!third.allowed && third.retry_after_secs > 0);
        s.pool_grant(1, 1_000, now as u64 * 1000);
        let f = s.pool_figures(now as u64 * 1000);
        assert_eq!(f.quota_used, Some(2));
        assert_eq!(f.remaining, Some(2), "one of three taken");
        assert_eq!(
            f.reset_secs,
            Some(20),
            "one token of 3/60 s is back in 20 s"
        );
        let hour = s.usage.series(now as u64 * 1000).hourly;
        assert_eq!(
            hour.last().unwrap().triggers,
            2,
            "runs in the current hour's bucket"
        );
        let next_day = now + 86_400;
        assert_eq!(s.pool_figures(next_day as u64 * 1000).quota_used, Some(0));
        s.set_pool(Some(limits(Some(RL), None)));
        assert_eq!(
            s.pool_run(now).run,
            None,
            "no quota: a trigger takes no run"
        );
    }

    #[test]
    fn the_json_prefers_the_objects_limits() {
        let pool = Pool {
            kind: PoolKind::User,
            id: "u1".into(),
            rate_limit: Some(RL),
            quota: None,
            created_at: "2026-12-03T00:00:00Z".into(),
            updated_at: "2026-12-03T00:00:00Z".into(),
        };
        assert_eq!(pool.limits(), limits(Some(RL), None));
        let v = pool_json(&pool, None, 0);
        assert_eq!(v["kind"], "user");
        assert!(v.get("usage").is_none());
        let figures = PoolFigures {
            limits: Some(limits(None, Some(Q))),
            remaining: None,
            reset_secs: None,
            quota_used: Some(1),
        };
        let v = pool_json(&pool, Some(&figures), 1_700_000_000);
        assert_eq!(v["in_force"], true);
        assert_eq!(v["usage"]["rate_limit"], Value::Null);
        assert_eq!(v["usage"]["quota"]["remaining"], 1);
        assert_eq!(v["usage"]["quota"]["period_end"], "2023-11-15T00:00:00Z");
    }
}
