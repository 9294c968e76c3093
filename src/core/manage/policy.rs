//! Key policies (docs/CONTRACT.md section 13): the fields `allowed_ips`, `quota`, `disabled`
//! and `metadata` as create and `PATCH` bodies give them, and the rule that a key never widens
//! another key (or itself) through `PATCH` nor mints a key wider than itself.
//!
//! Length: each field has its own validation and its own narrowing rule, and the last half of
//! the file is their unit tests.

use serde_json::{Map, Value};

use crate::core::cidr::{subset, Block};
use crate::core::error::{Error, FieldErrors};
use crate::core::fields::{parse_name, parse_object, push, MIN_EXPIRY_LEAD_SECS};
use crate::core::quota::{Quota, MAX_QUOTA_RUNS};
use crate::core::record::{KeyRecord, NewKey, Policy, DISABLED_BY_ADMIN};
use crate::core::time::{earliest, format_time, parse_time};

/// Most CIDR blocks in one `allowed_ips`.
pub const MAX_ALLOWED_IPS: usize = 32;
/// Largest `metadata`, as compact JSON: it rides in the KV record read on every request.
pub const MAX_METADATA_BYTES: usize = 1024;

/// The policy fields of a create body (and, with `name` and `expires_at`, of a `PATCH`).
pub const POLICY_FIELDS: [&str; 4] = ["allowed_ips", "quota", "disabled", "metadata"];
const PATCH_FIELDS: [&str; 6] = [
    "name",
    "expires_at",
    "allowed_ips",
    "quota",
    "disabled",
    "metadata",
];

fn parse_allowed_ips(v: &Value, errors: &mut FieldErrors) -> Option<Vec<String>> {
    const FIELD: &str = "allowed_ips";
    let Value::Array(items) = v else {
        push(errors, FIELD, "must be a list of CIDR blocks, or null");
        return None;
    };
    if items.is_empty() {
        push(errors, FIELD, "must not be empty (null allows any address)");
        return None;
    }
    if items.len() > MAX_ALLOWED_IPS {
        push(
            errors,
            FIELD,
            &format!("has more than {MAX_ALLOWED_IPS} entries"),
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str().and_then(Block::parse) {
            Some(block) => {
                let canonical = block.to_string();
                if !out.contains(&canonical) {
                    out.push(canonical);
                }
            }
            None => {
                push(
                    errors,
                    FIELD,
                    &format!(
                        "{} is not an IPv4 or IPv6 address or CIDR block",
                        serde_json::to_string(item).unwrap_or_default()
                    ),
                );
                return None;
            }
        }
    }
    Some(out)
}

pub(crate) fn parse_quota(v: &Value, errors: &mut FieldErrors) -> Option<Quota> {
    let rule = format!(
        "must be {{\"runs\": 1-{MAX_QUOTA_RUNS}, \"period\": \"day\" or \"month\"}}, or null"
    );
    match serde_json::from_value::<Quota>(v.clone()) {
        Ok(q) if (1..=MAX_QUOTA_RUNS).contains(&q.runs) => Some(q),
        _ => {
            push(errors, "quota", &rule);
            None
        }
    }
}

fn parse_metadata(v: &Value, errors: &mut FieldErrors) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) if serde_json::to_vec(m).map_or(0, |b| b.len()) <= MAX_METADATA_BYTES => {
            Some(m.clone())
        }
        Value::Object(_) => {
            push(
                errors,
                "metadata",
                &format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
            );
            None
        }
        _ => {
            push(errors, "metadata", "must be a JSON object, or null");
            None
        }
    }
}

fn parse_disabled(v: &Value, errors: &mut FieldErrors) -> Option<bool> {
    let b = v.as_bool();
    if b.is_none() {
        push(errors, "disabled", "must be true or false");
    }
    b
}

