//! The settings session's Durable Object (`SettingsSessionObject`, one per session, named by
//! the SHA-256 of its link token): storage and transport only, every decision is
//! [`crate::core::session`]'s. The runtime delivers one event at a time, so two browsers
//! opening the same link at once cannot both succeed. Its client is at the bottom of this file.
//!
//! Operations (JSON over the stub's fetch): `create` stores a new session (refused if the name
//! is taken), `open` marks the link used and stores the cookie's hash, `check` verifies a
//! cookie, `end` verifies it and ends the session (sign-out). All three answer a [`crate::core::session::Answer`]. An alarm deletes the
//! state [`KEEP_AFTER_EXPIRY_SECS`] after the session ends.

use serde::{Deserialize, Serialize};
use worker::js_sys::Date;
use worker::wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, ScheduledTime,
    State, Storage,
};

use super::fail::OrUnavailable;
use super::Ctx;
use crate::core::names::SETTINGS_SESSIONS_BINDING;
use crate::core::route::split_url;
use crate::core::session::{self, Answer, Session, StoredSession, KEEP_AFTER_EXPIRY_SECS};
use crate::core::switch;
use crate::core::{Cause, Error};

const STATE_KEY: &str = "session";
const OP_CREATE: &str = "/create";
const OP_OPEN: &str = "/open";
const OP_CHECK: &str = "/check";
const OP_END: &str = "/end";
/// Which account an unused link would open (no state changes).
const OP_PEEK: &str = "/peek";
/// Base URL of calls to the object; only the path matters.
const DO_URL: &str = "https://settings-session";

/// The question of `open` and `check`: the SHA-256 of the cookie secret.
#[derive(Serialize, Deserialize)]
struct CookieQuestion {
    cookie_hash: String,
}

fn now_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

fn fail(what: &str) -> worker::Error {
    worker::Error::RustError(what.into())
}

#[durable_object]
pub struct SettingsSessionObject {
    state: State,
}

impl SettingsSessionObject {
    fn storage(&self) -> Storage {
        self.state.storage()
    }

    async fn load(&self) -> worker::Result<Option<StoredSession>> {
        match self.storage().get::<String>(STATE_KEY).await? {
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|_| fail("state")),
            None => Ok(None),
        }
    }

    async fn save(&self, s: &StoredSession) -> worker::Result<()> {
        let json = serde_json::to_string(s).map_err(|_| fail("state"))?;
        self.storage().put(STATE_KEY, json).await
    }

    async fn route(&self, mut req: Request) -> worker::Result<Response> {
        let raw_url = req.inner().url();
        let (path, _) = split_url(&raw_url);
        let path = path.to_owned();
        let bytes = req.bytes().await?;
        match path.as_str() {
            OP_CREATE => {
                let s: StoredSession = serde_json::from_slice(&bytes).map_err(|_| fail("q"))?;
                if self.load().await?.is_some() {
                    return Response::error("taken", 409);
                }
                self.save(&s).await?;
                // A moment, not an offset: an `i64` given to `set_alarm` is read as an offset.
                let at_ms = (s.session.expires_at + KEEP_AFTER_EXPIRY_SECS) as f64 * 1000.0;
                let at = Date::new(&JsValue::from_f64(at_ms));
                self.storage().set_alarm(ScheduledTime::new(at)).await?;
                Response::ok("created")
            }
            // Both decide from the stored state and the cookie's hash, and may change the state.
            OP_OPEN | OP_END => {
                let decide = if path == OP_OPEN {
                    session::open
                } else {
                    session::end
                };
                let q: CookieQuestion = serde_json::from_slice(&bytes).map_err(|_| fail("q"))?;
                let (store, answer) = decide(self.load().await?, now_secs(), &q.cookie_hash);
                if let Some(s) = store {
                    self.save(&s).await?;
                }
                Response::from_json(&answer)
            }
            OP_PEEK => Response::from_json(&switch::unopened(self.load().await?, now_secs())),
            OP_CHECK => {
                let q: CookieQuestion = serde_json::from_slice(&bytes).map_err(|_| fail("q"))?;
                Response::from_json(&session::check(
                    self.load().await?,
                    now_secs(),
                    &q.cookie_hash,
                ))
            }
            _ => Response::error("not found", 404),
        }
    }
}

