//! The per-key Durable Object (`KeyStateObject`, one per key id): storage and transport only.
//! Its operations are [`crate::core::keyop`]; every decision is in [`crate::core::keystate`]
//! and [`crate::core::idempotency`]. Its client is [`super::key_client`].
//!
//! The object keeps its state in memory after the first read and writes it through on every
//! change; the runtime delivers one event at a time and holds responses until writes are
//! durable, so counts are exact however many isolates call at once. Storage calls that follow
//! one another without other I/O in between commit together, so a record and its count in the
//! state never disagree.

use std::cell::RefCell;

use worker::js_sys::{Array, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{durable_object, DurableObject, Env, ListOptions, Request, Response, State, Storage};

use super::objects::{fail, now_ms, set_alarm_at, Wire};
use crate::core::idempotency::{
    complete, full_retry_after_secs, is_expired, next_sweep, Begin, Completion, Found, IdemRecord,
    RECORD_SWEEP_INTERVAL_MS, SLOT_PREFIX, SWEEP_PAGE_SIZE,
};
use crate::core::keyop::{
    decode, encode, parse_hit_query, Ack, CheckSlot, Complete, Expire, HitBegin, HitBegun,
    KeyFacts, Op, PoolSet, PoolTake, Ran, RefundRun, Revoke, Run, SetDisabled, SlotAnswer,
    Suspension, TakeRun, HIT_ANSWER_HEADER,
};
use crate::core::keystate::{Hit, KeyState};
use crate::core::legacy;
use crate::core::objectop::ObjectClass;
use crate::core::pool::PoolState;
use crate::core::ratelimit::RateLimit;
use crate::core::route::split_url;
use crate::core::usage::Count;

const STATE_KEY: &str = "state";
/// Where the clean-up resumes: the last slot of its previous, full page.
const SWEEP_CURSOR_KEY: &str = "sweep_cursor";

/// This object's wire format.
const WIRE: Wire = Wire(ObjectClass::KeyState);

#[durable_object]
pub struct KeyStateObject {
    state: State,
    cached: RefCell<Option<KeyState>>,
    /// An imported key's PBKDF2 check in progress: in memory only (an object that restarts
    /// forgets it, which at worst lets one more check run).
    check: RefCell<legacy::CheckSlot>,
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
            Some(json) => serde_json::from_str(&json).map_err(|_| fail("state"))?,
            None => KeyState::default(),
        };
        *self.cached.borrow_mut() = Some(loaded.clone());
        Ok(loaded)
    }

    async fn save(&self, s: KeyState) -> worker::Result<()> {
        let json = serde_json::to_string(&s).map_err(|_| fail("state"))?;
        // Invalidate first: if the write fails, the next event re-reads what is durable.
        *self.cached.borrow_mut() = None;
        self.storage().put(STATE_KEY, json).await?;
        *self.cached.borrow_mut() = Some(s);
        Ok(())
    }

    /// One grant of `want` tokens (one request, or an isolate's lease), counted in the usage
    /// series as `what`: the object's revoked/expired check, then the allowance taken, written
    /// through before the answer leaves (so what was granted survives a restart). A refusal
    /// is written too (its count in the usage series); a revoked or expired key's call is not.
    async fn count(
        &self,
        s: &mut KeyState,
        limit: RateLimit,
        want: u32,
        what: Count,
    ) -> worker::Result<Hit> {
        let before = s.clone();
        let hit = s.grant_as(limit, want, now_ms(), what);
        if *s != before {
            self.save(s.clone()).await?;
        }
        Ok(hit)
    }

    /// The record under `slot`. Records rest as bytes (JSON beside the raw body).
    async fn idem_get(&self, slot: &str) -> worker::Result<Option<Option<IdemRecord>>> {
        let found = self.storage().get_multiple(vec![slot]).await?;
        let value = found.get(&JsValue::from_str(slot));
        Ok(if value.is_undefined() {
            None
        } else {
            Some(record_of(&value))
        })
    }

    async fn idem_put(&self, slot: &str, rec: IdemRecord) -> worker::Result<()> {
        let bytes = encode(rec).map_err(|_| fail("record"))?;
        self.storage()
            .put_raw(slot, Uint8Array::from(bytes.as_slice()))
            .await
    }

    /// Arms the clean-up if it is not armed; returns when it runs.
    async fn ensure_sweep(&self, s: &KeyState) -> worker::Result<Option<u64>> {
        let now = now_ms();
        let armed = self.storage().get_alarm().await?.map(|at| at.max(0) as u64);
        // An alarm further out than one cadence was set as an offset by mistake (see
        // `set_alarm_at`): replaced.
        if let Some(at) = armed.filter(|at| *at <= now + RECORD_SWEEP_INTERVAL_MS) {
            return Ok(Some(at));
        }
        let at = next_sweep(now, false, s.idem_records);
        if let Some(at) = at {
            set_alarm_at(&self.storage(), at).await?;
        }
        Ok(at)
    }

    async fn hit_begin(&self, q: HitBegin) -> worker::Result<HitBegun> {
        let mut s = self.load().await?;
        let hit = self.count(&mut s, q.rate_limit, 1, Count::Triggers).await?;
        let mut answer = HitBegun {
            hit,
            begin: None,
            retry_after_secs: None,
            run: None,
        };
        if !answer.hit.allowed() {
            return Ok(answer);
        }
        let found = self.idem_get(&q.slot).await?;
        let found = match &found {
            None => Found::Empty,
            Some(None) => Found::Unreadable,
            Some(Some(rec)) => Found::Record(rec),
        };
        let now = now_ms();
        let opened = s.open_trigger(found, &q.fingerprint, q.lease_ms, q.quota.as_ref(), now);
        answer.run = opened.run;
        let Some(decision) = opened.decision else {
            return Ok(answer);
        };
        if let Some(rec) = opened.store {
            self.idem_put(&q.slot, rec).await?;
            // The record and its run are written without other I/O between: one commit.
            if opened.save {
                self.save(s.clone()).await?;
            }
            self.ensure_sweep(&s).await?;
        }
        if decision == Begin::Full {
            let next = self.ensure_sweep(&s).await?;
            answer.retry_after_secs = Some(full_retry_after_secs(now, next));
        }
        answer.begin = Some(decision);
        Ok(answer)
    }

    /// A job trigger without an `Idempotency-Key` of a key with a quota: the rate limit, then
    /// (if allowed) one run, written together.
    async fn run(&self, q: Run) -> worker::Result<Ran> {
        let mut s = self.load().await?;
        let before = s.clone();
        let (hit, run) = s.run(q.rate_limit, &q.quota, now_ms());
        if s != before {
            self.save(s).await?;
        }
        Ok(Ran { hit, run })
    }

    async fn complete(&self, q: Complete) -> worker::Result<Ack> {
        let found = self.idem_get(&q.slot).await?.flatten();
        match complete(
            found.as_ref(),
            &q.fingerprint,
            q.attempt,
            q.answer,
            now_ms(),
        ) {
            Completion::Keep(rec) => self.idem_put(&q.slot, rec).await?,
            Completion::Forget => {
                if self.storage().delete(&q.slot).await? {
                    let mut s = self.load().await?;
                    s.records_removed(1);
                    self.save(s).await?;
                }
            }
            Completion::NotHeld => {}
        }
        Ok(Ack {})
    }

    async fn route(&self, mut req: Request) -> worker::Result<Response> {
        // The raw URL string, split by the core: `Request::path()` would run the full WHATWG
        // parser (and link its IDNA tables) for a URL this Worker wrote itself.
        let raw_url = req.inner().url();
        let (path, query) = split_url(&raw_url);
        let Some(op) = Op::from_path(path) else {
            return Response::error("not found", 404);
        };
        if op == Op::Hit {
            let (limit, want, refused) =
                query.and_then(parse_hit_query).ok_or_else(|| fail("hit"))?;
            let mut s = self.load().await?;
            // Refusals the isolate answered itself: written with this call's grant.
            s.usage.add(Count::Refused, refused, now_ms());
            let hit = self.count(&mut s, limit, want, Count::Allowed).await?;
            let headers = worker::Headers::new();
            headers.set(HIT_ANSWER_HEADER, &serde_json::to_string(&hit)?)?;
            return Ok(Response::empty()?.with_headers(headers));
        }
        let bytes = req.bytes().await?;
        match op {
            Op::Hit => Err(fail("unreachable")),
            Op::HitBegin => WIRE.answer(self.hit_begin(WIRE.question(&bytes)?).await?),
            Op::Complete => WIRE.answer(self.complete(WIRE.question(&bytes)?).await?),
            Op::Revoke => {
                let q: Revoke = WIRE.question(&bytes)?;
                let mut s = self.load().await?;
                s.revoke(&q.revoked_at);
                self.save(s).await?;
                WIRE.answer(Ack {})
            }
            Op::Expire => {
                let q: Expire = WIRE.question(&bytes)?;
                let mut s = self.load().await?;
                s.expire_at(q.expires_at);
                self.save(s).await?;
                WIRE.answer(Ack {})
            }
            Op::Series => {
                let s = self.load().await?;
                WIRE.answer(s.usage.series(now_ms()))
            }
            Op::Usage => {
                let s = self.load().await?;
                WIRE.answer(KeyFacts {
                    last_used_ms: s.last_used_ms,
                    expires_at: s.expires_at,
                    revoked: s.revoked_at.is_some(),
                    disabled: s.disabled,
                    disabled_seq: s.disabled_seq,
                    runs: s.runs,
                })
            }
            Op::Disable => {
                let q: SetDisabled = WIRE.question(&bytes)?;
                let mut s = self.load().await?;
                let changed = s.disabled != q.disabled;
                if changed {
                    s.disabled = q.disabled;
                    s.disabled_seq += 1;
                }
                let seq = s.disabled_seq;
                if changed {
                    self.save(s).await?;
                }
                WIRE.answer(Suspension { changed, seq })
            }
            Op::Run => WIRE.answer(self.run(WIRE.question(&bytes)?).await?),
            Op::CheckSlot => {
                let q: CheckSlot = WIRE.question(&bytes)?;
                let mut slot = self.check.borrow_mut();
                if !q.take {
                    slot.release(q.failed, now_ms());
                    return WIRE.answer(SlotAnswer {
                        granted: true,
                        retry_after: 0,
                    });
                }
                WIRE.answer(match slot.take(now_ms()) {
                    Ok(()) => SlotAnswer {
                        granted: true,
                        retry_after: 0,
                    },
                    Err(retry_after) => SlotAnswer {
                        granted: false,
                        retry_after,
                    },
                })
            }
            Op::RefundRun => {
                let q: RefundRun = WIRE.question(&bytes)?;
                let mut s = self.load().await?;
                let before = s.runs;
                s.runs.refund(q.start);
                if s.runs != before {
                    self.save(s).await?;
                }
                WIRE.answer(Ack {})
            }
            Op::PoolSet => {
                let q: PoolSet = WIRE.question(&bytes)?;
                let mut s = self.load().await?;
                s.set_pool(q.limits);
                self.save(s).await?;
                WIRE.answer(Ack {})
            }
            Op::PoolTake => {
                let q: PoolTake = WIRE.question(&bytes)?;
                let mut s = self.load().await?;
                let before = s.clone();
                let now = now_ms();
                s.usage.add(Count::Refused, q.refused, now);
                let grant = s.pool_grant(q.want, q.lease_ms, now);
                if s != before {
                    self.save(s).await?;
                }
                WIRE.answer(grant)
            }
            Op::PoolRun => {
                let mut s = self.load().await?;
                let before = s.clone();
                let run = s.pool_run((now_ms() / 1000) as i64);
                if s != before {
                    self.save(s).await?;
                }
                WIRE.answer(run)
            }
            Op::PoolStatus => WIRE.answer(self.load().await?.pool_figures(now_ms())),
            Op::TakeRun => {
                let q: TakeRun = WIRE.question(&bytes)?;
                let mut s = self.load().await?;
                let run = s.take_run(&q.quota, (now_ms() / 1000) as i64);
                if run.allowed {
                    self.save(s).await?;
                }
                WIRE.answer(run)
            }
        }
    }

    /// One page of the clean-up: deletes the expired records among the next
    /// [`SWEEP_PAGE_SIZE`], then re-arms soon if the page was full, else on the cadence.
    async fn sweep(&self) -> worker::Result<()> {
        let now = now_ms();
        let cursor = self.storage().get::<String>(SWEEP_CURSOR_KEY).await?;
        let mut opts = ListOptions::new()
            .prefix(SLOT_PREFIX)
            .limit(SWEEP_PAGE_SIZE + 1);
        if let Some(c) = cursor.as_deref() {
            opts = opts.start(c);
        }
        let entries = self.storage().list_with_options(opts).await?;
        let mut seen = 0usize;
        let mut last = None;
        let mut expired = Vec::new();
        for entry in entries.entries() {
            let Ok(pair) = entry else { continue };
            let pair: Array = pair.into();
            let Some(slot) = pair.get(0).as_string() else {
                continue;
            };
            // `start` is inclusive: the cursor's own slot was seen by the previous page.
            if cursor.as_deref() == Some(slot.as_str()) || seen == SWEEP_PAGE_SIZE {
                continue;
            }
            seen += 1;
            if record_of(&pair.get(1)).is_none_or(|rec| is_expired(&rec, now)) {
                expired.push(slot.clone());
            }
            last = Some(slot);
        }
        let page_was_full = seen == SWEEP_PAGE_SIZE;
        let mut s = self.load().await?;
        if !expired.is_empty() {
            let deleted = self.storage().delete_multiple(expired).await?;
            s.records_removed(deleted as u32);
            self.save(s.clone()).await?;
        }
        match (page_was_full, last) {
            (true, Some(last)) => self.storage().put(SWEEP_CURSOR_KEY, last).await?,
            _ => {
                self.storage().delete(SWEEP_CURSOR_KEY).await?;
            }
        }
        if let Some(at) = next_sweep(now, page_was_full, s.idem_records) {
            set_alarm_at(&self.storage(), at).await?;
        }
        Ok(())
    }
}

/// A stored record, or `None` when unreadable (another format): swept or taken over.
fn record_of(value: &JsValue) -> Option<IdemRecord> {
    if !value.is_instance_of::<Uint8Array>() {
        return None;
    }
    decode(&Uint8Array::from(value.clone()).to_vec())
}

impl DurableObject for KeyStateObject {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            cached: RefCell::new(None),
            check: RefCell::new(legacy::CheckSlot::default()),
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
        self.sweep().await?;
        Response::ok("swept")
    }
}
