//! What crosses to the origin (docs/CONTRACT.md section 7): header filtering, the identity signature, and
//! request ids (section 3).

use crate::core::error::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::core::assertion::ASSERTION_HEADER;
use crate::core::names::{AUTHORIZATION, HOST};
pub use crate::core::names::{
    HEADER_KEY_ID, HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_USER_EMAIL, HEADER_USER_ID,
    HEADER_WORKSPACES, HEADER_WORKSPACE_ID,
};
/// Every header with this prefix that a client sends is dropped, so identity can't be spoofed.
const KEYGATE_HEADER_PREFIX: &str = "x-keygate-";

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that make an origin framework run another method or route another path than the one
/// authorized (Express `method-override`, Rails, Laravel, Symfony, IIS URL Rewrite), or trust the
/// client's idea of its address and host (contract section 7).
const REROUTING: [&str; 16] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "forwarded",
    "x-real-ip",
    // Client-address claims that Rails (`remote_ip`), PHP apps and proxies read.
    "client-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    // Host claims some frameworks build URLs and routes from.
    "x-host",
    "x-original-host",
];
/// Every `X-Forwarded-*` header (`-For`, `-Host`, `-Proto`, `-Prefix`, ...) is the client's claim.
const FORWARDED_PREFIX: &str = "x-forwarded-";

/// The query parameter Laravel, Symfony and Express's `method-override` read as the method.
const METHOD_OVERRIDE_PARAM: &str = "_method";

/// Refuses a forwarded query that carries a method override: the gateway authorized the
/// request's own method, and the origin must act on that one (400 on `_method`). Each name is
/// compared as the origins read it: decoded, case-insensitively, and as PHP normalises it
/// ([`php_name`]: `.method`, `%2Emethod`, ` _method` and `_method%00` are all `_method` to PHP,
/// and so to Laravel and Symfony). Pairs are split on `&` and, for origins that still accept it
/// (older Rack, some PHP settings), on `;`. The query is otherwise forwarded untouched.
pub fn check_query(query: Option<&str>) -> Result<(), Error> {
    let query = query.unwrap_or("");
    let overrides = query.split(';').any(|part| {
        url::form_urlencoded::parse(part.as_bytes())
            .any(|(name, _)| php_name(&name).eq_ignore_ascii_case(METHOD_OVERRIDE_PARAM))
    });
    if overrides {
        Err(Error::field(
            METHOD_OVERRIDE_PARAM,
            "method overrides are not accepted: send the request with its real method",
        ))
    } else {
        Ok(())
    }
}

/// A decoded query parameter name as PHP registers it (`php_register_variable_ex`): leading
/// spaces dropped, cut at the first NUL (PHP handles names as C strings) and at the first `[`
/// (the rest is an array index: `_method[]` is the variable `_method`), then `.` and space read
/// as `_`.
fn php_name(name: &str) -> String {
    let name = name.trim_start_matches(' ');
    let name = name.split('\0').next().unwrap_or("");
    let name = name.split('[').next().unwrap_or("");
    name.chars()
        .map(|c| if c == '.' || c == ' ' { '_' } else { c })
        .collect()
}

/// Bytes of request bodies one isolate may hold in memory at once (chunked forwarded bodies and
/// idempotent triggers' bodies, read whole before the origin call): a few `MAX_BODY_BYTES`
/// uploads at a time, far from an isolate's 128 MB. Past it a body is refused with 503 (and
/// drained) instead of risking the isolate, and every request in it, running out of memory.
pub const HELD_BODIES_BUDGET: u64 = 32 * 1024 * 1024;

/// Whether an isolate holding `held` body bytes may hold `more`.
pub fn may_hold(held: u64, more: u64) -> bool {
    held.saturating_add(more) <= HELD_BODIES_BUDGET
}

/// Longest accepted client `X-Request-Id`.
pub const MAX_REQUEST_ID_LEN: usize = 64;
/// Random bytes in a generated request id (hex-encoded to 32 chars).
pub const REQUEST_ID_BYTES: usize = 16;

/// A header name as origins compare them: lowercase, with `_` read as `-`, because CGI, WSGI,
/// PHP and older Rack map both `X-Foo-Bar` and `X_Foo_Bar` onto `HTTP_X_FOO_BAR`.
fn normalize_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            _ => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

/// Whether a client request header must not reach the origin. `connection_tokens` is the
/// client's `Connection` header, whose listed names are hop-by-hop for this message too.
/// Names are compared case-insensitively and with `_` read as `-`.
pub fn drop_request_header(name: &str, connection_tokens: Option<&str>) -> bool {
    let name = normalize_header_name(name);
    name == AUTHORIZATION
        || name == HOST
        || name == HEADER_REQUEST_ID
        || name.starts_with(KEYGATE_HEADER_PREFIX)
        // The gateway's own assertion (section 16): a client's is never forwarded.
        || name == ASSERTION_HEADER
        || REROUTING.contains(&name.as_str())
        || name.starts_with(FORWARDED_PREFIX)
        || is_hop_by_hop(&name, connection_tokens)
}

