//! Forwarding an authorized `/developers/...` call to the origin (docs/CONTRACT.md sections
//! 5-7), and the idempotent job trigger (section 6).

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response, ResponseBody,
    ResponseBuilder,
};

use super::http::read_body;
use super::{durable, Ctx, Reply};
use crate::core::access::{self, Need};
use crate::core::forward::{
    body_too_large, drop_request_header, drop_response_header, signature_header, workspaces_header,
    HEADER_KEY_ID, HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_USER_EMAIL, HEADER_USER_ID,
    HEADER_WORKSPACES, HEADER_WORKSPACE_ID,
};
use crate::core::keystate::{
    check_idempotency_key, fingerprint, idempotency_slot, remember, Begin, StoredResponse,
    IN_FLIGHT_MARGIN_MS,
};
use crate::core::names::{
    CONNECTION, CONTENT_LENGTH, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, SIGNING_SECRET,
};
use crate::core::ratelimit::Decision;
use crate::core::record::KeyRecord;
use crate::core::route::Forward;
use crate::core::Error;

/// The `Idempotency-Key` of a job trigger, if it carries one (other routes ignore the header).
pub fn idempotency_key(req: &Request, route: &Forward<'_>) -> Option<String> {
    if route.job_run {
        req.headers().get(IDEMPOTENCY_KEY).ok().flatten()
    } else {
        None
    }
}

/// Forwards a call that [`crate::core::access::decide_key`] allowed.
pub async fn forward(
    ctx: &Ctx,
    req: &Request,
    method: &str,
    path: &str,
    query: Option<&str>,
    route: &Forward<'_>,
    record: &KeyRecord,
) -> Result<Reply, Error> {
    let call = prepare(ctx, req, method, path, query, route.workspace, record)?;
    // The body stream is handed over as is: streamed, never buffered in the Worker.
    let body = req.inner().body().map(Into::into);
    let upstream = send(ctx, req, &call, body).await?;
    Ok(relay(upstream).into())
}

/// The job trigger with an `Idempotency-Key`: one object call both counts the request and opens
/// its idempotency record (two round trips per trigger, not three). What can be refused before
/// that call (workspace, permission, the body, the header) is checked first, then answered in
/// the contract's order once counted ([`access::refuse_after_count`]). Returns the rate-limit
/// decision for the `RateLimit-*` headers with the result.
#[allow(clippy::too_many_arguments)]
pub async fn trigger(
    ctx: &Ctx,
    req: &Request,
    method: &str,
    path: &str,
    query: Option<&str>,
    need: &Need<'_>,
    record: &KeyRecord,
    idempotency_key: &str,
) -> (Option<Decision>, Result<Reply, Error>) {
    let early = async {
        access::authorize(record, need)?;
        let call = prepare(ctx, req, method, path, query, need.workspace, record)?;
        check_idempotency_key(idempotency_key)?;
        // Buffered here (trigger bodies are small): the body is part of what "the same
        // request" is.
        let body = read_body(req, ctx.config.max_body_bytes).await?;
        Ok::<_, Error>((call, body))
    };
    match early.await {
        Ok((call, body)) => idempotent(ctx, req, need, &call, idempotency_key, body).await,
        Err(later) => match durable::hit(ctx, record, 1).await {
            Err(e) => (None, Err(e)),
            Ok(verdict) => (
                access::counted(&verdict),
                Err(access::refuse_after_count(
                    record, ctx.now, &verdict, need, later,
                )),
            ),
        },
    }
}

/// The declared body size, the signing secret, and the call's target.
fn prepare<'a>(
    ctx: &Ctx,
    req: &Request,
    method: &'a str,
    path: &str,
    query: Option<&str>,
    workspace: Option<&'a str>,
    record: &'a KeyRecord,
) -> Result<Call<'a>, Error> {
    let declared = req.headers().get(CONTENT_LENGTH).ok().flatten();
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
        workspace,
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

