//! Request bodies and queries of the key-management routes, validated (docs/CONTRACT.md
//! section 4): every problem is reported under its field, and nothing is stored until all pass.
//!
//! Length: the create body has seven fields, each validated and reported under its name; the
//! last quarter of the file is the unit tests of those rules.

use serde::Deserialize;
use serde_json::Value;

use crate::core::error::{Error, FieldErrors};
pub use crate::core::fields::{
    parse_name, parse_object, push, MAX_NAME_CHARS, MIN_EXPIRY_LEAD_SECS,
};
use crate::core::permission::{PERMISSIONS, WILDCARD};
use crate::core::policy::{parse_create_policy, parse_fields, Update, POLICY_FIELDS};
use crate::core::ratelimit::{RateLimit, MAX_RATE_REQUESTS, MAX_RATE_WINDOW_SECS};
use crate::core::record::NewKey;
use crate::core::route::{is_workspace_id, MAX_WORKSPACE_LEN};
use crate::core::time::parse_time;

/// Longest roll grace period (7 days).
pub const MAX_GRACE_SECS: u64 = 604_800;
pub const MAX_USER_ID_LEN: usize = 128;
pub const MAX_EMAIL_LEN: usize = 254;
/// Bound the record size (KV values and metadata are small by design).
pub const MAX_WORKSPACES: usize = 100;
/// The vocabulary has 12 names and `*`; a longer list can only repeat them.
pub const MAX_PERMISSIONS: usize = 32;

pub(crate) fn user_id_rule() -> String {
    format!("must be 1-{MAX_USER_ID_LEN} characters of A-Z a-z 0-9 . _ @ : -")
}

fn rate_limit_rule() -> String {
    format!("requests must be 1-{MAX_RATE_REQUESTS} and window_seconds 1-{MAX_RATE_WINDOW_SECS}")
}

const CREATE_FIELDS: [&str; 7] = [
    "user_id",
    "email",
    "name",
    "workspaces",
    "permissions",
    "expires_at",
    "rate_limit",
];

pub(crate) fn is_user_id(s: &str) -> bool {
    (1..=MAX_USER_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@:".contains(&b))
}

/// An `email` field: absent or null is `None` (an error when `required`), else an ASCII
/// address of at most [`MAX_EMAIL_LEN`] characters.
pub(crate) fn parse_email(
    v: Option<&Value>,
    required: bool,
    errors: &mut FieldErrors,
) -> Option<String> {
    match v {
        Some(Value::String(s)) if is_email(s) => Some(s.clone()),
        None | Some(Value::Null) => {
            if required {
                push(errors, "email", "is required");
            }
            None
        }
        Some(_) => {
            push(
                errors,
                "email",
                &format!("must be an ASCII e-mail address of at most {MAX_EMAIL_LEN} characters"),
            );
            None
        }
    }
}

pub(crate) fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= MAX_EMAIL_LEN
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        // ASCII only: the address travels in an HTTP header to the origin, where a non-ASCII
        // value cannot be set (every call of the key would fail).
        && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Validates a create body; every problem is reported under its field, unknown fields included.
pub fn parse_create(body: &[u8], now: i64, default_rate: RateLimit) -> Result<NewKey, Error> {
    let map = parse_object(body)?;
    let mut errors = FieldErrors::new();
    for k in map.keys() {
        if !CREATE_FIELDS.contains(&k.as_str()) && !POLICY_FIELDS.contains(&k.as_str()) {
            push(&mut errors, k, "unknown field");
        }
    }
    let user_id = match map.get("user_id") {
        None | Some(Value::Null) => {
            push(&mut errors, "user_id", "is required");
            None
        }
        Some(Value::String(s)) if is_user_id(s) => Some(s.clone()),
        Some(_) => {
            push(&mut errors, "user_id", &user_id_rule());
            None
        }
    };
    let email = parse_email(map.get("email"), false, &mut errors);
    let name = parse_name(map.get("name"), &mut errors);
    let workspaces = parse_workspaces(map.get("workspaces"), &mut errors);
    let policy = parse_create_policy(&map, &mut errors);
    let permissions = parse_permissions(map.get("permissions"), &mut errors);
    let expires_at = match map.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match parse_time(s) {
            Some(t) if t >= now + MIN_EXPIRY_LEAD_SECS => Some(t),
            Some(_) => {
                push(
                    &mut errors,
                    "expires_at",
                    &format!("must be at least {MIN_EXPIRY_LEAD_SECS} seconds in the future"),
                );
                None
            }
            None => {
                push(&mut errors, "expires_at", "must be an RFC 3339 date-time");
                None
            }
        },
        Some(_) => {
            push(&mut errors, "expires_at", "must be an RFC 3339 date-time");
            None
        }
    };
    let rate_limit = match map.get("rate_limit") {
        None | Some(Value::Null) => Some(default_rate),
        Some(v) => parse_rate_limit(v, &mut errors),
    };
    match (user_id, name, workspaces, permissions, rate_limit) {
        (Some(user_id), Some(name), Some(workspaces), Some(permissions), Some(rate_limit))
            if errors.is_empty() =>
        {
            Ok(NewKey {
                user_id,
                email,
                name,
                workspaces,
                permissions,
                expires_at,
                rate_limit,
                policy,
            })
        }
        _ => Err(Error::Validation(errors)),
    }
}

