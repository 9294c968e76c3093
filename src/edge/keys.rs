//! `/v1/me` and the key-management routes (docs/CONTRACT.md section 4). Every rule (who may
//! list, ownership, no escalation, what a roll copies) is [`crate::core::access`]'s, the cap
//! per user [`crate::core::cap`]'s; this reads and writes storage around it.

use futures_util::future::join_all;
use serde::Serialize;
use worker::Response;

use super::http::Req;
use super::http::{json, random, read_body};
use super::{auditlog, key_client, lease, roll, store, Ctx, Reply};
use crate::core::access::{self, Caller};
use crate::core::cap;
use crate::core::details;
use crate::core::events::{Change, ChangeKind};
use crate::core::fields::MAX_MANAGEMENT_BODY_BYTES;
use crate::core::key::{
    format_key, format_key_id, hash_key, hint, is_key_id, KEY_BODY_BYTES, KEY_ID_BYTES,
};
use crate::core::names::CACHE_CONTROL;
use crate::core::policy::{
    apply_update, parse_patch, unrecorded_suspension, with_object_suspension, Applied, Update,
};
use crate::core::record::{KeyRecord, NewKey};
use crate::core::request::{parse_create, parse_list_query};
use crate::core::route::Route;
use crate::core::session::fill_owner;
use crate::core::time::format_time;
use crate::core::usage::COUNTED;
use crate::core::{Cause, Error};

/// Largest JSON body accepted on management routes; real bodies are a few hundred bytes.

#[derive(Serialize)]
struct WithKey<'a> {
    #[serde(flatten)]
    summary: crate::core::record::Summary<'a>,
    /// The plaintext key: in this response only, never stored or shown again.
    key: &'a str,
}

pub async fn me(ctx: &Ctx, record: &KeyRecord) -> Result<Response, Error> {
    // The key's object has just recorded this very request as its last use, and allowed it
    // (so it is not disabled); only a quota's count needs asking for.
    let now = format_time(ctx.now);
    let mut summary = record.summary(Some(&now));
    summary.disabled = false;
    summary.quota_used = key_client::runs_used(ctx, record, None).await?;
    json(
        200,
        &serde_json::json!({
            "key": summary,
            "user": {"id": record.user_id, "email": record.email},
        }),
    )
}

/// A management route for an authorized caller. `caller_expiry` is a key caller's expiry as its
/// object knows it.
pub async fn manage(
    ctx: &Ctx,
    req: &Req,
    query: Option<&str>,
    route: &Route<'_>,
    caller: &Caller<'_>,
    caller_expiry: Option<i64>,
) -> Result<Reply, Error> {
    match route {
        Route::CreateKey => create(ctx, req, caller, caller_expiry).await,
        Route::ListKeys => list(ctx, query, caller).await,
        Route::GetKey(id) => get(ctx, id, caller).await,
        Route::RevokeKey(id) => revoke(ctx, id, caller).await,
        Route::RollKey(id) => roll::roll(ctx, req, id, caller, caller_expiry).await,
        Route::UpdateKey(id) => update(ctx, req, id, caller).await,
        Route::AuditEvents => Ok(json(200, &auditlog::events(ctx, query, caller).await?)?.into()),
        Route::KeyUsage(id) => usage(ctx, id, caller).await,
        // Not a management route: `access::need` sends no other route here.
        _ => Err(Error::NotFound),
    }
}

/// A new key's plaintext, its hash and its record, stored. The plaintext exists only in the
/// response built by [`issued`]. The key is first counted under the per-user cap in its user's
/// object (`max`; `listed`: the user's live keys as KV lists them), which sees every create one
/// at a time, so concurrent creates cannot pass the cap. A key created disabled is disabled in
/// its object before its record exists, so it is never usable in between.
pub(super) async fn mint(
    ctx: &Ctx,
    new: NewKey,
    listed: &store::Listed,
    max: u64,
) -> Result<(String, String, KeyRecord), Error> {
    let prefix = &ctx.config.key_prefix;
    let key = format_key(prefix, &random::<KEY_BODY_BYTES>()?);
    let id = format_key_id(&random::<KEY_ID_BYTES>()?);
    let user_id = new.user_id.clone();
    auditlog::admit_key(ctx, &user_id, &id, new.expires_at, listed, max).await?;
    // Counted now. A create that breaks off before its record is stored (or taken back) leaves
    // an entry that a later admission drops once KV has not listed the key for a while
    // (`auditlog::UNLISTED_GRACE_SECS`).
    let stored = async {
        if new.policy.disabled {
            key_client::set_disabled(ctx, &id, true).await?;
        }
        let record = new.into_record(id.clone(), hint(prefix, &key), ctx.now);
        let hash = hash_key(&key);
        store::put(ctx, &hash, &record).await?;
        Ok::<_, Error>((hash, record))
    };
    match stored.await {
        Ok((hash, record)) => Ok((key, hash, record)),
        Err(e) => {
            auditlog::retire_key(ctx, &user_id, &id, None).await;
            Err(e)
        }
    }
}

