//! The files the Worker serves but does not carry: the settings page's (docs/CONTRACT.md
//! section 11) and the OpenAPI document. They are the static assets of a Worker of their own,
//! keygate-assets (`wrangler.assets.toml`, filled by `scripts/build.sh`), reached through the
//! `ASSETS` service binding: kept out of this Worker's `.wasm` so that every cold isolate loads
//! less, and without the static-assets router that `[assets]` on this Worker would put in front
//! of every request. Their answers are built here and carry the headers the one code path that
//! serves every answer adds.

use worker::Response;

use super::fail::OrUnavailable;
use super::Ctx;
use crate::core::names::{CONTENT_TYPE, JSON_TYPE};
use crate::core::{Cause, Error};

/// The service binding to keygate-assets (wrangler.toml `[[services]]`).
const BINDING: &str = "ASSETS";
/// The binding serves by path; the host is never looked at.
const BASE: &str = "https://assets.invalid";

/// The settings page's files and the OpenAPI document, by the path `scripts/build.sh` gives
/// each in `build/assets` (`html_handling = "none"` in wrangler.assets.toml: each is served at
/// exactly its path, no redirect to a pretty URL).
#[derive(Clone, Copy, Debug)]
pub enum File {
    SettingsIndex,
    SettingsScript,
    SettingsStyle,
    OpenApi,
}

impl File {
    fn path(self) -> &'static str {
        match self {
            File::SettingsIndex => "/settings/index.html",
            File::SettingsScript => "/settings/app.js",
            File::SettingsStyle => "/settings/app.css",
            File::OpenApi => "/openapi.json",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            File::SettingsIndex => "text/html; charset=utf-8",
            File::SettingsScript => "text/javascript; charset=utf-8",
            File::SettingsStyle => "text/css; charset=utf-8",
            File::OpenApi => JSON_TYPE,
        }
    }
}

/// The file's bytes. A missing binding or file, or any other answer than 200, is 503 (the
/// deploy is broken; nothing else is served in its place).
pub async fn read(ctx: &Ctx, file: File) -> Result<Vec<u8>, Error> {
    let assets = ctx.env.service(BINDING).or_unavailable(Cause::Assets)?;
    let url = format!("{BASE}{}", file.path());
    let mut response = assets
        .fetch(url, None)
        .await
        .or_unavailable(Cause::Assets)?;
    if response.status_code() != 200 {
        return Err(Error::Unavailable(Cause::Assets));
    }
    response.bytes().await.or_unavailable(Cause::Assets)
}

/// The file as an answer of its own: 200 with its content type.
pub async fn respond(ctx: &Ctx, file: File) -> Result<Response, Error> {
    let body = read(ctx, file).await?;
    let mut response = Response::from_bytes(body).map_err(|_| Error::Internal)?;
    let _ = response
        .headers_mut()
        .set(CONTENT_TYPE, file.content_type());
    Ok(response)
}
