//! The one place a [`Change`] is recorded: the user's audit trail and, when webhooks are
//! configured, the event (docs/CONTRACT.md sections 12 and 14).
//!
//! Interface first; storage (a per-user Durable Object) and delivery (a Queue) follow.

use serde_json::Value;
use worker::console_log;

use super::Ctx;
use crate::core::access::Caller;
use crate::core::events::{Actor, Change};
use crate::core::Error;

/// The actor of a change made by `caller`.
pub fn actor(caller: &Caller<'_>) -> Actor {
    match caller {
        Caller::Admin => Actor::Admin,
        Caller::Key(record) => Actor::Key(record.id.clone()),
        Caller::Session(session) => Actor::Session(session.user_id.clone()),
    }
}

/// Records `change` (its time, request id and client IP are this request's).
pub async fn record(ctx: &Ctx, mut change: Change) -> Result<(), Error> {
    change.at = ctx.now;
    change.request_id = ctx.request_id.clone();
    change.client_ip = ctx.client_ip.clone();
    console_log!("{}", serde_json::json!({"audit": change.audit_entry()}));
    Ok(())
}

/// A user's audit trail, newest first: entries and the cursor of the next page.
#[allow(dead_code)] // GET /v1/audit-events and the settings page call it once they are routed.
pub async fn list(
    _ctx: &Ctx,
    _user_id: &str,
    _cursor: Option<&str>,
    _limit: u32,
) -> Result<(Vec<Value>, Option<String>), Error> {
    Ok((Vec::new(), None))
}
