//! `POST /v1/leaks`: GitHub secret scanning's partner alerts (docs/CONTRACT.md section 14).
//! No `Authorization`: the signature over the raw body is the authentication, checked by
//! [`crate::core::leak`] and the runtime's WebCrypto before the body is even parsed. Each reported key that keygate knows
//! is revoked through the same path as `DELETE /v1/api-keys/{id}` and recorded as
//! `key.leaked`. Tokens are never logged: the log line of this route names no token.

use futures_util::future::join_all;

use super::http::Req;
use super::http::{json, read_body};
use super::{keys, store, subtle, Ctx, Reply};
use crate::core::details;
use crate::core::events::{Actor, Change, ChangeKind};
use crate::core::key::{check_key, hash_key};
use crate::core::leak::{check, parse_keys, parse_report, Label, Reported, MAX_REPORT_BYTES};
use crate::core::names::{GITHUB_KEY_IDENTIFIER, GITHUB_KEY_SIGNATURE};
use crate::core::{Cause, Error};

pub async fn report(ctx: &Ctx, req: &Req) -> Result<Reply, Error> {
    let body = read_body(req, MAX_REPORT_BYTES).await?;
    let header = |name| req.headers().get(name).ok().flatten();
    let public_keys = parse_keys(ctx.config.secret_scanning_keys.as_deref());
    let signed = check(
        &public_keys,
        header(GITHUB_KEY_IDENTIFIER).as_deref(),
        header(GITHUB_KEY_SIGNATURE).as_deref(),
    )?;
    if !subtle::verify_p256(signed.spki, &signed.signature, &body).await? {
        return Err(Error::InvalidSignature);
    }
    let reported = parse_report(&body)?;
    // Each distinct token once (GitHub reports a token found in several places several times):
    // concurrent revocations of one key would race on its KV record, whose writes KV limits to
    // one a second per key.
    let mut distinct: Vec<&Reported> = Vec::with_capacity(reported.len());
    for r in &reported {
        if !distinct.iter().any(|d| d.token == r.token) {
            distinct.push(r);
        }
    }
    // Concurrently: a report of many tokens answers within GitHub's timeout.
    let outcomes = join_all(distinct.iter().map(|r| handle(ctx, r))).await;
    let mut found = Vec::with_capacity(distinct.len());
    let mut note = None;
    for (r, outcome) in distinct.iter().zip(outcomes) {
        let (known, n) = outcome?;
        note = note.or(n);
        found.push((r.token.as_str(), known));
    }
    let labels: Vec<Label> = reported
        .iter()
        .map(|r| Label::of(r, found.iter().any(|(t, known)| *t == r.token && *known)))
        .collect();
    Ok(Reply {
        response: json(200, &labels)?,
        note,
    })
}

/// Whether the token is a key keygate issued (then revoked, if it was not already), with the
/// revocation's note. A storage failure fails the whole report (503): GitHub sends it again.
async fn handle(ctx: &Ctx, r: &Reported) -> Result<(bool, Option<Cause>), Error> {
    if check_key(&ctx.config.key_prefix, &r.token).is_err() {
        return Ok((false, None));
    }
    let hash = hash_key(&r.token);
    let Some(mut record) = store::record_by_hash(ctx, &hash, false).await? else {
        return Ok((false, None));
    };
    let change = Change::new(
        ChangeKind::Leaked,
        Actor::LeakReport(r.url.clone()),
        &record.user_id,
        Some(&record.id),
    )
    .with_details(details::leaked(&r.source, &r.url));
    let note = keys::revoke_record(ctx, &hash, &mut record, change).await?;
    Ok((true, note))
}
