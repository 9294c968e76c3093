//! The Cron Trigger (hourly, `[triggers]` in wrangler.toml): scans the KV user index for live
//! keys that expire within 7 days or 1 day (`key.expiring`) or expired within the last 30 days
//! (`key.expired`) and records each notice in its user's trail, which publishes it (section
//! 14). Each notice has a stable dedup ([`crate::core::expiry::dedup`]), so the user's object
//! stores and publishes it once however many runs see it. The work per run is bounded, and a
//! notice that fails is skipped (see [`crate::core::expiry::after_page`]); a run that stops
//! early leaves a cursor in KV for the next.

use std::collections::{HashMap, HashSet};

use worker::{console_log, event, Date, Env, ScheduleContext, ScheduledEvent};

use super::{audit, load_config, store, Ctx};
use crate::core::events::{Actor, Change};
use crate::core::expiry::{after_page, dedup, notice, step, AfterPage, RunTally, Step, SCAN_PAGE};
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
    let (tally, done, cause) = match outcome {
        Ok((t, d)) => (t, d, None),
        Err(e) => (RunTally::default(), false, e.cause()),
    };
    console_log!(
        "{}",
        serde_json::json!({
            "cron": event.cron(),
            "request_id": ctx.request_id,
            "notices": tally.notices,
            "new_notices": tally.new_notices,
            "deferred": tally.deferred,
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
    // one failing trail costs one failure, not one per key.
    let mut failed_users: HashSet<String> = HashSet::new();
    // Notices sent per user in this run (each user's share is bounded).
    let mut sent: HashMap<String, usize> = HashMap::new();
    loop {
        tally.pages += 1;
        // A KV failure still ends the run with an error and the stored cursor unchanged.
        let (entries, next) = store::scan_index(ctx, cursor.clone(), SCAN_PAGE).await?;
        for entry in entries.iter().filter(|e| !e.revoked) {
            let Some(expires_at) = entry.expires_at else {
                continue;
            };
            let Some(kind) = notice(ctx.now, expires_at) else {
                continue;
            };
            if failed_users.contains(&entry.user_id) {
                continue;
            }
            let id = dedup(&entry.key_id, kind, expires_at);
            let for_user = sent.get(&entry.user_id).copied().unwrap_or(0);
            match step(entry.marked.as_deref(), &id, for_user) {
                Step::Skip => continue,
                Step::Defer => {
                    tally.deferred += 1;
                    continue;
                }
                Step::Send => {}
            }
            if tally.spent() {
                // This page again next run: what was sent on it is marked, so skipped then.
                store::set_scan_cursor(ctx, cursor.as_deref()).await?;
                return Ok((tally, false));
            }
            let details = serde_json::json!({ "expires_at": format_time(expires_at) });
            let mut change = Change::new(kind, Actor::System, &entry.user_id, Some(&entry.key_id))
                .with_details(details);
            change.dedup = Some(id.clone());
            // Skipped on failure: the dedup makes a later pass send it exactly once.
            match audit::record_new(ctx, change).await {
                Ok(new) => {
                    tally.notices += 1;
                    tally.new_notices += usize::from(new);
                    *sent.entry(entry.user_id.clone()).or_default() += 1;
                    // Unmarked (a failed write), the next pass asks again; the object drops
                    // the repeat.
                    let _ = store::mark_notified(ctx, entry, &id).await;
                }
                Err(_) => {
                    tally.failures += 1;
                    failed_users.insert(entry.user_id.clone());
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