/// A `rate_limit` field's value (a key's or a pool's), or its problem in `errors`.
pub(crate) fn parse_rate_limit(v: &Value, errors: &mut FieldErrors) -> Option<RateLimit> {
    match serde_json::from_value::<RateLimitBody>(v.clone()) {
        Ok(b) => {
            let rl = RateLimit {
                requests: b.requests,
                window_seconds: b.window_seconds,
            };
            if rl.is_valid() {
                Some(rl)
            } else {
                push(errors, "rate_limit", &rate_limit_rule());
                None
            }
        }
        Err(_) => {
            push(
                errors,
                "rate_limit",
                &format!("must be an object: {}", rate_limit_rule()),
            );
            None
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitBody {
    requests: u32,
    window_seconds: u32,
}

fn string_list<'a>(
    v: Option<&'a Value>,
    field: &str,
    max: usize,
    errors: &mut FieldErrors,
) -> Option<Vec<&'a str>> {
    match v {
        None | Some(Value::Null) => {
            push(errors, field, "is required");
            None
        }
        Some(Value::Array(items)) if items.is_empty() => {
            push(errors, field, "must not be empty");
            None
        }
        Some(Value::Array(items)) if items.len() > max => {
            push(errors, field, &format!("has more than {max} entries"));
            None
        }
        Some(Value::Array(items)) => {
            let strs: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            if strs.is_none() {
                push(errors, field, "must be a list of strings");
            }
            strs
        }
        Some(_) => {
            push(errors, field, "must be a list of strings");
            None
        }
    }
}

fn dedup(items: Vec<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for i in items {
        if !out.iter().any(|o| o == i) {
            out.push(i.to_owned());
        }
    }
    out
}

pub(crate) fn parse_workspaces(v: Option<&Value>, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let items = string_list(v, "workspaces", MAX_WORKSPACES, errors)?;
    if items.contains(&WILDCARD) {
        if items.iter().any(|w| *w != WILDCARD) {
            push(errors, "workspaces", "\"*\" must be the only entry");
            return None;
        }
        return Some(vec![WILDCARD.to_owned()]);
    }
    if items.iter().any(|w| !is_workspace_id(w)) {
        push(
            errors,
            "workspaces",
            &format!(
                "each workspace id must be 1-{MAX_WORKSPACE_LEN} characters of A-Z a-z 0-9 _ -"
            ),
        );
        return None;
    }
    Some(dedup(items))
}

pub(crate) fn parse_permissions(
    v: Option<&Value>,
    errors: &mut FieldErrors,
) -> Option<Vec<String>> {
    let items = string_list(v, "permissions", MAX_PERMISSIONS, errors)?;
    if items
        .iter()
        .any(|p| *p != WILDCARD && !PERMISSIONS.contains(p))
    {
        push(
            errors,
            "permissions",
            "each permission must be one of the documented permissions or \"*\"",
        );
        return None;
    }
    if items.contains(&WILDCARD) {
        return Some(vec![WILDCARD.to_owned()]);
    }
    Some(dedup(items))
}

/// Fields of a roll body besides the policies ([`POLICY_FIELDS`]).
const GRACE_FIELD: &str = "grace_seconds";

/// A validated roll body.
#[derive(Debug, Default, PartialEq)]
pub struct Roll {
    /// How long the old key stays valid (0: revoked now).
    pub grace_seconds: u64,
    /// The new key's policies where they differ from the old key's (docs/CONTRACT.md section
    /// 13): applied by the same rules as a `PATCH`, so only the admin widens.
    pub policy: Update,
}

/// Validates a roll body: `{"grace_seconds": 0..604800}` (default 0) and any of the policy
/// fields (`allowed_ips`, `quota`, `disabled`, `metadata`; `null` removes one); an empty body
/// is `{}`.
pub fn parse_roll(body: &[u8], now: i64) -> Result<Roll, Error> {
    let map = parse_object(body)?;
    let mut errors = FieldErrors::new();
    for k in map.keys() {
        if k != GRACE_FIELD && !POLICY_FIELDS.contains(&k.as_str()) {
            push(&mut errors, k, "unknown field");
        }
    }
    let grace_seconds = match map.get(GRACE_FIELD) {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(g) if g <= MAX_GRACE_SECS => g,
            _ => {
                push(
                    &mut errors,
                    GRACE_FIELD,
                    &format!("must be an integer from 0 to {MAX_GRACE_SECS}"),
                );
                0
            }
        },
    };
    let policy = parse_fields(&map, now, &mut errors);
    if errors.is_empty() {
        Ok(Roll {
            grace_seconds,
            policy,
        })
    } else {
        Err(Error::Validation(errors))
    }
}

