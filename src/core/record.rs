//! The stored key model: what KV holds per key, its public summary, and the changes a roll
//! makes to the old key (docs/CONTRACT.md sections 1 and 4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::error::Error;
use crate::core::limits::{Quota, RateLimit};
use crate::core::permission::{covers, grants};
use crate::core::time::{format_time, parse_time};

/// KV entries outlive `expires_at` by this much, then leave storage by themselves.
pub const KV_EXPIRY_AFTER_SECS: i64 = 30 * 24 * 3600;
/// The latest KV expiration accepted: Workers KV under `wrangler dev` refuses any past 2^31 - 1
/// seconds (2038-01-19), failing the write (a key with a later expiry could be neither created
/// nor changed). Entries that would expire later get no KV expiration: they stay until the key
/// is revoked (its tombstone then has one) or deleted.
pub const MAX_KV_EXPIRATION: i64 = i32::MAX as i64;

/// What KV holds per key (under its hash). Never holds the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub name: String,
    pub hint: String,
    pub workspaces: Vec<String>,
    pub permissions: Vec<String>,
    pub rate_limit: RateLimit,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The policies of docs/CONTRACT.md section 13; absent from records written before them,
    /// and from records of keys without any. Nested, not flattened: serde's flatten buffers
    /// the whole record on every read (slower on the hot path, and larger wasm).
    #[serde(default, skip_serializing_if = "Policy::is_none")]
    pub policy: Policy,
    /// Set on a key imported from the platform (docs/CONTRACT.md section 15): the hash it was
    /// stored with there. Such a record lives under `key:drf.<prefix>`, not under a SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
}

/// What an imported key's record keeps of the platform's row (docs/CONTRACT.md section 15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// `hashed_key` as the platform stored it (`sha512$$...`, `pbkdf2_sha256$...`).
    pub hashed_key: String,
    /// The platform's own id of the key, shown in summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// A key's policies (docs/CONTRACT.md section 13). Every field defaults, so records stored
/// before policies existed still load, as keys without any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Canonical CIDR blocks the key may be used from; `None`: any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Suspended. The key's object holds the flag that requests obey; this copy is for
    /// summaries and the rules of `PATCH`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Who disabled it: `admin`, or the id of the key that did (only the admin lifts an
    /// admin's suspension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_by: Option<String>,
    /// The user's own JSON object (at most 1 KiB); returned in summaries, never forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// The key whose object counts this key's job runs, when not its own: the key with a quota
    /// that minted it, or the key it was rolled from (docs/CONTRACT.md section 13). A quota so
    /// bounds a key and everything it mints or rolls into: one count for the family, against
    /// which each member's own quota applies. Never set from a request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_counter: Option<String>,
}

impl Policy {
    /// No policy set (the record then stores none).
    pub fn is_none(&self) -> bool {
        *self == Policy::default()
    }
}

/// `disabled_by` of a suspension by the admin.
pub const DISABLED_BY_ADMIN: &str = "admin";
/// `disabled_by` of a suspension made in a settings session (section 11).
pub const DISABLED_BY_SESSION: &str = "settings_session";

/// The public view of a key (never the key or its hash).
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub id: &'a str,
    pub hint: &'a str,
    pub name: &'a str,
    pub user_id: &'a str,
    pub email: Option<&'a str>,
    pub workspaces: &'a [String],
    pub permissions: &'a [String],
    pub rate_limit: RateLimit,
    pub created_at: &'a str,
    pub expires_at: Option<&'a str>,
    pub revoked_at: Option<&'a str>,
    pub last_used_at: Option<&'a str>,
    pub allowed_ips: Option<&'a [String]>,
    pub quota: Option<Quota>,
    /// Runs counted in the quota's current period (from the key's object); `None` without a
    /// quota.
    pub quota_used: Option<u32>,
    pub disabled: bool,
    pub metadata: Option<&'a Map<String, Value>>,
    /// Imported from the platform (section 15); absent for keys keygate issued.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<&'a str>,
}

