//! The job triggers that the key's object counts (docs/CONTRACT.md sections 6 and 13): the
//! trigger with an `Idempotency-Key` (one object call counts it and opens its record; the
//! origin's answer is remembered and replayed) and the trigger of a key with a quota. Their
//! origin calls go through [`super::forward`]'s `prepare` and `send`.

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::{Stream, StreamExt, TryStreamExt};
use worker::wasm_bindgen::JsValue;
use worker::{Context, Date, Delay, Headers, Response, ResponseBuilder};

use super::forward::{forward_call, new_abort, prepare, relay, relayed_headers, send, Call};
use super::http::Req;
use super::http::{read_body_held, HeldBody};
use super::{key_client, lease, notices, pool, Ctx, Incoming, Reply};
use crate::core::access::{self, Need};
use crate::core::assertion::body_sha256;
use crate::core::forward::body_fits;
use crate::core::idempotency::{
    check_idempotency_key, fingerprint_chunks, idempotency_slot, in_flight_lease_ms, remember,
    Begin, StoredResponse, MAX_STORED_BODY_BYTES,
};
use crate::core::names::{
    CONTENT_LENGTH, CONTENT_TYPE, IDEMPOTENCY_KEY, IDEMPOTENT_BODY_OMITTED, IDEMPOTENT_REPLAYED,
    JSON_TYPE,
};
use crate::core::plan::{Before, Plan};
use crate::core::quota::{Quota, RunVerdict};
use crate::core::ratelimit::Decision;
use crate::core::record::KeyRecord;
use crate::core::route::Forward;
use crate::core::{Cause, Error};

/// The `Idempotency-Key` of a job trigger, if it carries one (other routes ignore the header).
pub fn idempotency_key(req: &Req, route: &Forward<'_>) -> Option<String> {
    if route.job_run {
        req.headers().get(IDEMPOTENCY_KEY).ok().flatten()
    } else {
        None
    }
}

/// The job trigger with an `Idempotency-Key`: one object call both counts the request and opens
/// its idempotency record (two round trips per trigger, not three). What can be refused before
/// that call (workspace, permission, the body, the header) is checked first, then answered in
/// the contract's order once counted ([`access::refuse_after_count`]). Returns the rate-limit
/// decision for the `RateLimit-*` headers with the result.
pub async fn trigger(
    ctx: &Ctx,
    wctx: &Context,
    incoming: Incoming<'_>,
    need: &Need<'_>,
    record: &KeyRecord,
    plan: &Plan<'_>,
    idempotency_key: &str,
) -> (Option<Decision>, Result<Reply, Error>) {
    let req = incoming.req;
    let early = async {
        let mut call = None;
        let mut body = None;
        for step in plan.before_count() {
            match step {
                Before::Rows => access::authorize(record, need, ctx.client_addr())?,
                Before::Prepare => call = Some(prepare(ctx, incoming, need.workspace, record)?),
                Before::IdempotencyKey => check_idempotency_key(idempotency_key)?,
                // Buffered here (trigger bodies are small).
                Before::Body => body = Some(read_body_held(req, ctx.config.max_body_bytes).await?),
            }
        }
        Ok::<_, Error>((call.ok_or(Error::Internal)?, body.ok_or(Error::Internal)?))
    };
    match early.await {
        Ok((call, body)) => idempotent(ctx, wctx, req, need, &call, idempotency_key, body).await,
        Err(later) => refused_early(ctx, need, record, later).await,
    }
}

/// A refusal of the key this isolate already knows (over the limit, suspended, revoked or
/// expired, see [`lease::known_refusal`]), with its rate-limit decision: the idempotent trigger
/// answers it before reading its body, so a rate-limited key does not cost a body read (up to
/// `MAX_BODY_BYTES`) per refused call.
pub fn refused_here(
    ctx: &Ctx,
    need: &Need<'_>,
    record: &KeyRecord,
) -> Option<(Option<Decision>, Error)> {
    if let Some(known) = lease::known_refusal(ctx, record) {
        let refusal = access::decide_key(record, ctx.now, &known, need, ctx.client_addr()).err();
        if let Some(refusal) = refusal {
            return Some((access::counted(&known), refusal));
        }
    }
    // A pool's cached refusal: only once the key's own rows allow the call.
    access::authorize(record, need, ctx.client_addr()).ok()?;
    let (decision, refusal) = pool::known_refusal(ctx, &record.user_id, need.workspace)?;
    Some((Some(decision), refusal))
}

