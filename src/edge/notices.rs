//! Records the system's notices of a key's use, as [`crate::core::notices`] decides them: the
//! quota's threshold and exhaustion for a run, and a rate limit exceeded (docs/CONTRACT.md
//! sections 12 and 14).

use std::cell::RefCell;

use worker::{console_log, Context};

use super::{auditlog, Ctx};
use crate::core::notices::{self, HourlyNotices, Subject};
use crate::core::pool::PoolRef;
use crate::core::quota::{Quota, RunVerdict};
use crate::core::ratelimit::RateLimit;
use crate::core::record::KeyRecord;
use crate::core::Cause;

thread_local! {
    /// The isolate's memory of the rate-limit notices it sent this hour (bounded, see
    /// [`notices::MAX_REMEMBERED_SUBJECTS`]).
    static SENT: RefCell<HourlyNotices> = RefCell::new(HourlyNotices::default());
}

fn subject(record: &KeyRecord) -> Subject<'_> {
    Subject::Key {
        id: &record.id,
        user_id: &record.user_id,
    }
}

/// Records the notices `run` of `record`'s quota gives rise to (threshold, exhaustion), in one
/// call to the user's object, before the trigger is answered, like any change. A failure is
/// only noted for the log line: the run has been counted and goes ahead.
pub async fn for_run(ctx: &Ctx, record: &KeyRecord, run: Option<&RunVerdict>) -> Option<Cause> {
    let (run, quota) = (run?, record.policy.quota?);
    let changes = notices::run_notices(&subject(record), &quota, run);
    if changes.is_empty() {
        return None;
    }
    auditlog::record_many(ctx, &record.user_id, changes)
        .await
        .err()
        .map(|_| Cause::AuditQuotaNotice)
}

/// A key refused by its own rate limit: [`rate_limit_exceeded`] for the key.
pub fn rate_limited(ctx: &Ctx, wctx: &Context, record: &KeyRecord) {
    rate_limit_exceeded(ctx, wctx, subject(record), record.rate_limit);
}

/// A request refused by a pool's rate limit (docs/CONTRACT.md section 17).
pub fn pool_rate_limited(ctx: &Ctx, wctx: &Context, pool: &PoolRef, limit: RateLimit) {
    rate_limit_exceeded(ctx, wctx, Subject::Pool(pool), limit);
}

/// `rate_limit.exceeded` for `subject`, at most once per hour from this isolate (the dedup id
/// makes it once per hour everywhere), recorded in the background: the refusal never waits for
/// it, and a failure to record it never changes the 429 (it is logged).
fn rate_limit_exceeded(ctx: &Ctx, wctx: &Context, subject: Subject<'_>, limit: RateLimit) {
    let Some(hour) = SENT.with(|sent| sent.borrow_mut().due(&subject.tag(), ctx.now)) else {
        return;
    };
    let change = notices::rate_limit_exceeded(&subject, limit, hour);
    let detached = ctx.detached();
    wctx.wait_until(async move {
        if auditlog::record(&detached, change.clone()).await.is_err() {
            let line = serde_json::json!({
                "level": "error",
                "notice": "rate_limit.exceeded",
                "key_id": change.key_id,
                "pool": change.details.get("pool"),
                "request_id": detached.request_id,
                "cause": Cause::AuditLog.name(),
            });
            console_log!("{line}");
        }
    });
}

/// The notices of a pool's run that reached 80 % or 100 % of its quota, in its user's or
/// workspace's trail, before the trigger answers (as a key's). A failure is only noted.
pub async fn for_pool_run(
    ctx: &Ctx,
    pool: &PoolRef,
    quota: &Quota,
    run: &RunVerdict,
) -> Option<Cause> {
    for change in notices::run_notices(&Subject::Pool(pool), quota, run) {
        if auditlog::record(ctx, change).await.is_err() {
            return Some(Cause::AuditQuotaNotice);
        }
    }
    None
}
