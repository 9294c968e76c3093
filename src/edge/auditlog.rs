//! The one place a [`Change`] is recorded: the user's audit trail and, when webhooks are
//! configured, the event (docs/CONTRACT.md sections 12 and 14). Both go to the user's
//! [`super::auditlog_object`] object in one call: it stores the entry and keeps the event in its
//! outbox until the queue has it, so an event is never published for a change that was not
//! recorded, nor lost for one that was.

use serde_json::Value;

use super::store::Listed;
use super::{objects, Ctx};
use crate::core::access::Caller;
use crate::core::auditlog::{
    parse_cursor, Admit, Admitted, Append, AppendMany, Appended, AppendedMany, ListAsk, Page,
    Retire, TakeChange,
};
use crate::core::caller::Trail;
use crate::core::events::{for_user, Actor, Change};
use crate::core::request::parse_list_query;
use crate::core::Error;

/// The actor of a change made by `caller`.
pub fn actor(caller: &Caller<'_>) -> Actor {
    caller.actor()
}

/// Whether events are published: `WEBHOOK_URL` set and `WEBHOOK_SECRET` present.
pub fn webhooks_configured(ctx: &Ctx) -> bool {
    ctx.config.webhook_url.is_some() && ctx.config.secrets.webhook.is_some()
}

fn user_trail(user_id: &str) -> String {
    Trail::User(user_id.to_owned()).object_name()
}

/// The trail a change belongs to.
fn trail_of(change: &Change) -> String {
    match &change.workspace_id {
        Some(ws) => Trail::Workspace(ws.clone()),
        None => Trail::User(change.user_id.clone()),
    }
    .object_name()
}

/// Records `change` (its time, request id and client IP are this request's), durably, before
/// the caller answers its client. A change with the same id is stored once. Any failure is
/// 503 `unavailable`: each caller decides what a change that took effect but is unrecorded
/// means for its answer (docs/CONTRACT.md section 12).
pub async fn record(ctx: &Ctx, mut change: Change) -> Result<(), Error> {
    stamp(ctx, &mut change);
    append(ctx, &change).await.map(|_| ())
}

/// A change gets this request's time, request id, nonce and client address.
fn stamp(ctx: &Ctx, change: &mut Change) {
    change.at = ctx.now;
    change.request_id = ctx.request_id.clone();
    change.nonce = ctx.nonce();
    change.client_ip = ctx.client_ip.clone();
}

/// Records several changes of one user (`user_id`) in one call to the user's object, each as
/// [`record`] would; answers how many were new. The Cron Trigger's notices of a page.
pub async fn record_many(ctx: &Ctx, user_id: &str, changes: Vec<Change>) -> Result<u32, Error> {
    let changes = changes
        .into_iter()
        .map(|mut change| {
            stamp(ctx, &mut change);
            appended(ctx, &change)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let answer: AppendedMany =
        objects::call(ctx, &user_trail(user_id), AppendMany { changes }).await?;
    Ok(answer.stored)
}

/// The object's message for `change`: its entry and, when webhooks are configured, its event.
fn appended(ctx: &Ctx, change: &Change) -> Result<Append, Error> {
    let event = if webhooks_configured(ctx) {
        Some(serde_json::to_string(&change.event()).map_err(|_| Error::Internal)?)
    } else {
        None
    };
    Ok(Append {
        id: change.id(),
        at: change.at,
        entry: change.audit_entry(),
        event,
    })
}

/// Records a change whose time, request id and IP are already set.
async fn append(ctx: &Ctx, change: &Change) -> Result<bool, Error> {
    let q = appended(ctx, change)?;
    let answer: Appended = objects::call(ctx, &trail_of(change), q).await?;
    Ok(answer.stored)
}

/// Counts key `key_id` of `user_id` under the cap `max` (docs/CONTRACT.md section 4), in the
/// user's object, which sees every create one at a time; `listed` is the KV listing of the
/// user's live keys (the object reconciles its count with it). 409 `key_limit_reached` when the
/// user already holds `max`.
pub async fn admit_key(
    ctx: &Ctx,
    user_id: &str,
    key_id: &str,
    expires_at: Option<i64>,
    listed: &Listed,
    max: u64,
) -> Result<(), Error> {
    let q = Admit {
        key_id: key_id.to_owned(),
        expires_at,
        listed: listed.count,
        listed_ids: listed.complete.then(|| listed.ids.clone()),
        max,
        now: ctx.now,
    };
    let answer: Admitted = objects::call(ctx, &user_trail(user_id), q).await?;
    if answer.admitted {
        Ok(())
    } else {
        Err(Error::KeyLimitReached)
    }
}

/// Key `key_id` no longer counts (revoked: `expires_at` `None`) or expires earlier. Best effort:
/// a failure leaves the key counted until its old expiry (the cap then errs on the safe side).
pub async fn retire_key(ctx: &Ctx, user_id: &str, key_id: &str, expires_at: Option<i64>) {
    let q = Retire {
        key_id: key_id.to_owned(),
        expires_at,
    };
    let _: Result<Admitted, Error> = objects::call(ctx, &user_trail(user_id), q).await;
}

/// Takes one of the day's key changes of `user_id`'s keys and settings sessions; 429
/// `too_many_changes` past [`crate::core::auditlog::MAX_CHANGES_PER_USER_PER_DAY`].
pub async fn take_change(ctx: &Ctx, user_id: &str) -> Result<(), Error> {
    let answer: Admitted =
        objects::call(ctx, &user_trail(user_id), TakeChange { now: ctx.now }).await?;
    match answer.retry_after {
        Some(retry_after) if !answer.admitted => Err(Error::TooManyChanges { retry_after }),
        _ => Ok(()),
    }
}

/// One page of a trail, newest first.
async fn list_trail(
    ctx: &Ctx,
    trail: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<Value>, Option<String>), Error> {
    let start = match cursor {
        None => None,
        Some(c) => Some(
            parse_cursor(c)
                .ok_or_else(|| Error::field("cursor", "is not a cursor returned by this API"))?,
        ),
    };
    let q = ListAsk {
        start,
        limit: limit as usize,
    };
    let page: Page = objects::call(ctx, trail, q).await?;
    Ok((page.results, page.next_cursor))
}

/// `GET /v1/audit-events`: the admin names a user, a key sees its own user's trail only.
pub async fn events(ctx: &Ctx, query: Option<&str>, caller: &Caller<'_>) -> Result<Value, Error> {
    let q = parse_list_query(query)?;
    let trail = caller.trail(q.user_id, q.workspace_id)?.object_name();
    let (mut results, next) = list_trail(ctx, &trail, q.cursor.as_deref(), q.limit as u32).await?;
    if !caller.sees_admin_details() {
        results = results.into_iter().map(for_user).collect();
    }
    Ok(serde_json::json!({"results": results, "next_cursor": next}))
}