/// A trigger refused before its object call (by the IP, workspace or permission row, its body,
/// header or configuration): the request is still counted, as every authenticated request is,
/// but takes no run and opens no record, and the answer is the one the contract's order puts
/// first once counted ([`access::refuse_after_count`]: a rate-limited key is 429 before a 400).
async fn refused_early(
    ctx: &Ctx,
    need: &Need<'_>,
    record: &KeyRecord,
    later: Error,
) -> (Option<Decision>, Result<Reply, Error>) {
    match key_client::hit(ctx, record, 1, 0).await {
        Err(e) => (None, Err(e)),
        Ok(verdict) => (
            access::counted(&verdict),
            Err(access::refuse_after_count(
                record,
                ctx.now,
                &verdict,
                need,
                ctx.client_addr(),
                later,
            )),
        ),
    }
}

/// The job-trigger route with `Idempotency-Key` (docs/CONTRACT.md section 6): the key's object
/// holds one record per (key id, Idempotency-Key), so concurrent retries make exactly one
/// origin call, and the job never runs twice within 24 h whatever the answer's size or speed.
async fn idempotent(
    ctx: &Ctx,
    wctx: &Context,
    req: &Req,
    need: &Need<'_>,
    call: &Call<'_>,
    idempotency_key: &str,
    body: HeldBody,
) -> (Option<Decision>, Result<Reply, Error>) {
    let fp = fingerprint_chunks(call.method, &call.path_and_query, body.chunks());
    let slot = idempotency_slot(idempotency_key);
    let lease = in_flight_lease_ms(ctx.config.origin_timeout_ms);
    let sent_ms = Date::now().as_millis();
    let (verdict, begun, run) =
        match key_client::hit_and_begin(ctx, call.record, &slot, &fp, lease).await {
            Ok(answer) => answer,
            Err(e) => return (None, Err(e)),
        };
    lease::note_refusal(ctx, call.record, &verdict, sent_ms);
    let client = ctx.client_addr();
    let allowed = access::decide_run(call.record, ctx.now, &verdict, need, client, run.as_ref());
    let mut decision = access::counted(&verdict);
    // A new attempt may start the job: its exchange must reach the record's finish even if the
    // client hangs up, or the record stays in flight until its lease lapses and a retry runs
    // the job again (and a pool's refusal must forget it and give the key's run back). Held
    // until this function returns, this keeps the request's context alive (`waitUntil`).
    let _alive = matches!(
        (&allowed, &begun),
        (Ok(()), Some(Ok(Begin::Proceed { .. })))
    )
    .then(|| KeepAlive::new(wctx));
    let mut kept = run;
    let pooled = match (&allowed, &begun) {
        (Ok(()), Some(Ok(begin))) => {
            let new_run = matches!(begin, Begin::Proceed { .. });
            let (d, pooled) =
                pool::admit_trigger(ctx, wctx, call.record, need.workspace, decision, new_run)
                    .await;
            decision = d;
            if let (Err(_), Begin::Proceed { attempt }) = (&pooled, begin) {
                // Refused by a pool: the attempt sends nothing, so a retry starts afresh, and
                // the key's run goes back (a request a pool refuses spends no key quota).
                let key_id = &call.record.id;
                let _ = key_client::idem_complete(ctx, key_id, &slot, &fp, *attempt, None).await;
                kept = give_back(ctx, call.record, run).await;
            }
            pooled
        }
        _ => Ok(Vec::new()),
    };
    let result = match allowed.and(pooled.map(|_| ())) {
        Err(e) => Err(e),
        // Allowed, so the object has opened (or found) the record, or refused a new one.
        Ok(()) => match begun {
            // A new attempt's exchange is kept alive by `_alive` above.
            Some(begun) => run_once(ctx, req, call, &slot, &fp, begun, body).await,
            None => Err(Error::Unavailable(Cause::DurableObject)),
        },
    };
    let result = noted(
        result,
        notices::for_run(ctx, call.record, kept.as_ref()).await,
    );
    (decision, result)
}