/// Takes back a minted key that is not handed out: its record, and its place under the cap.
pub(super) async fn unmint(ctx: &Ctx, hash: &str, record: &KeyRecord) {
    // Best effort: a leftover record is a key nobody holds, refused like any unknown key.
    let _ = store::delete(ctx, hash, record).await;
    auditlog::retire_key(ctx, &record.user_id, &record.id, None).await;
}

/// 201 with the key shown once, never cached. A new key whose runs count in its family's
/// object shows the family's count; if that cannot be read, the key is still handed out (it
/// exists now) with the count of a new key.
pub(super) async fn issued(ctx: &Ctx, key: &str, record: &KeyRecord) -> Result<Response, Error> {
    let mut summary = record.summary(None);
    let none_yet = Default::default();
    if let Ok(Some(used)) = key_client::runs_used(ctx, record, Some(&none_yet)).await {
        summary.quota_used = Some(used);
    }
    let mut resp = json(201, &WithKey { summary, key })?;
    let _ = resp.headers_mut().set(CACHE_CONTROL, "no-store");
    Ok(resp)
}

async fn create(
    ctx: &Ctx,
    req: &Req,
    caller: &Caller<'_>,
    caller_expiry: Option<i64>,
) -> Result<Reply, Error> {
    let mut body = read_body(req, MAX_MANAGEMENT_BODY_BYTES).await?;
    if let Caller::Session(session) = caller {
        // The page may leave the owner out: it is the session's.
        body = fill_owner(&body, session);
    }
    let default_rate = access::default_rate(caller, ctx.config.default_rate_limit);
    let mut new = parse_create(&body, ctx.now, default_rate)?;
    restrict(ctx, caller, caller_expiry, &mut new)?;
    if new.policy.disabled {
        new.policy.disabled_by = Some(access::disabled_by(caller));
    }
    let max = ctx.config.max_keys_per_user;
    // A user's keys and sessions make a bounded number of changes a day (each is kept in the
    // user's trail); counted once the request is valid and allowed; the admin is not counted.
    take_change(ctx, caller).await?;
    let live = store::count_live(ctx, &new.user_id, max).await?;
    cap::may_add_key(live.count, max)?;
    let (key, hash, record) = mint(ctx, new, &live, max).await?;
    let change = Change::new(
        ChangeKind::Created,
        auditlog::actor(caller),
        &record.user_id,
        Some(&record.id),
    );
    // Unrecorded, the key is not handed out: its record goes again and the client sees 503
    // (nobody holds the plaintext, so a leftover would only be refused like any unknown key).
    if let Err(e) = auditlog::record(ctx, change.with_details(details::created(&record))).await {
        unmint(ctx, &hash, &record).await;
        return Err(e);
    }
    Ok(issued(ctx, &key, &record).await?.into())
}

async fn list(ctx: &Ctx, query: Option<&str>, caller: &Caller<'_>) -> Result<Reply, Error> {
    let q = parse_list_query(query)?;
    let user_id = access::list_user(caller, q.user_id)?;
    let (records, next) = store::list_user(ctx, &user_id, q.limit, q.cursor).await?;
    let results = join_all(records.iter().map(|r| summary(ctx, r))).await;
    let results: Vec<serde_json::Value> = results.into_iter().collect::<Result<_, _>>()?;
    Ok(json(
        200,
        &serde_json::json!({"results": results, "next_cursor": next}),
    )?
    .into())
}

