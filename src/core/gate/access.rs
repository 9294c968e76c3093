//! Who may do what, decided in one place and in the contract's order (docs/CONTRACT.md
//! section 2), together with the rules of key management (section 4): ownership, the
//! no-escalation rule for keys that mint keys, what a roll copies, the cap on keys per user.
//!
//! Everything here is pure. The glue fetches the facts (the record behind a key hash, the key
//! object's verdict, a management target, a count of live keys), calls these functions, and
//! carries out the answer; a reader can find every row of the auth table in this file:
//!
//! | row | decided by |
//! |---|---|
//! | too many failed attempts | [`crate::core::throttle`] (before any credential is read) |
//! | missing / malformed credential | [`crate::core::auth::parse_authorization`], [`credential`] |
//! | unknown key | [`known`] |
//! | revoked, expired (record, then object) | [`usable`], [`decide_key`] |
//! | disabled (the key's object) | [`decide_key`] |
//! | client IP outside `allowed_ips` (the record) | [`decide_key`], [`authorize`] |
//! | workspace, permission, rate limit | [`decide_key`] |
//! | job trigger over the quota (the key's object) | [`quota`] |
//! | admin token | [`admin`] |
//!
//! Length: about half of this file is its unit tests, one per row of the auth table and per
//! management rule, kept beside the function they prove so that a reader sees both at once.

use std::net::IpAddr;

use crate::core::cidr;
use crate::core::error::Error;
use crate::core::keystate::Hit;
use crate::core::permission::{within, PERM_KEYS_READ, PERM_KEYS_WRITE};
use crate::core::policy::restrict_policy_to_creator;
use crate::core::quota::RunVerdict;
use crate::core::ratelimit::{Decision, RateLimit};
use crate::core::record::{KeyRecord, NewKey, Policy, DISABLED_BY_ADMIN, DISABLED_BY_SESSION};
use crate::core::route::Route;
use crate::core::session::Session;
use crate::core::time::earliest;

pub use crate::core::caller::Caller;

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need<'a> {
    /// Whether the admin token may call it (the key-management routes).
    pub admin: bool,
    /// Whether an API key may call it (every route but opening a settings session).
    pub key: bool,
    /// The permission a key needs; `None` for `/v1/me` (any valid key).
    pub permission: Option<&'static str>,
    /// The workspace the path names, which the key must cover.
    pub workspace: Option<&'a str>,
}

/// What `route` needs; `None` for the public routes (`/healthz`, the OpenAPI document).
pub fn need<'a>(route: &Route<'a>) -> Option<Need<'a>> {
    let manage = |permission| Need {
        admin: true,
        key: true,
        permission: Some(permission),
        workspace: None,
    };
    Some(match route {
        // The leak report authenticates itself by its signature (`core::leak`).
        Route::Health | Route::OpenApi | Route::Jwks | Route::Leaks => return None,
        Route::Me => Need {
            admin: false,
            key: true,
            permission: None,
            workspace: None,
        },
        Route::CreateSettingsSession
        | Route::ImportKeys
        | Route::ListPools
        | Route::Pool(..)
        | Route::PoolUsage(..) => Need {
            admin: true,
            key: false,
            permission: None,
            workspace: None,
        },
        Route::ListKeys | Route::GetKey(_) | Route::KeyUsage(_) | Route::AuditEvents => {
            manage(PERM_KEYS_READ)
        }
        Route::CreateKey | Route::RevokeKey(_) | Route::RollKey(_) | Route::UpdateKey(_) => {
            manage(PERM_KEYS_WRITE)
        }
        Route::Forward(fwd) => Need {
            admin: false,
            key: true,
            permission: Some(fwd.permission),
            workspace: fwd.workspace,
        },
    })
}

/// An admin token where the route takes only keys reads as a malformed key: the admin token
/// is never a key, and the answer does not say that an admin token was recognised. A key where
/// the route takes only the admin token is 403, before any storage read: whatever the key, it
/// may not.
pub fn credential(need: &Need, is_admin: bool) -> Result<(), Error> {
    if is_admin && !need.admin {
        Err(Error::MalformedApiKey)
    } else if !is_admin && !need.key {
        Err(Error::PermissionDenied(
            "Only the admin token may call this route.",
        ))
    } else {
        Ok(())
    }
}

/// The admin row: no token configured is 403 `admin_disabled`, a wrong one 401.
pub fn admin(presented: &str, configured: Option<&str>) -> Result<(), Error> {
    let configured = configured
        .filter(|c| !c.is_empty())
        .ok_or(Error::AdminDisabled)?;
    if crate::core::auth::admin_token_matches(presented, configured) {
        Ok(())
    } else {
        Err(Error::InvalidAdminToken)
    }
}

/// The unknown-key row: a well-formed key with no record.
pub fn known(found: Option<KeyRecord>) -> Result<KeyRecord, Error> {
    found.ok_or(Error::InvalidApiKey)
}

/// The revoked and expired rows as the record says (before the key's object is asked, so a
/// dead key costs no object call).
pub fn usable(record: &KeyRecord, now: i64) -> Result<(), Error> {
    record.check_usable(now)
}

