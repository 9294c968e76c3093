//! The per-key Durable Object (`KeyStateObject`, one per key id) and the client the Worker uses
//! to reach it. Every decision is in [`crate::core::keystate`]; this is storage and transport.
//!
//! The object keeps its state in memory after the first read and writes it through on every
//! change; the runtime delivers one event at a time and holds responses until writes are
//! durable, so counts are exact however many isolates call at once.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State, Storage,
    Stub,
};

use super::Ctx;
use crate::core::keystate::{
    begin, is_expired, Begin, Hit, IdemRecord, KeyState, StoredResponse, IDEMPOTENCY_TTL_MS,
};
use crate::core::names::KEY_STATE_BINDING;
use crate::core::ratelimit::RateLimit;
use crate::core::record::KeyRecord;
use crate::core::route::split_url;
use crate::core::Error;

const STATE_KEY: &str = "state";
const IDEM_PREFIX: &str = "idem:";
/// Base URL of calls to the object; only the path matters.
const DO_URL: &str = "https://key-state";
/// Clean-up cadence of expired idempotency records once some exist.
const IDEM_SWEEP_MS: u64 = 3600 * 1000;

#[derive(Serialize, Deserialize)]
struct RevokeReq {
    revoked_at: String,
}

#[derive(Serialize, Deserialize)]
struct ExpireReq {
    expires_at: i64,
}

/// What summaries show from the object.
#[derive(Serialize, Deserialize, Default)]
pub struct Usage {
    pub last_used_ms: Option<u64>,
    /// The expiry the object knows (a roll with grace shortens it here first).
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// The job trigger's one call: count the request, then (if allowed) open its record.
#[derive(Serialize, Deserialize)]
struct HitBeginReq {
    rate_limit: RateLimit,
    slot: String,
    fingerprint: String,
    lease_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct HitBegin {
    hit: Hit,
    /// Present when the request was counted and allowed.
    begin: Option<Begin>,
}

#[derive(Serialize, Deserialize)]
struct CompleteReq {
    slot: String,
    fingerprint: String,
    response: Option<StoredResponse>,
}

/// `600/60&10`: the key's limit and the tokens wanted.
fn parse_hit_query(q: &str) -> Option<(RateLimit, u32)> {
    let (limit, want) = q.split_once('&')?;
    Some((
        RateLimit::parse(limit)?,
        want.parse().ok().filter(|w| *w >= 1)?,
    ))
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

#[durable_object]
pub struct KeyStateObject {
    state: State,
    cached: RefCell<Option<KeyState>>,
}

impl KeyStateObject {
    fn storage(&self) -> Storage {
        self.state.storage()
    }

    async fn load(&self) -> worker::Result<KeyState> {
        if let Some(s) = self.cached.borrow().as_ref() {
            return Ok(s.clone());
        }
        let loaded = match self.storage().get::<String>(STATE_KEY).await? {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| worker::Error::RustError(e.to_string()))?
            }
            None => KeyState::default(),
        };
        *self.cached.borrow_mut() = Some(loaded.clone());
        Ok(loaded)
    }

    async fn save(&self, s: KeyState) -> worker::Result<()> {
        let json =
            serde_json::to_string(&s).map_err(|e| worker::Error::RustError(e.to_string()))?;
        // Invalidate first: if the write fails, the next event re-reads what is durable.
        *self.cached.borrow_mut() = None;
        self.storage().put(STATE_KEY, json).await?;
        *self.cached.borrow_mut() = Some(s);
        Ok(())
    }

    /// One authenticated request: the object's revoked/expired check, then the count, written
    /// through before the answer leaves (so it survives a restart).
    async fn count(&self, limit: RateLimit, want: u32) -> worker::Result<Hit> {
        let mut s = self.load().await?;
        let hit = s.grant(limit, want, now_ms());
        if matches!(hit, Hit::Counted { .. }) {
            self.save(s).await?;
        }
        Ok(hit)
    }

    async fn idem_get(&self, slot: &str) -> worker::Result<Option<IdemRecord>> {
        Ok(match self.storage().get::<String>(slot).await? {
            Some(json) => serde_json::from_str(&json).ok(),
            None => None,
        })
    }

    async fn idem_put(&self, slot: &str, rec: &IdemRecord) -> worker::Result<()> {
        let json =
            serde_json::to_string(rec).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.storage().put(slot, json).await
    }