/// The KV expiration (unix seconds) of entries for a key whose use ends at `end` (its expiry
/// or revocation): [`KV_EXPIRY_AFTER_SECS`] later; `None` past what KV accepts.
pub fn kv_expiration_after(end: i64) -> Option<u64> {
    Some(end.saturating_add(KV_EXPIRY_AFTER_SECS).max(0))
        .filter(|t| *t <= MAX_KV_EXPIRATION)
        .map(|t| t as u64)
}

impl KeyRecord {
    pub fn summary<'a>(&'a self, last_used_at: Option<&'a str>) -> Summary<'a> {
        Summary {
            id: &self.id,
            hint: &self.hint,
            name: &self.name,
            user_id: &self.user_id,
            email: self.email.as_deref(),
            workspaces: &self.workspaces,
            permissions: &self.permissions,
            rate_limit: self.rate_limit,
            created_at: &self.created_at,
            expires_at: self.expires_at.as_deref(),
            revoked_at: self.revoked_at.as_deref(),
            last_used_at,
            allowed_ips: self.policy.allowed_ips.as_deref(),
            quota: self.policy.quota,
            quota_used: self.policy.quota.map(|_| 0),
            disabled: self.policy.disabled,
            metadata: self.policy.metadata.as_ref(),
            imported: self.imported.is_some(),
            external_id: self
                .imported
                .as_ref()
                .and_then(|i| i.external_id.as_deref()),
        }
    }

    /// The id of the key whose object counts this key's runs ([`Policy::quota_counter`]).
    pub fn quota_counter(&self) -> &str {
        self.policy.quota_counter.as_deref().unwrap_or(&self.id)
    }

    pub fn expires_at_secs(&self) -> Option<i64> {
        self.expires_at.as_deref().and_then(parse_time)
    }

    /// The KV expiration (unix seconds) for this record's entries, if it expires.
    /// The end is the earlier of `expires_at` and `revoked_at`: a revoked key's tombstone
    /// leaves storage too (the key's object keeps refusing it; after that it is unknown).
    pub fn kv_expiration(&self) -> Option<u64> {
        // An imported key's record stays after its end (section 15): importing the same dump
        // again must find it (and answer `exists`), never revive it under a new id.
        if self.imported.is_some() {
            return None;
        }
        let revoked = self.revoked_at.as_deref().and_then(parse_time);
        let end = match (self.expires_at_secs(), revoked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        end.and_then(kv_expiration_after)
    }

    /// Whether the key is live at `now` (not revoked, not expired): the one definition, which
    /// the user index's metadata ([`IndexMeta::is_live`]) reproduces for counting keys.
    pub fn is_live(&self, now: i64) -> bool {
        self.check_usable(now).is_ok()
    }

    /// Revoked, then expired (exact to the second), in the order of docs/CONTRACT.md section 2.
    pub fn check_usable(&self, now: i64) -> Result<(), Error> {
        if self.revoked_at.is_some() {
            return Err(Error::RevokedApiKey);
        }
        match self.expires_at.as_deref() {
            // A record whose expiry can't be read is treated as expired: fail closed.
            Some(s) => match parse_time(s) {
                Some(t) if now < t => Ok(()),
                _ => Err(Error::ExpiredApiKey),
            },
            None => Ok(()),
        }
    }

    pub fn grants(&self, permission: &str) -> bool {
        grants(&self.permissions, permission)
    }

    pub fn covers_workspace(&self, ws: &str) -> bool {
        covers(&self.workspaces, ws)
    }
}

/// Metadata stored beside each KV record, readable in listings without a second read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyMeta {
    pub id: String,
    pub expires_at: Option<String>,
}

/// A validated create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub user_id: String,
    pub email: Option<String>,
    pub name: String,
    pub workspaces: Vec<String>,
    pub permissions: Vec<String>,
    pub expires_at: Option<i64>,
    pub rate_limit: RateLimit,
    pub policy: Policy,
}

impl NewKey {
    /// The record to store for this request; the id, hint and time come from the caller.
    pub fn into_record(self, id: String, hint: String, now: i64) -> KeyRecord {
        KeyRecord {
            id,
            user_id: self.user_id,
            email: self.email,
            name: self.name,
            hint,
            workspaces: self.workspaces,
            permissions: self.permissions,
            rate_limit: self.rate_limit,
            created_at: format_time(now),
            expires_at: self.expires_at.map(format_time),
            revoked_at: None,
            policy: self.policy,
            imported: None,
        }
    }
}