/// Every row after the key is known, in order: revoked and expired (the record's view, then
/// the key object's, which also knows revocations and shortened expiries that a cached record
/// does not), disabled (the object's flag only: enabling must take effect as fast as
/// disabling, and a cached record could hold either), the client IP (the record's
/// `allowed_ips`, decided here with no storage read), workspace, permission, rate limit.
pub fn decide_key(
    record: &KeyRecord,
    now: i64,
    verdict: &Hit,
    need: &Need,
    client: Option<IpAddr>,
) -> Result<(), Error> {
    usable(record, now)?;
    let decision = match verdict {
        Hit::Revoked => return Err(Error::RevokedApiKey),
        Hit::Expired => return Err(Error::ExpiredApiKey),
        Hit::Disabled => return Err(Error::DisabledApiKey),
        Hit::Counted { decision, .. } => decision,
    };
    authorize(record, need, client)?;
    if !decision.allowed {
        return Err(Error::RateLimited {
            retry_after: decision.retry_after_secs,
        });
    }
    Ok(())
}

/// The IP row: a key with `allowed_ips` is refused from any other address, and from a request
/// whose client address is missing or unreadable (fail closed).
pub fn from_allowed_ip(record: &KeyRecord, client: Option<IpAddr>) -> Result<(), Error> {
    match &record.policy.allowed_ips {
        Some(blocks) if !cidr::allowed(blocks, client) => Err(Error::IpNotAllowed),
        _ => Ok(()),
    }
}

/// A job trigger's rows once its key's object has counted it and, with a quota, its run: every
/// row of [`decide_key`], then the quota, last.
pub fn decide_run(
    record: &KeyRecord,
    now: i64,
    verdict: &Hit,
    need: &Need,
    client: Option<IpAddr>,
    run: Option<&RunVerdict>,
) -> Result<(), Error> {
    decide_key(record, now, verdict, need, client).and_then(|()| quota(run))
}

/// The quota row, last: the key's object counted the job trigger's run, or refused it with the
/// seconds to the end of the period.
pub fn quota(run: Option<&RunVerdict>) -> Result<(), Error> {
    match run {
        Some(v) if !v.allowed => Err(Error::QuotaExceeded {
            retry_after: v.retry_after_secs,
        }),
        _ => Ok(()),
    }
}

/// The key's rate-limit decision, when its object counted the request (for `RateLimit-*`).
pub fn counted(verdict: &Hit) -> Option<Decision> {
    match verdict {
        Hit::Counted { decision, .. } => Some(*decision),
        _ => None,
    }
}

/// The key's expiry as its object knows it (see [`restrict_to_creator`]).
pub fn object_expiry(verdict: &Hit) -> Option<i64> {
    match verdict {
        Hit::Counted { expires_at, .. } => *expires_at,
        _ => None,
    }
}

/// The IP, workspace and permission rows alone: what the job trigger checks before its one
/// object call (which both counts the request and opens its idempotency record).
pub fn authorize(record: &KeyRecord, need: &Need, client: Option<IpAddr>) -> Result<(), Error> {
    from_allowed_ip(record, client)?;
    if need
        .workspace
        .is_some_and(|ws| !record.covers_workspace(ws))
    {
        return Err(Error::WorkspaceForbidden);
    }
    match need.permission {
        Some(p) if !record.grants(p) => Err(Error::PermissionDenied(missing_permission(p))),
        _ => Ok(()),
    }
}

/// A refusal found before the count by a check whose row comes after the rate limit (the
/// trigger's body or `Idempotency-Key`): once the request is counted, the earlier rows win.
pub fn refuse_after_count(
    record: &KeyRecord,
    now: i64,
    verdict: &Hit,
    need: &Need,
    client: Option<IpAddr>,
    later: Error,
) -> Error {
    match decide_key(record, now, verdict, need, client) {
        Err(earlier) => earlier,
        Ok(()) => later,
    }
}

fn missing_permission(permission: &str) -> &'static str {
    match permission {
        PERM_KEYS_WRITE => "This route needs the api_keys:write permission.",
        PERM_KEYS_READ => "This route needs the api_keys:read permission.",
        _ => "The API key lacks the permission this route needs.",
    }
}

/// Whose keys a listing shows: the admin names a user; a key lists its own user only.
pub fn list_user(caller: &Caller<'_>, asked: Option<String>) -> Result<String, Error> {
    match (caller.own_user(), asked) {
        (None, None) => Err(Error::field("user_id", "is required for admin listings")),
        (None, Some(user)) => Ok(user),
        (Some(own), None) => Ok(own.to_owned()),
        (Some(own), Some(user)) if user == own => Ok(user),
        (Some(_), Some(_)) => Err(Error::PermissionDenied(
            "An API key or settings session can only list its own user's keys.",
        )),
    }
}

/// A management target: another user's key is as unknown to a key caller or a settings
/// session as a missing one.
pub fn target(caller: &Caller<'_>, found: Option<KeyRecord>) -> Result<KeyRecord, Error> {
    let record = found.ok_or(Error::NotFound)?;
    match caller.own_user() {
        Some(own) if own != record.user_id => Err(Error::NotFound),
        _ => Ok(record),
    }
}

/// A revoked or expired key (as the record or the key's object says: a location's record may
/// lag behind the object) cannot be rolled or changed; `action` names which ("rolled").
pub fn live_target(
    target: &KeyRecord,
    object_revoked: bool,
    object_expiry: Option<i64>,
    now: i64,
    action: &str,
) -> Result<(), Error> {
    let dead = object_revoked
        || target.check_usable(now).is_err()
        || object_expiry.is_some_and(|t| now >= t);
    if dead {
        return Err(Error::field(
            "id",
            format!("a revoked or expired key cannot be {action}"),
        ));
    }
    Ok(())
}

