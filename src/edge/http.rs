//! Building responses, and the platform's randomness.

use std::cell::Cell;

use futures_util::StreamExt;
use serde::Serialize;
use worker::js_sys::Uint8Array;
use worker::{web_sys, ByteStream, Headers, Response};

use crate::core::forward::{
    body_fits, body_too_large, may_hold, new_request_id as format_request_id, REQUEST_ID_BYTES,
};
use crate::core::names::{
    CONTENT_LENGTH, CONTENT_TYPE, JSON_TYPE, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET,
};
use crate::core::{Cause, Error};

/// Fills `buf` from the platform CSPRNG (`crypto.getRandomValues` through getrandom).
pub fn random<const N: usize>() -> Result<[u8; N], Error> {
    crate::random_bytes::<N>().map_err(|_| Error::Internal)
}

pub fn new_request_id() -> String {
    // Without randomness there is still a unique-enough id from the clock; never fail here.
    match random::<REQUEST_ID_BYTES>() {
        Ok(bytes) => format_request_id(&bytes),
        Err(_) => format!("t{}", worker::Date::now().as_millis()),
    }
}

fn headers_json() -> Headers {
    let headers = Headers::new();
    let _ = headers.set(CONTENT_TYPE, JSON_TYPE);
    headers
}

/// The whole request body, refused as 413 past `max` bytes: by its declared `Content-Length`
/// before reading, and chunk by chunk while reading (a body without Content-Length is cut as
/// soon as it goes over), so never more than `max` bytes are held.
/// The incoming request as the runtime hands it over. The `worker` crate's own `Request` reads
/// `request.cf` into Rust on every conversion (about 5% of the isolate's time in the profile);
/// keygate reads only headers, the raw method and URL, and the body, all through this.
pub struct Req {
    req: web_sys::Request,
    /// Its headers object, fetched once (each `request.headers` is a crossing of its own).
    headers: web_sys::Headers,
}

impl Req {
    pub fn new(req: web_sys::Request) -> Req {
        let headers = req.headers();
        Req { req, headers }
    }

    pub fn headers(&self) -> Headers {
        Headers(self.headers.clone())
    }

    pub fn inner(&self) -> &web_sys::Request {
        &self.req
    }
}

pub async fn read_body(req: &Req, max: u64) -> Result<Vec<u8>, Error> {
    let declared = req.headers().get(CONTENT_LENGTH).ok().flatten();
    if body_too_large(declared.as_deref(), max) {
        return Err(Error::PayloadTooLarge);
    }
    let Some(stream) = req.inner().body() else {
        return Ok(Vec::new());
    };
    let mut chunks = ByteStream::from(stream);
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| Error::field("body", "could not be read"))?;
        if !body_fits(body.len() as u64, chunk.len() as u64, max) {
            drop(body);
            drain(&mut chunks, max).await;
            return Err(Error::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

thread_local! {
    /// Bytes of request bodies this isolate holds now ([`HeldBody`]).
    static HELD: Cell<u64> = const { Cell::new(0) };
}

/// A request body read whole, counted against the isolate's [`crate::core::forward::HELD_BODIES_BUDGET`] until
/// dropped. Kept as its chunks: no buffer that grows by doubling.
pub struct HeldBody {
    chunks: Vec<Vec<u8>>,
    len: u64,
}

impl HeldBody {
    /// The body's chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.chunks.iter().map(Vec::as_slice)
    }

    /// One `Uint8Array` of exactly the body's length.
    pub fn to_js(&self) -> Uint8Array {
        let all = Uint8Array::new_with_length(self.len as u32);
        let mut at = 0u32;
        for c in &self.chunks {
            all.set(&Uint8Array::from(c.as_slice()), at);
            at += c.len() as u32;
        }
        all
    }

    /// Counts `n` more bytes, if the isolate's budget allows.
    fn grow(&mut self, n: u64) -> bool {
        HELD.with(|held| {
            if may_hold(held.get(), n) {
                held.set(held.get() + n);
                self.len += n;
                true
            } else {
                false
            }
        })
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        HELD.with(|held| held.set(held.get().saturating_sub(self.len)));
    }
}

/// The whole request body, as [`read_body`] reads it (413 past `max`), for a body the gateway
/// must hold before it calls the origin. Past the isolate's [`crate::core::forward::HELD_BODIES_BUDGET`] it is 503
/// `unavailable` (the rest drained), never an isolate out of memory.
pub async fn read_body_held(req: &Req, max: u64) -> Result<HeldBody, Error> {
    let declared = req.headers().get(CONTENT_LENGTH).ok().flatten();
    if body_too_large(declared.as_deref(), max) {
        return Err(Error::PayloadTooLarge);
    }
    let mut body = HeldBody {
        chunks: Vec::new(),
        len: 0,
    };
    let Some(stream) = req.inner().body() else {
        return Ok(body);
    };
    let mut chunks = ByteStream::from(stream);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| Error::field("body", "could not be read"))?;
        let n = chunk.len() as u64;
        let refusal = if !body_fits(body.len, n, max) {
            Some(Error::PayloadTooLarge)
        } else if !body.grow(n) {
            Some(Error::Unavailable(Cause::BodyBudget))
        } else {
            None
        };
        if let Some(e) = refusal {
            drop(body);
            drain(&mut chunks, max).await;
            return Err(e);
        }
        body.chunks.push(chunk);
    }
    Ok(body)
}