/// The policies of a create body (every field optional; `null` is absent). Problems go to
/// `errors` under their field.
pub fn parse_create_policy(map: &Map<String, Value>, errors: &mut FieldErrors) -> Policy {
    let present = |k: &str| map.get(k).filter(|v| !v.is_null());
    let disabled = present("disabled")
        .and_then(|v| parse_disabled(v, errors))
        .unwrap_or(false);
    Policy {
        allowed_ips: present("allowed_ips").and_then(|v| parse_allowed_ips(v, errors)),
        quota: present("quota").and_then(|v| parse_quota(v, errors)),
        disabled,
        // Set by the glue from the caller when `disabled` is true.
        disabled_by: None,
        metadata: present("metadata").and_then(|v| parse_metadata(v, errors)),
        // Set from the creator (or the rolled key), never from the body.
        quota_counter: None,
    }
}

/// A validated `PATCH` body. Outer `None`: the field was not sent (unchanged); inner `None`:
/// sent as `null` (removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub name: Option<String>,
    pub expires_at: Option<i64>,
    pub allowed_ips: Option<Option<Vec<String>>>,
    pub quota: Option<Option<Quota>>,
    pub disabled: Option<bool>,
    pub metadata: Option<Option<Map<String, Value>>>,
}

/// Validates a `PATCH` body: at least one field, no unknown ones, each by its rule. A past (or
/// too near) expiry and a removed expiry are validation errors.
pub fn parse_update(map: &Map<String, Value>, now: i64) -> Result<Update, Error> {
    let mut errors = FieldErrors::new();
    for k in map.keys() {
        if !PATCH_FIELDS.contains(&k.as_str()) {
            push(&mut errors, k, "unknown field");
        }
    }
    if map.is_empty() {
        push(
            &mut errors,
            "body",
            "must name at least one of name, expires_at, allowed_ips, quota, disabled, metadata",
        );
    }
    let u = parse_fields(map, now, &mut errors);
    if errors.is_empty() {
        Ok(u)
    } else {
        Err(Error::Validation(errors))
    }
}

/// Each field of `map` that a `PATCH` knows, by its rule; problems go to `errors` under their
/// field. Fields it does not know are left to the caller (a `PATCH` and a roll know different
/// sets).
pub fn parse_fields(map: &Map<String, Value>, now: i64, errors: &mut FieldErrors) -> Update {
    let mut u = Update::default();
    if let Some(v) = map.get("name") {
        u.name = parse_name(Some(v), errors);
    }
    match map.get("expires_at") {
        None => {}
        Some(Value::Null) => push(errors, "expires_at", "an expiry cannot be removed"),
        Some(v) => match v.as_str().and_then(parse_time) {
            Some(t) if t >= now + MIN_EXPIRY_LEAD_SECS => u.expires_at = Some(t),
            Some(_) => push(
                errors,
                "expires_at",
                &format!("must be at least {MIN_EXPIRY_LEAD_SECS} seconds in the future"),
            ),
            None => push(errors, "expires_at", "must be an RFC 3339 date-time"),
        },
    }
    let nullable = |k: &str| map.get(k).map(|v| (!v.is_null()).then_some(v));
    if let Some(v) = nullable("allowed_ips") {
        u.allowed_ips = Some(v.and_then(|v| parse_allowed_ips(v, errors)));
    }
    if let Some(v) = nullable("quota") {
        u.quota = Some(v.and_then(|v| parse_quota(v, errors)));
    }
    if let Some(v) = nullable("metadata") {
        u.metadata = Some(v.and_then(|v| parse_metadata(v, errors)));
    }
    if let Some(v) = map.get("disabled") {
        u.disabled = parse_disabled(v, errors);
    }
    u
}

/// A `PATCH` body as bytes: a JSON object (see [`parse_update`]).
pub fn parse_patch(body: &[u8], now: i64) -> Result<Update, Error> {
    parse_update(&parse_object(body)?, now)
}

/// What a `PATCH` did: the new record, the changed fields with their new values (for the
/// audit entry), and whether the key was disabled (`Some(true)`) or enabled (`Some(false)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub record: KeyRecord,
    pub changed: Map<String, Value>,
    pub disabled: Option<bool>,
}

/// Whether replacing the optional limit `old` by `new` narrows it: anything narrows no limit,
/// removing a limit widens it, and otherwise `inside(old, new)` says.
fn narrows<T>(old: &Option<T>, new: &Option<T>, inside: impl Fn(&T, &T) -> bool) -> bool {
    match (old, new) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(old), Some(new)) => inside(old, new),
    }
}

