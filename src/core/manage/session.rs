//! Settings sessions (docs/CONTRACT.md section 11): the request that opens one, what its
//! Durable Object stores, the single use of its link, the cookie, and the CSRF check.
//!
//! The secrets, and where each lives:
//! - the *link token* (32 random bytes, base64url) is in the URL the platform sends the browser
//!   to, once; the session's object is named by its SHA-256, so storage never holds it;
//! - the *cookie secret* (32 random bytes) is in the `HttpOnly` cookie; the object holds its
//!   SHA-256 and compares in constant time;
//! - the *CSRF token* (32 random bytes) is given to the page by `GET /settings/api/session` and
//!   must come back in `X-CSRF-Token` on every state-changing call. It is not a credential on
//!   its own: the cookie is needed too.
//!
//! Length: the create body's seven fields are validated one by one like a key's (section 4);
//! the last third of the file is the unit tests of these rules.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::error::{Error, FieldErrors};
use crate::core::names::SETTINGS_COOKIE;
use crate::core::request::{is_user_id, parse_email, parse_permissions, parse_workspaces, push};

/// Session lifetime bounds and default (`ttl_seconds`): long enough to manage keys, short
/// enough that a stolen link or cookie is worth little.
pub const MIN_TTL_SECS: i64 = 60;
pub const MAX_TTL_SECS: i64 = 3600;
pub const DEFAULT_TTL_SECS: i64 = 900;
/// Largest `max_expiry_days` (ten years): a bound, not a recommendation.
pub const MAX_EXPIRY_DAYS: u32 = 3650;
pub const SECS_PER_DAY: i64 = 86_400;
/// Longest `return_url`; browsers and servers commonly cut URLs near this length.
pub const MAX_RETURN_URL_LEN: usize = 2048;
/// Bytes of randomness in the link token, the cookie secret and the CSRF token.
pub const SECRET_BYTES: usize = 32;
/// Their base64url length, without padding (`ceil(32 * 4 / 3)`).
pub const SECRET_CHARS: usize = 43;
/// How long an expired session's object keeps its state before deleting it, so that a late
/// request gets `session_expired` rather than `missing_session` for a while.
pub const KEEP_AFTER_EXPIRY_SECS: i64 = SECS_PER_DAY;

const CREATE_FIELDS: [&str; 7] = [
    "user_id",
    "email",
    "workspaces",
    "permissions",
    "max_expiry_days",
    "return_url",
    "ttl_seconds",
];

/// One settings session: the user it acts for and the ceiling of what they may grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub email: String,
    /// The widest workspaces a key made in the session may have.
    pub workspaces: Vec<String>,
    /// The widest permissions a key made in the session may have.
    pub permissions: Vec<String>,
    /// A key made in the session expires at most this many days after it is made.
    pub max_expiry_days: Option<u32>,
    /// Where the page's "back" link goes (http or https, absolute).
    pub return_url: Option<String>,
    /// Unix seconds; the link and the cookie are refused from this second on.
    pub expires_at: i64,
}

impl Session {
    /// The latest expiry a key made now may have, if the session bounds it.
    pub fn expiry_limit(&self, now: i64) -> Option<i64> {
        self.max_expiry_days
            .map(|d| now.saturating_add(i64::from(d) * SECS_PER_DAY))
    }
}

/// What a session's object stores. Never the link token or the cookie secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    pub session: Session,
    /// Whether the link was opened (it works once).
    pub opened: bool,
    /// SHA-256 (hex) of the cookie secret, set when the link is opened.
    pub cookie_hash: Option<String>,
    pub csrf_token: String,
}

/// Why the session's object refused, as the client will be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The link is unknown, used or expired (not told apart: no oracle for link tokens).
    LinkExpired,
    /// No session behind the cookie, or a wrong cookie secret.
    MissingSession,
    /// The cookie is right but the session is over.
    SessionExpired,
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::LinkExpired => Error::LinkExpired,
            Refusal::MissingSession => Error::RefusedSession,
            Refusal::SessionExpired => Error::SessionExpired,
        }
    }
}

/// The object's answer to an open or a check: the session, or why not.
pub type Answer = Result<StoredSession, Refusal>;