/// A key by id for `caller`: a malformed id is as unknown as a missing key.
pub(super) async fn load(
    ctx: &Ctx,
    id: &str,
    caller: &Caller<'_>,
) -> Result<(String, KeyRecord), Error> {
    if !is_key_id(id) {
        return Err(Error::NotFound);
    }
    let found = store::record_by_id(ctx, id).await?;
    let hash = found.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
    let record = access::target(caller, found.map(|(_, r)| r))?;
    Ok((hash, record))
}

async fn get(ctx: &Ctx, id: &str, caller: &Caller<'_>) -> Result<Reply, Error> {
    let (_, record) = load(ctx, id, caller).await?;
    Ok(json(200, &summary(ctx, &record).await?)?.into())
}

/// The key's usage series, from its object (docs/CONTRACT.md section 12).
async fn usage(ctx: &Ctx, id: &str, caller: &Caller<'_>) -> Result<Reply, Error> {
    let (_, record) = load(ctx, id, caller).await?;
    let series = key_client::series(ctx, &record.id).await?;
    Ok(json(
        200,
        &serde_json::json!({
            "key_id": record.id,
            "counted": COUNTED,
            "hourly": series.hourly,
            "daily": series.daily,
        }),
    )?
    .into())
}

async fn revoke(ctx: &Ctx, id: &str, caller: &Caller<'_>) -> Result<Reply, Error> {
    let (hash, mut record) = load(ctx, id, caller).await?;
    let change = Change::new(
        ChangeKind::Revoked,
        auditlog::actor(caller),
        &record.user_id,
        Some(&record.id),
    );
    let note = revoke_record(ctx, &hash, &mut record, change).await?;
    Ok(Reply {
        response: json(200, &summary(ctx, &record).await?)?,
        note,
    })
}

/// Revokes `record` (stored under `hash`) everywhere and records `change` the first time: the
/// one revocation path, for `DELETE /v1/api-keys/{id}` and leak reports alike. A revocation
/// that took effect is not undone when its recording fails: the answer stands, with a note
/// for the log (`audit_after_revoke`).
pub async fn revoke_record(
    ctx: &Ctx,
    hash: &str,
    record: &mut KeyRecord,
    change: Change,
) -> Result<Option<Cause>, Error> {
    // Revoking twice is not an error, and keeps the first revocation time.
    let first = record.revoked_at.is_none();
    if first {
        record.revoked_at = Some(format_time(ctx.now));
        store::put(ctx, hash, record).await?;
    }
    // Also in the key's own object, which every request of the key consults: refused
    // everywhere at once, not only once KV caches expire. Repeated on a second revoke, so a
    // failure here is repaired by retrying.
    if let Some(at) = &record.revoked_at {
        key_client::revoke(ctx, &record.id, at).await?;
    }
    // This isolate's lease of the key ends now; other isolates' within LEASE_MS.
    lease::forget(&record.id);
    // It no longer counts under the per-user cap.
    auditlog::retire_key(ctx, &record.user_id, &record.id, None).await;
    // Recorded by every call that got here, not only the first: a retry of a revocation whose
    // object call (or recording) failed after its KV write records it then. Racing and
    // repeated revocations are one entry: a key is revoked once ([`Change::once_per_key`]).
    if auditlog::record(ctx, change.once_per_key()).await.is_err() {
        return Ok(Some(Cause::AuditAfterRevoke));
    }
    Ok(None)
}