impl DurableObject for SettingsSessionObject {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.route(req).await {
            Ok(r) => Ok(r),
            // The Worker maps any non-200 to 503; the detail stays inside the object.
            Err(_) => Response::error("settings session unavailable", 500),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // The session is over and its grace for late requests too: nothing is kept.
        self.storage().delete_all().await?;
        Response::ok("deleted")
    }
}

// The Worker's client. Any failure to reach the object, or an answer it cannot read, is 503.

/// Asks the object named `name` one question; `Ok(None)` when it answered 409 (create: taken).
async fn call(ctx: &Ctx, name: &str, op: &str, body: String) -> Result<Option<String>, Error> {
    let stub = ctx
        .env
        .durable_object(SETTINGS_SESSIONS_BINDING)
        .or_unavailable(Cause::SettingsSessionObject)?
        .id_from_name(name)
        .or_unavailable(Cause::SettingsSessionObject)?
        .get_stub()
        .or_unavailable(Cause::SettingsSessionObject)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let req = Request::new_with_init(&format!("{DO_URL}{op}"), &init)
        .or_unavailable(Cause::SettingsSessionObject)?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .or_unavailable(Cause::SettingsSessionObject)?;
    match resp.status_code() {
        200 => Ok(Some(
            resp.text()
                .await
                .or_unavailable(Cause::SettingsSessionObject)?,
        )),
        409 => Ok(None),
        _ => Err(Error::Unavailable(Cause::SettingsSessionObject)),
    }
}

/// Stores a new session under `name`. A name already taken (two equal random tokens: not
/// expected in practice) is an internal error, never an overwrite.
pub async fn create(ctx: &Ctx, name: &str, s: &StoredSession) -> Result<(), Error> {
    let body = serde_json::to_string(s).map_err(|_| Error::Internal)?;
    match call(ctx, name, OP_CREATE, body).await? {
        Some(_) => Ok(()),
        None => Err(Error::Internal),
    }
}

async fn ask(ctx: &Ctx, name: &str, op: &str, cookie_hash: &str) -> Result<StoredSession, Error> {
    let body = serde_json::to_string(&CookieQuestion {
        cookie_hash: cookie_hash.to_owned(),
    })
    .map_err(|_| Error::Internal)?;
    let text = call(ctx, name, op, body)
        .await?
        .or_unavailable(Cause::SettingsSessionObject)?;
    let answer: Answer =
        serde_json::from_str(&text).or_unavailable(Cause::SettingsSessionObject)?;
    answer.map_err(Error::from)
}

/// Opens the link behind `name` (once): the session, with the cookie's hash now stored.
pub async fn open(ctx: &Ctx, name: &str, cookie_hash: &str) -> Result<StoredSession, Error> {
    ask(ctx, name, OP_OPEN, cookie_hash).await
}

/// The session behind a cookie, if its secret is right and it has not ended.
pub async fn check(ctx: &Ctx, name: &str, cookie_hash: &str) -> Result<StoredSession, Error> {
    ask(ctx, name, OP_CHECK, cookie_hash).await
}

/// The account the unused link behind `name` would open, if it can still be opened.
pub async fn peek(ctx: &Ctx, name: &str) -> Result<Option<Session>, Error> {
    let text = call(ctx, name, OP_PEEK, String::new())
        .await?
        .or_unavailable(Cause::SettingsSessionObject)?;
    serde_json::from_str(&text).or_unavailable(Cause::SettingsSessionObject)
}

/// Ends the session behind a cookie (sign-out): afterwards the same cookie is
/// `session_expired`.
pub async fn end(ctx: &Ctx, name: &str, cookie_hash: &str) -> Result<StoredSession, Error> {
    ask(ctx, name, OP_END, cookie_hash).await
}