/// The old key after a roll: revoked now (grace 0) or expiring at the end of the grace period
/// (never later than it would have anyway).
pub fn apply_roll_to_old(old: &mut KeyRecord, grace: u64, now: i64) {
    if grace == 0 {
        old.revoked_at = Some(format_time(now));
        return;
    }
    let end = now + grace as i64;
    let new_expiry = match old.expires_at_secs() {
        Some(t) if t < end => t,
        _ => end,
    };
    old.expires_at = Some(format_time(new_expiry));
}

/// Metadata of a user-index entry (`u/<user id>/<key id>` in KV): enough to count a user's
/// live keys from one list call, without reading each record. Entries written before `r`/`e`
/// existed read as live (counted, never under-counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMeta {
    /// The record's hash.
    pub h: String,
    /// Revoked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub r: bool,
    /// `expires_at`, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<i64>,
}

impl IndexMeta {
    pub fn of(hash: &str, record: &KeyRecord) -> Self {
        IndexMeta {
            h: hash.to_owned(),
            r: record.revoked_at.is_some(),
            // An expiry that cannot be read makes the record expired ([`KeyRecord::is_live`]):
            // the index says so too (the earliest moment), never "no expiry".
            e: record
                .expires_at
                .as_ref()
                .map(|_| record.expires_at_secs().unwrap_or(i64::MIN)),
        }
    }

