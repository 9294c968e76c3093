//! The order of a key's request (docs/CONTRACT.md sections 2, 6, 8, 13 and 17), in one place:
//! which object call counts it, and what counts it after the key. The glue matches on the
//! [`Plan`] and carries each step out; it decides no order itself. A job trigger's checks before
//! its object call are [`Plan::before_count`]; what the pools are asked, [`pool_steps`].
//!
//! For every plan the key comes first: the record's own rows ([`crate::core::access::usable`]), then
//! its object's verdict (revoked, expired, suspended, its rate limit: [`crate::core::access::decide_key`]),
//! then, for a forwarded call, its pools (the user's, then the workspace's: section 17), and
//! only then the origin. What differs is how the key's object is asked:

use crate::core::quota::Quota;
use crate::core::record::KeyRecord;
use crate::core::route::Route;

/// How a key's request is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan<'a> {
    /// A job trigger with an `Idempotency-Key` (section 6): refused from what the isolate
    /// already knows (the key's or a pool's cached refusal) before its body is read; else one
    /// call to the key's object counts it and opens (or finds) its record; then its pools,
    /// whose quotas only a new attempt takes.
    IdempotentTrigger { idempotency_key: &'a str },
    /// A job trigger of a key with a run quota (section 13): one call to the key's object
    /// counts the request and its run, exactly; then its pools (a run a pool refuses is given
    /// back).
    QuotaTrigger { quota: Quota },
    /// A forwarded call or `/v1/me` (section 8): decided from the isolate's lease of the key's
    /// allowance, no round trip; then, for a forwarded call, its pools (their leases, and for
    /// a job trigger their runs).
    Lease,
    /// A key managing keys (create, roll, revoke, change, and their reads): its object asked
    /// every time, since a key revoked, suspended or expired elsewhere must not mint or change
    /// keys within a lease's window (section 4).
    Exact,
}

/// The plan of `record`'s request on `route`; `idempotency_key` is the job trigger's header,
/// when the route is the trigger and it carries one.
pub fn plan<'a>(
    route: &Route<'_>,
    record: &KeyRecord,
    idempotency_key: Option<&'a str>,
) -> Plan<'a> {
    match route {
        Route::Forward(fwd) if fwd.job_run => match (idempotency_key, record.policy.quota) {
            (Some(idempotency_key), _) => Plan::IdempotentTrigger { idempotency_key },
            (None, Some(quota)) => Plan::QuotaTrigger { quota },
            (None, None) => Plan::Lease,
        },
        Route::Forward(_) | Route::Me => Plan::Lease,
        _ => Plan::Exact,
    }
}

/// One check a job trigger makes before its one call to the key's object (which counts it and,
/// with an `Idempotency-Key`, opens its record). Whatever one of them refuses is answered only
/// once the request is counted, in the contract's order
/// ([`crate::core::access::refuse_after_count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// The IP, workspace and permission rows ([`crate::core::access::authorize`]).
    Rows,
    /// The call to the origin prepared: its query, a declared body over `MAX_BODY_BYTES`, a
    /// signing secret or key (sections 7 and 16).
    Prepare,
    /// The `Idempotency-Key`'s shape (section 6).
    IdempotencyKey,
    /// The body read whole: part of what "the same request" is (section 6).
    Body,
}

impl Plan<'_> {
    /// What this plan checks before the key's object is called, in order. The rows come
    /// first, so a key refused by them costs no body read; the body comes last, after all that
    /// can be decided without it.
    pub fn before_count(&self) -> &'static [Before] {
        match self {
            Plan::IdempotentTrigger { .. } => &[
                Before::Rows,
                Before::Prepare,
                Before::IdempotencyKey,
                Before::Body,
            ],
            Plan::QuotaTrigger { .. } => &[Before::Rows, Before::Prepare],
            // Decided after the count, with every row ([`crate::core::access::decide_key`]).
            Plan::Lease | Plan::Exact => &[],
        }
    }
}

/// What a request asks of the pools that apply to it (section 17), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolStep {
    /// Their rate limits, every pool's (from its lease).
    Rate,
    /// One run of each pool with a quota, counted exactly by its object.
    Runs,
}

