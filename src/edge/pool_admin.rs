//! `/v1/pools...` (docs/CONTRACT.md section 17, admin only): a pool's definition written to its
//! object first (which every grant and run obeys) and then to KV (which tells isolates that it
//! applies), its figures read from its object, its changes recorded in the audit trail of its
//! user or workspace. Enforcement is [`super::pool`]'s.

use worker::Response;

use super::http::{json, read_body, Req};
use super::{auditlog, key_client, pool, store, Ctx, Reply};
use crate::core::details;
use crate::core::events::{Actor, Change, ChangeKind};
use crate::core::fields::MAX_MANAGEMENT_BODY_BYTES;
use crate::core::keyop::{PoolSet, PoolStatusQuery, SeriesQuery};
use crate::core::pool::{parse_pool_body, pool_json, Pool, PoolKind, PoolLimits, PoolRef};
use crate::core::request::parse_list_query;
use crate::core::route::Route;
use crate::core::time::format_time;
use crate::core::usage::COUNTED;
use crate::core::{Cause, Error};

pub async fn manage(
    ctx: &Ctx,
    req: &Req,
    method: &str,
    query: Option<&str>,
    route: &Route<'_>,
) -> Result<Reply, Error> {
    match route {
        Route::ListPools => list(ctx, query).await,
        Route::Pool(kind, id) => {
            let pool = PoolRef::parse(*kind, id)?;
            match method {
                "PUT" => put(ctx, req, &pool).await,
                "DELETE" => delete(ctx, &pool).await,
                _ => get(ctx, &pool).await,
            }
        }
        Route::PoolUsage(kind, id) => usage(ctx, &PoolRef::parse(*kind, id)?).await,
        _ => Err(Error::NotFound),
    }
}

/// The pool's change, in its user's trail or its workspace's.
fn change(kind: ChangeKind, pool: &PoolRef) -> Change {
    match pool.kind {
        PoolKind::User => Change::new(kind, Actor::Admin, &pool.id, None),
        PoolKind::Workspace => Change::for_workspace(kind, Actor::Admin, &pool.id),
    }
}

async fn put(ctx: &Ctx, req: &Req, pool: &PoolRef) -> Result<Reply, Error> {
    let limits = parse_pool_body(&read_body(req, MAX_MANAGEMENT_BODY_BYTES).await?)?;
    let existing = store::pool(ctx, pool, false).await?;
    let now = format_time(ctx.now);
    let stored = Pool {
        kind: pool.kind,
        id: pool.id.clone(),
        rate_limit: limits.rate_limit,
        quota: limits.quota,
        created_at: existing
            .as_ref()
            .map_or_else(|| now.clone(), |p| p.created_at.clone()),
        updated_at: now,
    };
    // The object first: once KV shows the pool, the limits it applies are already there.
    set_limits(ctx, pool, Some(limits)).await?;
    store::put_pool(ctx, &stored).await?;
    pool::changed_here(ctx, pool, Some(limits));
    let kind = match existing {
        Some(_) => ChangeKind::PoolUpdated,
        None => ChangeKind::PoolCreated,
    };
    let change = change(kind, pool).with_details(details::pool(&stored));
    let note = auditlog::record(ctx, change)
        .await
        .err()
        .map(|_| Cause::AuditPool);
    let status = if kind == ChangeKind::PoolCreated {
        201
    } else {
        200
    };
    Ok(Reply {
        response: json(status, &pool_json(&stored, None, ctx.now))?,
        note,
    })
}

async fn delete(ctx: &Ctx, pool: &PoolRef) -> Result<Reply, Error> {
    let existing = store::pool(ctx, pool, false)
        .await?
        .ok_or(Error::NotFound)?;
    // The object first: from this moment no grant or run of the pool is given.
    set_limits(ctx, pool, None).await?;
    store::delete_pool(ctx, pool).await?;
    pool::changed_here(ctx, pool, None);
    let change = change(ChangeKind::PoolDeleted, pool).with_details(details::pool(&existing));
    let note = auditlog::record(ctx, change)
        .await
        .err()
        .map(|_| Cause::AuditPool);
    let response = Response::empty()
        .map_err(|_| Error::Internal)?
        .with_status(204);
    Ok(Reply { response, note })
}

async fn get(ctx: &Ctx, pool: &PoolRef) -> Result<Reply, Error> {
    let stored = store::pool(ctx, pool, false)
        .await?
        .ok_or(Error::NotFound)?;
    let figures = key_client::call(ctx, &pool.storage_name(), PoolStatusQuery {}).await?;
    Ok(json(200, &pool_json(&stored, Some(&figures), ctx.now))?.into())
}

async fn usage(ctx: &Ctx, pool: &PoolRef) -> Result<Reply, Error> {
    store::pool(ctx, pool, false)
        .await?
        .ok_or(Error::NotFound)?;
    let series = key_client::call(ctx, &pool.storage_name(), SeriesQuery {}).await?;
    let body = serde_json::json!({
        "pool": pool,
        "counted": COUNTED,
        "hourly": series.hourly,
        "daily": series.daily,
    });
    Ok(json(200, &body)?.into())
}

async fn list(ctx: &Ctx, query: Option<&str>) -> Result<Reply, Error> {
    let q = parse_list_query(query)?;
    let (pools, next) = store::list_pools(ctx, q.limit, q.cursor).await?;
    let results: Vec<_> = pools.iter().map(|p| pool_json(p, None, ctx.now)).collect();
    let body = serde_json::json!({"results": results, "next_cursor": next});
    Ok(json(200, &body)?.into())
}

async fn set_limits(ctx: &Ctx, pool: &PoolRef, limits: Option<PoolLimits>) -> Result<(), Error> {
    key_client::call(ctx, &pool.storage_name(), PoolSet { limits }).await?;
    Ok(())
}