    /// [`KeyRecord::is_live`] of the record it was written for.
    pub fn is_live(&self, now: i64) -> bool {
        !self.r && self.e.is_none_or(|t| now < t)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn kv_keeps_an_entry_thirty_days_past_its_end() {
        assert_eq!(KV_EXPIRY_AFTER_SECS, 2_592_000);
    }

    #[test]
    fn a_roll_with_grace_shortens_a_later_expiry_and_keeps_an_earlier_one() {
        let mut later = record(&["ws1"], &["*"], Some(NOW + 10_000));
        apply_roll_to_old(&mut later, 60, NOW);
        assert_eq!(later.expires_at_secs(), Some(NOW + 60));
        let mut earlier = record(&["ws1"], &["*"], Some(NOW + 30));
        apply_roll_to_old(&mut earlier, 60, NOW);
        assert_eq!(earlier.expires_at_secs(), Some(NOW + 30));
    }

    pub const NOW: i64 = 1_800_000_000;
    pub const DEFAULT: RateLimit = RateLimit {
        requests: 600,
        window_seconds: 60,
    };

    /// A new key of user `u`, named `n`, with the default rate and no policies: the unit tests'
    /// one fixture for keys (as a record: [`record`]).
    pub fn new_key(workspaces: &[&str], permissions: &[&str], expires: Option<i64>) -> NewKey {
        NewKey {
            user_id: "u".into(),
            email: None,
            name: "n".into(),
            workspaces: workspaces.iter().map(|s| s.to_string()).collect(),
            permissions: permissions.iter().map(|s| s.to_string()).collect(),
            expires_at: expires,
            rate_limit: DEFAULT,
            policy: Policy::default(),
        }
    }

    /// A record of user `u` for the unit tests of this module and of [`crate::core::access`].
    pub fn record(workspaces: &[&str], permissions: &[&str], expires: Option<i64>) -> KeyRecord {
        new_key(workspaces, permissions, expires).into_record(
            "key_0000000000000000".into(),
            "kg_000000".into(),
            NOW,
        )
    }

    #[test]
    fn the_index_counts_a_key_live_exactly_when_its_record_is() {
        let mut r = record(&["ws1"], &["*"], Some(NOW + 10));
        for now in [NOW, NOW + 9, NOW + 10, NOW + 11] {
            assert_eq!(
                IndexMeta::of("h", &r).is_live(now),
                r.is_live(now),
                "at {now}"
            );
        }
        r.revoked_at = Some("2026-01-01T00:00:00Z".into());
        assert!(!IndexMeta::of("h", &r).is_live(NOW) && !r.is_live(NOW));
        let open = record(&["ws1"], &["*"], None);
        assert!(IndexMeta::of("h", &open).is_live(i64::MAX - 1) && open.is_live(NOW));
        let mut unreadable = record(&["ws1"], &["*"], None);
        unreadable.expires_at = Some("not a time".into());
        assert!(!unreadable.is_live(NOW));
        assert!(
            !IndexMeta::of("h", &unreadable).is_live(NOW),
            "unreadable: expired in both"
        );
        let old: IndexMeta = serde_json::from_str(r#"{"h":"x"}"#).unwrap();
        assert!(old.is_live(NOW), "an entry from before r/e reads as live");
    }

    #[test]
    fn usability_order_and_exact_expiry() {
        let mut r = record(&["*"], &["*"], Some(NOW + 100));
        assert_eq!(r.check_usable(NOW + 99), Ok(()));
        assert_eq!(r.check_usable(NOW + 100), Err(Error::ExpiredApiKey));
        r.revoked_at = Some(format_time(NOW));
        assert_eq!(r.check_usable(NOW + 100), Err(Error::RevokedApiKey));
        assert_eq!(
            r.kv_expiration(),
            Some((NOW + KV_EXPIRY_AFTER_SECS) as u64),
            "revoked at NOW, before its expiry"
        );
        let mut never = record(&["*"], &["*"], None);
        assert_eq!(never.kv_expiration(), None);
        never.revoked_at = Some(format_time(NOW));
        assert_eq!(
            never.kv_expiration(),
            Some((NOW + KV_EXPIRY_AFTER_SECS) as u64),
            "a revoked key's tombstone leaves storage too"
        );
    }

    #[test]
    fn records_stored_before_policies_still_load() {
        let old = r#"{"id":"key_0000000000000000","user_id":"u","email":null,"name":"n",
            "hint":"kg_000000","workspaces":["*"],"permissions":["*"],
            "rate_limit":{"requests":600,"window_seconds":60},
            "created_at":"2027-01-15T08:00:00Z","expires_at":null,"revoked_at":null}"#;
        let r: KeyRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r.policy, Policy::default());
        // And a record without policies is written as before (no new fields).
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("policy"));
        let mut p = r.clone();
        p.policy.disabled = true;
        p.policy.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
        let back: KeyRecord = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn expirations_past_2038_are_not_given_to_kv() {
        let fits = MAX_KV_EXPIRATION - KV_EXPIRY_AFTER_SECS;
        let r = record(&["*"], &["*"], Some(fits));
        assert_eq!(r.kv_expiration(), Some(MAX_KV_EXPIRATION as u64));
        let r = record(&["*"], &["*"], Some(fits + 1));
        assert_eq!(r.kv_expiration(), None);
        let mut far = record(&["*"], &["*"], Some(253_402_300_799)); // 9999-12-31T23:59:59Z
        assert_eq!(far.kv_expiration(), None);
        // Revoked now, its tombstone leaves storage in 30 days as usual.
        far.revoked_at = Some(format_time(NOW));
        assert_eq!(
            far.kv_expiration(),
            Some((NOW + KV_EXPIRY_AFTER_SECS) as u64)
        );
    }

    #[test]
    fn wildcard_permissions_and_workspaces() {
        let r = record(&["*"], &["*"], None);
        assert!(r.grants("secrets:write"));
        assert!(r.covers_workspace("anything"));
        let r = record(&["a"], &["jobs:read"], None);
        assert!(r.grants("jobs:read"));
        assert!(!r.grants("jobs:write"));
        assert!(r.covers_workspace("a"));
        assert!(!r.covers_workspace("b"));
    }

    #[test]
    fn roll_changes_to_the_old_key() {
        let mut old = record(&["*"], &["*"], None);
        apply_roll_to_old(&mut old, 0, NOW);
        assert_eq!(old.check_usable(NOW), Err(Error::RevokedApiKey));
        let mut old = record(&["*"], &["*"], None);
        apply_roll_to_old(&mut old, 30, NOW);
        assert_eq!(old.check_usable(NOW + 29), Ok(()));
        assert_eq!(old.check_usable(NOW + 30), Err(Error::ExpiredApiKey));
        let mut old = record(&["*"], &["*"], Some(NOW + 10));
        apply_roll_to_old(&mut old, 3600, NOW);
        assert_eq!(old.expires_at_secs(), Some(NOW + 10));
    }
}
