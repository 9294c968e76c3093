//! The Cron Trigger (hourly, `[triggers]` in wrangler.toml): scans the KV user index for live
//! keys that expire within 7 days or 1 day (`key.expiring`) or expired within the last 30 days
//! (`key.expired`) and records each notice in its user's trail, which publishes it (section
//! 14). Each notice has a stable dedup ([`crate::core::expiry::dedup`]), so the user's object
//! stores and publishes it once however many runs see it. The work per run is bounded (see
//! [`SCAN_PAGES_PER_RUN`], [`MAX_NOTICES_PER_RUN`]); a run that stops early leaves a cursor
//! in KV for the next.

use worker::{console_log, event, Date, Env, ScheduleContext, ScheduledEvent};

use super::{audit, load_config, store, Ctx};
use crate::core::events::{Actor, Change};
use crate::core::expiry::{dedup, notice, MAX_NOTICES_PER_RUN, SCAN_PAGE, SCAN_PAGES_PER_RUN};
use crate::core::time::format_time;
use crate::core::Error;

#[event(scheduled)]
pub async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let Ok(config) = load_config(&env) else {
        return;
    };
    let now_ms = Date::now().as_millis();
    let ctx = Ctx {
        env,
        config,
        request_id: format!("cron-{}", event.schedule() as u64),
        // Notices carry their own dedup; nothing else is recorded by a run.
        nonce: format!("cron-{}", event.schedule() as u64),
        now: (now_ms / 1000) as i64,
        client_ip: None,
    };
    let outcome = run(&ctx).await;
    let (notices, pages, done, cause) = match outcome {
        Ok((n, p, d)) => (n, p, d, None),
        Err(e) => (0, 0, false, e.cause()),
    };
    console_log!(
        "{}",
        serde_json::json!({
            "cron": event.cron(),
            "request_id": ctx.request_id,
            "notices": notices,
            "pages": pages,
            "scan_complete": done,
            "cause": cause,
            "duration_ms": Date::now().as_millis().saturating_sub(now_ms),
        })
    );
}

/// Notices recorded, pages read, and whether the scan reached the end of the index.
async fn run(ctx: &Ctx) -> Result<(usize, usize, bool), Error> {
    let mut cursor = store::scan_cursor(ctx).await?;
    let (mut notices, mut pages) = (0, 0);
    while pages < SCAN_PAGES_PER_RUN && notices < MAX_NOTICES_PER_RUN {
        pages += 1;
        let (entries, next) = store::scan_index(ctx, cursor.take(), SCAN_PAGE).await?;
        for entry in entries.iter().filter(|e| !e.revoked) {
            let Some(expires_at) = entry.expires_at else {
                continue;
            };
            let Some(kind) = notice(ctx.now, expires_at) else {
                continue;
            };
            let details = serde_json::json!({ "expires_at": format_time(expires_at) });
            let mut change = Change::new(kind, Actor::System, &entry.user_id, Some(&entry.key_id))
                .with_details(details);
            change.dedup = Some(dedup(&entry.key_id, kind, expires_at));
            audit::record(ctx, change).await?;
            notices += 1;
        }
        let Some(c) = next else {
            store::set_scan_cursor(ctx, None).await?;
            return Ok((notices, pages, true));
        };
        cursor = Some(c);
    }
    // The next run goes on from here.
    store::set_scan_cursor(ctx, cursor.as_deref()).await?;
    Ok((notices, pages, false))
}
