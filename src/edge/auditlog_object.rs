//! The per-user Durable Object (`UserLogObject`, one per user, named `user:<user id>`): the
//! user's audit trail, append-only, and the outbox of the user's webhook events. Keys, cursors
//! and retention are [`crate::core::auditlog`]'s; the client is [`super::auditlog`].
//!
//! Why a Durable Object and not KV: one writer per user assigns the order, every read sees
//! every acknowledged write (KV listings are eventually consistent and ordered by name, not
//! time), and a write is durable before the answer leaves the object, so a change is recorded
//! before its client is answered. An entry, its dedup index and its outbox event are written
//! by consecutive storage calls with no other I/O between them, which commit together.

use std::cell::Cell;

use worker::js_sys::{Array, Object, Reflect};
use worker::wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, ListOptions, Request, Response, State};

use super::objects::{now_ms, set_alarm_at, Wire};
use crate::core::auditlog::{
    admits, cursor_of, entry_key, is_past_retention, next_alarm, outbox_key, reconcile, Admit,
    Admitted, Append, AppendMany, Appended, AppendedMany, ChangeBudget, Counted, ListAsk, LogOp,
    Page, Retire, Stored, TakeChange, BUDGET_KEY, ENTRY_PREFIX, ID_PREFIX, LIVE_KEY_PREFIX,
    LOG_SWEEP_INTERVAL_MS, OUTBOX_PAGE, OUTBOX_PREFIX, OUTBOX_RETRY_MS, SEQ_KEY, SWEEP_PAGE,
};
use crate::core::names::EVENTS_QUEUE_BINDING;
use crate::core::objectop::{ObjectClass, OpTable};
use crate::core::route::split_url;

/// This object's wire format.
const WIRE: Wire = Wire(ObjectClass::UserLog);

#[durable_object]
pub struct UserLogObject {
    state: State,
    env: Env,
    /// The next sequence number, once read.
    seq: Cell<Option<u64>>,
}

/// Key/value pairs of one storage listing, in its order; values are the JSON strings stored.
fn pairs(map: &worker::js_sys::Map) -> Vec<(String, Option<String>)> {
    map.entries()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|pair| {
            let pair: Array = pair.into();
            let key = pair.get(0).as_string()?;
            Some((key, pair.get(1).as_string()))
        })
        .collect()
}

impl UserLogObject {
    fn storage(&self) -> worker::Storage {
        self.state.storage()
    }

    async fn next_seq(&self) -> worker::Result<u64> {
        if let Some(s) = self.seq.get() {
            return Ok(s);
        }
        let stored = self.storage().get::<String>(SEQ_KEY).await?;
        let s = stored.and_then(|v| v.parse().ok()).unwrap_or(0);
        self.seq.set(Some(s));
        Ok(s)
    }

    async fn append(&self, q: Append) -> worker::Result<Appended> {
        let id_key = format!("{ID_PREFIX}{}", q.id);
        if self.storage().get::<String>(&id_key).await?.is_some() {
            return Ok(Appended { stored: false });
        }
        let seq = self.next_seq().await?;
        let key = entry_key(seq);
        let stored = Stored {
            at: q.at,
            entry: q.entry,
        };
        // A plain object: serde would turn a Rust map into a JS `Map`, which `putMultiple`
        // does not read as key/value pairs.
        let writes = Object::new();
        let set = |k: &str, v: &str| {
            Reflect::set(&writes, &JsValue::from_str(k), &JsValue::from_str(v)).map(|_| ())
        };
        set(&key, &serde_json::to_string(&stored)?)?;
        set(&id_key, &key)?;
        set(SEQ_KEY, &(seq + 1).to_string())?;
        let has_event = q.event.is_some();
        if let Some(event) = &q.event {
            set(&outbox_key(seq), event)?;
        }
        // Forget the cached counter first: if the write fails, the next event re-reads it.
        self.seq.set(None);
        self.storage().put_multiple_raw(writes).await?;
        self.seq.set(Some(seq + 1));
        let mut retry_soon = false;
        if has_event {
            // The entry is durable: a failed hand-over only delays the event, never loses it.
            retry_soon = !self.flush().await.unwrap_or(false);
        }
        self.arm(retry_soon).await?;
        Ok(Appended { stored: true })
    }

