//! The settings page (docs/CONTRACT.md section 11): `POST /v1/settings-sessions` (admin), the
//! link that opens a session, the page's files, and the settings JSON API. The API is the
//! key-management routes of [`super::keys`] called with [`Caller::Session`], so the page is
//! held to the API's rules; this file only authenticates the cookie, checks CSRF, and reads the
//! user's pool for the session's answer ([`crate::core::settings::session_answer`] decides).
//!
//! The page's files are static assets the Worker reads through its `ASSETS` binding
//! ([`super::assets`]), except the page that asks before switching users, which is embedded;
//! their security headers come from the one code path that serves every `/settings` answer
//! (`edge/fetch.rs`), which the end-to-end tests check.

use worker::Response;

use super::assets::{self, File};
use super::http::Req;
use super::http::{json, random, read_body};
use super::{auditlog, key_client, keys, session_object, store, throttle, Ctx, Incoming, Reply};
use crate::core::access::Caller;
use crate::core::details;
use crate::core::events::{Actor, Change, ChangeKind};
use crate::core::fields::{MAX_FORM_BYTES, MAX_MANAGEMENT_BODY_BYTES};
use crate::core::keyop::PoolStatusQuery;
use crate::core::names::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HEADER_CSRF, LOCATION, ORIGIN, SET_COOKIE,
};
use crate::core::session::{
    self, base64url, check_csrf, clear_cookie, cookie_value, hash_secret, is_local, link_token,
    origin_of, read_cookie, set_cookie, Session, StoredSession, SECRET_BYTES,
};
use crate::core::settings::{session_answer, user_pool, Asset, Settings, PATH_OPEN, PATH_PAGE};
use crate::core::switch;
use crate::core::time::format_time;
use crate::core::{Cause, Error};

/// The page that asks before another user's link replaces this browser's session: embedded
/// (1.4 KB), unlike the page's other files, because it is the defence against login CSRF and
/// must not depend on a binding that could fail open (docs/CONTRACT.md section 11).
const SWITCH_HTML: &str = include_str!("../../web/settings/switch.html");

/// `POST /v1/settings-sessions` (admin): stores the session in its own object, named by the
/// SHA-256 of a fresh link token, records the issue in the user's audit trail, and answers the
/// link (the only place the token appears). If the record cannot be written the link is not
/// handed out (503): a session nobody can open is harmless, an unrecorded one is not.
pub async fn create(ctx: &Ctx, req: &Req) -> Result<Reply, Error> {
    let body = read_body(req, MAX_MANAGEMENT_BODY_BYTES).await?;
    let session = session::parse_create(&body, ctx.now)?;
    let token = base64url(&random::<SECRET_BYTES>()?);
    let stored = StoredSession {
        session,
        opened: false,
        cookie_hash: None,
        csrf_token: base64url(&random::<SECRET_BYTES>()?),
    };
    session_object::create(ctx, &hash_secret(&token), &stored).await?;
    auditlog::record(
        ctx,
        session_change(ChangeKind::SessionCreated, &stored.session),
    )
    .await?;
    let url = format!("{}{PATH_OPEN}?token={token}", origin_of(&req.inner().url()));
    let mut resp = json(
        201,
        &serde_json::json!({
            "url": url,
            "expires_at": format_time(stored.session.expires_at),
        }),
    )?;
    let _ = resp.headers_mut().set(CACHE_CONTROL, "no-store");
    Ok(resp.into())
}

/// Whether the session cookie gets `Secure`: everywhere but on a local host, where `make dev`
/// serves plain HTTP.
fn secure_cookie(req: &Req) -> bool {
    !is_local(origin_of(&req.inner().url()))
}

/// The audit entry of a session issued (by the admin) or opened (by its user): its ceiling and
/// expiry, never the link token or the cookie.
fn session_change(kind: ChangeKind, s: &Session) -> Change {
    let actor = match kind {
        ChangeKind::SessionCreated => Actor::Admin,
        _ => Actor::Session(s.user_id.clone()),
    };
    Change::new(kind, actor, &s.user_id, None).with_details(details::session(s))
}