    async fn ensure_sweep(&self) -> worker::Result<()> {
        if self.storage().get_alarm().await?.is_none() {
            let at = now_ms() + IDEMPOTENCY_TTL_MS + 60_000;
            self.storage().set_alarm(at as i64).await?;
        }
        Ok(())
    }

    async fn route(&self, mut req: Request) -> worker::Result<Response> {
        // The raw URL string, split by the core: `Request::path()` would run the full WHATWG
        // parser (and link its IDNA tables) for a URL this Worker wrote itself.
        let raw_url = req.inner().url();
        let (path, query) = split_url(&raw_url);
        match path {
            "/hit" => {
                let (limit, want) = query
                    .and_then(parse_hit_query)
                    .ok_or_else(|| worker::Error::RustError("bad hit".into()))?;
                let hit = self.count(limit, want).await?;
                let headers = worker::Headers::new();
                headers.set(HIT_HEADER, &serde_json::to_string(&hit)?)?;
                Ok(Response::empty()?.with_headers(headers))
            }
            "/revoke" => {
                let body: RevokeReq = req.json().await?;
                let mut s = self.load().await?;
                s.revoke(&body.revoked_at);
                self.save(s).await?;
                Response::from_json(&serde_json::json!({"ok": true}))
            }
            "/expire" => {
                let body: ExpireReq = req.json().await?;
                let mut s = self.load().await?;
                s.expire_at(body.expires_at);
                self.save(s).await?;
                Response::from_json(&serde_json::json!({"ok": true}))
            }
            "/usage" => {
                let s = self.load().await?;
                Response::from_json(&Usage {
                    last_used_ms: s.last_used_ms,
                    expires_at: s.expires_at,
                })
            }
            "/hit-begin" => {
                let body: HitBeginReq = req.json().await?;
                let hit = self.count(body.rate_limit, 1).await?;
                let mut begun = None;
                if matches!(&hit, Hit::Counted { decision, .. } if decision.allowed) {
                    let found = self.idem_get(&body.slot).await?;
                    let (decision, store) =
                        begin(found.as_ref(), &body.fingerprint, now_ms(), body.lease_ms);
                    if let Some(rec) = store {
                        self.idem_put(&body.slot, &rec).await?;
                    }
                    begun = Some(decision);
                }
                Response::from_json(&HitBegin { hit, begin: begun })
            }
            "/idem/complete" => {
                let body: CompleteReq = req.json().await?;
                // Only the attempt that holds the in-flight record may finish it.
                let holds = matches!(
                    self.idem_get(&body.slot).await?,
                    Some(IdemRecord::InFlight { ref fingerprint, .. }) if *fingerprint == body.fingerprint
                );
                if holds {
                    match body.response {
                        Some(response) => {
                            let rec = IdemRecord::Done {
                                fingerprint: body.fingerprint,
                                stored_ms: now_ms(),
                                response,
                            };
                            self.idem_put(&body.slot, &rec).await?;
                            self.ensure_sweep().await?;
                        }
                        // A 5xx or no answer: forget, so that a retry can succeed.
                        None => {
                            self.storage().delete(&body.slot).await?;
                        }
                    }
                }
                Response::from_json(&serde_json::json!({"ok": holds}))
            }
            _ => Response::error("not found", 404),
        }
    }
}

impl DurableObject for KeyStateObject {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            cached: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.route(req).await {
            Ok(r) => Ok(r),
            // The Worker maps any non-200 to 503; the detail stays inside the object.
            Err(_) => Response::error("key state unavailable", 500),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let now = now_ms();
        let entries = self
            .storage()
            .list_with_options(worker::ListOptions::new().prefix(IDEM_PREFIX))
            .await?;
        let mut expired = Vec::new();
        let mut remaining = 0usize;
        for entry in entries.entries() {
            let Ok(pair) = entry else { continue };
            let pair: worker::js_sys::Array = pair.into();
            let (Some(key), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string())
            else {
                continue;
            };
            match serde_json::from_str::<IdemRecord>(&value) {
                Ok(rec) if !is_expired(&rec, now, IDEMPOTENCY_TTL_MS) => remaining += 1,
                _ => expired.push(key),
            }
        }
        if !expired.is_empty() {
            self.storage().delete_multiple(expired).await?;
        }
        if remaining > 0 {
            self.storage()
                .set_alarm((now + IDEM_SWEEP_MS) as i64)
                .await?;
        }
        Response::ok("swept")
    }
}

/// The key's object. No binding: 503 (fail closed).
fn stub(ctx: &Ctx, key_id: &str) -> Result<Stub, Error> {
    let fail = |_| ctx.unavailable("durable_object");
    ctx.env
        .durable_object(KEY_STATE_BINDING)
        .map_err(fail)?
        .id_from_name(key_id)
        .map_err(fail)?
        .get_stub()
        .map_err(fail)
}

/// Calls one operation on a key's object. Any failure is 503 (fail closed).
async fn call<T: DeserializeOwned>(
    ctx: &Ctx,
    key_id: &str,
    op: &str,
    body: &impl Serialize,
) -> Result<T, Error> {
    let fail = |_| ctx.unavailable("durable_object");
    let stub = stub(ctx, key_id)?;
    let json = serde_json::to_string(body).map_err(|_| Error::Internal)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(json.into()));
    let req = Request::new_with_init(&format!("{DO_URL}{op}"), &init).map_err(fail)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(fail)?;
    if resp.status_code() != 200 {
        return Err(ctx.unavailable("durable_object"));
    }
    resp.json::<T>().await.map_err(fail)
}

