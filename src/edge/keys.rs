//! `/v1/me` and the key-management routes (SPEC section 4).

use futures_util::future::join_all;
use serde::Serialize;
use worker::{Request, Response};

use super::http::{json, random, read_body};
use super::{durable, store, Caller, Ctx};
use crate::core::key::{
    format_key, format_key_id, hash_key, hint, is_key_id, KEY_BODY_BYTES, KEY_ID_BYTES,
};
use crate::core::record::{
    apply_roll_to_old, format_time, parse_create, parse_list_query, parse_roll,
    restrict_to_creator, KeyRecord, NewKey, Summary, PERM_KEYS_READ, PERM_KEYS_WRITE,
};
use crate::core::Error;

/// Largest JSON body accepted on management routes; real bodies are a few hundred bytes.
const MAX_JSON_BODY_BYTES: u64 = 64 * 1024;

#[derive(Serialize)]
struct WithKey<'a> {
    #[serde(flatten)]
    summary: Summary<'a>,
    /// The plaintext key: in this response only, never stored or shown again.
    key: &'a str,
}

pub fn me(ctx: &Ctx, record: &KeyRecord) -> Result<Response, Error> {
    // The key's object has just recorded this very request as its last use.
    let now = format_time(ctx.now);
    json(
        200,
        &serde_json::json!({
            "key": record.summary(Some(&now)),
            "user": {"id": record.user_id, "email": record.email},
        }),
    )
}

/// The permission row, then the rate-limit row (SPEC section 2 order), for key callers.
fn require<'a>(
    ctx: &Ctx,
    caller: &'a Caller,
    permission: &'static str,
) -> Result<Option<&'a KeyRecord>, Error> {
    match caller {
        Caller::Admin => Ok(None),
        Caller::Key(rec) if rec.grants(permission) => {
            ctx.enforce_rate_limit()?;
            Ok(Some(rec))
        }
        Caller::Key(_) => Err(Error::PermissionDenied(if permission == PERM_KEYS_WRITE {
            "This route needs the api_keys:write permission."
        } else {
            "This route needs the api_keys:read permission."
        })),
    }
}

/// Issues a key from a validated request: the plaintext exists only in the response.
async fn issue(ctx: &Ctx, new: NewKey) -> Result<Response, Error> {
    let prefix = &ctx.config.key_prefix;
    let key = format_key(prefix, &random::<KEY_BODY_BYTES>()?);
    let id = format_key_id(&random::<KEY_ID_BYTES>()?);
    let record = new.into_record(id, hint(prefix, &key), ctx.now);
    store::put(ctx, &hash_key(&key), &record).await?;
    let mut resp = json(
        201,
        &WithKey {
            summary: record.summary(None),
            key: &key,
        },
    )?;
    let _ = resp.headers_mut().set("cache-control", "no-store");
    Ok(resp)
}

pub async fn create(ctx: &Ctx, req: &Request, caller: Caller) -> Result<Response, Error> {
    let creator = require(ctx, &caller, PERM_KEYS_WRITE)?;
    let body = read_body(req, MAX_JSON_BODY_BYTES).await?;
    let mut new = parse_create(&body, ctx.now, ctx.config.default_rate_limit)?;
    if let Some(creator) = creator {
        restrict_to_creator(creator, &mut new)?;
    }
    issue(ctx, new).await
}

pub async fn list(ctx: &Ctx, query: Option<&str>, caller: Caller) -> Result<Response, Error> {
    let own = require(ctx, &caller, PERM_KEYS_READ)?;
    let q = parse_list_query(query)?;
    let user_id = match (own, q.user_id) {
        (None, None) => return Err(Error::field("user_id", "is required for admin listings")),
        (None, Some(u)) => u,
        (Some(rec), None) => rec.user_id.clone(),
        (Some(rec), Some(u)) if u == rec.user_id => u,
        (Some(_), Some(_)) => {
            return Err(Error::PermissionDenied(
                "An API key can only list its own user's keys.",
            ))
        }
    };
    let (records, next) = store::list_user(ctx, &user_id, q.limit, q.cursor).await?;
    let used = join_all(records.iter().map(|r| last_used(ctx, r))).await;
    let used: Vec<Option<String>> = used.into_iter().collect::<Result<_, _>>()?;
    let results: Vec<Summary> = records
        .iter()
        .zip(used.iter())
        .map(|(r, u)| r.summary(u.as_deref()))
        .collect();
    json(
        200,
        &serde_json::json!({"results": results, "next_cursor": next}),
    )
}

