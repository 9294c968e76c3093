//! The one error type of keygate, and its rendering as the JSON error body of docs/CONTRACT.md section 3.
//!
//! Every variant's doc names its status and `code`. Internal failures (storage, Durable Objects,
//! configuration) carry no detail at all: the glue logs a fixed [`Cause`], the client only ever
//! sees the generic sentence, so no internal string, key, hash or token can leak through an error.

use crate::core::names;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::Cause;

/// Problems per request field, for `validation_error` bodies (`"fields": {...}`).
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 429 `too_many_failed_attempts`, with `Retry-After`.
    TooManyFailedAttempts { retry_after: u64 },
    /// 401 `missing_api_key`.
    MissingApiKey,
    /// 401 `malformed_api_key`: wrong scheme, shape or checksum.
    MalformedApiKey,
    /// 401 `invalid_api_key`: well formed, but no such key.
    InvalidApiKey,
    /// 401 `revoked_api_key`.
    RevokedApiKey,
    /// 401 `expired_api_key`.
    ExpiredApiKey,
    /// 401 `disabled_api_key`: suspended (docs/CONTRACT.md section 13).
    DisabledApiKey,
    /// 403 `ip_not_allowed`: the client address is outside the key's `allowed_ips`.
    IpNotAllowed,
    /// 403 `workspace_forbidden`.
    WorkspaceForbidden,
    /// 403 `permission_denied`, with a sentence saying which permission or limit was missing.
    PermissionDenied(&'static str),
    /// 429 `rate_limited`, with `Retry-After`.
    RateLimited { retry_after: u64 },
    /// 429 `quota_exceeded`, with `Retry-After` to the end of the quota's period.
    QuotaExceeded { retry_after: u64 },
    /// 429 `pool_rate_limited`, with `Retry-After`: a pool the request counts against (its
    /// user's or its workspace's, docs/CONTRACT.md section 17) is over its rate limit.
    PoolRateLimited { retry_after: u64 },
    /// 429 `pool_quota_exceeded`, with `Retry-After` to the end of the pool quota's period.
    PoolQuotaExceeded { retry_after: u64 },
    /// 404 `not_found`.
    NotFound,
    /// 405 `method_not_allowed`, with the `Allow` header value.
    MethodNotAllowed(&'static str),
    /// 400 `invalid_path`.
    InvalidPath,
    /// 400 `validation_error`, with `fields`.
    Validation(FieldErrors),
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 422 `idempotency_key_reused`.
    IdempotencyKeyReused,
    /// 409 `idempotency_in_progress`.
    IdempotencyInProgress,
    /// 409 `key_limit_reached`: the user already holds `MAX_KEYS_PER_USER` live keys.
    KeyLimitReached,
    /// 429 `too_many_idempotency_keys`, with `Retry-After`: the key holds as many live
    /// idempotency records as it may; a new Idempotency-Key waits until some expire.
    TooManyIdempotencyKeys { retry_after: u64 },
    /// 429 `too_many_changes`, with `Retry-After` to the next UTC day: a user's keys and
    /// settings sessions made as many key changes today as a user may (each one is kept in
    /// the user's audit trail, whose size this bounds).
    TooManyChanges { retry_after: u64 },
    /// 429 `key_check_in_progress`, with `Retry-After`: an imported key's slow (PBKDF2) check is
    /// running for this prefix already (docs/CONTRACT.md section 15). Not a 401, so that
    /// nobody who knows a prefix (prefixes are not secret) can make its owner's key look dead.
    KeyCheckInProgress { retry_after: u64 },
    /// 502 `origin_unavailable`; the cause names what failed, for the log only.
    OriginUnavailable(Cause),
    /// 504 `origin_timeout`.
    OriginTimeout,
    /// 503 `unavailable`: storage, Durable Object or configuration failure (fail closed). The
    /// cause is a fixed name for the log (`kv_read`, `durable_object`, ...), never shown.
    Unavailable(Cause),
    /// 401 `invalid_admin_token`.
    InvalidAdminToken,
    /// 401 `invalid_signature`: a leak report whose GitHub signature is absent, malformed, by
    /// an unknown key, or does not match the body.
    InvalidSignature,
    /// 403 `admin_disabled`: no `ADMIN_TOKEN` configured.
    AdminDisabled,
    /// 401 `missing_session`: a settings API call without a session cookie, or with a malformed
    /// one (no storage read).
    MissingSession,
    /// 401 `missing_session` too, for the client: a well-formed cookie that the session's object
    /// refused (no such session, or a wrong secret). Apart from [`Error::MissingSession`] only
    /// so that it counts as a failed attempt (each costs an object call).
    RefusedSession,
    /// 401 `session_expired`: the settings session's cookie is right but the session is over.
    SessionExpired,
    /// 403 `csrf_failed`: a state-changing settings call without the session's CSRF token, or
    /// from another origin.
    CsrfFailed,
    /// 410 `link_expired`: a settings link that is unknown, already used or expired.
    LinkExpired,
    /// 500 `internal_error`.
    Internal,
}

/// The value of `WWW-Authenticate` on every 401.
pub const WWW_AUTHENTICATE: &str = "Api-Key realm=\"keygate\"";

impl Error {
    /// A validation error about one field.
    pub fn field(name: &str, problem: impl Into<String>) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(name.to_owned(), vec![problem.into()]);
        Error::Validation(fields)
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::TooManyFailedAttempts { .. }
            | Error::RateLimited { .. }
            | Error::QuotaExceeded { .. }
            | Error::PoolRateLimited { .. }
            | Error::PoolQuotaExceeded { .. }
            | Error::TooManyIdempotencyKeys { .. }
            | Error::TooManyChanges { .. }
            | Error::KeyCheckInProgress { .. } => 429,
            Error::MissingApiKey
            | Error::MalformedApiKey
            | Error::InvalidApiKey
            | Error::RevokedApiKey
            | Error::ExpiredApiKey
            | Error::DisabledApiKey
            | Error::InvalidAdminToken
            | Error::MissingSession
            | Error::RefusedSession
            | Error::SessionExpired
            | Error::InvalidSignature => 401,
            Error::IpNotAllowed
            | Error::WorkspaceForbidden
            | Error::PermissionDenied(_)
            | Error::AdminDisabled
            | Error::CsrfFailed => 403,
            Error::LinkExpired => 410,
            Error::NotFound => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::InvalidPath | Error::Validation(_) => 400,
            Error::PayloadTooLarge => 413,
            Error::IdempotencyKeyReused => 422,
            Error::IdempotencyInProgress | Error::KeyLimitReached => 409,
            Error::OriginUnavailable(_) => 502,
            Error::OriginTimeout => 504,
            Error::Unavailable(_) => 503,
            Error::Internal => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::TooManyFailedAttempts { .. } => "too_many_failed_attempts",
            Error::MissingApiKey => "missing_api_key",
            Error::MalformedApiKey => "malformed_api_key",
            Error::InvalidApiKey => "invalid_api_key",
            Error::RevokedApiKey => "revoked_api_key",
            Error::ExpiredApiKey => "expired_api_key",
            Error::DisabledApiKey => "disabled_api_key",
            Error::IpNotAllowed => "ip_not_allowed",
            Error::QuotaExceeded { .. } => "quota_exceeded",
            Error::PoolRateLimited { .. } => "pool_rate_limited",
            Error::PoolQuotaExceeded { .. } => "pool_quota_exceeded",
            Error::WorkspaceForbidden => "workspace_forbidden",
            Error::PermissionDenied(_) => "permission_denied",
            Error::RateLimited { .. } => "rate_limited",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::InvalidPath => "invalid_path",
            Error::Validation(_) => "validation_error",
            Error::PayloadTooLarge => "payload_too_large",
            Error::IdempotencyKeyReused => "idempotency_key_reused",
            Error::IdempotencyInProgress => "idempotency_in_progress",
            Error::KeyLimitReached => "key_limit_reached",
            Error::TooManyIdempotencyKeys { .. } => "too_many_idempotency_keys",
            Error::TooManyChanges { .. } => "too_many_changes",
            Error::KeyCheckInProgress { .. } => "key_check_in_progress",
            Error::OriginUnavailable(_) => "origin_unavailable",
            Error::OriginTimeout => "origin_timeout",
            Error::Unavailable(_) => "unavailable",
            Error::InvalidAdminToken => "invalid_admin_token",
            Error::InvalidSignature => "invalid_signature",
            Error::AdminDisabled => "admin_disabled",
            Error::MissingSession | Error::RefusedSession => "missing_session",
            Error::SessionExpired => "session_expired",
            Error::CsrfFailed => "csrf_failed",
            Error::LinkExpired => "link_expired",
            Error::Internal => "internal_error",
        }
    }

    /// The sentence for people. Never built from internal error strings.
    pub fn detail(&self) -> &'static str {
        match self {
            Error::TooManyFailedAttempts { .. } => {
                "Too many failed authentication attempts from this client; retry later."
            }
            Error::MissingApiKey => "This route requires an `Authorization: Api-Key <key>` header.",
            Error::MalformedApiKey => {
                "The Authorization header is not a well-formed `Api-Key <key>` with a valid key."
            }
            Error::InvalidApiKey => "The API key is not valid.",
            Error::RevokedApiKey => "The API key has been revoked.",
            Error::ExpiredApiKey => "The API key has expired.",
            Error::DisabledApiKey => "The API key is disabled.",
            Error::IpNotAllowed => "The API key may not be used from this IP address.",
            Error::QuotaExceeded { .. } => {
                "The API key's job-run quota for this period is used up; retry after the period ends."
            }
            Error::WorkspaceForbidden => "The API key does not grant access to this workspace.",
            Error::PermissionDenied(why) => why,
            Error::RateLimited { .. } => "The API key's rate limit is exceeded; retry later.",
            Error::PoolRateLimited { .. } => {
                "A shared limit (the user's or the workspace's pool) is exceeded; retry later."
            }
            Error::PoolQuotaExceeded { .. } => {
                "A shared job-run quota (the user's or the workspace's pool) is used up for this \
                 period; retry after the period ends."
            }
            Error::NotFound => "No such resource.",
            Error::MethodNotAllowed(_) => "This method is not allowed on this path.",
            Error::InvalidPath => {
                "The path contains a forbidden segment or character (dot segment, empty segment, \
                 encoded slash, backslash, NUL or control character)."
            }
            Error::Validation(_) => "The request is invalid; see `fields`.",
            Error::PayloadTooLarge => "The request body is larger than the gateway accepts.",
            Error::IdempotencyKeyReused => {
                "This Idempotency-Key was already used with a different request."
            }
            Error::IdempotencyInProgress => {
                "A request with this Idempotency-Key is still in progress; retry later."
            }
            Error::TooManyIdempotencyKeys { .. } => {
                "This API key holds as many remembered Idempotency-Keys as it may; a new one is \
                 accepted once older ones expire (see Retry-After). Known Idempotency-Keys and \
                 requests without one are not affected."
            }
            Error::KeyCheckInProgress { .. } => {
                "This key's first check is running (an imported key with a slow hash is checked \
                 once); retry after Retry-After seconds."
            }
            Error::TooManyChanges { .. } => {
                "This user's keys and settings sessions have made as many key changes today as a \
                 user may; retry tomorrow (see Retry-After), or ask the platform's admin."
            }
            Error::OriginUnavailable(_) => "The upstream service could not be reached.",
            Error::OriginTimeout => "The upstream service did not answer in time.",
            Error::Unavailable(_) => "The gateway is temporarily unavailable; retry later.",
            Error::KeyLimitReached => {
                "This user already holds the most live API keys allowed; revoke one first."
            }
            Error::InvalidAdminToken => "The admin token is not valid.",
            Error::InvalidSignature => "The report's signature is not valid.",
            Error::AdminDisabled => "Admin access is not configured on this gateway.",
            Error::MissingSession | Error::RefusedSession => {
                "No valid settings session; open the settings link from the platform again."
            }
            Error::SessionExpired => {
                "The settings session has expired; open the settings page from the platform again."
            }
            Error::CsrfFailed => {
                "This settings call needs the session's X-CSRF-Token header and must come from \
                 the settings page's own origin."
            }
            Error::LinkExpired => {
                "This settings link is not valid: it was already used, has expired, or never \
                 existed. Open the settings page from the platform again."
            }
            Error::Internal => "An internal error occurred.",
        }
    }

    /// The fixed name of the internal failure behind this error, for the log line only.
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            Error::Unavailable(cause) | Error::OriginUnavailable(cause) => Some(cause.name()),
            Error::OriginTimeout => Some(Cause::OriginTimeout.name()),
            _ => None,
        }
    }

    /// The headers this error's answer carries besides its JSON type (docs/CONTRACT.md section
    /// 3): `WWW-Authenticate` on every 401, `Allow` on a 405, `Retry-After` where a retry is
    /// the right move. The one list; the glue only sets them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if self.status() == 401 {
            headers.push((names::WWW_AUTHENTICATE, WWW_AUTHENTICATE.to_owned()));
        }
        if let Error::MethodNotAllowed(allow) = self {
            headers.push((names::ALLOW, (*allow).to_owned()));
        }
        if let Some(secs) = self.retry_after() {
            headers.push((names::RETRY_AFTER, secs.to_string()));
        }
        headers
    }

    /// Seconds for `Retry-After`, on the errors that carry one (every 429, and 409/503 where a
    /// retry is the right move).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::TooManyFailedAttempts { retry_after }
            | Error::RateLimited { retry_after }
            | Error::QuotaExceeded { retry_after }
            | Error::PoolRateLimited { retry_after }
            | Error::PoolQuotaExceeded { retry_after }
            | Error::TooManyIdempotencyKeys { retry_after }
            | Error::TooManyChanges { retry_after }
            | Error::KeyCheckInProgress { retry_after } => Some((*retry_after).max(1)),
            Error::IdempotencyInProgress => Some(1),
            _ => None,
        }
    }

    /// The JSON error body of docs/CONTRACT.md section 3.
    pub fn body(&self, request_id: &str) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            detail: &'a str,
            code: &'a str,
            request_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            fields: Option<&'a FieldErrors>,
        }
        let fields = match self {
            Error::Validation(f) => Some(f),
            _ => None,
        };
        serde_json::to_string(&Body {
            detail: self.detail(),
            code: self.code(),
            request_id,
            fields,
        })
        // Serializing strings and a map of strings cannot fail; keep a valid body regardless.
        .unwrap_or_else(|_| String::from("{\"code\":\"internal_error\"}"))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
