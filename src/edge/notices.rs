//! Records the system's notices of a key's use, as [`crate::core::notices`] decides them: the
//! quota's threshold and exhaustion for a run, and a rate limit exceeded (docs/CONTRACT.md
//! sections 12 and 14).

use std::cell::RefCell;

use worker::{console_log, Context};

use super::{audit, Ctx};
use crate::core::notices::{self, HourlyNotices, Subject};
use crate::core::quota::RunVerdict;
use crate::core::record::KeyRecord;

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
pub async fn for_run(
    ctx: &Ctx,
    record: &KeyRecord,
    run: Option<&RunVerdict>,
) -> Option<&'static str> {
    let (run, quota) = (run?, record.policy.quota?);
    let changes = notices::run_notices(&subject(record), &quota, run);
    if changes.is_empty() {
        return None;
    }
    audit::record_many(ctx, &record.user_id, changes)
        .await
        .err()
        .map(|_| "audit_quota_notice")
}

/// A request of `record` was refused by its rate limit: records `rate_limit.exceeded` in the
/// background, unless this isolate already did this hour. The refusal's answer neither waits
/// for it nor depends on it; a failure is logged on its own line.
pub fn rate_limited(ctx: &Ctx, wctx: &Context, record: &KeyRecord) {
    let subject = subject(record);
    let Some(hour) = SENT.with(|sent| sent.borrow_mut().due(subject.tag(), ctx.now)) else {
        return;
    };
    let change = notices::rate_limit_exceeded(&subject, record.rate_limit, hour);
    let detached = ctx.detached();
    wctx.wait_until(async move {
        if audit::record(&detached, change.clone()).await.is_err() {
            let line = serde_json::json!({
                "level": "error",
                "notice": "rate_limit.exceeded",
                "key_id": change.key_id,
                "request_id": detached.request_id,
                "cause": "audit_log",
            });
            console_log!("{line}");
        }
    });
}