/// A settings path. The page's files and the link need no session; the API needs the cookie,
/// and a state-changing call also the CSRF token.
pub async fn handle(
    ctx: &Ctx,
    incoming: Incoming<'_>,
    route: Settings<'_>,
) -> Result<Reply, Error> {
    let Incoming {
        req, method, query, ..
    } = incoming;
    match route {
        Settings::ToPage => redirect(308, PATH_PAGE),
        Settings::Asset(asset) => asset_response(ctx, asset).await,
        Settings::Open => {
            throttle::require_binding(ctx)?;
            let token = link_token(query).ok_or(Error::LinkExpired)?;
            match ask_first(ctx, req, &token).await {
                Some(page) => Ok(page),
                None => open(ctx, req, &token).await,
            }
        }
        Settings::OpenChosen => {
            throttle::require_binding(ctx)?;
            // Only the gateway's own choice page posts here (login CSRF, docs/CONTRACT.md
            // section 11); a form post always carries Origin.
            let origin = req.headers().get(ORIGIN).ok().flatten();
            if !switch::same_origin(origin.as_deref(), origin_of(&req.inner().url())) {
                return Err(Error::CsrfFailed);
            }
            let body = read_body(req, MAX_FORM_BYTES).await?;
            let token = switch::form_token(&body).ok_or(Error::LinkExpired)?;
            open(ctx, req, &token).await
        }
        route => {
            // Refused cookies are counted per client like failed keys: they must be countable.
            throttle::require_binding(ctx)?;
            let (object, cookie_hash, stored) = authenticate(ctx, req).await?;
            if route.changes_state(method) {
                let presented = req.headers().get(HEADER_CSRF).ok().flatten();
                let origin = req.headers().get(ORIGIN).ok().flatten();
                check_csrf(
                    &stored.csrf_token,
                    presented.as_deref(),
                    origin.as_deref(),
                    origin_of(&req.inner().url()),
                )?;
            }
            let caller = Caller::Session(&stored.session);
            match route {
                Settings::Session => session(ctx, &stored).await,
                Settings::EndSession => end_session(ctx, req, &object, &cookie_hash).await,
                Settings::AuditEvents => audit_events(ctx, query, &caller).await,
                Settings::Keys(r) => keys::manage(ctx, req, query, &r, &caller, None).await,
                // Answered above.
                _ => Err(Error::NotFound),
            }
        }
    }
}

/// `GET /settings/api/session`: the session and its user's pool, read fresh (not from the
/// location's KV cache: the page is loaded rarely, and a pool just defined should show). The
/// pool's object is asked only when KV has the pool, so a user without one costs no object. Any
/// failure is 503, as for the rest of the session (fail closed: the page never shows "no
/// limit" for a pool it could not read).
async fn session(ctx: &Ctx, stored: &StoredSession) -> Result<Reply, Error> {
    let pool_ref = user_pool(&stored.session);
    let found = match store::pool(ctx, &pool_ref, false).await? {
        Some(pool) => {
            let figures =
                key_client::call(ctx, &pool_ref.storage_name(), PoolStatusQuery {}).await?;
            Some((pool, figures))
        }
        None => None,
    };
    let found = found.as_ref().map(|(pool, figures)| (pool, figures));
    Ok(json(200, &session_answer(stored, found, ctx.now))?.into())
}

/// The session behind the request's cookie; no cookie, a malformed one or a wrong secret is
/// `missing_session` (no storage read for a malformed one; a refused well-formed one counts as a
/// failed attempt, see [`crate::core::throttle::counts_as_failure`]).
/// Returns the session's object name and the cookie's hash with it (sign-out needs them).
async fn authenticate(ctx: &Ctx, req: &Req) -> Result<(String, String, StoredSession), Error> {
    let header = req.headers().get(COOKIE).ok().flatten();
    let (name, secret) = read_cookie(header.as_deref()).ok_or(Error::MissingSession)?;
    let cookie_hash = hash_secret(secret);
    let stored = session_object::check(ctx, name, &cookie_hash).await?;
    Ok((name.to_owned(), cookie_hash, stored))
}

