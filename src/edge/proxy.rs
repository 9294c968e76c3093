//! Forwarding an authorized `/developers/...` call to the origin (SPEC sections 5–7).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::{Stream, StreamExt, TryStreamExt};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{
    AbortController, ByteStream, Date, Delay, Fetch, Headers, Method, Request, RequestInit,
    Response, ResponseBody, ResponseBuilder,
};

use super::http::read_body;
use super::{durable, Ctx};
use crate::core::forward::{
    body_fits, body_too_large, drop_request_header, drop_response_header, signature_header,
    HEADER_KEY_ID, HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_USER_EMAIL, HEADER_USER_ID,
    HEADER_WORKSPACE_ID,
};
use crate::core::idempotency::{
    check_idempotency_key, fingerprint, idempotency_slot, in_flight_lease_ms, remember, Begin,
    StoredResponse, MAX_STORED_BODY_BYTES,
};
use crate::core::record::KeyRecord;
use crate::core::route::Forward;
use crate::core::Error;

const SIGNING_SECRET: &str = "ORIGIN_SIGNING_SECRET";
const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
const HEADER_IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// On a replay whose remembered answer kept no body (too large, or not received in time).
const HEADER_IDEMPOTENT_BODY_OMITTED: &str = "idempotent-body-omitted";

/// Checks workspace then permission (SPEC section 2 order), then forwards.
pub async fn forward(
    ctx: &Ctx,
    req: &Request,
    method: &str,
    path: &str,
    query: Option<&str>,
    route: &Forward<'_>,
    record: &KeyRecord,
) -> Result<Response, Error> {
    let idempotency_key = if route.job_run {
        req.headers().get(HEADER_IDEMPOTENCY_KEY).ok().flatten()
    } else {
        None
    };
    let Some(idempotency_key) = idempotency_key else {
        super::count(ctx, record).await?;
        record.authorize(route.workspace, route.permission)?;
        ctx.enforce_rate_limit()?;
        let call = prepare(ctx, req, method, path, query, route, record)?;
        // Streamed, never buffered in the Worker, and cut past MAX_BODY_BYTES.
        let abort = new_abort();
        let max = ctx.config.max_body_bytes;
        let (body, cut, source) = limited_body(req, max, abort.clone());
        let sent = send(ctx, req, &call, body, abort).await;
        if cut.get() {
            // Cut past the limit: the origin call was aborted (the origin sees a broken
            // request, never a complete one); whatever came back is not relayed.
            ctx.cause.set(None);
            if let Some(source) = source {
                // Borrowed per poll only: the aborted call's stream may still hold a clone.
                let mut rest =
                    futures_util::stream::poll_fn(|cx| source.borrow_mut().poll_next_unpin(cx));
                super::http::drain(&mut rest, max).await;
            }
            return Err(Error::PayloadTooLarge);
        }
        return Ok(relay(sent?));
    };
    // The job trigger with an Idempotency-Key makes one object call that both counts the
    // request and opens its idempotency record (two round trips, not three, per trigger). What
    // is refused before that call is counted on its own and answered as if it had been counted
    // first: the object's revoked/expired, then workspace, permission, rate limit, the rest.
    let early = async {
        record.authorize(route.workspace, route.permission)?;
        let call = prepare(ctx, req, method, path, query, route, record)?;
        check_idempotency_key(&idempotency_key)?;
        // Buffered here (trigger bodies are small): the body is part of what "the same
        // request" is.
        let body = read_body(req, ctx.config.max_body_bytes).await?;
        Ok::<_, Error>((call, body))
    };
    match early.await {
        Ok((call, body)) => idempotent(ctx, req, &call, &idempotency_key, body).await,
        Err(refused) => {
            super::count(ctx, record).await?;
            if !refused.precedes_rate_limit() {
                ctx.enforce_rate_limit()?;
            }
            Err(refused)
        }
    }
}

/// The declared body size, the signing secret, and the call's target.
fn prepare<'a>(
    ctx: &Ctx,
    req: &Request,
    method: &'a str,
    path: &str,
    query: Option<&str>,
    route: &Forward<'a>,
    record: &'a KeyRecord,
) -> Result<Call<'a>, Error> {
    let declared = req.headers().get("content-length").ok().flatten();
    if body_too_large(declared.as_deref(), ctx.config.max_body_bytes) {
        return Err(Error::PayloadTooLarge);
    }
    let secret = ctx
        .env
        .secret(SIGNING_SECRET)
        .ok()
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ctx.unavailable("signing_secret_missing"))?;
    Ok(Call {
        method,
        path_and_query: match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        },
        workspace: route.workspace,
        record,
        secret,
    })
}

/// One authorized origin call.
struct Call<'a> {
    method: &'a str,
    path_and_query: String,
    workspace: Option<&'a str>,
    record: &'a KeyRecord,
    secret: String,
}