/// `PATCH`: the rules are [`apply_update`]'s. What requests obey goes to the key's object
/// first (a shortened expiry, a suspension), so it holds everywhere within the lease bound
/// even if the record's write then fails (a retry repairs it); then the record, whose
/// `allowed_ips` other locations see once their cached copy lapses (`KV_CACHE_TTL`).
async fn update(ctx: &Ctx, req: &Req, id: &str, caller: &Caller<'_>) -> Result<Reply, Error> {
    let patch = parse_patch(&read_body(req, MAX_MANAGEMENT_BODY_BYTES).await?, ctx.now)?;
    let (hash, mut target) = load(ctx, id, caller).await?;
    let usage = key_client::usage(ctx, &target.id).await?;
    access::live_target(&target, usage.revoked, usage.expires_at, ctx.now, "changed")?;
    // The object's flag is what requests obey; the record's copy may lag behind it.
    let record_shows = target.policy.disabled;
    with_object_suspension(&mut target, usage.disabled);
    let asked = patch.disabled;
    let expiry_before = target.expires_at.clone();
    let mut applied = apply_by(caller, &target, usage.expires_at, patch)?;
    take_change(ctx, caller).await?;
    // The dedup of the suspension entry: the object's flip it records. A retry of a PATCH whose
    // flip reached the object but whose record write failed records that flip now (finding 7);
    // so does a PATCH that read a lagging record, and the two are one entry, whoever comes first.
    let mut flip = None;
    if applied.disabled.is_none() {
        applied.disabled = unrecorded_suspension(record_shows, usage.disabled, asked);
        flip = applied.disabled.map(|_| usage.disabled_seq);
    }
    let record = applied.record;
    if record.expires_at != expiry_before {
        if let Some(t) = record.expires_at_secs() {
            key_client::expire(ctx, &record.id, t).await?;
            auditlog::retire_key(ctx, &record.user_id, &record.id, Some(t)).await;
        }
    }
    if let (Some(disabled), None) = (applied.disabled, flip) {
        let set = key_client::set_disabled(ctx, &record.id, disabled).await?;
        // The admin taking over a suspension flips nothing: its own entry, no dedup.
        flip = set.changed.then_some(set.seq);
    }
    store::put(ctx, &hash, &record).await?;
    // This isolate's lease of the key ends now; other isolates' within LEASE_MS.
    lease::forget(&record.id);
    // The change has taken effect: a failure to record it is noted for the log, not turned
    // into an error that would make the caller send it again (as for a revocation).
    let actor = auditlog::actor(caller);
    let mut updated = applied.changed;
    updated.remove("disabled");
    let mut recorded = Ok(());
    if !updated.is_empty() {
        let change = Change::new(
            ChangeKind::Updated,
            actor.clone(),
            &record.user_id,
            Some(&record.id),
        );
        recorded = auditlog::record(ctx, change.with_details(updated.into())).await;
    }
    if let Some(disabled) = applied.disabled {
        let kind = ChangeKind::suspension(disabled);
        let mut change = Change::new(kind, actor, &record.user_id, Some(&record.id));
        if let Some(seq) = flip {
            change = change.once_per_flip(seq);
        }
        recorded = recorded.and(auditlog::record(ctx, change).await);
    }
    Ok(Reply {
        response: json(200, &summary(ctx, &record).await?)?,
        note: recorded.err().map(|_| Cause::AuditAfterUpdate),
    })
}

/// One of the day's changes of `caller`'s user (429 `too_many_changes` past the budget); the
/// admin is not counted. A revocation is not counted either: it is one entry per key, and a
/// leaked key must never be able to keep its user from revoking it.
pub(super) async fn take_change(ctx: &Ctx, caller: &Caller<'_>) -> Result<(), Error> {
    match caller.own_user() {
        Some(user) => auditlog::take_change(ctx, user).await,
        None => Ok(()),
    }
}

/// [`apply_update`] for `caller`: the admin may widen; a key or a settings session only narrows,
/// and a suspension it makes is recorded as its own ([`access::disabled_by`]).
pub(super) fn apply_by(
    caller: &Caller<'_>,
    target: &KeyRecord,
    object_expiry: Option<i64>,
    u: Update,
) -> Result<Applied, Error> {
    apply_update(
        target,
        object_expiry,
        u,
        caller.may_widen(),
        &access::disabled_by(caller),
    )
}

/// The no-escalation rule of a key caller, or the ceiling of a settings session (the admin
/// has none).
pub(super) fn restrict(
    ctx: &Ctx,
    caller: &Caller<'_>,
    caller_expiry: Option<i64>,
    new: &mut NewKey,
) -> Result<(), Error> {
    caller.restrict(caller_expiry, ctx.now, ctx.config.default_rate_limit, new)
}

/// A key's summary with what its object knows: `last_used_at` (no KV write per request),
/// whether it is disabled, and its quota's count in the current period.
async fn summary(ctx: &Ctx, record: &KeyRecord) -> Result<serde_json::Value, Error> {
    let usage = key_client::usage(ctx, &record.id).await?;
    let used = usage.last_used_ms.map(|ms| format_time((ms / 1000) as i64));
    let mut summary = record.summary(used.as_deref());
    summary.disabled = usage.disabled;
    summary.quota_used = key_client::runs_used(ctx, record, Some(&usage)).await?;
    serde_json::to_value(summary).map_err(|_| Error::Internal)
}
