//! Forwarding an authorized `/developers/...` call to the origin (docs/CONTRACT.md sections
//! 5-7): the call prepared (query check, declared size, signing secret), its headers stripped
//! and added, its body streamed or read first, sent within `ORIGIN_TIMEOUT_MS`, and the answer
//! relayed. The job triggers that count in the key's object ([`super::trigger`]) send their
//! origin calls through the same `prepare` and `send`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use worker::js_sys;
use worker::wasm_bindgen::JsValue;
use worker::{
    AbortController, Delay, Fetch, Method, Request, RequestInit, Response, ResponseBody,
    ResponseBuilder,
};

use super::fail::OrUnavailable;
use super::http::read_body_held;
use super::http::Req;
use super::{assertion, Ctx, Incoming, Reply};
use crate::core::assertion::{origin_of, ASSERTION_HEADER};
use crate::core::forward::{
    body_too_large, check_query, drop_request_header, drop_response_header, signature_header,
    workspaces_header, HEADER_KEY_ID, HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_USER_EMAIL,
    HEADER_USER_ID, HEADER_WORKSPACES, HEADER_WORKSPACE_ID,
};
use crate::core::names::{CONNECTION, CONTENT_LENGTH};
use crate::core::record::KeyRecord;
use crate::core::{Cause, Error};

/// Sends a prepared call with its body ([`request_body`]) and relays the answer.
pub(super) async fn forward_call(ctx: &Ctx, req: &Req, call: &Call<'_>) -> Result<Reply, Error> {
    let body = request_body(req, call.method, ctx.config.max_body_bytes).await?;
    Ok(relay(send(ctx, req, call, body, None, new_abort()).await?).into())
}

/// The request body for the origin (docs/CONTRACT.md section 7). With a declared
/// `Content-Length` (already checked against `max` by [`prepare`]) the runtime holds the stream
/// to that length, so it is handed over as it is and streamed. Without one (chunked), it is read
/// here first, up to `max` bytes, and sent with its length: over `max` the client gets 413 once
/// the rest is drained ([`read_body`]), and the origin is never called. Cutting such a body
/// while it streams to the origin is what workerd cannot do cleanly: the aborted upload throws
/// past the handler, reads of the client's stream fail once the answer is sent, and the
/// connection's next request finds the worker restarted.
async fn request_body(req: &Req, method: &str, max: u64) -> Result<Option<JsValue>, Error> {
    if matches!(method, "GET" | "HEAD") {
        return Ok(None);
    }
    let Some(stream) = req.inner().body() else {
        return Ok(None);
    };
    if req.headers().has(CONTENT_LENGTH).unwrap_or(false) {
        return Ok(Some(stream.into()));
    }
    let body = read_body_held(req, max).await?;
    Ok(Some(body.to_js().into()))
}

/// The declared body size, the signing secret, and the call's target.
pub(super) fn prepare<'a>(
    ctx: &Ctx,
    incoming: Incoming<'a>,
    workspace: Option<&'a str>,
    record: &'a KeyRecord,
) -> Result<Call<'a>, Error> {
    check_query(incoming.query)?;
    let declared = incoming.req.headers().get(CONTENT_LENGTH).ok().flatten();
    if body_too_large(declared.as_deref(), ctx.config.max_body_bytes) {
        return Err(Error::PayloadTooLarge);
    }
    // Each of the two statements of identity that is configured is sent (sections 7, 16);
    // with neither, nothing is forwarded (fail closed).
    let secret = ctx
        .config
        .secrets
        .origin_signing
        .as_ref()
        .map(|s| s.expose().to_owned());
    let assertion_key = assertion::configured(ctx);
    if secret.is_none() && assertion_key.is_none() {
        return Err(Error::Unavailable(Cause::SigningSecretMissing));
    }
    // Read from the runtime only when it is the `iss` (no `PUBLIC_URL`) and there is an
    // assertion to sign.
    let addressed_origin = match (&assertion_key, &ctx.config.public_url) {
        (Some(_), None) => origin_of(&incoming.req.inner().url()).to_owned(),
        _ => String::new(),
    };
    Ok(Call {
        method: incoming.method,
        path_and_query: match incoming.query {
            Some(q) => format!("{}?{q}", incoming.path),
            None => incoming.path.to_owned(),
        },
        workspace,
        record,
        secret,
        assertion_key,
        addressed_origin,
    })
}

/// One authorized origin call.
pub(super) struct Call<'a> {
    pub(super) method: &'a str,
    pub(super) path_and_query: String,
    pub(super) workspace: Option<&'a str>,
    pub(super) record: &'a KeyRecord,
    /// `ORIGIN_SIGNING_SECRET`, when set: `X-Keygate-Signature`.
    pub(super) secret: Option<String>,
    /// `ASSERTION_SIGNING_KEY`, when set: `Keygate-Assertion`.
    pub(super) assertion_key: Option<String>,
    /// The gateway's origin as the client addressed it (the assertion's default `iss`).
    pub(super) addressed_origin: String,
}

