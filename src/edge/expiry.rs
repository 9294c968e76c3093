//! The Cron Trigger (hourly, `[triggers]` in wrangler.toml): scans the KV user index for live
//! keys that expire within 7 days or 1 day (`key.expiring`) or expired within the last 30 days
//! (`key.expired`) and records each notice in its user's trail, which publishes it (section
//! 14). Each notice has a stable dedup ([`crate::core::expiry::dedup`]), so the user's object
//! stores and publishes it once however many runs see it. The work per run is bounded, and a
//! notice that fails is skipped (see [`crate::core::expiry::after_page`]); a run that stops
//! early leaves a cursor in KV for the next.

use std::collections::HashSet;

use worker::{console_log, event, Date, Env, ScheduleContext, ScheduledEvent};

use super::{auditlog, load_config, store, Ctx};
use crate::core::details;
use crate::core::events::{Actor, Change};
use crate::core::expiry::{after_page, by_user, dedup, notice, AfterPage, RunTally, SCAN_PAGE};
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
        nonce: std::cell::OnceCell::from(format!("cron-{}", event.schedule() as u64)),
        now: (now_ms / 1000) as i64,
        client_ip: None,
        pool_calls: std::cell::Cell::new(None),
    };
    let outcome = run(&ctx).await;
    let (tally, done, cause) = match outcome {
        Ok((t, d)) => (t, d, None),
        Err(e) => (RunTally::default(), false, e.cause()),
    };
    console_log!(
        "{}",
        serde_json::json!({
            "cron": event.cron(),
            "request_id": ctx.request_id,
            "calls": tally.calls,
            "notices": tally.notices,
            "new_notices": tally.new_notices,
            "failures": tally.failures,
            "pages": tally.pages,
            "scan_complete": done,
            "cause": cause,
            "duration_ms": Date::now().as_millis().saturating_sub(now_ms),
        })
    );
}

/// What a run did: its tally and whether the scan reached the end of the index.
async fn run(ctx: &Ctx) -> Result<(RunTally, bool), Error> {
    let mut cursor = store::scan_cursor(ctx).await?;
    let mut tally = RunTally::default();
    // Users whose trail failed in this run: their other notices wait for a later pass too, so
    // one failing trail costs one failure, not one per page.
    let mut failed_users: HashSet<String> = HashSet::new();
    loop {
        tally.pages += 1;
        // A KV failure still ends the run with an error and the stored cursor unchanged.
        let (entries, next) = store::scan_index(ctx, cursor.clone(), SCAN_PAGE).await?;
        let due = entries
            .iter()
            .filter(|e| !e.revoked && !failed_users.contains(&e.user_id))
            .filter_map(|e| {
                let expires_at = e.expires_at?;
                let kind = notice(ctx.now, expires_at)?;
                let mut change = Change::new(kind, Actor::System, &e.user_id, Some(&e.key_id))
                    .with_details(details::expiry(expires_at));
                change.dedup = Some(dedup(&e.key_id, kind, expires_at));
                Some((e.user_id.clone(), change))
            })
            .collect();
        // One call per user: a user's many keys cost one call a page, not one each.
        for (user_id, changes) in by_user(due) {
            let sent = changes.len();
            tally.calls += 1;
            // Skipped on failure: the dedup makes a later pass send each exactly once.
            match auditlog::record_many(ctx, &user_id, changes).await {
                Ok(new) => {
                    tally.notices += sent;
                    tally.new_notices += new as usize;
                }
                Err(_) => {
                    tally.failures += 1;
                    failed_users.insert(user_id);
                }
            }
        }
        match after_page(cursor.as_deref(), next, tally) {
            AfterPage::Continue(c) => cursor = Some(c),
            AfterPage::Stop {
                cursor: stored,
                complete,
            } => {
                // The next run goes on from here.
                store::set_scan_cursor(ctx, stored.as_deref()).await?;
                return Ok((tally, complete));
            }
        }
    }
}