/// What a roll copies into the new key: everything but the id, hint, key and times; the
/// expiry is the old key's as its object knows it (a roll with grace may have shortened it).
pub fn rolled(old: &KeyRecord, object_expiry: Option<i64>) -> NewKey {
    NewKey {
        user_id: old.user_id.clone(),
        email: old.email.clone(),
        name: old.name.clone(),
        workspaces: old.workspaces.clone(),
        permissions: old.permissions.clone(),
        expires_at: earliest(old.expires_at_secs(), object_expiry),
        rate_limit: old.rate_limit,
        // Policies too, a suspension included (the new key's object is told before the key
        // exists); `disabled_by` stays, so who may lift it does not change with a roll. A
        // quota's runs go on counting where the old key's did (a roll never restarts a count).
        policy: Policy {
            quota_counter: old.policy.quota.map(|_| old.quota_counter().to_owned()),
            ..old.policy.clone()
        },
    }
}

/// `disabled_by` for a suspension by `caller`: `admin`, the key's id, or `settings_session`
/// (only the admin may lift the admin's suspension, [`crate::core::policy::apply_update`]).
pub fn disabled_by(caller: &Caller<'_>) -> String {
    match caller {
        Caller::Admin => DISABLED_BY_ADMIN.to_owned(),
        Caller::Key(k) => k.id.clone(),
        Caller::Session(_) => DISABLED_BY_SESSION.to_owned(),
    }
}

/// The rate limit a new key gets when its body names none: the configured default, capped to
/// the creating key's own when that is lower.
pub fn default_rate(caller: &Caller<'_>, configured: RateLimit) -> RateLimit {
    match caller.key() {
        Some(creator) if !configured.within(&creator.rate_limit) => creator.rate_limit,
        _ => configured,
    }
}

/// The no-escalation rule: a key may mint keys (by create or roll) only for its own user, with
/// its own e-mail (an omitted one inherits it), and with workspaces, permissions, expiry and rate
/// limit no wider than its own, and its `allowed_ips` and `quota` within its own (inherited
/// when omitted, [`restrict_policy_to_creator`]). `creator_expiry` is the creator's expiry as its object knows it
/// (a roll with grace shortens it there first); an omitted expiry inherits the earlier one.
pub fn restrict_to_creator(
    creator: &KeyRecord,
    creator_expiry: Option<i64>,
    new: &mut NewKey,
) -> Result<(), Error> {
    if new.user_id != creator.user_id {
        return Err(Error::PermissionDenied(
            "An API key can only create keys for its own user.",
        ));
    }
    if !within(&creator.workspaces, &new.workspaces) {
        return Err(Error::PermissionDenied(
            "A new key's workspaces must be among the creating key's workspaces.",
        ));
    }
    if !within(&creator.permissions, &new.permissions) {
        return Err(Error::PermissionDenied(
            "A new key's permissions must be among the creating key's permissions.",
        ));
    }
    if !new.rate_limit.within(&creator.rate_limit) {
        return Err(Error::PermissionDenied(
            "A new key's rate limit cannot allow more requests or a larger burst than the creating key's.",
        ));
    }
    if let Some(limit) = earliest(creator.expires_at_secs(), creator_expiry) {
        match new.expires_at {
            None => new.expires_at = Some(limit),
            Some(t) if t <= limit => {}
            Some(_) => {
                return Err(Error::PermissionDenied(
                    "A new key cannot expire later than the creating key.",
                ))
            }
        }
    }
    restrict_policy_to_creator(creator, new)?;
    // Last: a widening above is refused as such (403) before an e-mail mismatch (400).
    match (&new.email, &creator.email) {
        (None, _) => new.email = creator.email.clone(),
        (Some(asked), Some(own)) if asked == own => {}
        (Some(_), _) => {
            return Err(Error::field(
                "email",
                "must be the creating key's own e-mail (or omitted)",
            ))
        }
    }
    Ok(())
}

