//! The settings session's Durable Object (`SettingsSessionObject`, one per session, named by
//! the SHA-256 of its link token): storage and transport only, every decision is
//! [`crate::core::session`]'s. The runtime delivers one event at a time, so two browsers
//! opening the same link at once cannot both succeed. Its client is at the bottom of this file.
//!
//! Operations: [`crate::core::sessionop`] (`create` stores a new session, refused if the name
//! is taken; `open` marks the link used and stores the cookie's hash; `check` verifies a
//! cookie; `end` verifies it and ends the session; `peek` says which account an unused link
//! would open). An alarm deletes the state [`KEEP_AFTER_EXPIRY_SECS`] after the session ends.

use worker::{durable_object, DurableObject, Env, Request, Response, State, Storage};

use super::objects::{self, fail, set_alarm_at, Wire};
use super::Ctx;
use crate::core::objectop::{Ack, ObjectClass, OpTable};
use crate::core::route::split_url;
use crate::core::session::{self, Session, StoredSession, KEEP_AFTER_EXPIRY_SECS};
use crate::core::sessionop::{
    CheckSession, CreateSession, EndSession, OpenSession, PeekSession, Peeked, SessionOp,
};
use crate::core::switch;
use crate::core::Error;

const STATE_KEY: &str = "session";

fn now_secs() -> i64 {
    (objects::now_ms() / 1000) as i64
}

/// This object's wire format.
const WIRE: Wire = Wire(ObjectClass::SettingsSession);

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
        let Some(op) = SessionOp::from_path(path) else {
            return Response::error("not found", 404);
        };
        let bytes = req.bytes().await?;
        match op {
            SessionOp::Create => {
                let q: CreateSession = WIRE.question(&bytes)?;
                if self.load().await?.is_some() {
                    return Response::error("taken", 409);
                }
                self.save(&q.stored).await?;
                let at_ms = (q.stored.session.expires_at + KEEP_AFTER_EXPIRY_SECS) * 1000;
                set_alarm_at(&self.storage(), at_ms.max(0) as u64).await?;
                WIRE.answer(Ack {})
            }
            // Both decide from the stored state and the cookie's hash, and may change the state.
            SessionOp::Open => {
                let q: OpenSession = WIRE.question(&bytes)?;
                let (store, decided) =
                    session::open(self.load().await?, now_secs(), &q.cookie_hash);
                if let Some(s) = store {
                    self.save(&s).await?;
                }
                WIRE.answer(decided)
            }
            SessionOp::End => {
                let q: EndSession = WIRE.question(&bytes)?;
                let (store, decided) = session::end(self.load().await?, now_secs(), &q.cookie_hash);
                if let Some(s) = store {
                    self.save(&s).await?;
                }
                WIRE.answer(decided)
            }
            SessionOp::Peek => {
                let session = switch::unopened(self.load().await?, now_secs());
                WIRE.answer(Peeked { session })
            }
            SessionOp::Check => {
                let q: CheckSession = WIRE.question(&bytes)?;
                WIRE.answer(session::check(
                    self.load().await?,
                    now_secs(),
                    &q.cookie_hash,
                ))
            }
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

// The Worker's client: [`objects::call`] with this object's operations. Any failure to reach
// the object, or an answer it cannot read, is 503.

/// Stores a new session under `name`. A name already taken (two equal random tokens: not
/// expected in practice) is an internal error, never an overwrite.
pub async fn create(ctx: &Ctx, name: &str, s: &StoredSession) -> Result<(), Error> {
    // A name taken is answered 409, which the client treats as any failure of the object.
    objects::call(ctx, name, CreateSession { stored: s.clone() }).await?;
    Ok(())
}

/// Opens the link behind `name` (once): the session, with the cookie's hash now stored.
pub async fn open(ctx: &Ctx, name: &str, cookie_hash: &str) -> Result<StoredSession, Error> {
    let cookie_hash = cookie_hash.to_owned();
    Ok(objects::call(ctx, name, OpenSession { cookie_hash }).await??)
}

/// The session behind a cookie, if its secret is right and it has not ended.
pub async fn check(ctx: &Ctx, name: &str, cookie_hash: &str) -> Result<StoredSession, Error> {
    let cookie_hash = cookie_hash.to_owned();
    Ok(objects::call(ctx, name, CheckSession { cookie_hash }).await??)
}

/// The account the unused link behind `name` would open, if it can still be opened.
pub async fn peek(ctx: &Ctx, name: &str) -> Result<Option<Session>, Error> {
    Ok(objects::call(ctx, name, PeekSession {}).await?.session)
}

/// Ends the session behind a cookie (sign-out): afterwards the same cookie is
/// `session_expired`.
pub async fn end(ctx: &Ctx, name: &str, cookie_hash: &str) -> Result<StoredSession, Error> {
    let cookie_hash = cookie_hash.to_owned();
    Ok(objects::call(ctx, name, EndSession { cookie_hash }).await??)
}