/// Reads and drops up to `bound` more bytes of a refused body, holding none: a connection
/// whose request body was left unread may not serve the next request cleanly (`wrangler dev`
/// then fails that one). A body longer than that is cut off (the stream is cancelled).
pub async fn drain<S>(chunks: &mut S, bound: u64)
where
    S: futures_util::Stream<Item = worker::Result<Vec<u8>>> + Unpin,
{
    let mut dropped = 0u64;
    while let Some(Ok(chunk)) = chunks.next().await {
        dropped += chunk.len() as u64;
        if dropped > bound {
            break;
        }
    }
}

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Response, Error> {
    let text = serde_json::to_string(body).map_err(|_| Error::Internal)?;
    Ok(Response::from_bytes(text.into_bytes())
        .map_err(|_| Error::Internal)?
        .with_status(status)
        .with_headers(headers_json()))
}

/// A response whose body is already JSON text.
pub fn raw_json(status: u16, body: &str) -> Result<Response, Error> {
    Ok(Response::from_bytes(body.as_bytes().to_vec())
        .map_err(|_| Error::Internal)?
        .with_status(status)
        .with_headers(headers_json()))
}

/// The JSON error body of docs/CONTRACT.md section 3, with `WWW-Authenticate` on 401 and `Retry-After`
/// where the error has one.
pub fn error_response(err: &Error, request_id: &str) -> Response {
    let headers = headers_json();
    for (name, value) in err.headers() {
        let _ = headers.set(name, &value);
    }
    let body = err.body(request_id).into_bytes();
    match Response::from_bytes(body) {
        Ok(r) => r.with_status(err.status()).with_headers(headers),
        // from_bytes cannot fail for a plain body; keep a response regardless.
        Err(_) => Response::empty()
            .map(|r| r.with_status(err.status()))
            .unwrap_or_else(|_| unreachable_response()),
    }
}

fn unreachable_response() -> Response {
    Response::builder().with_status(500).empty()
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` on every authenticated response.
pub fn set_rate_limit_headers(headers: &mut Headers, d: &crate::core::ratelimit::Decision) {
    let _ = headers.set(RATELIMIT_LIMIT, &d.limit.to_string());
    let _ = headers.set(RATELIMIT_REMAINING, &d.remaining.to_string());
    let _ = headers.set(RATELIMIT_RESET, &d.reset_secs.to_string());
}