/// The pools' steps: every forwarded call their rate limits; a job trigger that starts a new
/// run (not an idempotent replay, not a plain call) then one run of each, once the rate limits
/// allowed it.
pub fn pool_steps(new_run: bool) -> &'static [PoolStep] {
    if new_run {
        &[PoolStep::Rate, PoolStep::Runs]
    } else {
        &[PoolStep::Rate]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::quota::Period;
    use crate::core::record::tests::record;
    use crate::core::route::resolve;

    const Q: Quota = Quota {
        runs: 5,
        period: Period::Day,
    };

    fn new_key() -> KeyRecord {
        record(&["ws1"], &["*"], None)
    }

    fn with_quota() -> KeyRecord {
        let mut r = new_key();
        r.policy.quota = Some(Q);
        r
    }

    const TRIGGER: &str = "/developers/workspaces/ws1/jobs/etl/run";

    #[test]
    fn before_count_the_rows_then_the_call_then_the_header_then_the_body() {
        let idempotent = Plan::IdempotentTrigger {
            idempotency_key: "k1",
        };
        assert_eq!(
            idempotent.before_count(),
            [
                Before::Rows,
                Before::Prepare,
                Before::IdempotencyKey,
                Before::Body
            ]
        );
        assert_eq!(
            Plan::QuotaTrigger { quota: Q }.before_count(),
            [Before::Rows, Before::Prepare]
        );
        assert!(Plan::Lease.before_count().is_empty());
        assert!(Plan::Exact.before_count().is_empty());
    }

    #[test]
    fn pools_rate_limits_first_runs_only_for_a_new_run() {
        assert_eq!(pool_steps(true), [PoolStep::Rate, PoolStep::Runs]);
        assert_eq!(pool_steps(false), [PoolStep::Rate]);
    }

    #[test]
    fn plan_idempotent_trigger_whatever_the_quota() {
        let route = resolve("POST", TRIGGER).unwrap();
        for record in [new_key(), with_quota()] {
            assert_eq!(
                plan(&route, &record, Some("k1")),
                Plan::IdempotentTrigger {
                    idempotency_key: "k1"
                }
            );
        }
    }

    #[test]
    fn plan_quota_trigger_only_for_a_trigger_of_a_key_with_a_quota() {
        let trigger = resolve("POST", TRIGGER).unwrap();
        assert_eq!(
            plan(&trigger, &with_quota(), None),
            Plan::QuotaTrigger { quota: Q }
        );
        assert_eq!(plan(&trigger, &new_key(), None), Plan::Lease);
        let read = resolve("GET", "/developers/workspaces/ws1/jobs/").unwrap();
        assert_eq!(
            plan(&read, &with_quota(), None),
            Plan::Lease,
            "not a trigger"
        );
    }

    #[test]
    fn plan_lease_for_forwarded_calls_and_me() {
        for (method, path) in [
            ("GET", "/developers/workspaces/ws1/jobs/"),
            ("POST", "/developers/workspaces/ws1/variables/"),
            ("GET", "/v1/me"),
        ] {
            let route = resolve(method, path).unwrap();
            assert_eq!(
                plan(&route, &new_key(), Some("ignored")),
                Plan::Lease,
                "{path}"
            );
        }
    }

    #[test]
    fn plan_exact_for_a_key_managing_keys() {
        // Finding 10 of the security review: a key managing keys asks its object, not a lease.
        for (method, path) in [
            ("POST", "/v1/api-keys"),
            ("GET", "/v1/api-keys"),
            ("GET", "/v1/api-keys/key_1"),
            ("DELETE", "/v1/api-keys/key_1"),
            ("PATCH", "/v1/api-keys/key_1"),
            ("POST", "/v1/api-keys/key_1/roll"),
            ("GET", "/v1/api-keys/key_1/usage"),
            ("GET", "/v1/audit-events"),
        ] {
            let route = resolve(method, path).unwrap();
            assert_eq!(
                plan(&route, &new_key(), None),
                Plan::Exact,
                "{method} {path}"
            );
        }
    }
}