pub mod tests {
    use super::*;

    #[test]
    fn internal_causes_reach_the_log_line_only() {
        assert_eq!(Error::Unavailable(Cause::KvRead).cause(), Some("kv_read"));
        assert_eq!(
            Error::OriginUnavailable(Cause::OriginFetch).cause(),
            Some("origin_fetch")
        );
        assert_eq!(Error::OriginTimeout.cause(), Some("origin_timeout"));
        assert_eq!(Error::NotFound.cause(), None);
        assert_eq!(Error::NotFound.to_string(), "not_found");
    }

    /// The field errors of a validation error (the body parsers' unit tests read them); any
    /// other error fails the test.
    pub fn fields(e: Error) -> FieldErrors {
        match e {
            Error::Validation(f) => f,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn the_headers_each_error_carries() {
        let names = |e: &Error| e.headers().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            Error::InvalidApiKey.headers(),
            [(names::WWW_AUTHENTICATE, WWW_AUTHENTICATE.to_owned())]
        );
        assert_eq!(
            Error::MethodNotAllowed("GET, HEAD").headers(),
            [(names::ALLOW, "GET, HEAD".to_owned())]
        );
        assert_eq!(
            Error::PoolRateLimited { retry_after: 0 }.headers(),
            [(names::RETRY_AFTER, "1".to_owned())]
        );
        assert_eq!(names(&Error::IdempotencyInProgress), [names::RETRY_AFTER]);
        assert!(Error::NotFound.headers().is_empty());
    }

    #[test]
    fn body_has_detail_code_and_request_id() {
        let v: serde_json::Value =
            serde_json::from_str(&Error::InvalidApiKey.body("req-1")).unwrap();
        assert_eq!(v["code"], "invalid_api_key");
        assert_eq!(v["request_id"], "req-1");
        assert!(v["detail"].as_str().unwrap().len() > 10);
        assert!(v.get("fields").is_none());
    }

    #[test]
    fn validation_body_names_fields() {
        let v: serde_json::Value =
            serde_json::from_str(&Error::field("name", "is required").body("r")).unwrap();
        assert_eq!(v["code"], "validation_error");
        assert_eq!(v["fields"]["name"][0], "is required");
    }

    #[test]
    fn statuses_match_the_contract() {
        assert_eq!(Error::MissingApiKey.status(), 401);
        assert_eq!(Error::WorkspaceForbidden.status(), 403);
        assert_eq!(Error::RateLimited { retry_after: 3 }.status(), 429);
        assert_eq!(Error::RateLimited { retry_after: 0 }.retry_after(), Some(1));
        assert_eq!(Error::IdempotencyKeyReused.status(), 422);
        assert_eq!(Error::IdempotencyInProgress.status(), 409);
        assert_eq!(Error::OriginUnavailable(Cause::OriginFetch).status(), 502);
        assert_eq!(Error::OriginTimeout.status(), 504);
        assert_eq!(Error::Unavailable(Cause::KvRead).status(), 503);
        assert_eq!(Error::AdminDisabled.status(), 403);
        assert_eq!(Error::InvalidAdminToken.status(), 401);
        assert_eq!(Error::PayloadTooLarge.status(), 413);
        let full = Error::TooManyIdempotencyKeys { retry_after: 0 };
        assert_eq!(
            (full.status(), full.code()),
            (429, "too_many_idempotency_keys")
        );
        assert_eq!(full.retry_after(), Some(1), "every 429 carries Retry-After");
    }

    #[test]
    fn settings_errors_match_the_contract() {
        for (e, status, code) in [
            (Error::MissingSession, 401, "missing_session"),
            (Error::RefusedSession, 401, "missing_session"),
            (Error::SessionExpired, 401, "session_expired"),
            (Error::CsrfFailed, 403, "csrf_failed"),
            (Error::LinkExpired, 410, "link_expired"),
        ] {
            assert_eq!((e.status(), e.code()), (status, code));
        }
    }
}