/// Opening the link: once, before expiry. Returns the state to store (when it changes) and
/// the answer.
pub fn open(
    stored: Option<StoredSession>,
    now: i64,
    cookie_hash: &str,
) -> (Option<StoredSession>, Answer) {
    match stored {
        Some(mut s) if !s.opened && now < s.session.expires_at => {
            s.opened = true;
            s.cookie_hash = Some(cookie_hash.to_owned());
            (Some(s.clone()), Ok(s))
        }
        _ => (None, Err(Refusal::LinkExpired)),
    }
}

/// A request carrying the cookie: the secret first (compared in constant time), then expiry,
/// so that only the cookie's holder learns that the session has ended.
pub fn check(stored: Option<StoredSession>, now: i64, cookie_hash: &str) -> Answer {
    let s = stored.ok_or(Refusal::MissingSession)?;
    let expected = s.cookie_hash.as_deref().ok_or(Refusal::MissingSession)?;
    if !bool::from(expected.as_bytes().ct_eq(cookie_hash.as_bytes())) {
        return Err(Refusal::MissingSession);
    }
    if now >= s.session.expires_at {
        return Err(Refusal::SessionExpired);
    }
    Ok(s)
}

/// Signing out (`POST /settings/api/session/end`): the same cookie check as [`check`], then
/// the session ends now. The cookie's hash is kept so that its holder is told
/// `session_expired` afterwards, exactly as after `expires_at`; the object still deletes its
/// state a day after the original expiry. Returns the state to store (when it changes) and
/// the answer.
pub fn end(
    stored: Option<StoredSession>,
    now: i64,
    cookie_hash: &str,
) -> (Option<StoredSession>, Answer) {
    match check(stored, now, cookie_hash) {
        Ok(mut s) => {
            s.session.expires_at = now;
            (Some(s.clone()), Ok(s))
        }
        Err(r) => (None, Err(r)),
    }
}

/// SHA-256 (hex) of a secret: the object's name for a link token, the stored form of a cookie
/// secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Base64url without padding (RFC 4648 section 5): URL- and cookie-safe.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Whether `s` has the shape of a link token or cookie secret (checked before any storage read).
pub fn is_secret(s: &str) -> bool {
    s.len() == SECRET_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The link token from `/settings/open`'s query, if well formed.
pub fn link_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| is_secret(t))
}

/// The cookie's value: the session's object name, a dot, the cookie secret.
pub fn cookie_value(object_name: &str, secret: &str) -> String {
    format!("{object_name}.{secret}")
}

/// `(object name, cookie secret)` from a `Cookie` header, if it holds a well-formed session
/// cookie (the first one, when a browser sends several).
pub fn read_cookie(header: Option<&str>) -> Option<(&str, &str)> {
    read_named_cookie(header, SETTINGS_COOKIE)
}

/// [`read_cookie`] for the cookie called `cookie`.
pub fn read_named_cookie<'a>(header: Option<&'a str>, cookie: &str) -> Option<(&'a str, &'a str)> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == cookie)
        .find_map(|(_, value)| {
            let (name, secret) = value.split_once('.')?;
            (is_hash(name) && is_secret(secret)).then_some((name, secret))
        })
}

