//! Workers KV layout:
//! - `key:<sha256 hex>`: the [`KeyRecord`] (JSON), metadata [`KeyMeta`]; read on every request.
//! - `id:<key id>`: the hash, to find a record by its public id.
//! - `u/<user id>/<key id>`: empty, metadata `{"h": hash}`, to list a user's keys. User ids can't
//!   contain `/`, so one user's prefix never matches another's.
//!
//! - `up:<handle>`: an imported key's SHA-256 (hex) after its one-time PBKDF2 check
//!   (docs/CONTRACT.md section 15): apart from the record, so that writing it can never undo a
//!   change made to the record meanwhile. Never expires.
//!
//! - `pool:<kind>:<id>`: a shared limit, [`Pool`] (JSON), docs/CONTRACT.md section 17. Never
//!   expires; its object holds the limits that apply ([`crate::core::pool`]).
//!
//! All three expire 30 days after `expires_at`, except an imported key's (kept, so that an import
//! of the same dump finds it). Any KV failure becomes 503 (fail closed).

use std::cell::RefCell;

use futures_util::future::join_all;
use serde::Serialize;
use worker::kv::KvStore;

use super::fail::OrUnavailable;
use super::Ctx;
use crate::core::cache::RecordCache;
use crate::core::names::KV_BINDING;
use crate::core::pool::{Pool, PoolRef, POOL_PREFIX};
use crate::core::record::{IndexMeta, KeyMeta, KeyRecord};
use crate::core::{Cause, Error};

fn record_key(hash: &str) -> String {
    format!("key:{hash}")
}

fn id_key(id: &str) -> String {
    format!("id:{id}")
}

/// Prefix of the user index (`u/<user id>/<key id>`).
const INDEX_PREFIX: &str = "u/";

fn user_prefix(user_id: &str) -> String {
    format!("{INDEX_PREFIX}{user_id}/")
}

fn kv(ctx: &Ctx) -> Result<KvStore, Error> {
    ctx.env.kv(KV_BINDING).or_unavailable(Cause::KvBinding)
}

thread_local! {
    /// Key records this isolate read recently (see [`RecordCache`] for why this is safe).
    static RECORDS: RefCell<RecordCache> = RefCell::new(RecordCache::default());
}

/// The record for a key hash. `edge_cached` reads (the request path) may come from this
/// isolate's cache or the location's KV cache, each for up to `KV_CACHE_TTL` seconds;
/// management reads are never cached.
pub async fn record_by_hash(
    ctx: &Ctx,
    hash: &str,
    edge_cached: bool,
) -> Result<Option<KeyRecord>, Error> {
    let ttl = ctx.config.kv_cache_ttl;
    let now_ms = worker::Date::now().as_millis();
    if edge_cached && ttl > 0 {
        if let Some(hit) = RECORDS.with(|c| c.borrow().get(hash, now_ms).cloned()) {
            return Ok(Some(hit));
        }
    }
    let mut get = kv(ctx)?.get(&record_key(hash));
    if edge_cached && ttl > 0 {
        get = get.cache_ttl(ttl);
    }
    let record = get
        .json::<KeyRecord>()
        .await
        .or_unavailable(Cause::KvRead)?;
    if let (true, Some(r)) = (edge_cached, &record) {
        RECORDS.with(|c| c.borrow_mut().insert(hash, r.clone(), now_ms, ttl * 1000));
    }
    Ok(record)
}

/// The hash and record behind a public key id.
pub async fn record_by_id(ctx: &Ctx, id: &str) -> Result<Option<(String, KeyRecord)>, Error> {
    let hash = kv(ctx)?
        .get(&id_key(id))
        .text()
        .await
        .or_unavailable(Cause::KvRead)?;
    let Some(hash) = hash else { return Ok(None) };
    Ok(record_by_hash(ctx, &hash, false)
        .await?
        .map(|record| (hash, record)))
}

/// Writes the record and both indexes (a new key, or an updated one: revoke, roll).
pub async fn put(ctx: &Ctx, hash: &str, record: &KeyRecord) -> Result<(), Error> {
    RECORDS.with(|c| c.borrow_mut().remove(hash));
    let store = kv(ctx)?;
    let expiration = record.kv_expiration();
    let json = serde_json::to_string(record).map_err(|_| Error::Internal)?;
    let meta = KeyMeta {
        id: record.id.clone(),
        expires_at: record.expires_at.clone(),
    };
    put_entry(&store, &record_key(hash), &json, Some(meta), expiration).await?;
    put_entry::<()>(&store, &id_key(&record.id), hash, None, expiration).await?;
    let index = format!("{}{}", user_prefix(&record.user_id), record.id);
    let meta = IndexMeta::of(hash, record);
    put_entry(&store, &index, "", Some(meta), expiration).await
}

/// Removes a record and its indexes (a roll that could not complete takes back its new key).
pub async fn delete(ctx: &Ctx, hash: &str, record: &KeyRecord) -> Result<(), Error> {
    RECORDS.with(|c| c.borrow_mut().remove(hash));
    let store = kv(ctx)?;
    let index = format!("{}{}", user_prefix(&record.user_id), record.id);
    for key in [record_key(hash), id_key(&record.id), index] {
        store.delete(&key).await.or_unavailable(Cause::KvWrite)?;
    }
    Ok(())
}