/// The value of [`HEADER_WORKSPACES`]: the key's workspaces as stored (ids of
/// `[A-Za-z0-9_-]`, so a comma never occurs in one), comma-separated; `*` for every workspace.
pub fn workspaces_header(workspaces: &[String]) -> String {
    if workspaces.iter().any(|w| w == "*") {
        "*".to_owned()
    } else {
        workspaces.join(",")
    }
}

/// Whether an origin response header must not reach the client.
pub fn drop_response_header(name: &str, connection_tokens: Option<&str>) -> bool {
    let name = name.to_ascii_lowercase();
    // The gateway sets its own request id and rate-limit headers.
    name == HEADER_REQUEST_ID
        || name.starts_with("ratelimit-")
        || is_hop_by_hop(&name, connection_tokens)
}

/// `name` is already normalized (lowercase; for requests, `_` read as `-`); so are the tokens.
fn is_hop_by_hop(name: &str, connection_tokens: Option<&str>) -> bool {
    HOP_BY_HOP.contains(&name)
        || connection_tokens.is_some_and(|c| {
            c.split(',')
                .any(|t| normalize_header_name(t.trim()) == name)
        })
}

/// The string that is signed: `<t>\n<METHOD>\n<path and query>\n<key id>\n<user id>\n<ws>`.
pub fn signature_payload(
    t: i64,
    method: &str,
    path_and_query: &str,
    key_id: &str,
    user_id: &str,
    workspace: Option<&str>,
) -> String {
    format!(
        "{t}\n{method}\n{path_and_query}\n{key_id}\n{user_id}\n{}",
        workspace.unwrap_or("")
    )
}

