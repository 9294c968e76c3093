//! The isolate's leases (docs/CONTRACT.md section 8): one [`LeaseTable`] per isolate, consulted
//! for every key-authenticated request, so that a key with a live lease is decided here with no
//! round trip. The arithmetic is [`crate::core::lease`]'s; this does the waiting and the calls.

use std::cell::RefCell;
use std::time::Duration;

use worker::{Context, Date, Delay};

use super::{key_client, Ctx};
use crate::core::keystate::Hit;
use crate::core::lease::{batch_cap, LeaseTable, Take};
use crate::core::record::KeyRecord;
use crate::core::Error;

/// How long a request waits, per look, for another request's call to the object.
const WAIT_STEP_MS: u64 = 2;
/// How many looks before giving up (503): about 6 s, beyond one object round trip and beyond
/// [`crate::core::lease::ASK_TIMEOUT_MS`], after which a waiting request asks itself.
const MAX_WAITS: usize = 3000;

thread_local! {
    static LEASES: RefCell<LeaseTable> = RefCell::new(LeaseTable::default());
}

/// How the request was decided, for the log line (and the count of object calls it implies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// From the lease, no object call.
    Local,
    /// From the lease, and this request started a background renewal (one object call).
    LocalRenewing,
    /// The request waited on its own call to the object.
    Asked,
    /// `LEASE_MS = 0`, or a key managing keys: one object call for this request.
    Exact,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Local => "local",
            Path::LocalRenewing => "local_renewing",
            Path::Asked => "asked",
            Path::Exact => "exact",
        }
    }
}

/// The key object's verdict on one request, from this isolate's lease when it holds one.
pub async fn decide(ctx: &Ctx, wctx: &Context, record: &KeyRecord) -> Result<(Hit, Path), Error> {
    let lease_ms = ctx.config.lease_ms;
    if lease_ms == 0 {
        return Ok((key_client::hit(ctx, record, 1, 0).await?, Path::Exact));
    }
    let cap = batch_cap(record.rate_limit, lease_ms);
    for _ in 0..MAX_WAITS {
        let now = Date::now().as_millis();
        let take = LEASES.with(|t| t.borrow_mut().take(&record.id, now, lease_ms, cap));
        match take {
            Take::Decided { verdict, renew } => {
                let Some(want) = renew else {
                    return Ok((verdict, Path::Local));
                };
                let detached = ctx.detached();
                let record = record.clone();
                wctx.wait_until(async move {
                    renew_now(&detached, &record, want, now).await;
                });
                return Ok((verdict, Path::LocalRenewing));
            }
            Take::Wait => pause().await,
            Take::Ask { want } => {
                let refused = LEASES.with(|t| t.borrow_mut().refusals_to_report(&record.id));
                let answer = key_client::hit(ctx, record, want, refused).await;
                return LEASES.with(|t| {
                    let mut t = t.borrow_mut();
                    match answer {
                        Ok(answer) => Ok((
                            t.granted(&record.id, &answer, now, lease_ms, true),
                            Path::Asked,
                        )),
                        Err(e) => {
                            t.failed(&record.id);
                            Err(e)
                        }
                    }
                });
            }
        }
    }
    Err(ctx.unavailable("lease_wait"))
}

/// A background renewal: the object's answer joins the lease; a failure leaves the lease to
/// serve until its deadline (then requests ask, and fail closed if the object is still down).
async fn renew_now(ctx: &Ctx, record: &KeyRecord, want: u32, sent_ms: u64) {
    let refused = LEASES.with(|t| t.borrow_mut().refusals_to_report(&record.id));
    let answer = key_client::hit(ctx, record, want, refused).await;
    LEASES.with(|t| {
        let mut t = t.borrow_mut();
        match answer {
            Ok(answer) => {
                t.granted(&record.id, &answer, sent_ms, ctx.config.lease_ms, false);
            }
            Err(_) => t.failed(&record.id),
        }
    });
}

/// Waits a moment for this isolate's call to the object for a key to answer. A timer, not a
/// waker: workerd cancels a request as hung when it waits only on another request's I/O (the
/// call in flight belongs to the request that made it), while a timer is the waiting request's
/// own.
async fn pause() {
    Delay::from(Duration::from_millis(WAIT_STEP_MS)).await;
}

/// This isolate revoked or rolled the key: its lease here ends at once.
pub fn forget(key_id: &str) {
    let now = Date::now().as_millis();
    LEASES.with(|t| t.borrow_mut().forget(key_id, now));
}

/// A refusal this isolate already knows for the key (see [`LeaseTable::known_refusal`]);
/// never with `LEASE_MS = 0`, where every request asks the key's object.
pub fn known_refusal(ctx: &Ctx, record: &KeyRecord) -> Option<Hit> {
    if ctx.config.lease_ms == 0 {
        return None;
    }
    let now = Date::now().as_millis();
    LEASES.with(|t| t.borrow_mut().known_refusal(&record.id, now))
}

/// Notes the object's over-limit answer to a call outside the lease, sent at `sent_ms` (see
/// [`LeaseTable::note_refusal`]).
pub fn note_refusal(ctx: &Ctx, record: &KeyRecord, answer: &Hit, sent_ms: u64) {
    if ctx.config.lease_ms > 0 {
        LEASES.with(|t| t.borrow_mut().note_refusal(&record.id, answer, sent_ms));
    }
}
