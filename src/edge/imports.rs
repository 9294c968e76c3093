//! `POST /v1/api-keys/import` (admin only; docs/CONTRACT.md section 15): each row checked by
//! [`crate::core::imports`], then stored under its prefix, counted in its user's object, audited
//! and published. One row at a time, so a batch that repeats a prefix sees its own earlier row.

use serde_json::json;

use super::http::Req;
use super::http::{json, random, read_body};
use super::{auditlog, key_client, keys, store, Ctx, Reply};
use crate::core::details;
use crate::core::events::{Actor, Change, ChangeKind};
use crate::core::imports::{fate, parse_import, Fate, Row, RowResult, MAX_IMPORT_BODY_BYTES};
use crate::core::key::{format_key_id, KEY_ID_BYTES};
use crate::core::record::{KeyRecord, DISABLED_BY_ADMIN};
use crate::core::Error;

/// Answers 200 with one result per row, in order. A storage failure part way is a 503 for the
/// call; the rows stored before it answer `exists` when the batch is sent again.
pub async fn import(ctx: &Ctx, req: &Req) -> Result<Reply, Error> {
    let body = read_body(req, MAX_IMPORT_BODY_BYTES).await?;
    let rows = parse_import(&body, ctx.now, ctx.config.default_rate_limit)?;
    let mut results = Vec::with_capacity(rows.len());
    for (prefix, parsed) in &rows {
        results.push(match parsed {
            Err(problem) => RowResult::invalid(prefix, problem.clone()),
            Ok(row) => one(ctx, prefix, row.clone()).await?,
        });
    }
    Ok(json(200, &json!({ "results": results }))?.into())
}

async fn one<'a>(ctx: &Ctx, prefix: &'a str, row: Row) -> Result<RowResult<'a>, Error> {
    let handle = row.handle();
    let existing = store::record_by_hash(ctx, &handle, false).await?;
    match fate(&row, existing.as_ref()) {
        Fate::Exists(id) => Ok(RowResult::exists(prefix, id)),
        Fate::HashChanged(id) => Ok(RowResult::hash_changed(prefix, id)),
        Fate::PrefixTaken => Ok(RowResult::prefix_taken(prefix)),
        Fate::Skipped => Ok(RowResult::skipped(prefix, None)),
        Fate::Revoke(id) => {
            // Revoked on the platform since it was imported: revoked here the way DELETE does.
            let Some(mut record) = existing else {
                return Err(Error::Internal);
            };
            let change = Change::new(
                ChangeKind::Revoked,
                Actor::Admin,
                &record.user_id,
                Some(&id),
            );
            keys::revoke_record(ctx, &handle, &mut record, change).await?;
            Ok(RowResult::skipped(prefix, Some(id)))
        }
        Fate::Import => {
            let id = format_key_id(&random::<KEY_ID_BYTES>()?);
            let mut record = row.into_record(id.clone(), ctx.now);
            if record.policy.disabled {
                record.policy.disabled_by = Some(DISABLED_BY_ADMIN.into());
            }
            store_key(ctx, &handle, &record).await?;
            Ok(RowResult::imported(prefix, id))
        }
    }
}

/// Counted under its user's cap (which an import is never refused by: the keys exist already,
/// and count toward the cap from now on), suspended in its object first if the row says so,
/// stored, then recorded; unrecorded, it is taken back and the call fails.
async fn store_key(ctx: &Ctx, handle: &str, record: &KeyRecord) -> Result<(), Error> {
    let user = &record.user_id;
    let listed = store::Listed::default();
    let expires_at = record.expires_at_secs();
    auditlog::admit_key(ctx, user, &record.id, expires_at, &listed, u64::MAX).await?;
    let stored = async {
        if record.policy.disabled {
            key_client::set_disabled(ctx, &record.id, true).await?;
        }
        store::put(ctx, handle, record).await
    };
    if let Err(e) = stored.await {
        auditlog::retire_key(ctx, user, &record.id, None).await;
        return Err(e);
    }
    let change = Change::new(ChangeKind::Imported, Actor::Admin, user, Some(&record.id))
        .with_details(details::imported(record));
    if let Err(e) = auditlog::record(ctx, change).await {
        let _ = store::delete(ctx, handle, record).await;
        auditlog::retire_key(ctx, user, &record.id, None).await;
        return Err(e);
    }
    Ok(())
}
