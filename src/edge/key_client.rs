//! The Worker's client of the key's Durable Object ([`super::keystate_object`]): one typed call per
//! operation of [`crate::core::keyop`]. Any failure to reach the object, or an answer it
//! cannot read, is 503 (fail closed).

use worker::Stub;

use super::fail::OrUnavailable;
use super::{objects, Ctx};
use crate::core::idempotency::{Begin, StoredResponse};
use crate::core::keyop::{
    hit_query, CheckSlot, Complete, Expire, HitBegin, Op, Operation, RefundRun, Revoke, Run,
    SeriesQuery, SetDisabled, Suspension, TakeRun, UsageQuery, HIT_ANSWER_HEADER,
};
use crate::core::keystate::Hit;
use crate::core::objectop::ObjectClass;
use crate::core::quota::{Quota, RunVerdict};
use crate::core::record::KeyRecord;
use crate::core::usage::Series;
use crate::core::{Cause, Error};

pub use crate::core::keyop::KeyFacts;

/// The key's object. No binding: 503 (fail closed).
fn stub(ctx: &Ctx, key_id: &str) -> Result<Stub, Error> {
    objects::stub(ctx, ObjectClass::KeyState, key_id)
}

/// Asks the key's (or a pool's) object one question; its answer comes back typed.
pub(super) async fn call<O: Operation>(
    ctx: &Ctx,
    key_id: &str,
    question: O,
) -> Result<O::Answer, Error> {
    objects::call(ctx, key_id, question).await
}

/// Takes up to `want` tokens of the key's allowance (one: count this request; more: a lease).
/// The verdict also says whether the object knows the key revoked or expired
/// ([`crate::core::access::decide_key`] decides what follows). Body-less both ways: the
/// question in the URL, the answer in a header. `refused`: requests this isolate refused from
/// its over-limit cache since its last call, for the usage series.
pub async fn hit(ctx: &Ctx, record: &KeyRecord, want: u32, refused: u32) -> Result<Hit, Error> {
    let url = format!(
        "{}{}?{}",
        ObjectClass::KeyState.base_url(),
        Op::Hit.path(),
        hit_query(record.rate_limit, want, refused)
    );
    let resp = stub(ctx, &record.id)?
        .fetch_with_str(&url)
        .await
        .or_unavailable(Cause::DurableObject)?;
    if resp.status_code() != 200 {
        return Err(Error::Unavailable(Cause::DurableObject));
    }
    let hit: Hit = resp
        .headers()
        .get(HIT_ANSWER_HEADER)
        .ok()
        .flatten()
        .and_then(|h| serde_json::from_str(&h).ok())
        .or_unavailable(Cause::DurableObject)?;
    Ok(hit)
}

pub async fn revoke(ctx: &Ctx, key_id: &str, revoked_at: &str) -> Result<(), Error> {
    let revoked_at = revoked_at.to_owned();
    call(ctx, key_id, Revoke { revoked_at }).await?;
    Ok(())
}

pub async fn expire(ctx: &Ctx, key_id: &str, expires_at: i64) -> Result<(), Error> {
    call(ctx, key_id, Expire { expires_at }).await?;
    Ok(())
}

/// Suspends or resumes the key in its object, which every request of the key obeys.
pub async fn set_disabled(ctx: &Ctx, key_id: &str, disabled: bool) -> Result<Suspension, Error> {
    call(ctx, key_id, SetDisabled { disabled }).await
}

/// Counts a job trigger of a key with `quota` (no `Idempotency-Key`): the verdict, and the
/// run's count when the rate limit allowed it. A key whose runs count in its family's object
/// (minted or rolled, [`KeyRecord::quota_counter`]) takes two calls: the request in its own
/// object, then, if that allowed it, the run in the family's.
pub async fn run(
    ctx: &Ctx,
    record: &KeyRecord,
    quota: Quota,
) -> Result<(Hit, Option<RunVerdict>), Error> {
    let rate_limit = record.rate_limit;
    let counter = record.quota_counter();
    if counter == record.id {
        let ran = call(ctx, &record.id, Run { rate_limit, quota }).await?;
        return Ok((ran.hit, ran.run));
    }
    let verdict = hit(ctx, record, 1, 0).await?;
    let run = match verdict.allowed() {
        true => Some(take_run(ctx, counter, quota).await?),
        false => None,
    };
    Ok((verdict, run))
}

/// Takes the key's PBKDF2 check slot (docs/CONTRACT.md section 15); 429
/// `key_check_in_progress` while another check of the key runs.
pub async fn take_check_slot(ctx: &Ctx, key_id: &str) -> Result<(), Error> {
    let answer = call(
        ctx,
        key_id,
        CheckSlot {
            take: true,
            failed: false,
        },
    )
    .await?;
    if answer.granted {
        Ok(())
    } else {
        Err(Error::KeyCheckInProgress {
            retry_after: answer.retry_after,
        })
    }
}