/// `Set-Cookie` for a session: `HttpOnly` (no script reads it), `SameSite=Strict` (no other
/// site's page sends it), scoped to the settings paths, gone when the session ends, and
/// `Secure` except on a local host (where `make dev` serves plain HTTP).
pub fn set_cookie(value: &str, max_age: i64, secure: bool) -> String {
    let mut c = format!(
        "{SETTINGS_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={}; Max-Age={}",
        crate::core::settings::PATH_SETTINGS,
        max_age.max(0)
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// `Set-Cookie` that removes the session cookie (sign-out): an empty value, `Max-Age=0`, the
/// same attributes, so the browser matches and drops the cookie it holds.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// `scheme://host[:port]` of an absolute URL (the request's own URL).
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find(['/', '?', '#']) {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Whether an origin is this machine (no `Secure` cookie there: `make dev` is plain HTTP).
pub fn is_local(origin: &str) -> bool {
    let host = origin.split_once("://").map_or(origin, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// The CSRF rule for a state-changing call: `X-CSRF-Token` equal to the session's (constant
/// time) and, when the browser sent `Origin`, the gateway's own origin. The cookie alone never
/// suffices.
pub fn check_csrf(
    expected: &str,
    presented: Option<&str>,
    origin_header: Option<&str>,
    own_origin: &str,
) -> Result<(), Error> {
    let token_ok = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
    let origin_ok = origin_header.is_none_or(|o| o.eq_ignore_ascii_case(own_origin));
    if token_ok && origin_ok {
        Ok(())
    } else {
        Err(Error::CsrfFailed)
    }
}

/// An absolute `http(s)://host...` URL of printable ASCII without spaces or backslashes. Not a
/// full URL parser (that would link the IDNA tables into the Worker): the page only ever puts
/// it in a link's `href`, and the scheme check keeps `javascript:` and the like out.
pub fn is_return_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    s.len() <= MAX_RETURN_URL_LEN
        && !host.is_empty()
        && !host.contains('@')
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

/// Validates `POST /v1/settings-sessions`; every problem is reported under its field. Returns
/// the session (expiring `ttl_seconds` from `now`).
pub fn parse_create(body: &[u8], now: i64) -> Result<Session, Error> {
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => return Err(Error::field("body", "must be a JSON object")),
    };
    let mut errors = FieldErrors::new();
    for k in map.keys() {
        if !CREATE_FIELDS.contains(&k.as_str()) {
            push(&mut errors, k, "unknown field");
        }
    }
    let user_id = match map.get("user_id") {
        Some(Value::String(s)) if is_user_id(s) => Some(s.clone()),
        None | Some(Value::Null) => {
            push(&mut errors, "user_id", "is required");
            None
        }
        Some(_) => {
            push(
                &mut errors,
                "user_id",
                &crate::core::request::user_id_rule(),
            );
            None
        }
    };
    let email = parse_email(map.get("email"), true, &mut errors);
    let workspaces = parse_workspaces(map.get("workspaces"), &mut errors);
    let permissions = parse_permissions(map.get("permissions"), &mut errors);
    let max_expiry_days = match map.get("max_expiry_days") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=u64::from(MAX_EXPIRY_DAYS)).contains(&d) => Some(d as u32),
            _ => {
                push(
                    &mut errors,
                    "max_expiry_days",
                    &format!("must be an integer from 1 to {MAX_EXPIRY_DAYS}"),
                );
                None
            }
        },
    };
    let return_url = match map.get("return_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_return_url(s) => Some(s.clone()),
        Some(_) => {
            push(
                &mut errors,
                "return_url",
                &format!(
                    "must be an absolute http:// or https:// URL of at most {MAX_RETURN_URL_LEN} \
                     printable ASCII characters"
                ),
            );
            None
        }
    };
    let ttl = match map.get("ttl_seconds") {
        None | Some(Value::Null) => DEFAULT_TTL_SECS,
        Some(v) => match v.as_i64() {
            Some(t) if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&t) => t,
            _ => {
                push(
                    &mut errors,
                    "ttl_seconds",
                    &format!("must be an integer from {MIN_TTL_SECS} to {MAX_TTL_SECS}"),
                );
                DEFAULT_TTL_SECS
            }
        },
    };
    match (user_id, email, workspaces, permissions) {
        (Some(user_id), Some(email), Some(workspaces), Some(permissions)) if errors.is_empty() => {
            Ok(Session {
                user_id,
                email,
                workspaces,
                permissions,
                max_expiry_days,
                return_url,
                expires_at: now + ttl,
            })
        }
        _ => Err(Error::Validation(errors)),
    }
}

/// A create body from the settings page, with the session's `user_id` and `email` filled in
/// where the body leaves them out. A body that names others is left as it is, and refused by
/// [`crate::core::access::restrict_to_session`]; a body that is not an object is left for the
/// create route's own validation to refuse.
pub fn fill_owner(body: &[u8], session: &Session) -> Vec<u8> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    let mut fill = |field: &str, value: &str| {
        if matches!(map.get(field), None | Some(Value::Null)) {
            map.insert(field.to_owned(), Value::from(value));
        }
    };
    fill("user_id", &session.user_id);
    fill("email", &session.email);
    serde_json::to_vec(&Value::Object(map)).unwrap_or_else(|_| body.to_vec())
}