/// The origin call's abort switch, shared by the timeout and the body limit; whoever fires it
/// first takes it.
type Abort = Rc<RefCell<Option<AbortController>>>;

fn new_abort() -> Abort {
    Rc::new(RefCell::new(Some(AbortController::default())))
}

fn fire(abort: &Abort) {
    if let Some(controller) = abort.borrow_mut().take() {
        controller.abort();
    }
}

/// Sends the call with stripped and added headers, within `ORIGIN_TIMEOUT_MS`.
async fn send(
    ctx: &Ctx,
    req: &Request,
    call: &Call<'_>,
    body: Option<JsValue>,
    abort: Abort,
) -> Result<Response, Error> {
    let incoming = req.headers();
    let headers = Headers::new();
    let connection = incoming.get("connection").ok().flatten();
    for (name, value) in incoming.entries() {
        if !drop_request_header(&name, connection.as_deref()) {
            let _ = headers.append(&name, &value);
        }
    }
    let record = call.record;
    let set = |name: &str, value: &str| headers.set(name, value).map_err(|_| Error::Internal);
    set(HEADER_KEY_ID, &record.id)?;
    set(HEADER_USER_ID, &record.user_id)?;
    if let Some(email) = &record.email {
        set(HEADER_USER_EMAIL, email)?;
    }
    if let Some(ws) = call.workspace {
        set(HEADER_WORKSPACE_ID, ws)?;
    }
    set(HEADER_REQUEST_ID, &ctx.request_id)?;
    set(
        HEADER_SIGNATURE,
        &signature_header(
            call.secret.as_bytes(),
            ctx.now,
            call.method,
            &call.path_and_query,
            &record.id,
            &record.user_id,
            call.workspace,
        ),
    )?;

    let mut init = RequestInit::new();
    init.with_method(Method::from(call.method.to_owned()))
        .with_headers(headers)
        // The origin's redirects go back to the client as they are, never followed here.
        .with_redirect(worker::RequestRedirect::Manual);
    if !matches!(call.method, "GET" | "HEAD") {
        init.with_body(body);
    }
    let target = format!("{}{}", ctx.config.origin_url, call.path_and_query);
    let outbound =
        Request::new_with_init(&target, &init).map_err(|_| ctx.unavailable("origin_request"))?;

    let signal = match abort.borrow().as_ref() {
        Some(controller) => controller.signal(),
        // Already fired (the body went over its limit before the call started).
        None => return Err(Error::PayloadTooLarge),
    };
    let fetch = Fetch::Request(outbound);
    let pending = fetch.send_with_signal(&signal);
    let timeout = Delay::from(Duration::from_millis(ctx.config.origin_timeout_ms));
    futures_util::pin_mut!(pending);
    futures_util::pin_mut!(timeout);
    match select(pending, timeout).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(_), _)) => {
            ctx.cause.set(Some("origin_fetch"));
            Err(Error::OriginUnavailable)
        }
        Either::Right(_) => {
            fire(&abort);
            ctx.cause.set(Some("origin_timeout"));
            Err(Error::OriginTimeout)
        }
    }
}

/// The request body for the origin: a declared Content-Length was checked already and the
/// runtime holds the body to it, so that stream is handed over as is; a body without one is
/// counted chunk by chunk and errors past `max`, which aborts the origin call. The flag says
/// the cut happened (the client then gets 413; the origin sees an aborted request).
fn limited_body(req: &Request, max: u64, abort: Abort) -> LimitedBody {
    let cut = Rc::new(Cell::new(false));
    let Some(stream) = req.inner().body() else {
        return (None, cut, None);
    };
    if req.headers().has("content-length").unwrap_or(false) {
        return (Some(stream.into()), cut, None);
    }
    // Shared with the handler, which drains what is left after a cut (see `http::drain`).
    let source: Source = Rc::new(RefCell::new(Box::pin(ByteStream::from(stream))));
    let pull = source.clone();
    let flag = cut.clone();
    let mut sent = 0u64;
    let chunks = futures_util::stream::poll_fn(move |cx| pull.borrow_mut().poll_next_unpin(cx));
    let limited = chunks.map(move |chunk| {
        let chunk = chunk.map_err(|_| JsValue::from_str("body could not be read"))?;
        if !body_fits(sent, chunk.len() as u64, max) {
            flag.set(true);
            // Abort first: the runtime would end the request body cleanly on a stream error,
            // and the origin would take the part sent for the whole.
            fire(&abort);
            return Err(JsValue::from_str("body over the limit"));
        }
        sent += chunk.len() as u64;
        Ok(JsValue::from(Uint8Array::from(chunk.as_slice())))
    });
    let js = wasm_streams::ReadableStream::from_stream(limited).into_raw();
    (Some(js.into()), cut, Some(source))
}

