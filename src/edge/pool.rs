//! Pools at the edge (docs/CONTRACT.md section 17): which pools a forwarded call counts against
//! (the isolate's directory, a KV read at most once per `LEASE_MS`), their rate limits decided
//! from leases exactly as a key's ([`super::lease`]), and their run quotas counted by their
//! objects on every job trigger (exact). The rules are [`crate::core::pool`]'s.

use std::cell::RefCell;

use worker::{Context, Date};

use super::lease::{self, Subject};
use super::{key_client, notices, store, Ctx};
use crate::core::keyop::{PoolRunAsk, PoolStatusQuery, PoolTake, RefundRun};
use crate::core::keystate::Hit;
use crate::core::plan::{pool_steps, PoolStep};
use crate::core::pool::{applicable, tightest, Known, PoolDirectory, PoolLimits, PoolRef};
use crate::core::quota::RunVerdict;
use crate::core::ratelimit::{Decision, RateLimit};
use crate::core::record::KeyRecord;
use crate::core::route::Forward;
use crate::core::Error;

thread_local! {
    static DIRECTORY: RefCell<PoolDirectory> = RefCell::new(PoolDirectory::default());
}

/// A pool's rate limit as leased: its object's name (the lease table's id) and the limit this
/// isolate last knew (its object applies its own).
#[derive(Clone)]
pub struct Leased {
    pub name: String,
    pub pool: PoolRef,
    pub limit: RateLimit,
}

/// One pool that applies to a request, with the limits this isolate knows for it.
pub struct Applying {
    pub pool: PoolRef,
    pub limits: PoolLimits,
}

/// The pools a forwarded call of `user_id`'s key naming `workspace` counts against, user's
/// first. A request no pool applies to reads nothing and builds nothing.
pub async fn applying(
    ctx: &Ctx,
    user_id: &str,
    workspace: Option<&str>,
) -> Result<Vec<Applying>, Error> {
    let mut out = Vec::new();
    for (kind, id) in applicable(user_id, workspace) {
        let now = Date::now().as_millis();
        let known = DIRECTORY.with(|d| d.borrow().lookup(kind, id, now));
        if known == Known::Fresh(None) {
            // Known to have no pool: nothing is built.
            continue;
        }
        let pool = PoolRef::parse(kind, id)?;
        let limits = match known {
            Known::Fresh(limits) => limits,
            Known::Stale(_) => {
                ctx.count_pool_calls(1);
                let name = pool.storage_name();
                let held = key_client::call(ctx, &name, PoolStatusQuery {})
                    .await?
                    .limits;
                remember(&pool, held, now, ctx.config.lease_ms);
                held
            }
            Known::Unknown => {
                let read = store::pool(ctx, &pool, true).await?.map(|p| p.limits());
                remember(&pool, read, now, ctx.config.lease_ms);
                read
            }
        };
        if let Some(limits) = limits {
            out.push(Applying { pool, limits });
        }
    }
    Ok(out)
}

fn remember(pool: &PoolRef, limits: Option<PoolLimits>, now_ms: u64, ttl_ms: u64) {
    DIRECTORY.with(|d| d.borrow_mut().insert(pool, limits, now_ms, ttl_ms));
}

/// A pool's refusal this isolate already knows for a call of `user_id`'s key naming
/// `workspace` (over its rate limit, from the lease's cache), without any I/O: the idempotent
/// trigger answers it before reading the body, as it does a key's (section 17).
pub fn known_refusal(
    ctx: &Ctx,
    user_id: &str,
    workspace: Option<&str>,
) -> Option<(Decision, Error)> {
    let now = Date::now().as_millis();
    for (kind, id) in applicable(user_id, workspace) {
        let Known::Fresh(Some(limits)) = DIRECTORY.with(|d| d.borrow().lookup(kind, id, now))
        else {
            continue;
        };
        if limits.rate_limit.is_none() {
            continue;
        }
        let name = PoolRef::parse(kind, id).ok()?.storage_name();
        if let Some(Hit::Counted { decision, .. }) = lease::known_refusal_of(ctx, &name) {
            let retry_after = decision.retry_after_secs;
            return Some((decision, Error::PoolRateLimited { retry_after }));
        }
    }
    None
}