/// The session for the page, with its CSRF token (`GET /settings/api/session` adds its user's
/// pool: [`crate::core::settings::session_answer`]).
pub fn session_body(s: &StoredSession) -> Value {
    let mut m = Map::new();
    let session = &s.session;
    m.insert("user_id".into(), Value::from(session.user_id.as_str()));
    m.insert("email".into(), Value::from(session.email.as_str()));
    m.insert("workspaces".into(), Value::from(session.workspaces.clone()));
    m.insert(
        "permissions".into(),
        Value::from(session.permissions.clone()),
    );
    m.insert(
        "max_expiry_days".into(),
        Value::from(session.max_expiry_days),
    );
    m.insert("return_url".into(), Value::from(session.return_url.clone()));
    m.insert(
        "expires_at".into(),
        Value::from(crate::core::time::format_time(session.expires_at)),
    );
    m.insert("csrf_token".into(), Value::from(s.csrf_token.as_str()));
    Value::Object(m)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const NOW: i64 = 1_800_000_000;

    #[test]
    fn secrets_hashes_and_cookies_have_exact_shapes() {
        let secret = "a".repeat(SECRET_CHARS);
        assert!(is_secret(&secret));
        assert!(is_secret(&format!(
            "{}-_",
            "Z9".repeat((SECRET_CHARS - 2) / 2) + "x"
        )));
        for bad in [
            "a".repeat(SECRET_CHARS - 1),
            "a".repeat(SECRET_CHARS + 1),
            format!("{}+", "a".repeat(SECRET_CHARS - 1)),
            format!("{}.", "a".repeat(SECRET_CHARS - 1)),
        ] {
            assert!(!is_secret(&bad), "{bad}");
        }
        let hash = "0123456789abcdef".repeat(4);
        assert!(is_hash(&hash));
        for bad in [
            hash.to_uppercase(),
            hash[..63].to_owned(),
            format!("{}g", &hash[..63]),
            format!("{hash}0"),
        ] {
            assert!(!is_hash(&bad), "{bad}");
        }
        // The cookie: its name exactly, then `hash.secret`, each of its shape.
        let header = format!(
            "other=1; {SETTINGS_COOKIE}={}",
            cookie_value(&hash, &secret)
        );
        assert_eq!(
            read_cookie(Some(&header)),
            Some((hash.as_str(), secret.as_str()))
        );
        let short_hash = format!("{SETTINGS_COOKIE}={}.{secret}", &hash[..63]);
        assert_eq!(read_cookie(Some(&short_hash)), None);
        let short_secret = format!("{SETTINGS_COOKIE}={hash}.{}", &secret[1..]);
        assert_eq!(read_cookie(Some(&short_secret)), None);
    }

    #[test]
    fn origins_and_local_hosts() {
        assert_eq!(
            origin_of("https://gw.example.com:8443/settings/open?token=x"),
            "https://gw.example.com:8443"
        );
        assert_eq!(origin_of("http://h?x"), "http://h");
        assert!(is_local("http://[::1]"));
        assert!(is_local("http://[::1]:8787"));
        assert!(is_local("http://localhost:8787"));
        assert!(!is_local("http://localhost:abc"));
        assert!(!is_local("https://gw.example.com"));
    }

    #[test]
    fn a_session_with_any_problem_is_refused_whole() {
        let body = r#"{"user_id":"alice","email":"alice@example.com","workspaces":["ws1"],
            "permissions":["jobs:read"],"ttl_seconds":1}"#;
        assert!(fields(body).contains_key("ttl_seconds"));
    }

    pub fn session() -> Session {
        Session {
            user_id: "alice".into(),
            email: "alice@example.com".into(),
            workspaces: vec!["ws1".into(), "ws2".into()],
            permissions: vec!["jobs:read".into(), "jobs:run".into()],
            max_expiry_days: Some(30),
            return_url: None,
            expires_at: NOW + 900,
        }
    }

    fn stored() -> StoredSession {
        StoredSession {
            session: session(),
            opened: false,
            cookie_hash: None,
            csrf_token: "c".repeat(SECRET_CHARS),
        }
    }

    fn fields(body: &str) -> FieldErrors {
        match parse_create(body.as_bytes(), NOW) {
            Err(Error::Validation(f)) => f,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn a_full_request_is_accepted_and_ttl_defaults_to_900() {
        let s = parse_create(
            br#"{"user_id":"alice","email":"alice@example.com","workspaces":["ws1"],
                "permissions":["jobs:read"],"max_expiry_days":30,
                "return_url":"https://app.example.com/account"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(s.expires_at, NOW + DEFAULT_TTL_SECS);
        assert_eq!(s.max_expiry_days, Some(30));
        assert_eq!(
            s.return_url.as_deref(),
            Some("https://app.example.com/account")
        );
        let s = parse_create(
            br#"{"user_id":"a","email":"a@b.c","workspaces":["*"],"permissions":["*"],
                "ttl_seconds":60}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(s.expires_at, NOW + 60);
    }

    #[test]
    fn every_problem_is_reported_under_its_field() {
        let f = fields(
            r#"{"user_id":"a b","workspaces":[],"permissions":["jobs:fly"],
                "max_expiry_days":0,"return_url":"javascript:alert(1)","ttl_seconds":59,"x":1}"#,
        );
        for k in [
            "user_id",
            "email",
            "workspaces",
            "permissions",
            "max_expiry_days",
            "return_url",
            "ttl_seconds",
            "x",
        ] {
            assert!(f.contains_key(k), "{k}: {f:?}");
        }
        assert!(fields(r#"{"ttl_seconds":3601}"#).contains_key("ttl_seconds"));
        assert!(fields(r#"{"max_expiry_days":3651}"#).contains_key("max_expiry_days"));
        assert!(matches!(
            parse_create(b"[]", NOW),
            Err(Error::Validation(f)) if f.contains_key("body")
        ));
    }

    #[test]
    fn return_urls_are_absolute_http_or_https() {
        for ok in [
            "https://app.example.com",
            "http://127.0.0.1:3000/settings?x=1",
            "HTTPS://APP.EXAMPLE.COM/a#b",
        ] {
            assert!(is_return_url(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "//evil.example",
            "/relative",
            "https://",
            "https:///path",
            "https://user@evil.example/",
            "https://a.example/\\evil",
            "https://a.example/ space",
            "ftp://a.example/",
            "data:text/html,x",
        ] {
            assert!(!is_return_url(bad), "{bad}");
        }
        assert!(!is_return_url(&format!(
            "https://a.example/{}",
            "a".repeat(MAX_RETURN_URL_LEN)
        )));
    }

    #[test]
    fn the_link_opens_once_and_only_before_expiry() {
        let (save, answer) = open(Some(stored()), NOW, "h");
        let opened = save.expect("the open is stored");
        assert!(opened.opened);
        assert_eq!(opened.cookie_hash.as_deref(), Some("h"));
        assert_eq!(answer.unwrap(), opened);
        // Again: refused, nothing stored.
        assert_eq!(
            open(Some(opened), NOW, "h2"),
            (None, Err(Refusal::LinkExpired))
        );
        // Unknown and expired read the same.
        assert_eq!(open(None, NOW, "h"), (None, Err(Refusal::LinkExpired)));
        assert_eq!(
            open(Some(stored()), NOW + 900, "h"),
            (None, Err(Refusal::LinkExpired))
        );
        assert!(open(Some(stored()), NOW + 899, "h").1.is_ok());
    }

    #[test]
    fn the_cookie_is_checked_before_expiry() {
        let (opened, _) = open(Some(stored()), NOW, "h");
        let opened = opened.unwrap();
        assert!(check(Some(opened.clone()), NOW + 899, "h").is_ok());
        assert_eq!(
            check(Some(opened.clone()), NOW + 900, "h"),
            Err(Refusal::SessionExpired)
        );
        // A wrong secret never learns that the session ended.
        assert_eq!(
            check(Some(opened.clone()), NOW + 900, "x"),
            Err(Refusal::MissingSession)
        );
        assert_eq!(check(None, NOW, "h"), Err(Refusal::MissingSession));
        // A link never opened has no cookie.
        assert_eq!(check(Some(stored()), NOW, ""), Err(Refusal::MissingSession));
    }

    #[test]
    fn base64url_matches_rfc_4648() {
        // RFC 4648 section 10 vectors, in the URL alphabet without padding.
        for (input, out) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), out);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        let s = base64url(&[7u8; SECRET_BYTES]);
        assert_eq!(s.len(), SECRET_CHARS);
        assert!(is_secret(&s));
    }

    #[test]
    fn link_tokens_and_cookies_are_read_only_when_well_formed() {
        let t = base64url(&[1u8; SECRET_BYTES]);
        assert_eq!(
            link_token(Some(&format!("token={t}"))).as_deref(),
            Some(t.as_str())
        );
        assert_eq!(link_token(Some("token=short")), None);
        assert_eq!(link_token(None), None);
        let name = hash_secret(&t);
        let value = cookie_value(&name, &t);
        let header = format!("a=b; {SETTINGS_COOKIE}={value}; c=d");
        assert_eq!(
            read_cookie(Some(&header)),
            Some((name.as_str(), t.as_str()))
        );
        assert_eq!(read_cookie(Some("kg_settings=abc.def")), None);
        assert_eq!(read_cookie(Some(&format!("other={value}"))), None);
        assert_eq!(read_cookie(None), None);
    }

    #[test]
    fn signing_out_ends_the_session_for_its_cookie_only() {
        let (opened, _) = open(Some(stored()), NOW, "h");
        let opened = opened.unwrap();
        // A wrong secret cannot end it, and learns nothing.
        assert_eq!(
            end(Some(opened.clone()), NOW + 10, "x"),
            (None, Err(Refusal::MissingSession))
        );
        let (saved, answer) = end(Some(opened.clone()), NOW + 10, "h");
        let saved = saved.unwrap();
        assert_eq!(answer, Ok(saved.clone()));
        assert_eq!(saved.session.expires_at, NOW + 10);
        // The same cookie afterwards: the session is over, as after its expiry.
        assert_eq!(
            check(Some(saved.clone()), NOW + 10, "h"),
            Err(Refusal::SessionExpired)
        );
        assert_eq!(
            end(Some(saved), NOW + 11, "h"),
            (None, Err(Refusal::SessionExpired))
        );
        assert_eq!(end(None, NOW, "h"), (None, Err(Refusal::MissingSession)));
    }

    #[test]
    fn the_cookie_is_httponly_strict_scoped_and_secure_off_localhost() {
        assert_eq!(
            clear_cookie(false),
            "kg_settings=; HttpOnly; SameSite=Strict; Path=/settings; Max-Age=0"
        );
        assert!(clear_cookie(true).ends_with("; Secure"));
        let c = set_cookie("v", 900, true);
        assert_eq!(
            c,
            "kg_settings=v; HttpOnly; SameSite=Strict; Path=/settings; Max-Age=900; Secure"
        );
        assert!(!set_cookie("v", 900, false).contains("Secure"));
        assert!(set_cookie("v", -5, false).contains("Max-Age=0"));
        assert!(is_local("http://127.0.0.1:8787"));
        assert!(is_local("http://localhost"));
        assert!(is_local("http://[::1]:8787"));
        assert!(!is_local("https://keys.example.com"));
        assert!(!is_local("https://localhost.example.com"));
        assert_eq!(
            origin_of("http://127.0.0.1:8787/settings/open?token=x"),
            "http://127.0.0.1:8787"
        );
        assert_eq!(origin_of("https://a.example"), "https://a.example");
    }

    #[test]
    fn csrf_needs_the_token_and_a_same_origin() {
        let own = "https://keys.example.com";
        let t = "t".repeat(SECRET_CHARS);
        assert_eq!(check_csrf(&t, Some(&t), None, own), Ok(()));
        assert_eq!(check_csrf(&t, Some(&t), Some(own), own), Ok(()));
        assert_eq!(check_csrf(&t, None, Some(own), own), Err(Error::CsrfFailed));
        assert_eq!(
            check_csrf(&t, Some("wrong"), None, own),
            Err(Error::CsrfFailed)
        );
        assert_eq!(
            check_csrf(&t, Some(&t), Some("https://evil.example"), own),
            Err(Error::CsrfFailed)
        );
        assert_eq!(
            check_csrf(&t, Some(&t), Some("null"), own),
            Err(Error::CsrfFailed)
        );
    }

    #[test]
    fn the_owner_is_filled_in_but_never_replaced() {
        let s = session();
        let filled: Value = serde_json::from_slice(&fill_owner(br#"{"name":"n"}"#, &s)).unwrap();
        assert_eq!(filled["user_id"], "alice");
        assert_eq!(filled["email"], "alice@example.com");
        let other: Value =
            serde_json::from_slice(&fill_owner(br#"{"user_id":"bob"}"#, &s)).unwrap();
        assert_eq!(other["user_id"], "bob");
        assert_eq!(fill_owner(b"[1]", &s), b"[1]".to_vec());
    }

    #[test]
    fn the_session_body_has_the_contract_fields() {
        let b = session_body(&stored());
        for f in [
            "user_id",
            "email",
            "workspaces",
            "permissions",
            "max_expiry_days",
            "return_url",
            "expires_at",
            "csrf_token",
        ] {
            assert!(b.get(f).is_some(), "{f}");
        }
        assert_eq!(b.as_object().unwrap().len(), 8);
        assert_eq!(b["expires_at"], "2027-01-15T08:15:00Z");
    }
}