type Source = Rc<RefCell<std::pin::Pin<Box<ByteStream>>>>;
/// The body for the origin, whether it was cut, and its source when it is counted.
type LimitedBody = (Option<JsValue>, Rc<Cell<bool>>, Option<Source>);

/// The job-trigger route with `Idempotency-Key` (docs/CONTRACT.md section 6): the key's object
/// holds one record per (key id, Idempotency-Key), so concurrent retries make exactly one
/// origin call, and the job never runs twice within 24 h whatever the answer's size or speed.
async fn idempotent(
    ctx: &Ctx,
    req: &Request,
    call: &Call<'_>,
    idempotency_key: &str,
    body: Vec<u8>,
) -> Result<Response, Error> {
    let fp = fingerprint(call.method, &call.path_and_query, &body);
    let slot = idempotency_slot(idempotency_key);
    let key_id = &call.record.id;
    let lease = in_flight_lease_ms(ctx.config.origin_timeout_ms);
    let (decision, begun) = durable::hit_and_begin(ctx, call.record, &slot, &fp, lease).await?;
    ctx.decision.set(Some(decision));
    ctx.enforce_rate_limit()?;
    // Allowed, so the object has opened (or found) the record, or refused a new one.
    let attempt = match begun.ok_or_else(|| ctx.unavailable("durable_object"))?? {
        Begin::InProgress => return Err(Error::IdempotencyInProgress),
        Begin::Mismatch => return Err(Error::IdempotencyKeyReused),
        Begin::Replay { response } => return Ok(stored_response(&response, true)),
        Begin::Full => return Err(ctx.unavailable("durable_object")),
        Begin::Proceed { attempt } => attempt,
    };
    let finish = |answer| durable::idem_complete(ctx, key_id, &slot, &fp, attempt, answer);
    // The whole exchange, headers and body, is bounded by ORIGIN_TIMEOUT_MS; the in-flight
    // lease is that plus a margin, so the record is finished before any retry may take over.
    let started = Date::now().as_millis();
    let js_body: JsValue = Uint8Array::from(body.as_slice()).into();
    let upstream = match send(ctx, req, call, Some(js_body), new_abort()).await {
        Ok(r) => r,
        Err(e) => {
            // No answer: forget the attempt so that a retry can go through.
            let _ = finish(None).await;
            return Err(e);
        }
    };
    let status = upstream.status_code();
    if !remember(status) {
        let _ = finish(None).await;
        return Ok(relay(upstream));
    }
    // A remembered answer is replayed from its bytes: the runtime sets its length.
    let headers: Vec<(String, String)> = relayed_headers(&upstream)
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
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
    if finish(Some(stored.clone())).await.is_err() {
        // The in-flight record then lapses after its lease; the failure is logged.
        ctx.cause.set(Some("idempotency_store"));
    }
    match outcome {
        None => Ok(stored_response(&stored, false)),
        // Too large to keep: this client still gets all of it, streamed.
        Some(Ok(rest)) => answer_with(&stored, rest),
        Some(Err(e)) => Err(e),
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
            Either::Left((Some(Err(_)), _)) => return Answer::Failed(Error::OriginUnavailable),
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
        .map_err(|_| Error::OriginUnavailable)
}

/// The origin's response headers that go back to the client (hop-by-hop ones removed).
fn relayed_headers(upstream: &Response) -> Vec<(String, String)> {
    let connection = upstream.headers().get("connection").ok().flatten();
    upstream
        .headers()
        .entries()
        .filter(|(name, _)| !drop_response_header(name, connection.as_deref()))
        .collect()
}

fn stored_response(stored: &StoredResponse, replayed: bool) -> Response {
    let headers = Headers::new();
    for (name, value) in &stored.headers {
        let _ = headers.append(name, value);
    }
    if replayed {
        let _ = headers.set(HEADER_IDEMPOTENT_REPLAYED, "true");
        if stored.body_omitted {
            let _ = headers.set(HEADER_IDEMPOTENT_BODY_OMITTED, "true");
        }
    }
    ResponseBuilder::new()
        .with_status(stored.status)
        .with_headers(headers)
        .fixed(stored.body.clone())
}

/// The origin's status, headers (minus hop-by-hop) and body stream, in a response whose headers
/// the gateway may still add to (a fetched response's own headers are immutable).
fn relay(upstream: Response) -> Response {
    let status = upstream.status_code();
    let headers = Headers::new();
    for (name, value) in relayed_headers(&upstream) {
        let _ = headers.append(&name, &value);
    }
    let builder = ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers);
    match upstream.body() {
        ResponseBody::Stream(stream) => builder.stream(stream.clone()),
        ResponseBody::Body(bytes) => builder.fixed(bytes.clone()),
        ResponseBody::Empty => builder.empty(),
    }
}
