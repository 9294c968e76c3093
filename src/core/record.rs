//! Key records, permissions, and the validation of create and roll bodies (SPEC sections 1, 4, 5).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Error, FieldErrors};
use super::route::is_workspace_id;

/// The permission vocabulary of SPEC section 5, without the wildcard.
pub const PERMISSIONS: [&str; 12] = [
    "workspaces:read",
    "jobs:read",
    "jobs:write",
    "jobs:run",
    "orchestration:read",
    "orchestration:write",
    "secrets:read",
    "secrets:write",
    "variables:read",
    "variables:write",
    "api_keys:read",
    "api_keys:write",
];
/// Grants every permission, or every workspace.
pub const WILDCARD: &str = "*";
pub const PERM_KEYS_READ: &str = "api_keys:read";
pub const PERM_KEYS_WRITE: &str = "api_keys:write";

/// `expires_at` must be at least this far in the future when a key is created.
pub const MIN_EXPIRY_LEAD_SECS: i64 = 60;
/// KV entries outlive `expires_at` by this much, then leave storage by themselves.
pub const KV_EXPIRY_AFTER_SECS: i64 = 30 * 24 * 3600;
/// Longest roll grace period (7 days).
pub const MAX_GRACE_SECS: u64 = 604_800;
pub const MAX_USER_ID_LEN: usize = 128;
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_EMAIL_LEN: usize = 254;
/// Bounds the record size (KV values and metadata are small by design).
pub const MAX_WORKSPACES: usize = 100;
pub const MAX_RATE_REQUESTS: u32 = 1_000_000;
pub const MAX_RATE_WINDOW_SECS: u32 = 86_400;

/// `rate_limit` of a key: `requests` per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_seconds: u32,
}

impl RateLimit {
    /// Parses `DEFAULT_RATE_LIMIT`, e.g. `600/60`.
    pub fn parse(s: &str) -> Option<Self> {
        let (r, w) = s.trim().split_once('/')?;
        let rl = RateLimit {
            requests: r.trim().parse().ok()?,
            window_seconds: w.trim().parse().ok()?,
        };
        rl.is_valid().then_some(rl)
    }

    pub fn is_valid(&self) -> bool {
        (1..=MAX_RATE_REQUESTS).contains(&self.requests)
            && (1..=MAX_RATE_WINDOW_SECS).contains(&self.window_seconds)
    }
}

/// `600/60`: the form [`RateLimit::parse`] reads (also how the Worker tells the key's object).
impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, self.window_seconds)
    }
}

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
}

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
        }
    }

    pub fn expires_at_secs(&self) -> Option<i64> {
        self.expires_at.as_deref().and_then(parse_time)
    }

    /// The KV expiration (unix seconds) for this record's entries, if it expires.
    pub fn kv_expiration(&self) -> Option<u64> {
        self.expires_at_secs()
            .map(|t| (t + KV_EXPIRY_AFTER_SECS).max(0) as u64)
    }

    /// Revoked, then expired (exact to the second), in the order of SPEC section 2.
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
        self.workspaces.iter().any(|w| w == WILDCARD || w == ws)
    }

    /// The workspace row, then the permission row, of SPEC section 2 for a forwarded route.
    pub fn authorize(&self, workspace: Option<&str>, permission: &str) -> Result<(), Error> {
        if workspace.is_some_and(|ws| !self.covers_workspace(ws)) {
            return Err(Error::WorkspaceForbidden);
        }
        if !self.grants(permission) {
            return Err(Error::PermissionDenied(
                "The API key lacks the permission this route needs.",
            ));
        }
        Ok(())
    }
}

/// Metadata stored beside each KV record, readable in listings without a second read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyMeta {
    pub id: String,
    pub expires_at: Option<String>,
}

pub fn grants(held: &[String], permission: &str) -> bool {
    held.iter().any(|p| p == WILDCARD || p == permission)
}

/// Formats unix seconds as RFC 3339 UTC, to the second (`2026-01-02T03:04:05Z`).
pub fn format_time(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses RFC 3339 (any offset) to unix seconds; fractions are dropped (an expiry therefore
/// never lands later than asked).
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
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
        }
    }
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

fn push(errors: &mut FieldErrors, field: &str, problem: &str) {
    errors
        .entry(field.to_owned())
        .or_default()
        .push(problem.to_owned());
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let trimmed = body.iter().all(u8::is_ascii_whitespace);
    if trimmed {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::field("body", "must be a JSON object")),
    }
}