/// Loads a key by id for `caller`; another user's key is as unknown as a missing one.
async fn load(
    ctx: &Ctx,
    id: &str,
    caller: Option<&KeyRecord>,
) -> Result<(String, KeyRecord), Error> {
    if !is_key_id(id) {
        return Err(Error::NotFound);
    }
    let (hash, record) = store::record_by_id(ctx, id).await?.ok_or(Error::NotFound)?;
    match caller {
        Some(c) if c.user_id != record.user_id => Err(Error::NotFound),
        _ => Ok((hash, record)),
    }
}

pub async fn get(ctx: &Ctx, id: &str, caller: Caller) -> Result<Response, Error> {
    let own = require(ctx, &caller, PERM_KEYS_READ)?;
    let (_, record) = load(ctx, id, own).await?;
    let used = last_used(ctx, &record).await?;
    json(200, &record.summary(used.as_deref()))
}

pub async fn revoke(ctx: &Ctx, id: &str, caller: Caller) -> Result<Response, Error> {
    let own = require(ctx, &caller, PERM_KEYS_WRITE)?;
    let (hash, mut record) = load(ctx, id, own).await?;
    // Revoking twice is not an error, and keeps the first revocation time.
    if record.revoked_at.is_none() {
        record.revoked_at = Some(format_time(ctx.now));
        store::put(ctx, &hash, &record).await?;
    }
    // Also in the key's own object, which every request of the key consults: refused
    // everywhere at once, not only once KV caches expire. Repeated on a second revoke, so a
    // failure here is repaired by retrying.
    if let Some(at) = &record.revoked_at {
        durable::revoke(ctx, &record.id, at).await?;
    }
    let used = last_used(ctx, &record).await?;
    json(200, &record.summary(used.as_deref()))
}

pub async fn roll(ctx: &Ctx, req: &Request, id: &str, caller: Caller) -> Result<Response, Error> {
    let own = require(ctx, &caller, PERM_KEYS_WRITE)?;
    let grace = parse_roll(&read_body(req, MAX_JSON_BODY_BYTES).await?)?;
    let (hash, mut old) = load(ctx, id, own).await?;
    if old.check_usable(ctx.now).is_err() {
        return Err(Error::field(
            "id",
            "a revoked or expired key cannot be rolled",
        ));
    }
    let mut new = NewKey {
        user_id: old.user_id.clone(),
        email: old.email.clone(),
        name: old.name.clone(),
        workspaces: old.workspaces.clone(),
        permissions: old.permissions.clone(),
        expires_at: old.expires_at_secs(),
        rate_limit: old.rate_limit,
    };
    // Rolling hands out a new plaintext: a key may not obtain one wider than itself that way.
    if let Some(creator) = own {
        restrict_to_creator(creator, &mut new)?;
    }
    let response = issue(ctx, new).await?;
    apply_roll_to_old(&mut old, grace, ctx.now);
    store::put(ctx, &hash, &old).await?;
    match (&old.revoked_at, old.expires_at_secs()) {
        (Some(at), _) => durable::revoke(ctx, &old.id, at).await?,
        (None, Some(t)) => durable::expire(ctx, &old.id, t).await?,
        (None, None) => {}
    }
    Ok(response)
}

/// `last_used_at` from the key's object (no KV write per request).
async fn last_used(ctx: &Ctx, record: &KeyRecord) -> Result<Option<String>, Error> {
    let usage = durable::usage(ctx, &record.id).await?;
    Ok(usage.last_used_ms.map(|ms| format_time((ms / 1000) as i64)))
}