    /// Hands up to [`OUTBOX_PAGE`] outbox events to the queue, oldest first, removing each once
    /// the queue has it. True when the outbox is empty afterwards.
    async fn flush(&self) -> worker::Result<bool> {
        let opts = ListOptions::new()
            .prefix(OUTBOX_PREFIX)
            .limit(OUTBOX_PAGE + 1);
        let waiting = pairs(&self.storage().list_with_options(opts).await?);
        if waiting.is_empty() {
            return Ok(true);
        }
        let queue = self.env.queue(EVENTS_QUEUE_BINDING)?;
        let mut sent = Vec::new();
        let mut all_sent = true;
        for (key, event) in waiting.iter().take(OUTBOX_PAGE) {
            let Some(event) = event else {
                sent.push(key.clone());
                continue;
            };
            // In order: the first failure stops the page, so events leave in the order made.
            if queue.send(event.clone()).await.is_err() {
                all_sent = false;
                break;
            }
            sent.push(key.clone());
        }
        if !sent.is_empty() {
            self.storage().delete_multiple(sent).await?;
        }
        Ok(all_sent && waiting.len() <= OUTBOX_PAGE)
    }

    /// Arms the alarm: soon when the outbox waits, else the daily retention sweep if none is set.
    async fn arm(&self, soon: bool) -> worker::Result<()> {
        let now = now_ms();
        let armed = self.storage().get_alarm().await?;
        let want = if soon {
            now + OUTBOX_RETRY_MS
        } else {
            now + LOG_SWEEP_INTERVAL_MS
        };
        match armed {
            Some(at) if (at.max(0) as u64) <= want => Ok(()),
            _ => set_alarm_at(&self.storage(), want).await,
        }
    }

    async fn list(&self, q: ListAsk) -> worker::Result<Page> {
        let mut opts = ListOptions::new().prefix(ENTRY_PREFIX).limit(q.limit + 1);
        if let Some(start) = q.start.as_deref() {
            opts = opts.start(start);
        }
        let found = pairs(&self.storage().list_with_options(opts).await?);
        let next_cursor = found
            .get(q.limit)
            .and_then(|(k, _)| cursor_of(k))
            .map(str::to_owned);
        let results = found
            .into_iter()
            .take(q.limit)
            .filter_map(|(_, v)| serde_json::from_str::<Stored>(&v?).ok())
            .map(|s| s.entry)
            .collect();
        Ok(Page {
            results,
            next_cursor,
        })
    }

    /// Deletes up to [`SWEEP_PAGE`] entries past retention, oldest first, with their dedup
    /// index. True when the page was full (more may wait).
    async fn sweep(&self) -> worker::Result<bool> {
        let now = (now_ms() / 1000) as i64;
        let opts = ListOptions::new()
            .prefix(ENTRY_PREFIX)
            .reverse(true)
            .limit(SWEEP_PAGE);
        let oldest = pairs(&self.storage().list_with_options(opts).await?);
        let mut doomed = Vec::new();
        for (key, value) in &oldest {
            let stored = value
                .as_deref()
                .and_then(|v| serde_json::from_str::<Stored>(v).ok());
            match stored {
                Some(s) if !is_past_retention(s.at, now) => break,
                Some(s) => {
                    if let Some(id) = s.entry.get("id").and_then(|v| v.as_str()) {
                        doomed.push(format!("{ID_PREFIX}{id}"));
                    }
                    doomed.push(key.clone());
                }
                None => doomed.push(key.clone()),
            }
        }
        let full = !doomed.is_empty() && oldest.len() == SWEEP_PAGE;
        if !doomed.is_empty() {
            self.storage().delete_multiple(doomed).await?;
        }
        Ok(full)
    }