fn is_user_id(s: &str) -> bool {
    (1..=MAX_USER_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@:".contains(&b))
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= MAX_EMAIL_LEN
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && s.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// Validates a create body; every problem is reported under its field, unknown fields included.
pub fn parse_create(body: &[u8], now: i64, default_rate: RateLimit) -> Result<NewKey, Error> {
    let map = parse_object(body)?;
    let mut errors = FieldErrors::new();
    for k in map.keys() {
        if !CREATE_FIELDS.contains(&k.as_str()) {
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
            push(
                &mut errors,
                "user_id",
                "must be 1-128 characters of A-Z a-z 0-9 . _ @ : -",
            );
            None
        }
    };
    let email = match map.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_email(s) => Some(s.clone()),
        Some(_) => {
            push(&mut errors, "email", "must be an e-mail address");
            None
        }
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => {
            push(&mut errors, "name", "is required");
            None
        }
        Some(Value::String(s))
            if (1..=MAX_NAME_CHARS).contains(&s.chars().count())
                && !s.chars().any(char::is_control)
                && !s.trim().is_empty() =>
        {
            Some(s.clone())
        }
        Some(_) => {
            push(
                &mut errors,
                "name",
                "must be 1-100 characters, without control characters",
            );
            None
        }
    };
    let workspaces = parse_workspaces(map.get("workspaces"), &mut errors);
    let permissions = parse_permissions(map.get("permissions"), &mut errors);
    let expires_at = match map.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match parse_time(s) {
            Some(t) if t >= now + MIN_EXPIRY_LEAD_SECS => Some(t),
            Some(_) => {
                push(
                    &mut errors,
                    "expires_at",
                    "must be at least 60 seconds in the future",
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
        Some(v) => match serde_json::from_value::<RateLimitBody>(v.clone()) {
            Ok(b) => {
                let rl = RateLimit {
                    requests: b.requests,
                    window_seconds: b.window_seconds,
                };
                if rl.is_valid() {
                    Some(rl)
                } else {
                    push(
                        &mut errors,
                        "rate_limit",
                        "requests must be 1-1000000 and window_seconds 1-86400",
                    );
                    None
                }
            }
            Err(_) => {
                push(
                    &mut errors,
                    "rate_limit",
                    "must be {\"requests\": 1-1000000, \"window_seconds\": 1-86400}",
                );
                None
            }
        },
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
            })
        }
        _ => Err(Error::Validation(errors)),
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
        Some(Value::Array(items)) if items.len() > MAX_WORKSPACES => {
            push(errors, field, "has too many entries");
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

fn parse_workspaces(v: Option<&Value>, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let items = string_list(v, "workspaces", errors)?;
    if items.contains(&WILDCARD) {
        if items.iter().any(|w| *w != WILDCARD) {
            push(errors, "workspaces", "\"*\" must be the only entry");
            return None;
        }
        return Some(vec![WILDCARD.to_owned()]);
    }
    if let Some(bad) = items.iter().find(|w| !is_workspace_id(w)) {
        let _ = bad;
        push(
            errors,
            "workspaces",
            "each workspace id must be 1-64 characters of A-Z a-z 0-9 _ -",
        );
        return None;
    }
    Some(dedup(items))
}

fn parse_permissions(v: Option<&Value>, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let items = string_list(v, "permissions", errors)?;
    if let Some(bad) = items
        .iter()
        .find(|p| **p != WILDCARD && !PERMISSIONS.contains(p))
    {
        let _ = bad;
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

/// A key may mint keys only for its own user, with workspaces, permissions and expiry no wider
/// than its own. An omitted expiry inherits the creator's.
pub fn restrict_to_creator(creator: &KeyRecord, new: &mut NewKey) -> Result<(), Error> {
    if new.user_id != creator.user_id {
        return Err(Error::PermissionDenied(
            "An API key can only create keys for its own user.",
        ));
    }
    let all_ws = creator.workspaces.iter().any(|w| w == WILDCARD);
    if !all_ws
        && new
            .workspaces
            .iter()
            .any(|w| w == WILDCARD || !creator.workspaces.contains(w))
    {
        return Err(Error::PermissionDenied(
            "A new key's workspaces must be among the creating key's workspaces.",
        ));
    }
    let all_perms = creator.permissions.iter().any(|p| p == WILDCARD);
    if !all_perms
        && new
            .permissions
            .iter()
            .any(|p| p == WILDCARD || !creator.permissions.contains(p))
    {
        return Err(Error::PermissionDenied(
            "A new key's permissions must be among the creating key's permissions.",
        ));
    }
    if let Some(limit) = creator.expires_at_secs() {
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
    Ok(())
}

/// Validates a roll body: `{"grace_seconds": 0..604800}`, default 0; an empty body is `{}`.
pub fn parse_roll(body: &[u8]) -> Result<u64, Error> {
    let map = parse_object(body)?;
    let mut errors = FieldErrors::new();
    for k in map.keys() {
        if k != "grace_seconds" {
            push(&mut errors, k, "unknown field");
        }
    }
    let grace = match map.get("grace_seconds") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(g) if g <= MAX_GRACE_SECS => g,
            _ => {
                push(
                    &mut errors,
                    "grace_seconds",
                    "must be an integer from 0 to 604800",
                );
                0
            }
        },
    };
    if errors.is_empty() {
        Ok(grace)
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
            "user_id" => push(
                &mut errors,
                "user_id",
                "must be 1-128 characters of A-Z a-z 0-9 . _ @ : -",
            ),
            "limit" => match v.parse::<u64>() {
                Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => q.limit = n,
                _ => push(&mut errors, "limit", "must be an integer from 1 to 100"),
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DEFAULT: RateLimit = RateLimit {
        requests: 600,
        window_seconds: 60,
    };

    fn create(body: &str) -> Result<NewKey, Error> {
        parse_create(body.as_bytes(), NOW, DEFAULT)
    }

    fn fields(e: Error) -> FieldErrors {
        match e {
            Error::Validation(f) => f,
            other => panic!("not a validation error: {other:?}"),
        }
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
        for name in [
            "user_id",
            "email",
            "name",
            "workspaces",
            "permissions",
            "expires_at",
            "rate_limit",
            "extra",
        ] {
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

    fn record(workspaces: &[&str], permissions: &[&str], expires: Option<i64>) -> KeyRecord {
        NewKey {
            user_id: "u".into(),
            email: None,
            name: "n".into(),
            workspaces: workspaces.iter().map(|s| s.to_string()).collect(),
            permissions: permissions.iter().map(|s| s.to_string()).collect(),
            expires_at: expires,
            rate_limit: DEFAULT,
        }
        .into_record("key_0000000000000000".into(), "kg_000000".into(), NOW)
    }

    #[test]
    fn authorize_checks_the_workspace_before_the_permission() {
        let r = record(&["ws1"], &["jobs:read"], None);
        assert_eq!(r.authorize(Some("ws1"), "jobs:read"), Ok(()));
        assert_eq!(r.authorize(None, "jobs:read"), Ok(()));
        assert_eq!(
            r.authorize(Some("ws2"), "jobs:run"),
            Err(Error::WorkspaceForbidden)
        );
        assert!(matches!(
            r.authorize(Some("ws1"), "jobs:run"),
            Err(Error::PermissionDenied(_))
        ));
        let any = record(&["*"], &["*"], None);
        assert_eq!(any.authorize(Some("anything"), "secrets:write"), Ok(()));
    }

    #[test]
    fn a_key_cannot_mint_wider_keys() {
        let creator = record(
            &["a", "b"],
            &["api_keys:write", "jobs:read"],
            Some(NOW + 1000),
        );
        let mut ok = NewKey {
            user_id: "u".into(),
            email: None,
            name: "n".into(),
            workspaces: vec!["a".into()],
            permissions: vec!["jobs:read".into()],
            expires_at: None,
            rate_limit: DEFAULT,
        };
        assert_eq!(restrict_to_creator(&creator, &mut ok), Ok(()));
        assert_eq!(ok.expires_at, Some(NOW + 1000), "expiry is inherited");

        let mut other_user = ok.clone();
        other_user.user_id = "v".into();
        assert!(restrict_to_creator(&creator, &mut other_user).is_err());
        let mut wider_ws = ok.clone();
        wider_ws.workspaces = vec!["*".into()];
        assert!(restrict_to_creator(&creator, &mut wider_ws).is_err());
        let mut wider_perm = ok.clone();
        wider_perm.permissions = vec!["jobs:run".into()];
        assert!(restrict_to_creator(&creator, &mut wider_perm).is_err());
        let mut later = ok.clone();
        later.expires_at = Some(NOW + 1001);
        assert!(restrict_to_creator(&creator, &mut later).is_err());
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
            Some((NOW + 100 + KV_EXPIRY_AFTER_SECS) as u64)
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
    fn roll_bodies_and_grace() {
        assert_eq!(parse_roll(b""), Ok(0));
        assert_eq!(parse_roll(b"{}"), Ok(0));
        assert_eq!(parse_roll(br#"{"grace_seconds":3600}"#), Ok(3600));
        assert!(parse_roll(br#"{"grace_seconds":604801}"#).is_err());
        assert!(parse_roll(br#"{"grace_seconds":-1}"#).is_err());
        assert!(parse_roll(br#"{"grace":1}"#).is_err());

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
        ] {
            assert!(parse_list_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_round_trip() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2030-01-01T01:00:00+01:00"), Some(1_893_456_000));
        assert_eq!(parse_time("2030-01-01"), None);
    }

    #[test]
    fn default_rate_limit_parsing() {
        assert_eq!(RateLimit::parse("600/60"), Some(DEFAULT));
        assert_eq!(RateLimit::parse("0/60"), None);
        assert_eq!(RateLimit::parse("600"), None);
        assert_eq!(RateLimit::parse("5/86401"), None);
    }

    #[test]
    fn rate_limit_display_round_trips() {
        let rl = RateLimit {
            requests: 1_000_000,
            window_seconds: 86_400,
        };
        assert_eq!(rl.to_string(), "1000000/86400");
        assert_eq!(RateLimit::parse(&rl.to_string()), Some(rl));
        assert_eq!(RateLimit::parse(&DEFAULT.to_string()), Some(DEFAULT));
    }
}