/// `POST /settings/api/session/end` (cookie and CSRF checked by the caller): the session's
/// object ends the session, so the same cookie is 401 `session_expired` from now on, and the
/// answer removes the cookie from the browser. Not an audit entry: the trail records key
/// changes and openings, and an ended session changes no key.
async fn end_session(
    ctx: &Ctx,
    req: &Req,
    object: &str,
    cookie_hash: &str,
) -> Result<Reply, Error> {
    session_object::end(ctx, object, cookie_hash).await?;
    let secure = secure_cookie(req);
    let mut response = json(200, &serde_json::json!({ "ended": true }))?;
    let headers = response.headers_mut();
    let _ = headers.append(SET_COOKIE, &clear_cookie(secure));
    let _ = headers.append(SET_COOKIE, &switch::clear_switch_cookie(secure));
    Ok(response.into())
}

/// The page that asks first, when this browser holds a live session of another user than the
/// link's ([`switch`]); `None` (open as usual) when it holds none, the same user's, or anything
/// cannot be read: asking is a courtesy to the person, never a reason to refuse the link.
async fn ask_first(ctx: &Ctx, req: &Req, token: &str) -> Option<Reply> {
    let header = req.headers().get(COOKIE).ok().flatten();
    let (name, secret) = switch::read_switch_cookie(header.as_deref())?;
    let current = session_object::check(ctx, name, &hash_secret(secret))
        .await
        .ok()?;
    let link = session_object::peek(ctx, &hash_secret(token))
        .await
        .ok()??;
    if !switch::must_ask(&current.session, &link) {
        return None;
    }
    let page = switch::render(SWITCH_HTML, &current.session, &link, token);
    let mut response = Response::from_bytes(page.into_bytes()).ok()?;
    let _ = response
        .headers_mut()
        .set(CONTENT_TYPE, "text/html; charset=utf-8");
    Some(response.into())
}

/// Opening the link `token` (`GET /settings/open?token=`, or the choice page's form): once and
/// before expiry, the session cookie (and its copy for `/settings/open`, [`switch`]) and a
/// redirect to the page (a URL without the token); otherwise 410 `link_expired`, nothing set.
/// A malformed token costs no storage read.
async fn open(ctx: &Ctx, req: &Req, token: &str) -> Result<Reply, Error> {
    let name = hash_secret(token);
    let secret = base64url(&random::<SECRET_BYTES>()?);
    let stored = session_object::open(ctx, &name, &hash_secret(&secret)).await?;
    let s = &stored.session;
    let change = session_change(ChangeKind::SessionOpened, s);
    // The link is used up now: a failure to record the opening is noted, not turned into an
    // error that would leave the user without a session and without a link.
    let note = auditlog::record(ctx, change)
        .await
        .err()
        .map(|_| Cause::AuditAfterOpen);
    let secure = secure_cookie(req);
    let mut response = redirect(303, PATH_PAGE)?.response;
    let value = cookie_value(&name, &secret);
    let max_age = s.expires_at - ctx.now;
    let headers = response.headers_mut();
    let _ = headers.append(SET_COOKIE, &set_cookie(&value, max_age, secure));
    let _ = headers.append(
        SET_COOKIE,
        &switch::set_switch_cookie(&value, max_age, secure),
    );
    Ok(Reply { response, note })
}

/// `GET /settings/api/audit-events?cursor=&limit=`: the session's user's audit trail.
/// The same as `GET /v1/audit-events` for a key of the user ([`auditlog::events`]).
async fn audit_events(ctx: &Ctx, query: Option<&str>, caller: &Caller<'_>) -> Result<Reply, Error> {
    Ok(json(200, &auditlog::events(ctx, query, caller).await?)?.into())
}

fn redirect(status: u16, to: &str) -> Result<Reply, Error> {
    let mut response = Response::empty()
        .map_err(|_| Error::Internal)?
        .with_status(status);
    let _ = response.headers_mut().set(LOCATION, to);
    Ok(response.into())
}

async fn asset_response(ctx: &Ctx, asset: Asset) -> Result<Reply, Error> {
    let file = match asset {
        Asset::Index => File::SettingsIndex,
        Asset::Script => File::SettingsScript,
        Asset::Style => File::SettingsStyle,
    };
    Ok(assets::respond(ctx, file).await?.into())
}
