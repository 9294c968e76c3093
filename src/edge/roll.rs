//! `POST /v1/api-keys/{id}/roll` (docs/CONTRACT.md section 4): a new key with the old key's
//! attributes and the policies the body sets, the old one revoked or given a grace period. The
//! shared steps (loading the key, the caller's rules, minting, the cap, the daily budget) are
//! [`super::keys`]'.

use super::http::read_body;
use super::http::Req;
use super::keys::{apply_by, issued, load, mint, restrict, take_change, unmint};
use super::{auditlog, key_client, lease, store, Ctx, Reply};
use crate::core::access::{self, Caller};
use crate::core::cap;
use crate::core::details;
use crate::core::events::{Change, ChangeKind};
use crate::core::fields::MAX_MANAGEMENT_BODY_BYTES;
use crate::core::policy::{policy_changes, with_object_suspension};
use crate::core::record::apply_roll_to_old;
use crate::core::request::parse_roll;
use crate::core::{Cause, Error};

/// A roll changes nothing unless it completes: the new key is stored first (unusable, since
/// nobody holds its plaintext yet), then the old key's object records its revocation or
/// shortened expiry (the step that takes effect everywhere), and only then is the old record
/// rewritten. A failure before the object step removes the new key and leaves the old one as
/// it was, so a retry works; a failure of the last write still answers with the new key (the
/// roll has taken effect in the object, which every request consults) and is logged.
pub(super) async fn roll(
    ctx: &Ctx,
    req: &Req,
    id: &str,
    caller: &Caller<'_>,
    caller_expiry: Option<i64>,
) -> Result<Reply, Error> {
    let roll = parse_roll(&read_body(req, MAX_MANAGEMENT_BODY_BYTES).await?, ctx.now)?;
    let (hash, old) = load(ctx, id, caller).await?;
    let usage = key_client::usage(ctx, &old.id).await?;
    let old_expiry = usage.expires_at;
    access::live_target(&old, usage.revoked, old_expiry, ctx.now, "rolled")?;
    // The new key's policies: the old key's, changed by the body's by a PATCH's rules (only the
    // admin widens), with the suspension the old key's object holds as the starting point.
    let mut base = old.clone();
    with_object_suspension(&mut base, usage.disabled);
    let applied = apply_by(caller, &base, old_expiry, roll.policy)?;
    let mut new = access::rolled(&applied.record, old_expiry);
    // Rolling hands out a new plaintext: a key or a settings session may not obtain one wider
    // than itself that way.
    restrict(ctx, caller, caller_expiry, &mut new)?;
    let max = ctx.config.max_keys_per_user;
    take_change(ctx, caller).await?;
    let live = store::count_live(ctx, &new.user_id, max + 1).await?;
    // For a moment the user holds both keys: one over the cap, as `roll_cap` allows (an
    // imported key's roll is never refused by it).
    let cap = cap::roll_cap(old.imported.is_some(), live.count, max)?;
    let (key, new_hash, new_record) = mint(ctx, new, &live, cap).await?;
    let mut rolled = old;
    apply_roll_to_old(&mut rolled, roll.grace_seconds, ctx.now);
    let committed = match (&rolled.revoked_at, rolled.expires_at_secs()) {
        (Some(at), _) => key_client::revoke(ctx, &rolled.id, at).await,
        (None, Some(t)) => key_client::expire(ctx, &rolled.id, t).await,
        (None, None) => Ok(()),
    };
    lease::forget(&rolled.id);
    if let Err(e) = committed {
        unmint(ctx, &new_hash, &new_record).await;
        return Err(e);
    }
    // The old key stops counting under the cap when revoked, or at its shortened expiry.
    match (&rolled.revoked_at, rolled.expires_at_secs()) {
        (Some(_), _) => auditlog::retire_key(ctx, &rolled.user_id, &rolled.id, None).await,
        (None, Some(t)) => auditlog::retire_key(ctx, &rolled.user_id, &rolled.id, Some(t)).await,
        (None, None) => {}
    }
    let note = store::put(ctx, &hash, &rolled)
        .await
        .err()
        .map(|_| Cause::KvWriteAfterRoll);
    let change = Change::new(
        ChangeKind::Rolled,
        auditlog::actor(caller),
        &rolled.user_id,
        Some(&rolled.id),
    )
    // The policies the new key got other than the old key's (empty when copied as they were),
    // after the body and the no-escalation rules.
    .with_details(details::rolled(
        &rolled,
        &new_record.id,
        policy_changes(&base.policy, &new_record.policy),
    ));
    // A roll that suspends or resumes is also that change of the new key, published as the
    // `key.updated` a PATCH would have made (docs/CONTRACT.md section 14).
    let suspension = (new_record.policy.disabled != base.policy.disabled).then(|| {
        let kind = ChangeKind::suspension(new_record.policy.disabled);
        Change::new(
            kind,
            auditlog::actor(caller),
            &new_record.user_id,
            Some(&new_record.id),
        )
    });
    // The roll has taken effect: a failure to record it is noted, not turned into an error
    // that would make the caller roll again.
    let mut recorded = auditlog::record(ctx, change).await;
    if let Some(change) = suspension {
        recorded = recorded.and(auditlog::record(ctx, change).await);
    }
    let note = match recorded {
        Ok(()) => note,
        Err(_) => note.or(Some(Cause::AuditAfterRoll)),
    };
    Ok(Reply {
        response: issued(ctx, &key, &new_record).await?,
        note,
    })
}