/// `X-Keygate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub fn signature_header(
    secret: &[u8],
    t: i64,
    method: &str,
    path_and_query: &str,
    key_id: &str,
    user_id: &str,
    workspace: Option<&str>,
) -> String {
    let payload = signature_payload(t, method, path_and_query, key_id, user_id, workspace);
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The client's request id if it is 1–64 chars of `[A-Za-z0-9._-]`.
pub fn accept_request_id(candidate: Option<&str>) -> Option<&str> {
    candidate.filter(|id| {
        (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
    })
}

pub fn new_request_id(random: &[u8; REQUEST_ID_BYTES]) -> String {
    hex::encode(random)
}

/// Whether a declared `Content-Length` is over the limit. An unparsable length is left to the
/// runtime, which refuses it before the Worker runs.
pub fn body_too_large(content_length: Option<&str>, max: u64) -> bool {
    content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max)
}

/// Whether `more` bytes still fit after `held`, within `max`: checked per chunk while a body
/// streams in or through, so that nothing past the limit is held or sent.
pub fn body_fits(held: u64, more: u64, max: u64) -> bool {
    held.checked_add(more).is_some_and(|n| n <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_bodies_budget_is_32_mib() {
        assert_eq!(HELD_BODIES_BUDGET, 33_554_432);
    }

    #[test]
    fn bodies_are_cut_at_the_limit() {
        assert!(body_fits(0, 10, 10));
        assert!(!body_fits(0, 11, 10));
        assert!(body_fits(6, 4, 10));
        assert!(!body_fits(6, 5, 10));
        assert!(!body_fits(u64::MAX, 1, u64::MAX), "never wraps");
    }

    #[test]
    fn identity_and_credentials_are_stripped() {
        for h in [
            "Authorization",
            "X-Keygate-User-Id",
            "x-keygate-anything",
            "Connection",
            "Keep-Alive",
            "Proxy-Authorization",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "X-Request-Id",
        ] {
            assert!(drop_request_header(h, None), "{h}");
        }
        assert!(drop_request_header(
            "X-Custom-Hop",
            Some("keep-alive, x-custom-hop")
        ));
        for h in ["Content-Type", "Accept", "Idempotency-Key", "X-Other"] {
            assert!(!drop_request_header(h, None), "{h}");
        }
    }

    #[test]
    fn method_override_and_routing_headers_are_stripped() {
        for h in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "X-Original-URL",
            "X-Rewrite-URL",
            "Forwarded",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "X-Forwarded-Proto",
            "x-forwarded-prefix",
            "X-Real-IP",
        ] {
            assert!(drop_request_header(h, None), "{h}");
        }
        // Near misses are ordinary headers.
        for h in ["X-Forwarded", "X-Method", "Forwarded-By", "X-Original"] {
            assert!(!drop_request_header(h, None), "{h}");
        }
    }

    #[test]
    fn underscore_spellings_are_stripped_like_dashes() {
        for h in [
            "X_Keygate_User_Email",
            "x_keygate_user_id",
            "X-Keygate_Signature",
            "X_HTTP_Method_Override",
            "X_Forwarded_For",
            "X_Real_IP",
            "X_Original_URL",
            "Proxy_Authorization",
            "Transfer_Encoding",
            "X_Request_Id",
        ] {
            assert!(drop_request_header(h, None), "{h}");
        }
        assert!(drop_request_header("X_Custom_Hop", Some("x-custom-hop")));
        assert!(drop_request_header("x-custom-hop", Some("X_Custom_Hop")));
        assert!(!drop_request_header("Idempotency_Key", None));
    }

    #[test]
    fn the_workspaces_header_lists_the_keys_workspaces() {
        let ws = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(workspaces_header(&ws(&["demo"])), "demo");
        assert_eq!(workspaces_header(&ws(&["a", "b-2", "c_3"])), "a,b-2,c_3");
        assert_eq!(workspaces_header(&ws(&["*"])), "*");
        // The client can't send its own: it is an `X-Keygate-*` header.
        assert!(drop_request_header("X-Keygate-Workspaces", None));
        assert!(drop_request_header("X_Keygate_Workspaces", None));
    }

    #[test]
    fn response_headers() {
        assert!(drop_response_header("Transfer-Encoding", None));
        assert!(drop_response_header("RateLimit-Remaining", None));
        assert!(!drop_response_header("Content-Type", None));
        assert!(!drop_response_header("X-Execution-Id", None));
    }

    #[test]
    fn signature_string_and_value() {
        assert_eq!(
            signature_payload(
                1700000000,
                "POST",
                "/developers/workspaces/w/jobs/j/run/?a=1",
                "key_1",
                "u1",
                Some("w")
            ),
            "1700000000\nPOST\n/developers/workspaces/w/jobs/j/run/?a=1\nkey_1\nu1\nw"
        );
        assert_eq!(
            signature_payload(1, "GET", "/developers/workspaces/", "k", "u", None),
            "1\nGET\n/developers/workspaces/\nk\nu\n"
        );
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let h = signature_header(b"s", 5, "GET", "/p", "k", "u", None);
        assert!(h.starts_with("t=5,v1="));
        assert_eq!(h.len(), "t=5,v1=".len() + 64);
    }

    #[test]
    fn request_ids() {
        assert_eq!(accept_request_id(Some("abc-1.2_3")), Some("abc-1.2_3"));
        assert_eq!(accept_request_id(Some("")), None);
        assert_eq!(accept_request_id(Some("has space")), None);
        assert_eq!(accept_request_id(Some(&"a".repeat(65))), None);
        assert_eq!(accept_request_id(Some(&"a".repeat(64))).unwrap().len(), 64);
        assert_eq!(new_request_id(&[0xff; REQUEST_ID_BYTES]).len(), 32);
    }

    #[test]
    fn body_limits() {
        assert!(body_too_large(Some("11"), 10));
        assert!(!body_too_large(Some("10"), 10));
        assert!(!body_too_large(None, 10));
    }

    #[test]
    fn an_isolate_holds_a_bounded_amount_of_bodies() {
        // The review of finding 1: buffering chunked bodies must not let a few uploads run an
        // isolate out of memory.
        assert!(may_hold(0, HELD_BODIES_BUDGET));
        assert!(!may_hold(1, HELD_BODIES_BUDGET));
        assert!(may_hold(HELD_BODIES_BUDGET - 10, 10));
        assert!(!may_hold(u64::MAX, 1));
    }

    #[test]
    fn a_method_override_in_the_query_is_refused() {
        for q in [
            "_method=DELETE",
            "a=1&_METHOD=put",
            "%5Fmethod=PATCH",
            "x=1&_method",
            // PHP's own normalisation of names (finding 3 of the security review).
            ".method=DELETE",
            "%2Emethod=DELETE",
            "_method%00=DELETE",
            "_method%00x=PUT",
            "+_method=DELETE",
            "%20_method=DELETE",
            "_method[]=DELETE",
            "_method[x]=DELETE",
            "a=1;_method=DELETE",
        ] {
            assert!(
                matches!(check_query(Some(q)), Err(Error::Validation(_))),
                "{q}"
            );
        }
        for q in [
            None,
            Some(""),
            Some("method=x"),
            Some("a=_method"),
            Some("a=1;b=2"),
            Some("x_method=DELETE"),
            Some("_methods=DELETE"),
            Some("a[_method]=DELETE"),
            Some("method_=DELETE"),
        ] {
            assert_eq!(check_query(q), Ok(()), "{q:?}");
        }
    }

    #[test]
    fn client_address_and_host_claims_are_stripped() {
        for name in [
            "Client-IP",
            "True-Client-IP",
            "X_Client_IP",
            "X-Cluster-Client-IP",
            "X-Host",
        ] {
            assert!(drop_request_header(name, None), "{name}");
        }
    }
}