/// The hot path's answer travels in a header of a body-less response, and its question in the
/// URL of a body-less GET: no body stream either way (measured: streams dominate the call).
const HIT_HEADER: &str = "x-hit";

/// Takes up to `want` tokens for a key (one: count this request; more: a lease); the verdict
/// also says whether the object knows the key revoked or expired
/// ([`crate::core::access::decide_key`] decides what follows).
pub async fn hit(ctx: &Ctx, record: &KeyRecord, want: u32) -> Result<Hit, Error> {
    let url = format!("{DO_URL}/hit?{}&{want}", record.rate_limit);
    let resp = stub(ctx, &record.id)?
        .fetch_with_str(&url)
        .await
        .map_err(|_| ctx.unavailable("durable_object"))?;
    if resp.status_code() != 200 {
        return Err(ctx.unavailable("durable_object"));
    }
    let hit: Hit = resp
        .headers()
        .get(HIT_HEADER)
        .ok()
        .flatten()
        .and_then(|h| serde_json::from_str(&h).ok())
        .ok_or_else(|| ctx.unavailable("durable_object"))?;
    Ok(hit)
}

pub async fn revoke(ctx: &Ctx, key_id: &str, revoked_at: &str) -> Result<(), Error> {
    let _: serde_json::Value = call(
        ctx,
        key_id,
        "/revoke",
        &RevokeReq {
            revoked_at: revoked_at.to_owned(),
        },
    )
    .await?;
    Ok(())
}

pub async fn expire(ctx: &Ctx, key_id: &str, expires_at: i64) -> Result<(), Error> {
    let _: serde_json::Value = call(ctx, key_id, "/expire", &ExpireReq { expires_at }).await?;
    Ok(())
}

pub async fn usage(ctx: &Ctx, key_id: &str) -> Result<Usage, Error> {
    call(ctx, key_id, "/usage", &serde_json::json!({})).await
}

/// Counts a job trigger and opens its idempotency record in one call; `None` when refused.
pub async fn hit_and_begin(
    ctx: &Ctx,
    record: &KeyRecord,
    slot: &str,
    fingerprint: &str,
    lease_ms: u64,
) -> Result<(Hit, Option<Begin>), Error> {
    let answer: HitBegin = call(
        ctx,
        &record.id,
        "/hit-begin",
        &HitBeginReq {
            rate_limit: record.rate_limit,
            slot: slot.to_owned(),
            fingerprint: fingerprint.to_owned(),
            lease_ms,
        },
    )
    .await?;
    Ok((answer.hit, answer.begin))
}

pub async fn idem_complete(
    ctx: &Ctx,
    key_id: &str,
    slot: &str,
    fingerprint: &str,
    response: Option<StoredResponse>,
) -> Result<(), Error> {
    let _: serde_json::Value = call(
        ctx,
        key_id,
        "/idem/complete",
        &CompleteReq {
            slot: slot.to_owned(),
            fingerprint: fingerprint.to_owned(),
            response,
        },
    )
    .await?;
    Ok(())
}