fn widening(what: &'static str) -> Error {
    Error::PermissionDenied(what)
}

/// Applies `u` to `target` for an editor: `admin` (the admin token) or not (a key, a settings
/// session), and who a suspension is recorded as (`disabled_by`, from
/// [`crate::core::access::disabled_by`]). The admin may change anything; a key may only narrow:
/// `allowed_ips` to blocks inside the current ones (removing the list widens), a lower `quota`
/// of the same period (removing it widens), and `disabled: false` only for a key that a key,
/// not the admin, disabled. An expiry is only ever shortened, by anyone (`object_expiry` is the
/// key's expiry as its object knows it, which a roll with grace may have shortened).
pub fn apply_update(
    target: &KeyRecord,
    object_expiry: Option<i64>,
    u: Update,
    admin: bool,
    disabled_by: &str,
) -> Result<Applied, Error> {
    // Only the admin widens: a key and a settings session (section 11) are held to narrowing.
    let mut r = target.clone();
    let mut changed = Map::new();
    let mut disabled = None;
    if let Some(name) = u.name {
        changed.insert("name".into(), Value::from(name.as_str()));
        r.name = name;
    }
    if let Some(t) = u.expires_at {
        if earliest(target.expires_at_secs(), object_expiry).is_some_and(|cur| t > cur) {
            return Err(Error::field(
                "expires_at",
                "can only be shortened, never extended",
            ));
        }
        r.expires_at = Some(format_time(t));
        changed.insert("expires_at".into(), Value::from(format_time(t)));
    }
    if let Some(ips) = u.allowed_ips {
        if !admin
            && !narrows(&target.policy.allowed_ips, &ips, |old, new| {
                subset(old, new)
            })
        {
            return Err(widening(
                "An API key may only narrow allowed_ips: every new block inside a current one.",
            ));
        }
        changed.insert("allowed_ips".into(), serde_json::json!(ips));
        r.policy.allowed_ips = ips;
    }
    if let Some(quota) = u.quota {
        if !admin && !narrows(&target.policy.quota, &quota, |old, new| new.within(old)) {
            return Err(widening(
                "An API key may only lower a quota, keeping its period.",
            ));
        }
        changed.insert("quota".into(), serde_json::json!(quota));
        r.policy.quota = quota;
    }
    if let Some(m) = u.metadata {
        changed.insert("metadata".into(), serde_json::json!(m));
        r.policy.metadata = m;
    }
    if let Some(d) = u.disabled {
        let by_admin = target.policy.disabled_by.as_deref() == Some(DISABLED_BY_ADMIN);
        if d && !target.policy.disabled {
            r.policy.disabled = true;
            r.policy.disabled_by = Some(disabled_by.to_owned());
            disabled = Some(true);
        } else if d && admin && !by_admin {
            // Already suspended by a key or a settings session: the admin's suspension takes
            // it over (and is recorded as a change), so that only the admin may lift it now.
            r.policy.disabled_by = Some(DISABLED_BY_ADMIN.to_owned());
            disabled = Some(true);
        } else if !d && target.policy.disabled {
            if by_admin && !admin {
                return Err(widening(
                    "Only the admin may enable a key that the admin disabled.",
                ));
            }
            r.policy.disabled = false;
            r.policy.disabled_by = None;
            disabled = Some(false);
        }
        changed.insert("disabled".into(), Value::from(d));
    }
    Ok(Applied {
        record: r,
        changed,
        disabled,
    })
}

/// Sets `record`'s suspension to what the key's object holds (what requests obey; the record's
/// copy may lag behind it, by KV's propagation or a record write that failed). When the object
/// says suspended and the record does not say by whom, the suspension is taken as the admin's:
/// only the admin may then lift it (fail closed: a key or a settings session must not lift a
/// suspension it cannot see was its own).
pub fn with_object_suspension(record: &mut KeyRecord, object_disabled: bool) {
    if object_disabled {
        if !record.policy.disabled || record.policy.disabled_by.is_none() {
            record.policy.disabled_by = Some(DISABLED_BY_ADMIN.to_owned());
        }
    } else {
        record.policy.disabled_by = None;
    }
    record.policy.disabled = object_disabled;
}

