//! Forwarding an authorized `/developers/...` call to the origin (SPEC sections 5–7).

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response, ResponseBody,
    ResponseBuilder,
};

use super::Ctx;
use crate::core::forward::{
    body_too_large, drop_request_header, drop_response_header, signature_header, HEADER_KEY_ID,
    HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_USER_EMAIL, HEADER_USER_ID, HEADER_WORKSPACE_ID,
};
use crate::core::record::KeyRecord;
use crate::core::route::Forward;
use crate::core::Error;

const SIGNING_SECRET: &str = "ORIGIN_SIGNING_SECRET";

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
    if let Some(ws) = route.workspace {
        if !record.covers_workspace(ws) {
            return Err(Error::WorkspaceForbidden);
        }
    }
    if !record.grants(route.permission) {
        return Err(Error::PermissionDenied(
            "The API key lacks the permission this route needs.",
        ));
    }
    let incoming = req.headers();
    let declared = incoming.get("content-length").ok().flatten();
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

    let path_and_query = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let target = format!("{}{}", ctx.config.origin_url, path_and_query);

    let headers = Headers::new();
    let connection = incoming.get("connection").ok().flatten();
    for (name, value) in incoming.entries() {
        if !drop_request_header(&name, connection.as_deref()) {
            let _ = headers.append(&name, &value);
        }
    }
    let set = |name: &str, value: &str| headers.set(name, value).map_err(|_| Error::Internal);
    set(HEADER_KEY_ID, &record.id)?;
    set(HEADER_USER_ID, &record.user_id)?;
    if let Some(email) = &record.email {
        set(HEADER_USER_EMAIL, email)?;
    }
    if let Some(ws) = route.workspace {
        set(HEADER_WORKSPACE_ID, ws)?;
    }
    set(HEADER_REQUEST_ID, &ctx.request_id)?;
    set(
        HEADER_SIGNATURE,
        &signature_header(
            secret.as_bytes(),
            ctx.now,
            method,
            &path_and_query,
            &record.id,
            &record.user_id,
            route.workspace,
        ),
    )?;

    let mut init = RequestInit::new();
    init.with_method(Method::from(method.to_owned()))
        .with_headers(headers)
        // The origin's redirects go back to the client as they are, never followed here.
        .with_redirect(worker::RequestRedirect::Manual);
    if !matches!(method, "GET" | "HEAD") {
        // The body stream is handed over as is: streamed, never buffered in the Worker.
        init.with_body(req.inner().body().map(Into::into));
    }
    let outbound =
        Request::new_with_init(&target, &init).map_err(|_| ctx.unavailable("origin_request"))?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(outbound);
    let call = fetch.send_with_signal(&signal);
    let timeout = Delay::from(Duration::from_millis(ctx.config.origin_timeout_ms));
    futures_util::pin_mut!(call);
    futures_util::pin_mut!(timeout);
    let upstream = match select(call, timeout).await {
        Either::Left((Ok(resp), _)) => resp,
        Either::Left((Err(_), _)) => {
            ctx.cause.set(Some("origin_fetch"));
            return Err(Error::OriginUnavailable);
        }
        Either::Right(_) => {
            controller.abort();
            ctx.cause.set(Some("origin_timeout"));
            return Err(Error::OriginTimeout);
        }
    };
    relay(upstream)
}

/// The origin's status, headers (minus hop-by-hop) and body stream, in a response whose headers
/// the gateway may still add to (a fetched response's own headers are immutable).
fn relay(upstream: Response) -> Result<Response, Error> {
    let status = upstream.status_code();
    let headers = Headers::new();
    let connection = upstream.headers().get("connection").ok().flatten();
    for (name, value) in upstream.headers().entries() {
        if !drop_response_header(&name, connection.as_deref()) {
            let _ = headers.append(&name, &value);
        }
    }
    let builder = ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers);
    Ok(match upstream.body() {
        ResponseBody::Stream(stream) => builder.stream(stream.clone()),
        ResponseBody::Body(bytes) => builder.fixed(bytes.clone()),
        ResponseBody::Empty => builder.empty(),
    })
}