/// How many live keys (neither revoked nor expired) `user_id` holds, counted from the user
/// index's metadata (a page of 1,000 per call, no record reads), stopping as soon as `max`
/// live keys are seen: enough to decide the cap. With the ids of those keys when the listing
/// was read to its end (the user's object reconciles its own count with them).
pub async fn count_live(ctx: &Ctx, user_id: &str, max: u64) -> Result<Listed, Error> {
    let store = kv(ctx)?;
    let prefix = user_prefix(user_id);
    let mut listed = Listed::default();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = store.list().prefix(prefix.clone()).limit(1000);
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await.or_unavailable(Cause::KvList)?;
        for k in &page.keys {
            let live = k
                .metadata
                .clone()
                .and_then(|m| serde_json::from_value::<IndexMeta>(m).ok())
                .is_some_and(|m| m.is_live(ctx.now));
            if live {
                listed.count += 1;
                if let Some(id) = k.name.strip_prefix(&prefix) {
                    listed.ids.push(id.to_owned());
                }
            }
        }
        let next = page.cursor.filter(|c| !c.is_empty());
        if page.list_complete || next.is_none() {
            listed.complete = true;
            return Ok(listed);
        }
        if listed.count >= max {
            return Ok(listed);
        }
        cursor = next;
    }
}

/// A user's live keys as the KV index lists them.
#[derive(Debug, Default)]
pub struct Listed {
    pub count: u64,
    /// Their ids; all of them only when `complete`.
    pub ids: Vec<String>,
    /// Whether the listing was read to its end.
    pub complete: bool,
}

/// One KV write with optional metadata, sharing the record's expiration.
async fn put_entry<M: Serialize>(
    store: &KvStore,
    key: &str,
    value: &str,
    metadata: Option<M>,
    expiration: Option<u64>,
) -> Result<(), Error> {
    let mut put = store.put(key, value).or_unavailable(Cause::KvWrite)?;
    if let Some(m) = metadata {
        put = put.metadata(m).or_unavailable(Cause::KvWrite)?;
    }
    if let Some(t) = expiration {
        put = put.expiration(t);
    }
    put.execute().await.or_unavailable(Cause::KvWrite)
}

fn upgrade_key(handle: &str) -> String {
    format!("up:{handle}")
}

thread_local! {
    /// Upgrades this isolate read recently: `(sha256, until ms)` by handle, at most
    /// [`UPGRADES_CACHED`] (cleared when full). An upgrade never changes once written, so a
    /// cached one is never wrong; only its absence may be stale, and that is not cached.
    static UPGRADES: RefCell<std::collections::HashMap<String, (String, u64)>> =
        RefCell::new(std::collections::HashMap::new());
}
const UPGRADES_CACHED: usize = 1000;

/// The SHA-256 an imported key was upgraded to, if it was (edge-cached like a record).
pub async fn upgrade(ctx: &Ctx, handle: &str) -> Result<Option<String>, Error> {
    let now_ms = worker::Date::now().as_millis();
    if let Some((sha, _)) = UPGRADES.with(|c| {
        c.borrow()
            .get(handle)
            .filter(|(_, until)| *until > now_ms)
            .cloned()
    }) {
        return Ok(Some(sha));
    }
    let ttl = ctx.config.kv_cache_ttl;
    let mut get = kv(ctx)?.get(&upgrade_key(handle));
    if ttl > 0 {
        get = get.cache_ttl(ttl);
    }
    let sha = get.text().await.or_unavailable(Cause::KvRead)?;
    if let Some(s) = &sha {
        UPGRADES.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= UPGRADES_CACHED {
                c.clear();
            }
            c.insert(handle.to_owned(), (s.clone(), now_ms + ttl * 1000));
        });
    }
    Ok(sha)
}

/// Stores an imported key's upgrade (its SHA-256, after a successful PBKDF2 check).
pub async fn put_upgrade(ctx: &Ctx, handle: &str, sha256: &str) -> Result<(), Error> {
    let store = kv(ctx)?;
    put_entry::<()>(&store, &upgrade_key(handle), sha256, None, None).await
}

/// A user-index entry as the Cron Trigger reads it: no record read needed.
pub struct Indexed {
    pub user_id: String,
    pub key_id: String,
    pub revoked: bool,
    /// `expires_at`, unix seconds.
    pub expires_at: Option<i64>,
}

/// KV key where the Cron Trigger's scan resumes (the cursor after its last page).
const SCAN_CURSOR_KEY: &str = "cron:cursor";

/// One page of a KV listing under `prefix`.
async fn list_page(
    ctx: &Ctx,
    prefix: String,
    limit: u64,
    cursor: Option<String>,
) -> Result<worker::kv::ListResponse, Error> {
    let mut list = kv(ctx)?.list().prefix(prefix).limit(limit);
    if let Some(c) = cursor {
        list = list.cursor(c);
    }
    list.execute().await.or_unavailable(Cause::KvList)
}