/// The job trigger of a key with a `quota` and no `Idempotency-Key` (docs/CONTRACT.md section
/// 13): one object call counts the request and, if the rate limit allows it, one run, so the
/// quota is exact. As for the idempotent trigger, what can be refused before that call (the IP,
/// workspace and permission rows, a declared body over the limit, the signing secret) is
/// refused without taking a run, and answered in the contract's order once counted.
pub async fn quota_trigger(
    ctx: &Ctx,
    wctx: &Context,
    incoming: Incoming<'_>,
    need: &Need<'_>,
    record: &KeyRecord,
    plan: &Plan<'_>,
    quota: Quota,
) -> (Option<Decision>, Result<Reply, Error>) {
    let client = ctx.client_addr();
    let early = || {
        let mut call = None;
        for step in plan.before_count() {
            match step {
                Before::Rows => access::authorize(record, need, client)?,
                Before::Prepare => call = Some(prepare(ctx, incoming, need.workspace, record)?),
                // Not steps of this plan (it has no Idempotency-Key, and forwards the body as
                // it streams).
                Before::IdempotencyKey | Before::Body => {}
            }
        }
        call.ok_or(Error::Internal)
    };
    let call = match early() {
        Ok(call) => call,
        Err(later) => return refused_early(ctx, need, record, later).await,
    };
    let (verdict, run) = match key_client::run(ctx, record, quota).await {
        Ok(answer) => answer,
        Err(e) => return (None, Err(e)),
    };
    let mut decision = access::counted(&verdict);
    let allowed = access::decide_run(record, ctx.now, &verdict, need, client, run.as_ref());
    let mut kept = run;
    let result = match allowed {
        Ok(()) => {
            let (d, pooled) =
                pool::admit_trigger(ctx, wctx, record, need.workspace, decision, true).await;
            decision = d;
            match pooled {
                Ok(_) => forward_call(ctx, incoming.req, &call).await,
                Err(e) => {
                    kept = give_back(ctx, record, run).await;
                    Err(e)
                }
            }
        }
        Err(e) => Err(e),
    };
    let note = notices::for_run(ctx, record, kept.as_ref()).await;
    (decision, noted(result, note))
}

/// A trigger a pool refused spends no key quota (docs/CONTRACT.md section 17): the key's run, if
/// one was taken, goes back. Returns the run still counted, for the notices: none once given
/// back (a run given back reached no threshold).
async fn give_back(ctx: &Ctx, record: &KeyRecord, run: Option<RunVerdict>) -> Option<RunVerdict> {
    match run {
        Some(taken) if taken.allowed => {
            key_client::refund_run(ctx, record.quota_counter(), taken.start).await;
            None
        }
        other => other,
    }
}

/// A successful reply carries `note` for the log line (an error's cause is its own).
fn noted(result: Result<Reply, Error>, note: Option<Cause>) -> Result<Reply, Error> {
    result.map(|mut reply| {
        reply.note = reply.note.or(note);
        reply
    })
}

/// Carries out what the object decided for an idempotent attempt.
async fn run_once(
    ctx: &Ctx,
    req: &Req,
    call: &Call<'_>,
    slot: &str,
    fp: &str,
    begun: Result<Begin, Error>,
    body: HeldBody,
) -> Result<Reply, Error> {
    let key_id = &call.record.id;
    let attempt = match begun? {
        Begin::InProgress => return Err(Error::IdempotencyInProgress),
        Begin::Mismatch => return Err(Error::IdempotencyKeyReused),
        Begin::Replay { response } => return Ok(stored_response(&response, true).into()),
        Begin::Full => return Err(Error::Unavailable(Cause::DurableObject)),
        Begin::Proceed { attempt } => attempt,
    };
    let finish = |answer| key_client::idem_complete(ctx, key_id, slot, fp, attempt, answer);
    // The whole exchange, headers and body, is bounded by ORIGIN_TIMEOUT_MS; the in-flight
    // lease is that plus a margin, so the record is finished before any retry may take over.
    let started = Date::now().as_millis();
    let sha = Some(body_sha256(body.chunks()));
    let js_body: JsValue = body.to_js().into();
    // Handed to the runtime: no longer held here.
    drop(body);
    let upstream = match send(ctx, req, call, Some(js_body), sha, new_abort()).await {
        Ok(r) => r,
        // Sent, but no answer in time: the job may be running. Remembered as the 504 this
        // client gets, so a retry replays it instead of triggering the job a second time.
        Err(Error::OriginTimeout) => {
            let body = Error::OriginTimeout.body(&ctx.request_id).into_bytes();
            let headers = vec![(CONTENT_TYPE.to_owned(), JSON_TYPE.to_owned())];
            let stored = StoredResponse::new(Error::OriginTimeout.status(), headers, Some(body));
            let note = finish(Some(stored.clone()))
                .await
                .err()
                .map(|_| Cause::IdempotencyStore);
            let response = stored_response(&stored, false);
            return Ok(Reply { response, note });
        }
        Err(e) => {
            // Not reached (connection refused, say): forget the attempt so a retry can go
            // through.
            let _ = finish(None).await;
            return Err(e);
        }
    };
    let status = upstream.status_code();
    if !remember(status) {
        let _ = finish(None).await;
        return Ok(relay(upstream).into());
    }
    // A remembered answer is replayed from its bytes: the runtime sets its length.
    let headers: Vec<(String, String)> = relayed_headers(&upstream)
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case(CONTENT_LENGTH))
        .collect();
    let left_ms = (started + ctx.config.origin_timeout_ms).saturating_sub(Date::now().as_millis());
    let read = read_answer(upstream, MAX_STORED_BODY_BYTES, left_ms).await;
    let (kept, outcome) = match read {
        Answer::Whole(bytes) => (Some(bytes), None),
        Answer::TooLarge(rest) => (None, Some(Ok(rest))),
        Answer::Failed(e) => (None, Some(Err(e))),
    };
    // The job has run (the origin answered below 500): its status and headers are remembered
    // in every case, its body when it fits and arrived in time.
    let stored = StoredResponse::new(status, headers, kept);
    // If it could not be remembered, the in-flight record lapses after its lease; logged.
    let note = finish(Some(stored.clone()))
        .await
        .err()
        .map(|_| Cause::IdempotencyStore);
    let response = match outcome {
        None => stored_response(&stored, false),
        // Too large to keep: this client still gets all of it, streamed.
        Some(Ok(rest)) => answer_with(&stored, rest)?,
        Some(Err(e)) => return Err(e),
    };
    Ok(Reply { response, note })
}