/// This isolate created, changed or deleted `pool`: its next request sees it at once.
pub fn changed_here(ctx: &Ctx, pool: &PoolRef, limits: Option<PoolLimits>) {
    remember(pool, limits, Date::now().as_millis(), ctx.config.lease_ms);
    lease::forget(&pool.storage_name());
}

/// Asks a pool's object for tokens of its rate limit (the lease's call). Its answer carries the
/// limits it holds, which this isolate's directory takes at once. A pool that no longer has a
/// rate limit (deleted, or changed to a quota only) answers as a suspended key does: the lease
/// holds no tokens and asks again after one lease period, and the request is not limited by it.
pub async fn ask(ctx: &Ctx, leased: &Leased, want: u32, refused: u32) -> Result<Hit, Error> {
    let question = PoolTake {
        want,
        lease_ms: ctx.config.lease_ms,
        refused,
    };
    let grant = key_client::call(ctx, &leased.name, question).await?;
    remember(
        &leased.pool,
        grant.limits,
        Date::now().as_millis(),
        ctx.config.lease_ms,
    );
    Ok(grant.hit.unwrap_or(Hit::Disabled))
}

/// The pools' rate limits for one request, after its key's (`key`: the key's decision, for the
/// `RateLimit-*` headers): each pool's lease decides, the first refusal is 429
/// `pool_rate_limited`. Returns the tightest allowance that applied, with the result.
pub async fn rate(
    ctx: &Ctx,
    wctx: &Context,
    pools: &[Applying],
    key: Option<Decision>,
) -> (Option<Decision>, Result<(), Error>) {
    let mut decisions: Vec<Decision> = key.into_iter().collect();
    for applying in pools {
        let Some(limit) = applying.limits.rate_limit else {
            continue;
        };
        let leased = Leased {
            name: applying.pool.storage_name(),
            pool: applying.pool.clone(),
            limit,
        };
        let decided = lease::decide_for(ctx, wctx, Subject::Pool(&leased)).await;
        let called = matches!(&decided, Ok((_, path)) if *path != lease::Decided::Local);
        ctx.count_pool_calls(u32::from(called));
        match decided {
            Err(e) => return (tightest(decisions), Err(e)),
            Ok((Hit::Counted { decision, .. }, _)) if !decision.allowed => {
                notices::pool_rate_limited(ctx, wctx, &applying.pool, limit);
                let retry_after = decision.retry_after_secs;
                return (Some(decision), Err(Error::PoolRateLimited { retry_after }));
            }
            Ok((Hit::Counted { decision, .. }, _)) => decisions.push(decision),
            // No rate limit in the pool's object any more: it does not limit this request.
            Ok(_) => {}
        }
    }
    (tightest(decisions), Ok(()))
}

/// One run of each pool with a quota, for a job trigger the key allowed. A refusal gives back
/// the runs already taken from the other pools and is 429 `pool_quota_exceeded`. The runs
/// taken come back with their verdicts (for the threshold notices), to be given back with
/// [`refund`] if the key then refuses the trigger.
pub async fn take_runs(ctx: &Ctx, pools: &[Applying]) -> Result<Vec<(PoolRef, RunVerdict)>, Error> {
    let mut taken = Vec::new();
    let mut reached = Vec::new();
    for applying in pools.iter().filter(|a| a.limits.quota.is_some()) {
        let name = applying.pool.storage_name();
        ctx.count_pool_calls(1);
        let answer = match key_client::call(ctx, &name, PoolRunAsk {}).await {
            Ok(answer) => answer,
            Err(e) => {
                refund(ctx, &taken).await;
                return Err(e);
            }
        };
        // The object's limits, which this isolate takes at once (a quota changed, or removed).
        remember(
            &applying.pool,
            answer.limits,
            Date::now().as_millis(),
            ctx.config.lease_ms,
        );
        match answer.run {
            Some(run) if !run.allowed => {
                refund(ctx, &taken).await;
                return Err(Error::PoolQuotaExceeded {
                    retry_after: run.retry_after_secs,
                });
            }
            Some(run) => {
                // The quota the object counted under (its own, not this isolate's copy).
                if let Some(quota) = answer.limits.and_then(|l| l.quota) {
                    reached.push((applying.pool.clone(), quota, run));
                }
                taken.push((applying.pool.clone(), run));
            }
            // No quota in the pool's object any more: the trigger takes no run of it.
            None => {}
        }
    }
    // Every pool allowed the run: now (not before, when a later pool could still refuse it and
    // the run be given back) the runs that reached 80 % or 100 % are noticed. The runs are
    // counted and go ahead; a notice not recorded is only logged.
    for (pool, quota, run) in &reached {
        if let Some(note) = notices::for_pool_run(ctx, pool, quota, run).await {
            let line = serde_json::json!({"level": "error", "request_id": ctx.request_id, "cause": note.name()});
            worker::console_log!("{line}");
        }
    }
    Ok(taken)
}