/// Default and largest page size of `GET /v1/api-keys`.
pub const DEFAULT_LIST_LIMIT: u64 = 20;
pub const MAX_LIST_LIMIT: u64 = 100;
const MAX_CURSOR_LEN: usize = 1024;

/// `GET /v1/api-keys?user_id=&limit=&cursor=`, validated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub user_id: Option<String>,
    /// `GET /v1/audit-events` only: a workspace's trail (docs/CONTRACT.md section 17).
    pub workspace_id: Option<String>,
    pub limit: u64,
    pub cursor: Option<String>,
}

pub fn parse_list_query(query: Option<&str>) -> Result<ListQuery, Error> {
    let mut q = ListQuery {
        limit: DEFAULT_LIST_LIMIT,
        ..ListQuery::default()
    };
    let mut errors = FieldErrors::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "user_id" if is_user_id(&v) => q.user_id = Some(v.into_owned()),
            "user_id" => push(&mut errors, "user_id", &user_id_rule()),
            "workspace_id" if is_workspace_id(&v) => q.workspace_id = Some(v.into_owned()),
            "workspace_id" => push(
                &mut errors,
                "workspace_id",
                &format!("must be 1-{MAX_WORKSPACE_LEN} characters of A-Z a-z 0-9 _ -"),
            ),
            "limit" => match v.parse::<u64>() {
                Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => q.limit = n,
                _ => push(
                    &mut errors,
                    "limit",
                    &format!("must be an integer from 1 to {MAX_LIST_LIMIT}"),
                ),
            },
            "cursor" if v.is_empty() => {}
            "cursor" if v.len() <= MAX_CURSOR_LEN && v.bytes().all(|b| b.is_ascii_graphic()) => {
                q.cursor = Some(v.into_owned())
            }
            "cursor" => push(
                &mut errors,
                "cursor",
                "is not a cursor returned by this API",
            ),
            // Other parameters (cache busters and the like) are ignored.
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(Error::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::tests::fields;
    use crate::core::time::format_time;

    const NOW: i64 = 1_800_000_000;
    const DEFAULT: RateLimit = RateLimit {
        requests: 600,
        window_seconds: 60,
    };

    fn create(body: &str) -> Result<NewKey, Error> {
        parse_create(body.as_bytes(), NOW, DEFAULT)
    }

    #[test]
    fn the_rules_are_stated_with_their_bounds() {
        assert_eq!(
            user_id_rule(),
            "must be 1-128 characters of A-Z a-z 0-9 . _ @ : -"
        );
        let e = fields(create(r#"{"user_id":"bad id"}"#).unwrap_err());
        assert_eq!(e["user_id"], vec![user_id_rule()]);
        let e = fields(
            create(r#"{"user_id":"u","rate_limit":{"requests":0,"window_seconds":60}}"#)
                .unwrap_err(),
        );
        assert!(
            e["rate_limit"][0].starts_with("requests must be 1-"),
            "{e:?}"
        );
        assert!(e["rate_limit"][0].contains(&format!("window_seconds 1-{MAX_RATE_WINDOW_SECS}")));
    }

    #[test]
    fn workspaces_and_permissions_are_bounded_lists() {
        let body = |n: usize| {
            let ws: Vec<String> = (0..n).map(|i| format!("ws{i}")).collect();
            serde_json::json!({"user_id": "u", "name": "ci", "workspaces": ws,
                "permissions": ["jobs:read"]})
            .to_string()
        };
        assert_eq!(
            create(&body(MAX_WORKSPACES)).unwrap().workspaces.len(),
            MAX_WORKSPACES
        );
        let e = fields(create(&body(MAX_WORKSPACES + 1)).unwrap_err());
        assert_eq!(
            e["workspaces"],
            vec![format!("has more than {MAX_WORKSPACES} entries")]
        );
    }

    #[test]
    fn a_full_create_body_is_accepted() {
        let k = create(
            r#"{"user_id":"u-1@x","email":"a@b.c","name":"ci","workspaces":["ws1","ws1","ws_2"],
               "permissions":["jobs:run","jobs:read"],"expires_at":"2030-01-01T00:00:00Z",
               "rate_limit":{"requests":5,"window_seconds":60}}"#,
        )
        .unwrap();
        assert_eq!(k.workspaces, vec!["ws1", "ws_2"]);
        assert_eq!(k.rate_limit.requests, 5);
        assert_eq!(k.expires_at, Some(1_893_456_000));
    }

    #[test]
    fn defaults_apply() {
        let k =
            create(r#"{"user_id":"u","name":"n","workspaces":["*"],"permissions":["*"]}"#).unwrap();
        assert_eq!(k.rate_limit, DEFAULT);
        assert_eq!(k.expires_at, None);
        assert_eq!(k.email, None);
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let f = fields(
            create(
                r#"{"user_id":"bad id","email":"nope","name":"","workspaces":[],"permissions":["root"],
                   "expires_at":"tomorrow","rate_limit":{"requests":0,"window_seconds":60},"extra":1}"#,
            )
            .unwrap_err(),
        );
        for name in CREATE_FIELDS.into_iter().chain(["extra"]) {
            assert!(f.contains_key(name), "{name} missing from {f:?}");
        }
    }

    #[test]
    fn required_fields() {
        let f = fields(create("{}").unwrap_err());
        for name in ["user_id", "name", "workspaces", "permissions"] {
            assert_eq!(f[name], vec!["is required"]);
        }
        assert!(fields(create("[1]").unwrap_err()).contains_key("body"));
        assert!(fields(create("not json").unwrap_err()).contains_key("body"));
    }

    #[test]
    fn expiry_must_be_a_minute_ahead() {
        let soon = format_time(NOW + 59);
        let ok = format_time(NOW + 60);
        let base = r#""user_id":"u","name":"n","workspaces":["*"],"permissions":["*"]"#;
        assert!(create(&format!(r#"{{{base},"expires_at":"{soon}"}}"#)).is_err());
        assert!(create(&format!(r#"{{{base},"expires_at":"{ok}"}}"#)).is_ok());
    }

    #[test]
    fn wildcards_must_stand_alone_in_workspaces() {
        let f = fields(
            create(r#"{"user_id":"u","name":"n","workspaces":["*","a"],"permissions":["*"]}"#)
                .unwrap_err(),
        );
        assert!(f.contains_key("workspaces"));
    }

    #[test]
    fn a_non_ascii_email_is_refused_at_creation() {
        let base = r#""user_id":"u","name":"n","workspaces":["*"],"permissions":["*"]"#;
        for email in ["jos\u{e9}@ex\u{e4}mple.com", "a b@c.d", "a@b\\tc"] {
            let f = fields(create(&format!(r#"{{{base},"email":"{email}"}}"#)).unwrap_err());
            assert!(f.contains_key("email"), "{email}");
        }
        assert!(create(&format!(r#"{{{base},"email":"a.b+c@d.example"}}"#)).is_ok());
    }

    #[test]
    fn roll_bodies() {
        let grace = |b: &[u8]| parse_roll(b, NOW).map(|r| r.grace_seconds);
        assert_eq!(grace(b""), Ok(0));
        assert_eq!(grace(b"{}"), Ok(0));
        assert_eq!(grace(br#"{"grace_seconds":3600}"#), Ok(3600));
        assert!(grace(br#"{"grace_seconds":604801}"#).is_err());
        assert!(grace(br#"{"grace_seconds":-1}"#).is_err());
        assert!(grace(br#"{"grace":1}"#).is_err());
        // Policies may be set on the new key; name and expiry are not a roll's to change.
        let r = parse_roll(
            br#"{"grace_seconds":60,"allowed_ips":["10.0.0.0/8"],"quota":null,"metadata":{"a":1}}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(r.grace_seconds, 60);
        assert_eq!(
            r.policy.allowed_ips,
            Some(Some(vec!["10.0.0.0/8".to_owned()]))
        );
        assert_eq!(r.policy.quota, Some(None));
        assert!(r.policy.metadata.is_some());
        assert_eq!(r.policy.disabled, None);
        for bad in [
            &br#"{"name":"x"}"#[..],
            br#"{"expires_at":"2099-01-01T00:00:00Z"}"#,
            br#"{"allowed_ips":["nope"]}"#,
            br#"{"quota":{"runs":0,"period":"day"}}"#,
            br#"{"disabled":"yes"}"#,
        ] {
            assert!(
                matches!(parse_roll(bad, NOW), Err(Error::Validation(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn list_queries() {
        let q = parse_list_query(Some("user_id=a%40b&limit=5&cursor=abc&x=1")).unwrap();
        assert_eq!(q.user_id.as_deref(), Some("a@b"));
        assert_eq!(q.limit, 5);
        assert_eq!(q.cursor.as_deref(), Some("abc"));
        assert_eq!(parse_list_query(None).unwrap().limit, DEFAULT_LIST_LIMIT);
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "user_id=a%20b",
            "user_id=",
            "workspace_id=",
            "workspace_id=a%40b",
            "cursor=a%20b",
            "cursor=%07",
        ] {
            assert!(parse_list_query(Some(bad)).is_err(), "{bad}");
        }
        // A workspace's trail; an empty cursor is the first page; a cursor at its bound.
        let q = parse_list_query(Some("workspace_id=ws_1&cursor=")).unwrap();
        assert_eq!(q.workspace_id.as_deref(), Some("ws_1"));
        assert_eq!(q.cursor, None);
        let longest = "c".repeat(MAX_CURSOR_LEN);
        let q = parse_list_query(Some(&format!("cursor={longest}"))).unwrap();
        assert_eq!(q.cursor.as_deref(), Some(longest.as_str()));
        let over = format!("cursor={longest}c");
        assert!(parse_list_query(Some(&over)).is_err());
    }
}