/// The origin call's abort switch, shared by the timeout and the body limit; whoever fires it
/// first takes it.
type Abort = Rc<RefCell<Option<AbortController>>>;

pub(super) fn new_abort() -> Abort {
    Rc::new(RefCell::new(Some(AbortController::default())))
}

fn fire(abort: &Abort) {
    if let Some(controller) = abort.borrow_mut().take() {
        controller.abort();
    }
}

/// Sends the call with stripped and added headers, within `ORIGIN_TIMEOUT_MS`. `body_sha256`:
/// the assertion's claim, where the gateway holds the whole body (the idempotent trigger).
pub(super) async fn send(
    ctx: &Ctx,
    req: &Req,
    call: &Call<'_>,
    body: Option<JsValue>,
    body_sha256: Option<String>,
    abort: Abort,
) -> Result<Response, Error> {
    // One copy made by the runtime, then the dropped names deleted from it: each header crosses
    // into Rust once (its name), not name and value out and back in again.
    let incoming = req.headers();
    let headers = incoming.clone();
    strip(&headers, &incoming, drop_request_header);
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
    set(HEADER_WORKSPACES, &workspaces_header(&record.workspaces))?;
    set(HEADER_REQUEST_ID, &ctx.request_id)?;
    if let Some(secret) = &call.secret {
        set(
            HEADER_SIGNATURE,
            &signature_header(
                secret.as_bytes(),
                ctx.now,
                call.method,
                &call.path_and_query,
                &record.id,
                &record.user_id,
                call.workspace,
            ),
        )?;
    }
    let target = format!("{}{}", ctx.config.origin_url, call.path_and_query);
    if let Some(key) = &call.assertion_key {
        let signer = assertion::signer(ctx, key).await?;
        let request = assertion::Request {
            addressed_origin: &call.addressed_origin,
            method: call.method,
            url: &target,
            workspace: call.workspace,
            body_sha256,
        };
        set(
            ASSERTION_HEADER,
            &assertion::sign(ctx, &signer, record, request).await?,
        )?;
    }

    let mut init = RequestInit::new();
    init.with_method(Method::from(call.method.to_owned()))
        .with_headers(headers)
        // The origin's redirects go back to the client as they are, never followed here.
        .with_redirect(worker::RequestRedirect::Manual);
    if !matches!(call.method, "GET" | "HEAD") {
        init.with_body(body);
    }
    let outbound = Request::new_with_init(&target, &init).or_unavailable(Cause::OriginRequest)?;

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
        Either::Left((Err(_), _)) => Err(Error::OriginUnavailable(Cause::OriginFetch)),
        Either::Right(_) => {
            fire(&abort);
            Err(Error::OriginTimeout)
        }
    }
}

/// The origin's response headers that go back to the client (hop-by-hop ones removed).
pub(super) fn relayed_headers(upstream: &Response) -> Vec<(String, String)> {
    let connection = upstream.headers().get(CONNECTION).ok().flatten();
    upstream
        .headers()
        .entries()
        .filter(|(name, _)| !drop_response_header(name, connection.as_deref()))
        .collect()
}

/// Deletes from `copy` the headers of `original` that `drop` names (given the `Connection`
/// header, whose listed names are hop-by-hop). The names cross the boundary in one string (three
/// crossings: `Array.from`, `join`, the string), not four crossings per name through the
/// iterator; `Connection` is read only when present. Names come lowercase and hold no line
/// breaks.
fn strip(copy: &worker::Headers, original: &worker::Headers, drop: fn(&str, Option<&str>) -> bool) {
    let names: String = js_sys::Array::from(&original.0.keys()).join("\n").into();
    let connection = names
        .lines()
        .any(|n| n == CONNECTION)
        .then(|| original.get(CONNECTION).ok().flatten())
        .flatten();
    for name in names.lines() {
        if drop(name, connection.as_deref()) {
            let _ = copy.delete(name);
        }
    }
}

/// The origin's status, headers (minus hop-by-hop) and body stream, in a response whose headers
/// the gateway may still add to (a fetched response's own headers are immutable).
pub(super) fn relay(upstream: Response) -> Response {
    let status = upstream.status_code();
    // A copy made by the runtime, the dropped names deleted (as for the request's headers).
    let headers = upstream.headers().clone();
    strip(&headers, upstream.headers(), drop_response_header);
    let builder = ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers);
    match upstream.body() {
        ResponseBody::Stream(stream) => builder.stream(stream.clone()),
        ResponseBody::Body(bytes) => builder.fixed(bytes.clone()),
        ResponseBody::Empty => builder.empty(),
    }
}