/// The pools of a forwarded call the key allowed from its lease (a call that is not a counted
/// job trigger): their rate limits and, for a job trigger, their runs.
pub async fn admit(
    ctx: &Ctx,
    wctx: &Context,
    record: &KeyRecord,
    route: &Forward<'_>,
    key: Option<Decision>,
) -> (Option<Decision>, Result<(), Error>) {
    let pools = match applying(ctx, &record.user_id, route.workspace).await {
        Ok(pools) if pools.is_empty() => return (key, Ok(())),
        Ok(pools) => pools,
        Err(e) => return (key, Err(e)),
    };
    let (decision, taken) = steps(ctx, wctx, &pools, key, route.job_run).await;
    (decision, taken.map(|_| ()))
}

/// The pools' steps in their order ([`pool_steps`]): the rate limits, then, for a new run, the
/// runs; the first refusal ends them.
async fn steps(
    ctx: &Ctx,
    wctx: &Context,
    pools: &[Applying],
    key: Option<Decision>,
    new_run: bool,
) -> (Option<Decision>, Result<Vec<(PoolRef, RunVerdict)>, Error>) {
    let mut decision = key;
    let mut taken = Vec::new();
    for step in pool_steps(new_run) {
        match step {
            PoolStep::Rate => {
                let (d, allowed) = rate(ctx, wctx, pools, decision).await;
                decision = d;
                if let Err(e) = allowed {
                    return (decision, Err(e));
                }
            }
            PoolStep::Runs => match take_runs(ctx, pools).await {
                Ok(runs) => taken = runs,
                Err(e) => return (decision, Err(e)),
            },
        }
    }
    (decision, Ok(taken))
}

/// The pools of a job trigger its key's object allowed (docs/CONTRACT.md section 17): their
/// rate limits, then, for a new run (not an idempotent replay), one run of each pool with a
/// quota. `key`: the key's decision, for the `RateLimit-*` headers.
pub async fn admit_trigger(
    ctx: &Ctx,
    wctx: &Context,
    record: &KeyRecord,
    workspace: Option<&str>,
    key: Option<Decision>,
    new_run: bool,
) -> (Option<Decision>, Result<Vec<(PoolRef, RunVerdict)>, Error>) {
    let pools = match applying(ctx, &record.user_id, workspace).await {
        Ok(pools) if pools.is_empty() => return (key, Ok(Vec::new())),
        Ok(pools) => pools,
        Err(e) => return (key, Err(e)),
    };
    steps(ctx, wctx, &pools, key, new_run).await
}

/// Gives back runs taken for a trigger that was then refused. Best effort: a run not given back
/// errs on the safe side (the quota is used up one run early).
pub async fn refund(ctx: &Ctx, taken: &[(PoolRef, RunVerdict)]) {
    for (pool, run) in taken {
        let start = run.start;
        let _ = key_client::call(ctx, &pool.storage_name(), RefundRun { start }).await;
    }
}
