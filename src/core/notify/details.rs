//! What each change's audit entry says in `details`, and its webhook event in `data` beside the
//! common fields (docs/CONTRACT.md sections 12 and 14), built in one place for every kind of
//! change: never a key, a hash or a secret, only a key's public fields and the change's own.

use serde_json::{json, Map, Value};

use crate::core::pool::Pool;
use crate::core::record::KeyRecord;
use crate::core::session::Session;
use crate::core::time::format_time;

/// A key created (`key.created`): its public fields and policies.
pub fn created(record: &KeyRecord) -> Value {
    json!({
        "name": record.name,
        "hint": record.hint,
        "workspaces": record.workspaces,
        "permissions": record.permissions,
        "expires_at": record.expires_at,
        "allowed_ips": record.policy.allowed_ips,
        "quota": record.policy.quota,
        "disabled": record.policy.disabled,
    })
}

/// A key imported (`key.imported`, published as `key.created` with `data.imported`, section
/// 15): its public fields, when it was made on the platform, and the platform's id of it.
pub fn imported(record: &KeyRecord) -> Value {
    let imported = record.imported.as_ref();
    json!({
        "name": record.name,
        "hint": record.hint,
        "workspaces": record.workspaces,
        "permissions": record.permissions,
        "expires_at": record.expires_at,
        "created_at": record.created_at,
        "external_id": imported.and_then(|i| i.external_id.as_deref()),
        "imported": true,
    })
}

/// A key rolled (`key.rolled`): the new key's id, the old key's expiry or revocation, and the
/// policies the new key got other than the old one's (`changed`, empty when copied).
pub fn rolled(old: &KeyRecord, new_key_id: &str, changed: Map<String, Value>) -> Value {
    json!({
        "new_key_id": new_key_id,
        "old_expires_at": old.expires_at,
        "old_revoked_at": old.revoked_at,
        "changed": changed,
    })
}

/// A key revoked by a leak report (`key.leaked`): where it was found and by whom.
pub fn leaked(source: &str, url: &str) -> Value {
    json!({"source": source, "url": url})
}

/// A key about to expire or expired (`key.expiring`, `key.expired`).
pub fn expiry(expires_at: i64) -> Value {
    json!({"expires_at": format_time(expires_at)})
}

/// A settings session issued or opened (`settings_session.*`): its ceiling, never its secrets.
pub fn session(s: &Session) -> Value {
    json!({
        "expires_at": format_time(s.expires_at),
        "workspaces": s.workspaces,
        "permissions": s.permissions,
        "max_expiry_days": s.max_expiry_days,
    })
}

/// A pool defined, replaced or deleted (`pool.*`, section 17): its name and definition.
pub fn pool(p: &Pool) -> Value {
    json!({
        "pool": p.pool_ref(),
        "rate_limit": p.rate_limit,
        "quota": p.quota,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::tests::record;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        k
    }

    #[test]
    fn a_keys_details_hold_its_public_fields_and_never_a_secret() {
        let r = record(&["ws1"], &["jobs:read"], Some(2_000_000_000));
        let v = created(&r);
        assert_eq!(
            keys(&v),
            [
                "allowed_ips",
                "disabled",
                "expires_at",
                "hint",
                "name",
                "permissions",
                "quota",
                "workspaces"
            ]
        );
        let text = v.to_string();
        assert!(
            !text.contains(&r.id) || text.contains(&r.hint),
            "no key id needed"
        );
        assert_eq!(imported(&r)["imported"], true);
        assert_eq!(keys(&imported(&r)).len(), 8);
    }

    #[test]
    fn a_roll_names_the_new_key_and_what_changed() {
        let r = record(&["ws1"], &["jobs:read"], None);
        let mut changed = Map::new();
        changed.insert("quota".into(), Value::Null);
        let v = rolled(&r, "key_new", changed);
        assert_eq!(v["new_key_id"], "key_new");
        assert_eq!(v["changed"]["quota"], Value::Null);
        assert_eq!(
            keys(&v),
            ["changed", "new_key_id", "old_expires_at", "old_revoked_at"]
        );
    }

    #[test]
    fn leaks_expiry_and_pools_say_what_the_contract_lists() {
        assert_eq!(keys(&leaked("github", "https://x")), ["source", "url"]);
        assert_eq!(expiry(0)["expires_at"], "1970-01-01T00:00:00Z");
        let p = Pool {
            kind: crate::core::pool::PoolKind::User,
            id: "u1".into(),
            rate_limit: None,
            quota: None,
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert_eq!(pool(&p)["pool"], json!({"kind": "user", "id": "u1"}));
    }

    #[test]
    fn a_sessions_details_are_its_ceiling_never_its_secrets() {
        let s = crate::core::session::tests::session();
        let v = session(&s);
        assert_eq!(
            keys(&v),
            ["expires_at", "max_expiry_days", "permissions", "workspaces"]
        );
        assert_eq!(v["workspaces"], json!(["ws1", "ws2"]));
        assert_eq!(v["max_expiry_days"], 30);
    }
}