/// The suspension change a `PATCH` asking `disabled: asked` must record although it changes
/// nothing: a retry of one whose object step took effect (the object holds `object`) but whose
/// record write failed (the record still shows `record_shows`), so it was never recorded.
pub fn unrecorded_suspension(
    record_shows: bool,
    object: bool,
    asked: Option<bool>,
) -> Option<bool> {
    (asked == Some(object) && record_shows != object).then_some(object)
}

/// The policies in which `new` differs from `old`, with their new values (a roll's audit
/// details): what the new key really got, after the body and the no-escalation rules.
pub fn policy_changes(old: &Policy, new: &Policy) -> Map<String, Value> {
    let mut m = Map::new();
    if new.allowed_ips != old.allowed_ips {
        m.insert("allowed_ips".into(), serde_json::json!(new.allowed_ips));
    }
    if new.quota != old.quota {
        m.insert("quota".into(), serde_json::json!(new.quota));
    }
    if new.disabled != old.disabled {
        m.insert("disabled".into(), Value::from(new.disabled));
    }
    if new.metadata != old.metadata {
        m.insert("metadata".into(), serde_json::json!(new.metadata));
    }
    m
}

/// The policy half of the no-escalation rule: a key minted by a key is no wider than its
/// creator. An omitted `allowed_ips` or `quota` inherits the creator's; a given one must lie
/// within it. (A period other than the creator's could never be compared, so it is refused.)
pub fn restrict_policy_to_creator(creator: &KeyRecord, new: &mut NewKey) -> Result<(), Error> {
    if let Some(own) = &creator.policy.allowed_ips {
        match &new.policy.allowed_ips {
            None => new.policy.allowed_ips = Some(own.clone()),
            Some(asked) if subset(own, asked) => {}
            Some(_) => {
                return Err(widening(
                    "A new key's allowed_ips must lie within the creating key's.",
                ))
            }
        }
    }
    if let Some(own) = creator.policy.quota {
        match new.policy.quota {
            None => new.policy.quota = Some(own),
            Some(asked) if asked.within(&own) => {}
            Some(_) => {
                return Err(widening(
                    "A new key's quota must have the creating key's period and no more runs.",
                ))
            }
        }
        // Its runs count in the creator's family count: minting never yields fresh runs. A
        // roll keeps the counter of the key it replaces ([`crate::core::access::rolled`]).
        if new.policy.quota_counter.is_none() {
            new.policy.quota_counter = Some(creator.quota_counter().to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::tests::fields;
    use crate::core::quota::Period;
    use crate::core::record::tests::{new_key, record, NOW};
    use crate::core::record::DISABLED_BY_SESSION;

    /// Who edits, as the glue names it (`access::disabled_by` spells the same three).
    enum Who<'a> {
        Admin,
        Key(&'a KeyRecord),
        Session,
    }

    fn apply(
        target: &KeyRecord,
        object_expiry: Option<i64>,
        u: Update,
        who: &Who<'_>,
    ) -> Result<Applied, Error> {
        let (admin, by) = match who {
            Who::Admin => (true, DISABLED_BY_ADMIN.to_owned()),
            Who::Key(k) => (false, k.id.clone()),
            Who::Session => (false, DISABLED_BY_SESSION.to_owned()),
        };
        apply_update(target, object_expiry, u, admin, &by)
    }

    fn map(json: &str) -> Map<String, Value> {
        match serde_json::from_str(json).unwrap() {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_suspension_the_record_does_not_show_yet_is_the_admins() {
        // The object says suspended, the record (lagging) does not: only the admin lifts it.
        let mut r = record(&["ws1"], &["jobs:read"], None);
        with_object_suspension(&mut r, true);
        assert!(r.policy.disabled);
        assert_eq!(r.policy.disabled_by.as_deref(), Some(DISABLED_BY_ADMIN));
        let key = record(&["ws1"], &["jobs:read"], None);
        let lift = Update {
            disabled: Some(false),
            ..Update::default()
        };
        assert!(matches!(
            apply(&r, None, lift.clone(), &Who::Key(&key)),
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(
            apply(&r, None, lift.clone(), &Who::Session),
            Err(Error::PermissionDenied(_))
        ));
        assert!(apply(&r, None, lift, &Who::Admin).is_ok());
        // A suspension the record shows as a key's stays that key's.
        let mut by_key = record(&["ws1"], &["jobs:read"], None);
        by_key.policy.disabled = true;
        by_key.policy.disabled_by = Some("key_other".into());
        with_object_suspension(&mut by_key, true);
        assert_eq!(by_key.policy.disabled_by.as_deref(), Some("key_other"));
        // Resumed in the object: resumed, by nobody.
        with_object_suspension(&mut by_key, false);
        assert!(!by_key.policy.disabled && by_key.policy.disabled_by.is_none());
        // Suspended in the record too, but by nobody it names: the admin's.
        let mut unnamed = record(&["ws1"], &["jobs:read"], None);
        unnamed.policy.disabled = true;
        with_object_suspension(&mut unnamed, true);
        assert_eq!(
            unnamed.policy.disabled_by.as_deref(),
            Some(DISABLED_BY_ADMIN)
        );
        // Not suspended in the record, with a stale name: the admin's, not the stale name's.
        let mut stale = record(&["ws1"], &["jobs:read"], None);
        stale.policy.disabled_by = Some("key_other".into());
        with_object_suspension(&mut stale, true);
        assert_eq!(stale.policy.disabled_by.as_deref(), Some(DISABLED_BY_ADMIN));
    }

    #[test]
    fn patch_bounds_allowed_ips_metadata_and_the_same_expiry() {
        let ips = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("10.0.{i}.0/24")).collect();
            parse_patch(
                serde_json::json!({ "allowed_ips": list })
                    .to_string()
                    .as_bytes(),
                NOW,
            )
        };
        assert!(ips(MAX_ALLOWED_IPS).is_ok(), "{MAX_ALLOWED_IPS} entries");
        assert!(fields(ips(MAX_ALLOWED_IPS + 1).unwrap_err()).contains_key("allowed_ips"));
        let big = serde_json::json!({ "metadata": { "k": "v".repeat(MAX_METADATA_BYTES) } });
        let err = parse_patch(big.to_string().as_bytes(), NOW).unwrap_err();
        let problems = format!("{:?}", fields(err)["metadata"]);
        assert!(problems.contains("at most 1024 bytes"), "{problems}");
        let named = parse_patch(br#"{"name":"renamed"}"#, NOW).unwrap();
        assert_eq!(named.name.as_deref(), Some("renamed"));
        assert!(parse_patch(b"[]", NOW).is_err());
        // The expiry it already has is not an extension.
        let at = NOW + 86_400;
        let r = record(&["ws1"], &["jobs:read"], Some(at));
        let same = Update {
            expires_at: Some(at),
            ..Update::default()
        };
        assert!(apply(&r, None, same, &Who::Admin).is_ok());
        let later = Update {
            expires_at: Some(at + 1),
            ..Update::default()
        };
        assert!(apply(&r, None, later, &Who::Admin).is_err());
    }

    #[test]
    fn a_retried_suspension_is_recorded_once() {
        // Finding 7: the object took the suspension, the record write failed; the retry
        // records it. Once the record shows it, a repeat records nothing.
        assert_eq!(unrecorded_suspension(false, true, Some(true)), Some(true));
        assert_eq!(unrecorded_suspension(true, false, Some(false)), Some(false));
        assert_eq!(unrecorded_suspension(true, true, Some(true)), None);
        assert_eq!(unrecorded_suspension(false, true, None), None);
        assert_eq!(unrecorded_suspension(false, true, Some(false)), None);
    }

    #[test]
    fn the_admin_takes_over_a_suspension_a_key_or_session_made() {
        // Finding 2 of the security review: a key suspends, the admin suspends too; a sibling
        // key must then not lift it.
        let sibling = record(&["ws1"], &["jobs:read"], None);
        for by in ["key_other", DISABLED_BY_SESSION] {
            let mut t = record(&["ws1"], &["jobs:read"], None);
            t.policy.disabled = true;
            t.policy.disabled_by = Some(by.into());
            let suspend = Update {
                disabled: Some(true),
                ..Update::default()
            };
            let taken = apply(&t, None, suspend.clone(), &Who::Admin).unwrap();
            assert_eq!(taken.disabled, Some(true), "recorded as a change");
            assert_eq!(
                taken.record.policy.disabled_by.as_deref(),
                Some(DISABLED_BY_ADMIN)
            );
            let lift = Update {
                disabled: Some(false),
                ..Update::default()
            };
            assert!(matches!(
                apply(&taken.record, None, lift.clone(), &Who::Key(&sibling)),
                Err(Error::PermissionDenied(_))
            ));
            assert!(matches!(
                apply(&taken.record, None, lift, &Who::Session),
                Err(Error::PermissionDenied(_))
            ));
            // A key suspending again changes nothing and records nothing.
            let again = apply(&t, None, suspend, &Who::Key(&sibling)).unwrap();
            assert_eq!(again.disabled, None);
            assert_eq!(again.record.policy.disabled_by.as_deref(), Some(by));
        }
        // The admin suspending its own suspension again is no change.
        let mut t = record(&["ws1"], &["jobs:read"], None);
        t.policy.disabled = true;
        t.policy.disabled_by = Some(DISABLED_BY_ADMIN.into());
        let again = Update {
            disabled: Some(true),
            ..Update::default()
        };
        assert_eq!(apply(&t, None, again, &Who::Admin).unwrap().disabled, None);
    }

    #[test]
    fn policy_changes_name_only_what_differs() {
        let old = record(&["ws1"], &["jobs:read"], None).policy;
        assert!(policy_changes(&old, &old).is_empty());
        let mut new = old.clone();
        new.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
        new.disabled = true;
        let c = policy_changes(&old, &new);
        assert_eq!(
            c.keys().map(String::as_str).collect::<Vec<_>>(),
            ["allowed_ips", "disabled"]
        );
        assert_eq!(c["disabled"], Value::Bool(true));
    }

    #[test]
    fn create_policies_are_validated_and_canonicalised() {
        let mut errors = FieldErrors::new();
        let p = parse_create_policy(
            &map(r#"{"allowed_ips":["10.1.2.3/8","2001:DB8::1","10.0.0.0/8"],
                    "quota":{"runs":5,"period":"month"},"disabled":true,
                    "metadata":{"team":"data"}}"#),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            p.allowed_ips,
            Some(vec!["10.0.0.0/8".into(), "2001:db8::1/128".into()])
        );
        assert_eq!(
            p.quota,
            Some(Quota {
                runs: 5,
                period: Period::Month
            })
        );
        assert!(p.disabled);
        assert_eq!(p.metadata.unwrap()["team"], "data");
    }

    #[test]
    fn bad_policies_are_named_by_their_field() {
        let too_many: Vec<String> = (0..=MAX_ALLOWED_IPS)
            .map(|i| format!("10.0.0.{i}"))
            .collect();
        let big = "x".repeat(MAX_METADATA_BYTES);
        for (body, field) in [
            (
                r#"{"allowed_ips":["10.0.0.0/33"]}"#.to_owned(),
                "allowed_ips",
            ),
            (r#"{"allowed_ips":[]}"#.to_owned(), "allowed_ips"),
            (r#"{"allowed_ips":"10.0.0.0/8"}"#.to_owned(), "allowed_ips"),
            (
                serde_json::json!({ "allowed_ips": too_many }).to_string(),
                "allowed_ips",
            ),
            (r#"{"quota":{"runs":0,"period":"day"}}"#.to_owned(), "quota"),
            (
                r#"{"quota":{"runs":1,"period":"week"}}"#.to_owned(),
                "quota",
            ),
            (
                r#"{"quota":{"runs":1,"period":"day","x":1}}"#.to_owned(),
                "quota",
            ),
            (r#"{"disabled":"yes"}"#.to_owned(), "disabled"),
            (r#"{"metadata":[1]}"#.to_owned(), "metadata"),
            (
                serde_json::json!({ "metadata": {"a": big} }).to_string(),
                "metadata",
            ),
        ] {
            let mut errors = FieldErrors::new();
            parse_create_policy(&map(&body), &mut errors);
            assert!(errors.contains_key(field), "{body}: {errors:?}");
        }
        // Exactly 1 KiB is accepted.
        let fits = "x".repeat(MAX_METADATA_BYTES - 8);
        let mut errors = FieldErrors::new();
        parse_create_policy(
            &map(&serde_json::json!({ "metadata": {"a": fits} }).to_string()),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn patch_bodies() {
        let u = parse_update(&map(r#"{"name":"x","allowed_ips":null,"quota":null}"#), NOW).unwrap();
        assert_eq!(u.name.as_deref(), Some("x"));
        assert_eq!(u.allowed_ips, Some(None));
        assert_eq!(u.quota, Some(None));
        assert_eq!(u.metadata, None);
        assert!(fields(parse_update(&map("{}"), NOW).unwrap_err()).contains_key("body"));
        assert!(
            fields(parse_update(&map(r#"{"rate_limit":1}"#), NOW).unwrap_err())
                .contains_key("rate_limit")
        );
        assert!(
            fields(parse_update(&map(r#"{"expires_at":null}"#), NOW).unwrap_err())
                .contains_key("expires_at")
        );
        let past = serde_json::json!({ "expires_at": format_time(NOW - 1) }).to_string();
        assert!(fields(parse_update(&map(&past), NOW).unwrap_err()).contains_key("expires_at"));
    }

    fn limited() -> KeyRecord {
        let mut r = record(&["*"], &["*"], Some(NOW + 1000));
        r.policy.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
        r.policy.quota = Some(Quota {
            runs: 10,
            period: Period::Day,
        });
        r
    }

    fn patch(json: &str) -> Update {
        parse_update(&map(json), NOW).unwrap()
    }

    #[test]
    fn a_key_can_only_narrow() {
        let target = limited();
        let me = record(&["*"], &["api_keys:write"], None);
        let key = Who::Key(&me);
        let ok = apply(
            &target,
            None,
            patch(r#"{"allowed_ips":["10.1.0.0/16"],"quota":{"runs":3,"period":"day"}}"#),
            &key,
        )
        .unwrap();
        assert_eq!(
            ok.record.policy.allowed_ips,
            Some(vec!["10.1.0.0/16".into()])
        );
        assert_eq!(ok.changed["quota"]["runs"], 3);
        for widen in [
            r#"{"allowed_ips":null}"#,
            r#"{"allowed_ips":["0.0.0.0/0"]}"#,
            r#"{"allowed_ips":["10.0.0.0/8","192.0.2.1"]}"#,
            r#"{"quota":null}"#,
            r#"{"quota":{"runs":11,"period":"day"}}"#,
            r#"{"quota":{"runs":1,"period":"month"}}"#,
        ] {
            assert!(
                matches!(
                    apply(&target, None, patch(widen), &key),
                    Err(Error::PermissionDenied(_))
                ),
                "{widen}"
            );
            // The admin may widen anything.
            assert!(apply(&target, None, patch(widen), &Who::Admin).is_ok());
        }
        // A key without policies can be given some by a key (narrowing).
        let open = record(&["*"], &["*"], None);
        assert!(apply(&open, None, patch(r#"{"allowed_ips":["::1"]}"#), &key).is_ok());
    }

    #[test]
    fn a_settings_session_is_held_to_narrowing_like_a_key() {
        let target = limited();
        let session = Who::Session;
        for widen in [
            r#"{"allowed_ips":null}"#,
            r#"{"quota":{"runs":11,"period":"day"}}"#,
        ] {
            assert!(matches!(
                apply(&target, None, patch(widen), &session),
                Err(Error::PermissionDenied(_))
            ));
        }
        let off = apply(&target, None, patch(r#"{"disabled":true}"#), &session).unwrap();
        assert_eq!(
            off.record.policy.disabled_by.as_deref(),
            Some(DISABLED_BY_SESSION)
        );
    }

    #[test]
    fn expiry_is_only_shortened() {
        let target = limited();
        let later = format!(r#"{{"expires_at":"{}"}}"#, format_time(NOW + 2000));
        let sooner = format!(r#"{{"expires_at":"{}"}}"#, format_time(NOW + 500));
        for caller in [Who::Admin, Who::Key(&target)] {
            assert!(matches!(
                apply(&target, None, patch(&later), &caller),
                Err(Error::Validation(f)) if f.contains_key("expires_at")
            ));
            assert!(apply(&target, None, patch(&sooner), &caller).is_ok());
        }
        // The object's shorter expiry (a roll with grace) is the one to beat.
        assert!(apply(&target, Some(NOW + 400), patch(&sooner), &Who::Admin).is_err());
        // A key without an expiry can get one.
        let open = record(&["*"], &["*"], None);
        assert!(apply(&open, None, patch(&later), &Who::Key(&open)).is_ok());
    }

    #[test]
    fn enabling_what_the_admin_disabled_takes_the_admin() {
        let me = record(&["*"], &["api_keys:write"], None);
        let key = Who::Key(&me);
        let target = limited();
        let by_key = apply(&target, None, patch(r#"{"disabled":true}"#), &key).unwrap();
        assert_eq!(by_key.disabled, Some(true));
        assert_eq!(
            by_key.record.policy.disabled_by.as_deref(),
            Some(me.id.as_str())
        );
        let back = apply(&by_key.record, None, patch(r#"{"disabled":false}"#), &key).unwrap();
        assert_eq!(back.disabled, Some(false));
        assert!(!back.record.policy.disabled);

        let by_admin = apply(&target, None, patch(r#"{"disabled":true}"#), &Who::Admin).unwrap();
        assert_eq!(by_admin.record.policy.disabled_by.as_deref(), Some("admin"));
        assert!(matches!(
            apply(&by_admin.record, None, patch(r#"{"disabled":false}"#), &key),
            Err(Error::PermissionDenied(_))
        ));
        let admin_back = apply(
            &by_admin.record,
            None,
            patch(r#"{"disabled":false}"#),
            &Who::Admin,
        )
        .unwrap();
        assert_eq!(admin_back.disabled, Some(false));
        // Disabling a disabled key changes nothing (and keeps who did it).
        let again = apply(&by_admin.record, None, patch(r#"{"disabled":true}"#), &key).unwrap();
        assert_eq!(again.disabled, None);
        assert_eq!(again.record.policy.disabled_by.as_deref(), Some("admin"));
    }

    fn child() -> NewKey {
        new_key(&["*"], &["*"], None)
    }

    #[test]
    fn minted_keys_inherit_or_narrow_the_creators_policies() {
        let creator = limited();
        let mut inherit = child();
        restrict_policy_to_creator(&creator, &mut inherit).unwrap();
        assert_eq!(inherit.policy.allowed_ips, creator.policy.allowed_ips);
        assert_eq!(inherit.policy.quota, creator.policy.quota);
        // Finding 4 of the security review: a minted key's runs count in its creator's count
        // (never a fresh one), and a grandchild's in the same.
        assert_eq!(
            inherit.policy.quota_counter.as_deref(),
            Some(creator.id.as_str())
        );
        let mut second = creator.clone();
        second.id = "key_child".into();
        second.policy.quota_counter = Some(creator.id.clone());
        let mut grandchild = child();
        restrict_policy_to_creator(&second, &mut grandchild).unwrap();
        assert_eq!(
            grandchild.policy.quota_counter.as_deref(),
            Some(creator.id.as_str())
        );

        let mut narrower = child();
        narrower.policy.allowed_ips = Some(vec!["10.9.9.9/32".into()]);
        narrower.policy.quota = Some(Quota {
            runs: 1,
            period: Period::Day,
        });
        assert_eq!(restrict_policy_to_creator(&creator, &mut narrower), Ok(()));

        let mut wider_ips = child();
        wider_ips.policy.allowed_ips = Some(vec!["11.0.0.0/8".into()]);
        assert!(restrict_policy_to_creator(&creator, &mut wider_ips).is_err());
        let mut other_period = child();
        other_period.policy.quota = Some(Quota {
            runs: 1,
            period: Period::Month,
        });
        assert!(restrict_policy_to_creator(&creator, &mut other_period).is_err());
        // A creator without policies leaves the child's as asked.
        let open = record(&["*"], &["*"], None);
        let mut free = child();
        restrict_policy_to_creator(&open, &mut free).unwrap();
        assert_eq!(free.policy, Policy::default());
    }
}