/// One page of every user's index entries (all users, in name order) from `cursor`, and the
/// cursor of the next page (`None` at the end).
pub async fn scan_index(
    ctx: &Ctx,
    cursor: Option<String>,
    limit: u64,
) -> Result<(Vec<Indexed>, Option<String>), Error> {
    let page = list_page(ctx, INDEX_PREFIX.into(), limit, cursor).await?;
    let entries = page
        .keys
        .iter()
        .filter_map(|k| {
            let (user_id, key_id) = k.name.strip_prefix(INDEX_PREFIX)?.split_once('/')?;
            let meta: IndexMeta = serde_json::from_value(k.metadata.clone()?).ok()?;
            Some(Indexed {
                user_id: user_id.to_owned(),
                key_id: key_id.to_owned(),
                revoked: meta.r,
                expires_at: meta.e,
            })
        })
        .collect();
    let next = if page.list_complete {
        None
    } else {
        page.cursor.filter(|c| !c.is_empty())
    };
    Ok((entries, next))
}

/// Where the previous Cron run's scan stopped, if it did not reach the end.
pub async fn scan_cursor(ctx: &Ctx) -> Result<Option<String>, Error> {
    kv(ctx)?
        .get(SCAN_CURSOR_KEY)
        .text()
        .await
        .or_unavailable(Cause::KvRead)
}

/// Stores (or, at the end of the index, clears) where the next run's scan starts.
pub async fn set_scan_cursor(ctx: &Ctx, cursor: Option<&str>) -> Result<(), Error> {
    let store = kv(ctx)?;
    match cursor {
        Some(c) => put_entry::<()>(&store, SCAN_CURSOR_KEY, c, None, None).await,
        None => store
            .delete(SCAN_CURSOR_KEY)
            .await
            .or_unavailable(Cause::KvWrite),
    }
}

/// One page of a user's keys, in key-id order, and the cursor of the next page.
pub async fn list_user(
    ctx: &Ctx,
    user_id: &str,
    limit: u64,
    cursor: Option<String>,
) -> Result<(Vec<KeyRecord>, Option<String>), Error> {
    let page = list_page(ctx, user_prefix(user_id), limit, cursor).await?;
    let hashes: Vec<String> = page
        .keys
        .iter()
        .filter_map(|k| k.metadata.clone())
        .filter_map(|m| serde_json::from_value::<IndexMeta>(m).ok())
        .map(|m| m.h)
        .collect();
    let reads = join_all(hashes.iter().map(|h| record_by_hash(ctx, h, false))).await;
    let mut records = Vec::with_capacity(reads.len());
    for r in reads {
        // A record that expired out of KV before its index simply drops out of the list.
        if let Some(rec) = r? {
            records.push(rec);
        }
    }
    let next = if page.list_complete {
        None
    } else {
        page.cursor.filter(|c| !c.is_empty())
    };
    Ok((records, next))
}

/// A pool's definition. `edge_cached` reads (the request path, once per `LEASE_MS` per isolate,
/// see [`crate::core::pool::PoolDirectory`]) may come from the location's KV cache.
pub async fn pool(ctx: &Ctx, pool: &PoolRef, edge_cached: bool) -> Result<Option<Pool>, Error> {
    let mut get = kv(ctx)?.get(&pool.storage_name());
    let ttl = ctx.config.kv_cache_ttl;
    if edge_cached && ttl > 0 {
        get = get.cache_ttl(ttl);
    }
    get.json::<Pool>().await.or_unavailable(Cause::KvRead)
}

pub async fn put_pool(ctx: &Ctx, pool: &Pool) -> Result<(), Error> {
    let value = serde_json::to_string(pool).map_err(|_| Error::Internal)?;
    let store = kv(ctx)?;
    put_entry::<()>(&store, &pool.pool_ref().storage_name(), &value, None, None).await
}

pub async fn delete_pool(ctx: &Ctx, pool: &PoolRef) -> Result<(), Error> {
    kv(ctx)?
        .delete(&pool.storage_name())
        .await
        .or_unavailable(Cause::KvWrite)
}

/// One page of the pools, in name order, and the cursor of the next page.
pub async fn list_pools(
    ctx: &Ctx,
    limit: u64,
    cursor: Option<String>,
) -> Result<(Vec<Pool>, Option<String>), Error> {
    let page = list_page(ctx, POOL_PREFIX.to_owned(), limit, cursor).await?;
    let names: Vec<PoolRef> = page
        .keys
        .iter()
        .filter_map(|k| PoolRef::from_storage_name(&k.name))
        .collect();
    let reads = join_all(names.iter().map(|p| pool(ctx, p, false))).await;
    let mut pools = Vec::with_capacity(reads.len());
    for r in reads {
        // Deleted between the listing and the read: not listed.
        if let Some(p) = r? {
            pools.push(p);
        }
    }
    let next = if page.list_complete {
        None
    } else {
        page.cursor.filter(|c| !c.is_empty())
    };
    Ok((pools, next))
}
