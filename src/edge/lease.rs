//! The isolate's leases (docs/CONTRACT.md section 8): one [`LeaseTable`] per isolate, consulted
//! for every key-authenticated request, so that a key with a live lease is decided here with no
//! round trip. The arithmetic is [`crate::core::lease`]'s; this does the waiting and the calls.

use std::cell::RefCell;
use std::time::Duration;

use worker::{Context, Date, Delay};

use super::{key_client, pool, Ctx};
use crate::core::keystate::Hit;
use crate::core::lease::{batch_cap, LeaseTable, Take};
use crate::core::ratelimit::RateLimit;
use crate::core::record::KeyRecord;
use crate::core::{Cause, Error};

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
pub enum Decided {
    /// From the lease, no object call.
    Local,
    /// From the lease, and this request started a background renewal (one object call).
    LocalRenewing,
    /// The request waited on its own call to the object.
    Asked,
    /// `LEASE_MS = 0`, or a key managing keys: one object call for this request.
    Exact,
}

impl Decided {
    pub fn name(self) -> &'static str {
        match self {
            Decided::Local => "local",
            Decided::LocalRenewing => "local_renewing",
            Decided::Asked => "asked",
            Decided::Exact => "exact",
        }
    }
}

/// Whose allowance is leased: a key's (its object holds its allowance under the record's limit)
/// or a pool's (its object holds the pool's limits, docs/CONTRACT.md section 17). Their ids
/// never collide in the one table: a pool's is its storage name, `pool:...`.
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    Key(&'a KeyRecord),
    Pool(&'a pool::Leased),
}

/// A [`Subject`] kept for a background renewal, which outlives the request.
enum Owned {
    Key(KeyRecord),
    Pool(pool::Leased),
}

impl Owned {
    fn subject(&self) -> Subject<'_> {
        match self {
            Owned::Key(record) => Subject::Key(record),
            Owned::Pool(p) => Subject::Pool(p),
        }
    }
}

impl<'a> Subject<'a> {
    fn owned(self) -> Owned {
        match self {
            Subject::Key(record) => Owned::Key(record.clone()),
            Subject::Pool(p) => Owned::Pool(p.clone()),
        }
    }

    fn id(self) -> &'a str {
        match self {
            Subject::Key(record) => &record.id,
            Subject::Pool(p) => &p.name,
        }
    }

    fn limit(self) -> RateLimit {
        match self {
            Subject::Key(record) => record.rate_limit,
            Subject::Pool(p) => p.limit,
        }
    }

    async fn ask(self, ctx: &Ctx, want: u32, refused: u32) -> Result<Hit, Error> {
        match self {
            Subject::Key(record) => key_client::hit(ctx, record, want, refused).await,
            Subject::Pool(p) => pool::ask(ctx, p, want, refused).await,
        }
    }

    /// After an answer: a pool's refusal is held at most one lease period.
    fn after_answer(self, table: &mut LeaseTable, sent_ms: u64, lease_ms: u64) {
        if let Subject::Pool(p) = self {
            table.hold_refusal_until(&p.name, sent_ms.saturating_add(lease_ms));
        }
    }
}

/// The key object's verdict on one request, from this isolate's lease when it holds one.
pub async fn decide(
    ctx: &Ctx,
    wctx: &Context,
    record: &KeyRecord,
) -> Result<(Hit, Decided), Error> {
    decide_for(ctx, wctx, Subject::Key(record)).await
}

/// The verdict of `subject`'s object on one request, from this isolate's lease when it holds
/// one.
pub async fn decide_for(
    ctx: &Ctx,
    wctx: &Context,
    subject: Subject<'_>,
) -> Result<(Hit, Decided), Error> {
    let lease_ms = ctx.config.lease_ms;
    if lease_ms == 0 {
        return Ok((subject.ask(ctx, 1, 0).await?, Decided::Exact));
    }
    let cap = batch_cap(subject.limit(), lease_ms);
    let id = subject.id();
    for _ in 0..MAX_WAITS {
        let now = Date::now().as_millis();
        let take = LEASES.with(|t| t.borrow_mut().take(id, now, lease_ms, cap));
        match take {
            Take::Decided { verdict, renew } => {
                let Some(want) = renew else {
                    return Ok((verdict, Decided::Local));
                };
                let detached = ctx.detached();
                let owned = subject.owned();
                wctx.wait_until(async move {
                    renew_now(&detached, owned.subject(), want, now).await;
                });
                return Ok((verdict, Decided::LocalRenewing));
            }
            Take::Wait => pause().await,
            Take::Ask { want } => {
                let refused = LEASES.with(|t| t.borrow_mut().refusals_to_report(id));
                let answer = subject.ask(ctx, want, refused).await;
                return LEASES.with(|t| {
                    let mut t = t.borrow_mut();
                    match answer {
                        Ok(answer) => {
                            let verdict = t.granted(id, &answer, now, lease_ms, true);
                            subject.after_answer(&mut t, now, lease_ms);
                            Ok((verdict, Decided::Asked))
                        }
                        Err(e) => {
                            t.failed(id);
                            Err(e)
                        }
                    }
                });
            }
        }
    }
    Err(Error::Unavailable(Cause::LeaseWait))
}

/// A background renewal: the object's answer joins the lease; a failure leaves the lease to
/// serve until its deadline (then requests ask, and fail closed if the object is still down).
async fn renew_now(ctx: &Ctx, subject: Subject<'_>, want: u32, sent_ms: u64) {
    let id = subject.id();
    let refused = LEASES.with(|t| t.borrow_mut().refusals_to_report(id));
    let answer = subject.ask(ctx, want, refused).await;
    LEASES.with(|t| {
        let mut t = t.borrow_mut();
        match answer {
            Ok(answer) => {
                t.granted(id, &answer, sent_ms, ctx.config.lease_ms, false);
                subject.after_answer(&mut t, sent_ms, ctx.config.lease_ms);
            }
            Err(_) => t.failed(id),
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
    known_refusal_of(ctx, &record.id)
}

/// The same for any subject's lease, by its id (a pool's: its storage name).
pub fn known_refusal_of(ctx: &Ctx, id: &str) -> Option<Hit> {
    if ctx.config.lease_ms == 0 {
        return None;
    }
    let now = Date::now().as_millis();
    LEASES.with(|t| t.borrow_mut().known_refusal(id, now))
}

/// Notes the object's over-limit answer to a call outside the lease, sent at `sent_ms` (see
/// [`LeaseTable::note_refusal`]).
pub fn note_refusal(ctx: &Ctx, record: &KeyRecord, answer: &Hit, sent_ms: u64) {
    if ctx.config.lease_ms > 0 {
        LEASES.with(|t| t.borrow_mut().note_refusal(&record.id, answer, sent_ms));
    }
}