/// Frees it, at once or (after a check that `failed`) after `legacy::FAILED_CHECK_PAUSE_MS`.
/// Best effort: the slot frees itself after `legacy::CHECK_HOLD_MS`.
pub async fn free_check_slot(ctx: &Ctx, key_id: &str, failed: bool) {
    let take = false;
    let _ = call(ctx, key_id, CheckSlot { take, failed }).await;
}

/// Counts one run of a key whose quota is counted in its family's object (`counter`, see
/// [`KeyRecord::quota_counter`]), against the key's own `quota`.
pub async fn take_run(ctx: &Ctx, counter: &str, quota: Quota) -> Result<RunVerdict, Error> {
    call(ctx, counter, TakeRun { quota }).await
}

/// Gives back one run of the key's quota (`counter`: [`KeyRecord::quota_counter`]) that a
/// trigger took and a pool then refused. Best effort: a run not given back errs on the safe
/// side.
pub async fn refund_run(ctx: &Ctx, counter: &str, start: i64) {
    let _ = call(ctx, counter, RefundRun { start }).await;
}

/// Runs of `record`'s quota used in the current period, from the object that counts them.
/// `own`: the key's own object's usage when the caller already has it (a new key's is empty);
/// otherwise it is asked for only if the key counts its own runs.
pub async fn runs_used(
    ctx: &Ctx,
    record: &KeyRecord,
    own: Option<&KeyFacts>,
) -> Result<Option<u32>, Error> {
    let Some(quota) = record.policy.quota else {
        return Ok(None);
    };
    let counter = record.quota_counter();
    let runs = match own {
        Some(own) if counter == record.id => own.runs,
        _ => usage(ctx, counter).await?.runs,
    };
    Ok(Some(runs.used(&quota, ctx.now)))
}

pub async fn usage(ctx: &Ctx, key_id: &str) -> Result<KeyFacts, Error> {
    call(ctx, key_id, UsageQuery {}).await
}

/// The key's usage series (docs/CONTRACT.md section 12).
pub async fn series(ctx: &Ctx, key_id: &str) -> Result<Series, Error> {
    call(ctx, key_id, SeriesQuery {}).await
}

/// Counts a job trigger and opens its idempotency record in one call. The decision on the
/// record is `None` when the request was refused by its rate limit or its quota; a full key's
/// refusal is already the error (with its Retry-After). With a quota, a new attempt's run comes
/// back too. A key whose runs count in its family's object ([`KeyRecord::quota_counter`])
/// opens the record first, then takes the run there; a refused (or unanswered) run forgets
/// the attempt again, so it sends nothing to the origin and a retry starts afresh.
pub async fn hit_and_begin(
    ctx: &Ctx,
    record: &KeyRecord,
    slot: &str,
    fingerprint: &str,
    lease_ms: u64,
) -> Result<(Hit, Option<Result<Begin, Error>>, Option<RunVerdict>), Error> {
    let counter = record.quota_counter();
    let own_count = counter == record.id;
    let mut answer = call(
        ctx,
        &record.id,
        HitBegin {
            rate_limit: record.rate_limit,
            slot: slot.to_owned(),
            fingerprint: fingerprint.to_owned(),
            lease_ms,
            quota: record.policy.quota.filter(|_| own_count),
        },
    )
    .await?;
    if let (false, Some(quota), Some(Begin::Proceed { attempt })) =
        (own_count, record.policy.quota, &answer.begin)
    {
        let attempt = *attempt;
        let taken = take_run(ctx, counter, quota).await;
        let forget = || idem_complete(ctx, &record.id, slot, fingerprint, attempt, None);
        match taken {
            Ok(run) if run.allowed => answer.run = Some(run),
            Ok(run) => {
                forget().await?;
                answer.run = Some(run);
            }
            Err(e) => {
                let _ = forget().await;
                return Err(e);
            }
        }
    }
    let begun = answer.begin.map(|b| match b {
        Begin::Full => Err(Error::TooManyIdempotencyKeys {
            retry_after: answer.retry_after_secs.unwrap_or(1),
        }),
        other => Ok(other),
    });
    Ok((answer.hit, begun, answer.run))
}

/// Finishes attempt `attempt`: `answer` to remember, `None` to forget it.
pub async fn idem_complete(
    ctx: &Ctx,
    key_id: &str,
    slot: &str,
    fingerprint: &str,
    attempt: u64,
    answer: Option<StoredResponse>,
) -> Result<(), Error> {
    let question = Complete {
        slot: slot.to_owned(),
        fingerprint: fingerprint.to_owned(),
        attempt,
        answer,
    };
    call(ctx, key_id, question).await?;
    Ok(())
}