/// The settings page's rule (section 11), the same as a key's no-escalation rule with the
/// session's ceiling in place of a creating key: a key made (by create or roll) in a settings
/// session belongs to the session's user with the session's e-mail (the page may leave both
/// out; naming others is 400 on the field), its workspaces and permissions are within the
/// session's (403), its rate limit is no higher than `DEFAULT_RATE_LIMIT` (403), and when the
/// session has `max_expiry_days` its expiry is at most that far off: omitted, it is set to
/// exactly that (a key without expiry would outlive the bound); later is 403.
pub fn restrict_to_session(
    session: &Session,
    now: i64,
    default_rate: RateLimit,
    new: &mut NewKey,
) -> Result<(), Error> {
    if !within(&session.workspaces, &new.workspaces) {
        return Err(Error::PermissionDenied(
            "A key's workspaces must be among those this settings session may grant.",
        ));
    }
    if !within(&session.permissions, &new.permissions) {
        return Err(Error::PermissionDenied(
            "A key's permissions must be among those this settings session may grant.",
        ));
    }
    if !new.rate_limit.within(&default_rate) {
        return Err(Error::PermissionDenied(
            "A key made in a settings session cannot have a rate limit above the default.",
        ));
    }
    if let Some(limit) = session.expiry_limit(now) {
        match new.expires_at {
            None => new.expires_at = Some(limit),
            Some(t) if t <= limit => {}
            Some(_) => return Err(Error::PermissionDenied(
                "A key made in this settings session cannot expire later than its max_expiry_days.",
            )),
        }
    }
    // Last: a widening above is refused as such (403) before a mismatch of the owner (400).
    if new.user_id != session.user_id {
        return Err(Error::field(
            "user_id",
            "must be the settings session's own user (or omitted)",
        ));
    }
    match &new.email {
        None => new.email = Some(session.email.clone()),
        Some(asked) if *asked == session.email => {}
        Some(_) => {
            return Err(Error::field(
                "email",
                "must be the settings session's own e-mail (or omitted)",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    mod rows_by_name {
        use super::super::*;
        use crate::core::manage::session::tests::session;
        use crate::core::ratelimit::Decision;
        use crate::core::record::tests::{new_key, record, NOW};

        fn counted_hit(expires_at: Option<i64>) -> Hit {
            Hit::Counted {
                decision: Decision {
                    allowed: true,
                    limit: 5,
                    remaining: 4,
                    reset_secs: 12,
                    retry_after_secs: 0,
                },
                expires_at,
                granted: 1,
            }
        }

        #[test]
        fn the_objects_decision_and_expiry_are_read_from_a_counted_answer_only() {
            assert_eq!(counted(&counted_hit(None)).map(|d| d.remaining), Some(4));
            assert_eq!(counted(&Hit::Revoked), None);
            assert_eq!(object_expiry(&counted_hit(Some(42))), Some(42));
            assert_eq!(object_expiry(&counted_hit(None)), None);
            assert_eq!(object_expiry(&Hit::Disabled), None);
        }

        #[test]
        fn row_permission_in_authorize_before_the_object_call() {
            let r = record(&["ws1"], &["jobs:read"], None);
            let need = |permission| Need {
                admin: false,
                key: true,
                permission: Some(permission),
                workspace: Some("ws1"),
            };
            assert_eq!(authorize(&r, &need("jobs:read"), None), Ok(()));
            let e = authorize(&r, &need("jobs:run"), None).unwrap_err();
            assert_eq!(e.code(), "permission_denied");
            let keys = authorize(&r, &need(PERM_KEYS_READ), None).unwrap_err();
            assert_eq!(
                keys,
                Error::PermissionDenied("This route needs the api_keys:read permission.")
            );
        }

        #[test]
        fn who_suspended_a_key_is_named_by_the_caller() {
            let k = record(&["ws1"], &["*"], None);
            let s = session();
            assert_eq!(disabled_by(&Caller::Admin), DISABLED_BY_ADMIN);
            assert_eq!(disabled_by(&Caller::Key(&k)), k.id);
            assert_eq!(disabled_by(&Caller::Session(&s)), DISABLED_BY_SESSION);
        }

        #[test]
        fn a_creator_may_mint_a_key_expiring_with_it_or_sooner() {
            let creator = record(&["ws1"], &["*"], Some(NOW + 1_000));
            let mut same = new_key(&["ws1"], &["jobs:read"], Some(NOW + 1_000));
            assert_eq!(restrict_to_creator(&creator, None, &mut same), Ok(()));
            let mut later = new_key(&["ws1"], &["jobs:read"], Some(NOW + 1_001));
            assert!(restrict_to_creator(&creator, None, &mut later).is_err());
        }

        #[test]
        fn a_session_may_name_its_own_email() {
            let s = session();
            let mut new = new_key(&["ws1"], &["jobs:read"], Some(NOW + 3_600));
            new.user_id = s.user_id.clone();
            new.email = Some(s.email.clone());
            let rate = RateLimit {
                requests: 600,
                window_seconds: 60,
            };
            assert_eq!(restrict_to_session(&s, NOW, rate, &mut new), Ok(()));
            new.email = Some("someone@else.example".into());
            assert!(restrict_to_session(&s, NOW, rate, &mut new).is_err());
        }
    }
    use crate::core::record::tests::{new_key, record, DEFAULT, NOW};
    use crate::core::route::resolve;
    use crate::core::time::format_time;

    fn counted(allowed: bool) -> Hit {
        Hit::Counted {
            decision: Decision {
                allowed,
                limit: 5,
                remaining: if allowed { 4 } else { 0 },
                reset_secs: 60,
                retry_after_secs: if allowed { 0 } else { 12 },
            },
            expires_at: None,
            granted: u32::from(allowed),
        }
    }

    fn need_of(method: &str, path: &str) -> Need<'static> {
        let path: &'static str = Box::leak(path.to_owned().into_boxed_str());
        need(&resolve(method, path).unwrap()).unwrap()
    }

    const JOBS: &str = "/developers/workspaces/ws1/jobs/";

    #[test]
    fn only_health_and_openapi_take_no_credential() {
        assert_eq!(need(&Route::Health), None);
        assert_eq!(need(&Route::OpenApi), None);
        assert_eq!(need(&Route::Jwks), None);
        for (m, p) in [
            ("GET", "/v1/me"),
            ("POST", "/v1/api-keys"),
            ("GET", "/v1/api-keys"),
            ("GET", "/v1/api-keys/key_1"),
            ("DELETE", "/v1/api-keys/key_1"),
            ("POST", "/v1/api-keys/key_1/roll"),
            ("GET", "/developers/workspaces/"),
            ("POST", "/developers/workspaces/w/jobs/j/run/"),
        ] {
            let path: &'static str = p;
            assert!(need(&resolve(m, path).unwrap()).is_some(), "{m} {p}");
        }
    }

    #[test]
    fn row_admin_token_on_a_key_route_is_a_malformed_key() {
        assert_eq!(
            credential(&need_of("GET", JOBS), true),
            Err(Error::MalformedApiKey)
        );
        assert_eq!(
            credential(&need_of("GET", "/v1/me"), true),
            Err(Error::MalformedApiKey)
        );
        assert_eq!(credential(&need_of("POST", "/v1/api-keys"), true), Ok(()));
        assert_eq!(credential(&need_of("GET", JOBS), false), Ok(()));
    }

    #[test]
    fn row_admin_disabled_then_invalid_admin_token() {
        assert_eq!(admin("t", None), Err(Error::AdminDisabled));
        assert_eq!(admin("t", Some("")), Err(Error::AdminDisabled));
        assert_eq!(admin("t", Some("u")), Err(Error::InvalidAdminToken));
        assert_eq!(admin("token", Some("token")), Ok(()));
    }

    #[test]
    fn row_invalid_api_key() {
        assert_eq!(known(None), Err(Error::InvalidApiKey));
        let r = record(&["*"], &["*"], None);
        assert_eq!(known(Some(r.clone())), Ok(r));
    }

    #[test]
    fn row_revoked_api_key_before_expired() {
        let mut r = record(&["*"], &["*"], Some(NOW + 10));
        r.revoked_at = Some(format_time(NOW));
        assert_eq!(usable(&r, NOW + 20), Err(Error::RevokedApiKey));
        let n = need_of("GET", JOBS);
        assert_eq!(
            decide_key(&r, NOW + 20, &counted(true), &n, None),
            Err(Error::RevokedApiKey)
        );
    }

    #[test]
    fn row_expired_api_key_exact_to_the_second() {
        let r = record(&["*"], &["*"], Some(NOW + 10));
        assert_eq!(usable(&r, NOW + 9), Ok(()));
        assert_eq!(usable(&r, NOW + 10), Err(Error::ExpiredApiKey));
    }

    #[test]
    fn the_key_objects_verdict_wins_over_a_cached_record() {
        let r = record(&["*"], &["*"], None);
        let n = need_of("GET", JOBS);
        assert_eq!(
            decide_key(&r, NOW, &Hit::Revoked, &n, None),
            Err(Error::RevokedApiKey)
        );
        assert_eq!(
            decide_key(&r, NOW, &Hit::Expired, &n, None),
            Err(Error::ExpiredApiKey)
        );
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn row_disabled_api_key_after_revoked_and_expired_before_ip() {
        let mut r = record(&["ws2"], &["*"], Some(NOW + 10));
        r.policy.allowed_ips = Some(vec!["192.0.2.0/24".into()]);
        let n = need_of("GET", JOBS);
        // From a refused address and a forbidden workspace: disabled wins.
        assert_eq!(
            decide_key(&r, NOW, &Hit::Disabled, &n, ip("198.51.100.1")),
            Err(Error::DisabledApiKey)
        );
        // Revoked and expired come first.
        assert_eq!(
            decide_key(&r, NOW + 10, &Hit::Disabled, &n, None),
            Err(Error::ExpiredApiKey)
        );
        assert_eq!(
            decide_key(&r, NOW, &Hit::Revoked, &n, None),
            Err(Error::RevokedApiKey)
        );
        assert_eq!(Error::DisabledApiKey.status(), 401);
    }

    #[test]
    fn row_ip_not_allowed_before_workspace() {
        let mut r = record(&["ws2"], &["jobs:run"], None);
        r.policy.allowed_ips = Some(vec!["192.0.2.0/24".into(), "2001:db8::/48".into()]);
        let n = need_of("GET", JOBS);
        for outside in [
            None,
            ip("198.51.100.1"),
            ip("192.0.3.0"),
            ip("2001:db8:1::1"),
        ] {
            assert_eq!(
                decide_key(&r, NOW, &counted(false), &n, outside),
                Err(Error::IpNotAllowed),
                "{outside:?}"
            );
            assert_eq!(authorize(&r, &n, outside), Err(Error::IpNotAllowed));
        }
        // Inside, the next row speaks (the workspace), at both edges and over IPv6 and
        // IPv4-mapped IPv6.
        for inside in [
            ip("192.0.2.0"),
            ip("192.0.2.255"),
            ip("::ffff:192.0.2.1"),
            ip("2001:db8:0:ffff::1"),
        ] {
            assert_eq!(
                decide_key(&r, NOW, &counted(false), &n, inside),
                Err(Error::WorkspaceForbidden),
                "{inside:?}"
            );
        }
        // Without allowed_ips any address (or none) passes the row.
        let open = record(&["ws1"], &["jobs:read"], None);
        assert_eq!(decide_key(&open, NOW, &counted(true), &n, None), Ok(()));
    }

    #[test]
    fn row_quota_exceeded_last() {
        let run = |allowed| RunVerdict {
            allowed,
            used: 3,
            retry_after_secs: 42,
            exhausted: None,
            threshold: None,
            start: 0,
        };
        assert_eq!(quota(None), Ok(()));
        assert_eq!(quota(Some(&run(true))), Ok(()));
        let e = quota(Some(&run(false))).unwrap_err();
        assert_eq!(e, Error::QuotaExceeded { retry_after: 42 });
        assert_eq!((e.status(), e.retry_after()), (429, Some(42)));
        // After every other row: a rate-limited or forbidden trigger is refused for that, not
        // for its quota.
        let r = record(&["ws1"], &["jobs:run"], None);
        let n = need_of("POST", "/developers/workspaces/ws1/jobs/j/run/");
        let spent = run(false);
        assert_eq!(
            decide_run(&r, NOW, &counted(true), &n, None, Some(&spent)),
            Err(Error::QuotaExceeded { retry_after: 42 })
        );
        assert!(matches!(
            decide_run(&r, NOW, &counted(false), &n, None, Some(&spent)),
            Err(Error::RateLimited { .. })
        ));
        let elsewhere = need_of("POST", "/developers/workspaces/ws2/jobs/j/run/");
        assert_eq!(
            decide_run(&r, NOW, &counted(true), &elsewhere, None, Some(&spent)),
            Err(Error::WorkspaceForbidden)
        );
        assert_eq!(
            decide_run(&r, NOW, &counted(true), &n, None, Some(&run(true))),
            Ok(())
        );
    }

    #[test]
    fn row_workspace_forbidden_before_permission_and_rate_limit() {
        let r = record(&["ws2"], &["secrets:read"], None);
        let n = need_of("GET", JOBS);
        assert_eq!(
            decide_key(&r, NOW, &counted(false), &n, None),
            Err(Error::WorkspaceForbidden)
        );
        assert_eq!(authorize(&r, &n, None), Err(Error::WorkspaceForbidden));
    }

    #[test]
    fn row_permission_denied_before_rate_limit() {
        let r = record(&["ws1"], &["jobs:run"], None);
        let n = need_of("GET", JOBS);
        assert!(matches!(
            decide_key(&r, NOW, &counted(false), &n, None),
            Err(Error::PermissionDenied(_))
        ));
        let n = need_of("POST", "/v1/api-keys");
        assert_eq!(
            decide_key(&r, NOW, &counted(true), &n, None),
            Err(Error::PermissionDenied(
                "This route needs the api_keys:write permission."
            ))
        );
    }

    #[test]
    fn row_rate_limited_last() {
        let r = record(&["ws1"], &["jobs:read"], None);
        let n = need_of("GET", JOBS);
        assert_eq!(
            decide_key(&r, NOW, &counted(false), &n, None),
            Err(Error::RateLimited { retry_after: 12 })
        );
        assert_eq!(decide_key(&r, NOW, &counted(true), &n, None), Ok(()));
        // `/v1/me` needs no permission but is still counted and limited.
        let me = need_of("GET", "/v1/me");
        assert_eq!(
            decide_key(&r, NOW, &counted(false), &me, None),
            Err(Error::RateLimited { retry_after: 12 })
        );
    }

    #[test]
    fn wildcards_cover_every_workspace_and_permission() {
        let r = record(&["*"], &["*"], None);
        let n = need_of("DELETE", "/developers/workspaces/any/secrets/s1");
        assert_eq!(decide_key(&r, NOW, &counted(true), &n, None), Ok(()));
    }

    #[test]
    fn a_refusal_found_before_the_count_yields_to_earlier_rows() {
        let r = record(&["ws1"], &["jobs:run"], None);
        let n = need_of("POST", "/developers/workspaces/ws1/jobs/j/run/");
        // Over the limit: 429 wins over a body problem (its row comes later)...
        assert_eq!(
            refuse_after_count(&r, NOW, &counted(false), &n, None, Error::PayloadTooLarge),
            Error::RateLimited { retry_after: 12 }
        );
        // ...and the body problem stands when the count allows the request.
        assert_eq!(
            refuse_after_count(&r, NOW, &counted(true), &n, None, Error::PayloadTooLarge),
            Error::PayloadTooLarge
        );
        // A workspace refusal stands even over the limit (it comes first).
        let other = need_of("POST", "/developers/workspaces/ws2/jobs/j/run/");
        assert_eq!(
            refuse_after_count(
                &r,
                NOW,
                &counted(false),
                &other,
                None,
                Error::WorkspaceForbidden
            ),
            Error::WorkspaceForbidden
        );
    }

    #[test]
    fn rule_admin_listings_name_a_user_and_keys_list_their_own() {
        let own = record(&["*"], &["api_keys:read"], None);
        let key = Caller::Key(&own);
        assert!(matches!(
            list_user(&Caller::Admin, None),
            Err(Error::Validation(_))
        ));
        assert_eq!(list_user(&Caller::Admin, Some("v".into())), Ok("v".into()));
        assert_eq!(list_user(&key, None), Ok("u".into()));
        assert_eq!(list_user(&key, Some("u".into())), Ok("u".into()));
        assert!(matches!(
            list_user(&key, Some("v".into())),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn rule_another_users_key_is_not_found() {
        let own = record(&["*"], &["*"], None);
        let key = Caller::Key(&own);
        let mut theirs = record(&["*"], &["*"], None);
        theirs.user_id = "v".into();
        assert_eq!(target(&key, Some(theirs.clone())), Err(Error::NotFound));
        assert_eq!(target(&key, None), Err(Error::NotFound));
        assert_eq!(target(&Caller::Admin, Some(theirs.clone())), Ok(theirs));
    }

    #[test]
    fn rule_a_dead_key_cannot_roll_or_change() {
        let live = record(&["*"], &["*"], Some(NOW + 100));
        assert_eq!(live_target(&live, false, None, NOW, "rolled"), Ok(()));
        assert!(live_target(&live, false, None, NOW + 100, "rolled").is_err());
        assert!(
            live_target(&live, false, Some(NOW + 5), NOW + 5, "rolled").is_err(),
            "the object's shortened expiry counts"
        );
        assert!(
            live_target(&live, true, None, NOW, "rolled").is_err(),
            "the object's revocation counts, whatever a stale record says"
        );
        let mut revoked = live.clone();
        revoked.revoked_at = Some(format_time(NOW));
        assert!(matches!(
            live_target(&revoked, false, None, NOW, "rolled"),
            Err(Error::Validation(_))
        ));
        assert!(live_target(&live, false, None, NOW, "changed").is_ok());
        assert!(live_target(&revoked, false, None, NOW, "changed").is_err());
        assert!(live_target(&live, true, None, NOW, "changed").is_err());
        assert!(live_target(&live, false, Some(NOW), NOW, "changed").is_err());
    }

    #[test]
    fn rule_a_roll_copies_every_attribute_and_the_earliest_expiry() {
        let old = record(&["a"], &["jobs:read"], Some(NOW + 100));
        let new = rolled(&old, Some(NOW + 50));
        assert_eq!(new.user_id, old.user_id);
        assert_eq!(new.workspaces, old.workspaces);
        assert_eq!(new.permissions, old.permissions);
        assert_eq!(new.rate_limit, old.rate_limit);
        assert_eq!(new.expires_at, Some(NOW + 50));
        assert_eq!(new.policy, old.policy);
        assert_eq!(rolled(&old, None).expires_at, Some(NOW + 100));
    }

    #[test]
    fn rule_a_roll_goes_on_counting_a_quota_where_the_old_key_counted() {
        // Finding 4 of the security review: a roll must not start the count at 0.
        let mut old = record(&["a"], &["jobs:run"], None);
        old.policy.quota = Some(crate::core::quota::Quota {
            runs: 1,
            period: crate::core::quota::Period::Day,
        });
        let new = rolled(&old, None);
        assert_eq!(new.policy.quota_counter.as_deref(), Some(old.id.as_str()));
        // And the roll of a roll, where the first key counted.
        let mut second = old.clone();
        second.id = "key_second".into();
        second.policy.quota_counter = Some(old.id.clone());
        assert_eq!(
            rolled(&second, None).policy.quota_counter.as_deref(),
            Some(old.id.as_str())
        );
        // No quota, no counter.
        old.policy.quota = None;
        assert_eq!(rolled(&old, None).policy.quota_counter, None);
    }

    fn minted() -> NewKey {
        NewKey {
            rate_limit: RateLimit {
                requests: 10,
                window_seconds: 60,
            },
            ..new_key(&["a"], &["jobs:read"], None)
        }
    }

    fn creator() -> KeyRecord {
        let mut c = record(
            &["a", "b"],
            &["api_keys:write", "jobs:read"],
            Some(NOW + 1000),
        );
        c.email = Some("alice@example.com".into());
        c.rate_limit = RateLimit {
            requests: 10,
            window_seconds: 60,
        };
        c
    }

    #[test]
    fn rule_no_escalation_workspaces_permissions_expiry_user() {
        let c = creator();
        let mut ok = minted();
        assert_eq!(restrict_to_creator(&c, None, &mut ok), Ok(()));
        assert_eq!(ok.expires_at, Some(NOW + 1000), "expiry is inherited");
        assert_eq!(ok.email.as_deref(), Some("alice@example.com"));

        let mut other_user = minted();
        other_user.user_id = "v".into();
        assert!(restrict_to_creator(&c, None, &mut other_user).is_err());
        let mut wider_ws = minted();
        wider_ws.workspaces = vec!["*".into()];
        assert!(restrict_to_creator(&c, None, &mut wider_ws).is_err());
        let mut wider_perm = minted();
        wider_perm.permissions = vec!["jobs:run".into()];
        assert!(restrict_to_creator(&c, None, &mut wider_perm).is_err());
        let mut later = minted();
        later.expires_at = Some(NOW + 1001);
        assert!(restrict_to_creator(&c, None, &mut later).is_err());
    }

    #[test]
    fn rule_no_escalation_uses_the_objects_expiry() {
        // After a roll with grace the creator's object knows an earlier expiry than its
        // (possibly cached) record: a child may not outlive that.
        let c = creator();
        let mut child = minted();
        child.expires_at = Some(NOW + 500);
        assert!(restrict_to_creator(&c, Some(NOW + 100), &mut child).is_err());
        let mut inherit = minted();
        assert_eq!(
            restrict_to_creator(&c, Some(NOW + 100), &mut inherit),
            Ok(())
        );
        assert_eq!(inherit.expires_at, Some(NOW + 100));
    }

    #[test]
    fn rule_no_escalation_email() {
        let c = creator();
        let mut other = minted();
        other.email = Some("cfo@example.com".into());
        assert!(matches!(
            restrict_to_creator(&c, None, &mut other),
            Err(Error::Validation(f)) if f.contains_key("email")
        ));
        let mut same = minted();
        same.email = Some("alice@example.com".into());
        assert_eq!(restrict_to_creator(&c, None, &mut same), Ok(()));
    }

    #[test]
    fn rule_no_escalation_rate_limit() {
        let c = creator();
        let mut faster = minted();
        faster.rate_limit = RateLimit {
            requests: 1_000_000,
            window_seconds: 1,
        };
        assert!(restrict_to_creator(&c, None, &mut faster).is_err());
        let mut burstier = minted();
        burstier.rate_limit = RateLimit {
            requests: 20,
            window_seconds: 3600,
        };
        assert!(restrict_to_creator(&c, None, &mut burstier).is_err());
        // An omitted rate limit defaults to the configured one, capped to the creator's.
        let key = Caller::Key(&c);
        assert_eq!(default_rate(&key, DEFAULT), c.rate_limit);
        assert_eq!(default_rate(&Caller::Admin, DEFAULT), DEFAULT);
        let slow = RateLimit {
            requests: 1,
            window_seconds: 60,
        };
        assert_eq!(default_rate(&key, slow), slow);
    }

    #[test]
    fn only_the_admin_opens_settings_sessions() {
        let n = need_of("POST", "/v1/settings-sessions");
        assert_eq!(credential(&n, true), Ok(()));
        assert!(matches!(
            credential(&n, false),
            Err(Error::PermissionDenied(_))
        ));
    }

    fn session_key() -> NewKey {
        let mut k = minted();
        k.user_id = "alice".into();
        k.workspaces = vec!["ws1".into()];
        k.permissions = vec!["jobs:read".into()];
        k
    }

    #[test]
    fn rule_session_lists_and_targets_its_own_user_only() {
        let s = crate::core::session::tests::session();
        let caller = Caller::Session(&s);
        assert_eq!(list_user(&caller, None), Ok("alice".into()));
        assert!(matches!(
            list_user(&caller, Some("bob".into())),
            Err(Error::PermissionDenied(_))
        ));
        let mut theirs = record(&["*"], &["*"], None);
        theirs.user_id = "bob".into();
        assert_eq!(target(&caller, Some(theirs)), Err(Error::NotFound));
        let mut own = record(&["*"], &["*"], None);
        own.user_id = "alice".into();
        assert_eq!(target(&caller, Some(own.clone())), Ok(own));
        // A session is no key: no key rule (restrict_to_creator) applies to it by mistake.
        assert_eq!(caller.key(), None);
    }

    #[test]
    fn rule_session_ceiling_workspaces_permissions_rate() {
        let s = crate::core::session::tests::session();
        let now = crate::core::session::tests::NOW;
        let mut ok = session_key();
        assert_eq!(restrict_to_session(&s, now, DEFAULT, &mut ok), Ok(()));
        let mut wider_ws = session_key();
        wider_ws.workspaces = vec!["ws3".into()];
        assert!(matches!(
            restrict_to_session(&s, now, DEFAULT, &mut wider_ws),
            Err(Error::PermissionDenied(_))
        ));
        let mut star = session_key();
        star.workspaces = vec!["*".into()];
        assert!(restrict_to_session(&s, now, DEFAULT, &mut star).is_err());
        let mut wider_perm = session_key();
        wider_perm.permissions = vec!["secrets:read".into()];
        assert!(matches!(
            restrict_to_session(&s, now, DEFAULT, &mut wider_perm),
            Err(Error::PermissionDenied(_))
        ));
        let mut faster = session_key();
        faster.rate_limit = RateLimit {
            requests: DEFAULT.requests + 1,
            window_seconds: DEFAULT.window_seconds,
        };
        assert!(matches!(
            restrict_to_session(&s, now, DEFAULT, &mut faster),
            Err(Error::PermissionDenied(_))
        ));
        // A wildcard ceiling grants anything.
        let mut all = s.clone();
        all.workspaces = vec!["*".into()];
        all.permissions = vec!["*".into()];
        let mut anything = session_key();
        anything.workspaces = vec!["*".into()];
        anything.permissions = vec!["*".into()];
        assert_eq!(
            restrict_to_session(&all, now, DEFAULT, &mut anything),
            Ok(())
        );
    }

    #[test]
    fn rule_session_expiry_is_bounded_and_defaulted() {
        let s = crate::core::session::tests::session();
        let now = crate::core::session::tests::NOW;
        let limit = now + 30 * 86_400;
        let mut omitted = session_key();
        assert_eq!(restrict_to_session(&s, now, DEFAULT, &mut omitted), Ok(()));
        assert_eq!(omitted.expires_at, Some(limit), "defaulted to the maximum");
        let mut at_limit = session_key();
        at_limit.expires_at = Some(limit);
        assert_eq!(restrict_to_session(&s, now, DEFAULT, &mut at_limit), Ok(()));
        let mut later = session_key();
        later.expires_at = Some(limit + 1);
        assert!(matches!(
            restrict_to_session(&s, now, DEFAULT, &mut later),
            Err(Error::PermissionDenied(_))
        ));
        // Without max_expiry_days, no bound and no default.
        let mut unbounded = s.clone();
        unbounded.max_expiry_days = None;
        let mut never = session_key();
        assert_eq!(
            restrict_to_session(&unbounded, now, DEFAULT, &mut never),
            Ok(())
        );
        assert_eq!(never.expires_at, None);
    }

    #[test]
    fn rule_session_user_and_email_are_the_sessions() {
        let s = crate::core::session::tests::session();
        let now = crate::core::session::tests::NOW;
        let mut filled = session_key();
        assert_eq!(restrict_to_session(&s, now, DEFAULT, &mut filled), Ok(()));
        assert_eq!(filled.email.as_deref(), Some("alice@example.com"));
        let mut other_user = session_key();
        other_user.user_id = "bob".into();
        assert!(matches!(
            restrict_to_session(&s, now, DEFAULT, &mut other_user),
            Err(Error::Validation(f)) if f.contains_key("user_id")
        ));
        let mut other_email = session_key();
        other_email.email = Some("cfo@example.com".into());
        assert!(matches!(
            restrict_to_session(&s, now, DEFAULT, &mut other_email),
            Err(Error::Validation(f)) if f.contains_key("email")
        ));
    }
}