    /// Counts a new key if the user holds fewer than `max` live ones. Events reach the object
    /// one at a time, so concurrent creates are counted exactly. Expired entries go as they
    /// are seen.
    async fn admit(&self, q: Admit) -> worker::Result<Admitted> {
        let opts = ListOptions::new().prefix(LIVE_KEY_PREFIX);
        let counted: Vec<(String, Counted)> = pairs(&self.storage().list_with_options(opts).await?)
            .into_iter()
            .filter_map(|(k, v)| {
                let id = k.strip_prefix(LIVE_KEY_PREFIX)?.to_owned();
                Some((id, Counted::read(&v?)?))
            })
            .collect();
        let (own, gone) = reconcile(&counted, q.listed_ids.as_deref(), q.now);
        if !gone.is_empty() {
            let keys = gone
                .iter()
                .map(|id| format!("{LIVE_KEY_PREFIX}{id}"))
                .collect();
            self.storage().delete_multiple(keys).await?;
        }
        if !admits(own, q.listed, q.max) {
            return Ok(Admitted::default());
        }
        let entry = Counted {
            e: q.expires_at,
            t: q.now,
        };
        let key = format!("{LIVE_KEY_PREFIX}{}", q.key_id);
        self.storage()
            .put(&key, serde_json::to_string(&entry)?)
            .await?;
        Ok(Admitted {
            admitted: true,
            retry_after: None,
        })
    }

    async fn retire(&self, q: Retire) -> worker::Result<()> {
        let key = format!("{LIVE_KEY_PREFIX}{}", q.key_id);
        match q.expires_at {
            None => {
                self.storage().delete(&key).await?;
            }
            // Only a key still counted gets its shorter expiry.
            Some(t) => {
                let stored = self.storage().get::<String>(&key).await?;
                if let Some(counted) = stored.as_deref().and_then(Counted::read) {
                    self.storage()
                        .put(&key, serde_json::to_string(&counted.shortened(t))?)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn take_change(&self, q: TakeChange) -> worker::Result<Admitted> {
        let stored = self.storage().get::<String>(BUDGET_KEY).await?;
        let mut budget: ChangeBudget = stored
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        match budget.take(q.now) {
            Ok(()) => {
                self.storage()
                    .put(BUDGET_KEY, serde_json::to_string(&budget)?)
                    .await?;
                Ok(Admitted {
                    admitted: true,
                    retry_after: None,
                })
            }
            Err(secs) => Ok(Admitted {
                admitted: false,
                retry_after: Some(secs),
            }),
        }
    }

    async fn route(&self, mut req: Request) -> worker::Result<Response> {
        let raw_url = req.inner().url();
        let (path, _) = split_url(&raw_url);
        let Some(op) = LogOp::from_path(path) else {
            return Response::error("not found", 404);
        };
        let bytes = req.bytes().await?;
        match op {
            LogOp::Append => WIRE.answer(self.append(WIRE.question(&bytes)?).await?),
            LogOp::AppendMany => {
                let q: AppendMany = WIRE.question(&bytes)?;
                let mut stored = 0;
                for change in q.changes {
                    stored += u32::from(self.append(change).await?.stored);
                }
                WIRE.answer(AppendedMany { stored })
            }
            LogOp::List => WIRE.answer(self.list(WIRE.question(&bytes)?).await?),
            LogOp::Admit => WIRE.answer(self.admit(WIRE.question(&bytes)?).await?),
            LogOp::Retire => {
                self.retire(WIRE.question(&bytes)?).await?;
                WIRE.answer(Admitted::default())
            }
            LogOp::TakeChange => WIRE.answer(self.take_change(WIRE.question(&bytes)?).await?),
        }
    }
}

impl DurableObject for UserLogObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            seq: Cell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.route(req).await {
            Ok(r) => Ok(r),
            // The Worker maps any non-200 to 503; the detail stays inside the object.
            Err(_) => Response::error("user log unavailable", 500),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let flushed = self.flush().await.unwrap_or(false);
        let more = self.sweep().await?;
        set_alarm_at(&self.storage(), next_alarm(now_ms(), flushed, more)).await?;
        Response::ok("done")
    }
}