/// Sends the call with stripped and added headers, within `ORIGIN_TIMEOUT_MS`.
async fn send(
    ctx: &Ctx,
    req: &Request,
    call: &Call<'_>,
    body: Option<JsValue>,
) -> Result<Response, Error> {
    let incoming = req.headers();
    let headers = Headers::new();
    let connection = incoming.get(CONNECTION).ok().flatten();
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
    set(HEADER_WORKSPACES, &workspaces_header(&record.workspaces))?;
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

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(outbound);
    let pending = fetch.send_with_signal(&signal);
    let timeout = Delay::from(Duration::from_millis(ctx.config.origin_timeout_ms));
    futures_util::pin_mut!(pending);
    futures_util::pin_mut!(timeout);
    match select(pending, timeout).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(_), _)) => Err(Error::OriginUnavailable("origin_fetch")),
        Either::Right(_) => {
            controller.abort();
            Err(Error::OriginTimeout)
        }
    }
}

/// The job-trigger route with `Idempotency-Key` (docs/CONTRACT.md section 6): the key's object holds one
/// record per (key id, Idempotency-Key), so concurrent retries make exactly one origin call.
async fn idempotent(
    ctx: &Ctx,
    req: &Request,
    need: &Need<'_>,
    call: &Call<'_>,
    idempotency_key: &str,
    body: Vec<u8>,
) -> (Option<Decision>, Result<Reply, Error>) {
    let fp = fingerprint(call.method, &call.path_and_query, &body);
    let slot = idempotency_slot(idempotency_key);
    let lease = ctx.config.origin_timeout_ms + IN_FLIGHT_MARGIN_MS;
    let (verdict, begun) = match durable::hit_and_begin(ctx, call.record, &slot, &fp, lease).await {
        Ok(answer) => answer,
        Err(e) => return (None, Err(e)),
    };
    let decision = access::counted(&verdict);
    let result = match access::decide_key(call.record, ctx.now, &verdict, need) {
        Err(e) => Err(e),
        // Allowed, so the object has opened (or found) the record.
        Ok(()) => match begun {
            Some(begun) => run_once(ctx, req, call, &slot, &fp, begun, body).await,
            None => Err(ctx.unavailable("durable_object")),
        },
    };
    (decision, result)
}

/// Carries out what the object decided for an idempotent attempt.
async fn run_once(
    ctx: &Ctx,
    req: &Request,
    call: &Call<'_>,
    slot: &str,
    fp: &str,
    begun: Begin,
    body: Vec<u8>,
) -> Result<Reply, Error> {
    let key_id = &call.record.id;
    match begun {
        Begin::InProgress => return Err(Error::IdempotencyInProgress),
        Begin::Mismatch => return Err(Error::IdempotencyKeyReused),
        Begin::Replay { response } => return Ok(stored_response(&response, true).into()),
        Begin::Proceed => {}
    }
    let js_body: JsValue = Uint8Array::from(body.as_slice()).into();
    let upstream = match send(ctx, req, call, Some(js_body)).await {
        Ok(r) => r,
        Err(e) => {
            // No answer: forget the attempt so that a retry can go through.
            let _ = durable::idem_complete(ctx, key_id, slot, fp, None).await;
            return Err(e);
        }
    };
    let status = upstream.status_code();
    if !remember(status) {
        let _ = durable::idem_complete(ctx, key_id, slot, fp, None).await;
        return Ok(relay(upstream).into());
    }
    // A remembered answer is replayed from its bytes: the runtime sets its length.
    let headers: Vec<(String, String)> = relayed_headers(&upstream)
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case(CONTENT_LENGTH))
        .collect();
    let mut upstream = upstream;
    let bytes = upstream
        .bytes()
        .await
        .map_err(|_| Error::OriginUnavailable("origin_body"))?;
    let stored = StoredResponse {
        status,
        headers,
        body_hex: hex::encode(&bytes),
    };
    // The job has run: its answer goes to the client even if it could not be remembered (the
    // in-flight record then lapses after its lease, and the failure is logged).
    let note = durable::idem_complete(ctx, key_id, slot, fp, Some(stored.clone()))
        .await
        .err()
        .map(|_| "idempotency_store");
    Ok(Reply {
        response: stored_response(&stored, false),
        note,
    })
}

/// The origin's response headers that go back to the client (hop-by-hop ones removed).
fn relayed_headers(upstream: &Response) -> Vec<(String, String)> {
    let connection = upstream.headers().get(CONNECTION).ok().flatten();
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
        let _ = headers.set(IDEMPOTENT_REPLAYED, "true");
    }
    let body = hex::decode(&stored.body_hex).unwrap_or_default();
    ResponseBuilder::new()
        .with_status(stored.status)
        .with_headers(headers)
        .fixed(body)
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