/// Keeps the request's context alive until dropped: a `waitUntil` on a promise that the drop
/// resolves. Cloudflare cancels a request's outstanding work when its client disconnects,
/// except what a `waitUntil` holds.
struct KeepAlive(Option<worker::js_sys::Function>);

impl KeepAlive {
    fn new(wctx: &Context) -> Self {
        let mut release = None;
        let held = worker::js_sys::Promise::new(&mut |resolve, _reject| release = Some(resolve));
        wctx.wait_until(async move {
            let _ = worker::wasm_bindgen_futures::JsFuture::from(held).await;
        });
        KeepAlive(release)
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// The origin's body, read within `left_ms` and up to `cap` bytes.
enum Answer {
    Whole(Vec<u8>),
    /// Over `cap`: what was read, then the rest of the stream.
    TooLarge(std::pin::Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>>),
    /// Broken off, or not all there within the time: 502 or 504.
    Failed(Error),
}

async fn read_answer(mut upstream: Response, cap: usize, left_ms: u64) -> Answer {
    let mut stream = match upstream.stream() {
        Ok(s) => Box::pin(s),
        // No body at all.
        Err(_) => return Answer::Whole(Vec::new()),
    };
    let timeout = Delay::from(Duration::from_millis(left_ms));
    futures_util::pin_mut!(timeout);
    let mut body = Vec::new();
    loop {
        match select(stream.next(), timeout.as_mut()).await {
            Either::Left((Some(Ok(chunk)), _)) => {
                if !body_fits(body.len() as u64, chunk.len() as u64, cap as u64) {
                    body.extend_from_slice(&chunk);
                    let read = futures_util::stream::iter([Ok(body)]);
                    return Answer::TooLarge(Box::pin(read.chain(stream)));
                }
                body.extend_from_slice(&chunk);
            }
            Either::Left((Some(Err(_)), _)) => {
                return Answer::Failed(Error::OriginUnavailable(Cause::OriginBody))
            }
            Either::Left((None, _)) => return Answer::Whole(body),
            Either::Right(_) => return Answer::Failed(Error::OriginTimeout),
        }
    }
}

/// A remembered answer's status and headers with a body streamed from the origin.
fn answer_with(
    stored: &StoredResponse,
    body: std::pin::Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>>,
) -> Result<Response, Error> {
    let headers = Headers::new();
    for (name, value) in &stored.headers {
        let _ = headers.append(name, value);
    }
    ResponseBuilder::new()
        .with_status(stored.status)
        .with_headers(headers)
        .from_stream(body.into_stream())
        .map_err(|_| Error::OriginUnavailable(Cause::OriginBody))
}

fn stored_response(stored: &StoredResponse, replayed: bool) -> Response {
    let headers = Headers::new();
    for (name, value) in &stored.headers {
        let _ = headers.append(name, value);
    }
    if replayed {
        let _ = headers.set(IDEMPOTENT_REPLAYED, "true");
        if stored.body_omitted {
            let _ = headers.set(IDEMPOTENT_BODY_OMITTED, "true");
        }
    }
    ResponseBuilder::new()
        .with_status(stored.status)
        .with_headers(headers)
        .fixed(stored.body.clone())
}
