//! Path checks, routing and the path-to-permission map (docs/CONTRACT.md sections 4 and 5).
//!
//! The path is checked in its raw, percent-encoded form before anything else, and a path that
//! passes is forwarded byte for byte: the origin sees exactly the path that was authorized.
//!
//! Length: the path rules and the route table are about 260 lines; the rest is their unit tests.

use crate::core::error::Error;
use crate::core::permission::{PERM_JOBS_RUN, PERM_WORKSPACES_READ};
use crate::core::pool::PoolKind;

pub const PREFIX_DEVELOPERS: &str = "/developers/workspaces";
pub const PATH_HEALTH: &str = "/healthz";
pub const PATH_ME: &str = "/v1/me";
pub const PATH_KEYS: &str = "/v1/api-keys";
pub const PATH_OPENAPI: &str = "/v1/openapi.json";
/// The assertion's public keys (docs/CONTRACT.md section 16), public.
pub const PATH_JWKS: &str = "/.well-known/jwks.json";
pub const PATH_AUDIT_EVENTS: &str = "/v1/audit-events";
pub const PATH_LEAKS: &str = "/v1/leaks";
/// `POST`, admin only: the platform's existing keys (docs/CONTRACT.md section 15).
pub const PATH_IMPORT: &str = "/v1/api-keys/import";
/// Shared limits (docs/CONTRACT.md section 17): `/v1/pools` and `/v1/pools/{kind}/{id}`.
pub const PATH_POOLS: &str = "/v1/pools";
/// `POST` by the admin: opens a session and answers its link.
pub const PATH_SESSIONS: &str = "/v1/settings-sessions";
/// Longest workspace id (`[A-Za-z0-9_-]{1,64}`).
pub const MAX_WORKSPACE_LEN: usize = 64;

/// `Allow` values for 405 answers (RFC 9110 section 15.5.6 requires the header).
const ALLOW_READ: &str = "GET, HEAD";
const ALLOW_RESOURCE: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

/// Resources under a workspace that the origin serves, each with `<resource>:read|write`.
const RESOURCES: [&str; 4] = ["jobs", "orchestration", "secrets", "variables"];

/// Refuses, all as 400 `invalid_path` (contract section 5): dot segments, empty segments,
/// broken percent-encoding, and any segment an origin could read as something other than what
/// was authorized:
/// - an encoded `/`, and `\` (raw or encoded): other separators;
/// - `;` (raw or encoded): Tomcat/Jetty-style origins drop `;` path parameters, so `..;` is `..`;
/// - an encoded `%` (`%25`): an origin that decodes twice would see `%2e%2e` as `..`;
/// - NUL, control characters and anything outside printable ASCII, raw or encoded: an origin
///   that normalises Unicode reads fullwidth `．` (`%ef%bc%8e`) as `.`.
///
/// With `%25` refused, one round of decoding yields a segment with no `%` left, so any further
/// round of decoding changes nothing (see the property test in `tests/properties.rs`).
/// A single trailing slash (an empty last segment) is allowed. A `;` in the query string is
/// not looked at: only the path is checked here.
pub fn check_path(path: &str) -> Result<(), Error> {
    let rest = path.strip_prefix('/').ok_or(Error::InvalidPath)?;
    if rest.is_empty() {
        return Ok(());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(Error::InvalidPath);
        }
        let decoded = percent_decode_checked(segment)?;
        if decoded == b"." || decoded == b".." {
            return Err(Error::InvalidPath);
        }
    }
    Ok(())
}

/// Whether a byte, raw or once decoded, may stand in a forwarded path segment: printable ASCII
/// (space included, as `%20`) except the separators and escapes an origin could act on.
fn is_safe_segment_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && !matches!(b, b'/' | b'\\' | b';' | b'%')
}

/// Decodes one segment, refusing what must never reach the origin in any encoding.
fn percent_decode_checked(segment: &str) -> Result<Vec<u8>, Error> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let decoded = if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex_val(*c));
            let lo = bytes.get(i + 2).and_then(|c| hex_val(*c));
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h * 16 + l
                }
                _ => return Err(Error::InvalidPath),
            }
        } else {
            i += 1;
            b
        };
        if !is_safe_segment_byte(decoded) {
            return Err(Error::InvalidPath);
        }
        // An encoded unreserved character (`%72un`) is the same character to every origin
        // that decodes before routing (RFC 3986 section 2.3), but not to the gateway's raw
        // match: refused, so both read the same segment.
        if b == b'%' && is_unreserved(decoded) {
            return Err(Error::InvalidPath);
        }
        out.push(decoded);
    }
    Ok(out)
}

/// RFC 3986 unreserved characters: letters, digits, `-`, `.`, `_`, `~`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits a request URL as the runtime hands it over into its raw path and query (without `?`),
/// without any normalization, so that what is checked is what is forwarded.
pub fn split_url(url: &str) -> (&str, Option<&str>) {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path_start = after_scheme.find('/').unwrap_or(after_scheme.len());
    let rest = &after_scheme[path_start..];
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    }
}

/// Whether `ws` is a workspace id: 1–64 chars of `[A-Za-z0-9_-]`.
pub fn is_workspace_id(ws: &str) -> bool {
    (1..=MAX_WORKSPACE_LEN).contains(&ws.len())
        && ws
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a request is, once its path and method are known.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    /// The OpenAPI 3.1 description (`api/openapi.json`), public.
    OpenApi,
    /// `GET /.well-known/jwks.json`: the assertion's public keys (section 16), public.
    Jwks,
    Me,
    CreateKey,
    ListKeys,
    GetKey(&'a str),
    RevokeKey(&'a str),
    RollKey(&'a str),
    /// `PATCH /v1/api-keys/{id}` (docs/CONTRACT.md section 13).
    UpdateKey(&'a str),
    /// A user's audit trail, newest first (section 12).
    AuditEvents,
    /// GitHub secret scanning's partner alert: signed, not authenticated by a key (section 14).
    Leaks,
    /// `GET /v1/api-keys/{id}/usage`: the key's usage series (section 12).
    KeyUsage(&'a str),
    /// `POST /v1/settings-sessions` (admin only): opens a settings session (section 11).
    CreateSettingsSession,
    /// `POST /v1/api-keys/import` (admin only): the platform's existing keys (section 15).
    ImportKeys,
    /// `GET /v1/pools` (admin only): the pools, paged (section 17).
    ListPools,
    /// `GET`, `PUT` or `DELETE /v1/pools/{users|workspaces}/{id}` (admin only); the method is
    /// the request's.
    Pool(PoolKind, &'a str),
    /// `GET /v1/pools/{users|workspaces}/{id}/usage` (admin only).
    PoolUsage(PoolKind, &'a str),
    /// A `/developers/...` call for the origin.
    Forward(Forward<'a>),
}

/// An origin call: the permission it needs and the workspace it names.
#[derive(Debug, PartialEq, Eq)]
pub struct Forward<'a> {
    pub permission: &'static str,
    pub workspace: Option<&'a str>,
    /// The job-trigger route (docs/CONTRACT.md section 6).
    pub job_run: bool,
}

fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}

fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// Maps method and (already checked) path to a route. Unknown paths are 404 and known paths with
/// another method are 405, both decided here, without contacting the origin or storage.
pub fn resolve<'a>(method: &str, path: &'a str) -> Result<Route<'a>, Error> {
    if let Some(rest) = path.strip_prefix(PREFIX_DEVELOPERS) {
        return resolve_developers(method, rest).map(Route::Forward);
    }
    let trimmed = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let only = |allowed: &[&str], allow: &'static str, route: Route<'a>| {
        if allowed.contains(&method) {
            Ok(route)
        } else {
            Err(Error::MethodNotAllowed(allow))
        }
    };
    match trimmed {
        PATH_HEALTH => only(&["GET", "HEAD"], ALLOW_READ, Route::Health),
        PATH_ME => only(&["GET", "HEAD"], ALLOW_READ, Route::Me),
        PATH_OPENAPI => only(&["GET", "HEAD"], ALLOW_READ, Route::OpenApi),
        PATH_JWKS => only(&["GET", "HEAD"], ALLOW_READ, Route::Jwks),
        PATH_SESSIONS => only(&["POST"], "POST", Route::CreateSettingsSession),
        PATH_AUDIT_EVENTS => only(&["GET", "HEAD"], ALLOW_READ, Route::AuditEvents),
        PATH_LEAKS => only(&["POST"], "POST", Route::Leaks),
        // Before the `{id}` routes: `import` is not a key id.
        PATH_IMPORT => only(&["POST"], "POST", Route::ImportKeys),
        PATH_POOLS => only(&["GET", "HEAD"], ALLOW_READ, Route::ListPools),
        _ if trimmed.starts_with(PATH_POOLS) => resolve_pool(method, &trimmed[PATH_POOLS.len()..]),
        PATH_KEYS => match method {
            "POST" => Ok(Route::CreateKey),
            "GET" | "HEAD" => Ok(Route::ListKeys),
            _ => Err(Error::MethodNotAllowed("GET, HEAD, POST")),
        },
        _ => {
            let rest = trimmed
                .strip_prefix(PATH_KEYS)
                .and_then(|r| r.strip_prefix('/'))
                .ok_or(Error::NotFound)?;
            match rest.split_once('/') {
                None => match method {
                    "GET" | "HEAD" => Ok(Route::GetKey(rest)),
                    "DELETE" => Ok(Route::RevokeKey(rest)),
                    "PATCH" => Ok(Route::UpdateKey(rest)),
                    _ => Err(Error::MethodNotAllowed("GET, HEAD, PATCH, DELETE")),
                },
                Some((id, "roll")) => only(&["POST"], "POST", Route::RollKey(id)),
                Some((id, "usage")) => only(&["GET", "HEAD"], ALLOW_READ, Route::KeyUsage(id)),
                Some(_) => Err(Error::NotFound),
            }
        }
    }
}

/// `rest` is what follows `/v1/pools`: `/{users|workspaces}/{id}[/usage]`. The id's shape is
/// checked by the handler (400, not 404: the path names a pool, with an unusable id).
fn resolve_pool<'a>(method: &str, rest: &'a str) -> Result<Route<'a>, Error> {
    let rest = rest.strip_prefix('/').ok_or(Error::NotFound)?;
    let (kind, after) = rest.split_once('/').ok_or(Error::NotFound)?;
    let kind = PoolKind::from_segment(kind).ok_or(Error::NotFound)?;
    match after.split_once('/') {
        None if after.is_empty() => Err(Error::NotFound),
        None => match method {
            "GET" | "HEAD" | "PUT" | "DELETE" => Ok(Route::Pool(kind, after)),
            _ => Err(Error::MethodNotAllowed("GET, HEAD, PUT, DELETE")),
        },
        Some((id, "usage")) if is_read(method) => Ok(Route::PoolUsage(kind, id)),
        Some((_, "usage")) => Err(Error::MethodNotAllowed(ALLOW_READ)),
        Some(_) => Err(Error::NotFound),
    }
}

/// `rest` is what follows `/developers/workspaces`.
fn resolve_developers<'a>(method: &str, rest: &'a str) -> Result<Forward<'a>, Error> {
    let read_only = |workspace| {
        if is_read(method) {
            Ok(Forward {
                permission: PERM_WORKSPACES_READ,
                workspace,
                job_run: false,
            })
        } else {
            Err(Error::MethodNotAllowed(ALLOW_READ))
        }
    };
    if rest.is_empty() || rest == "/" {
        return read_only(None);
    }
    let rest = rest.strip_prefix('/').ok_or(Error::NotFound)?;
    let (ws, after_ws) = match rest.split_once('/') {
        Some((ws, after)) => (ws, after),
        None => (rest, ""),
    };
    if !is_workspace_id(ws) {
        return Err(Error::NotFound);
    }
    if after_ws.is_empty() {
        return read_only(Some(ws));
    }
    let (resource, after_resource) = match after_ws.split_once('/') {
        Some((r, a)) => (r, a),
        None => (after_ws, ""),
    };
    if !RESOURCES.contains(&resource) {
        return Err(Error::NotFound);
    }
    if resource == "jobs" && method == "POST" && is_run_like(after_resource) {
        return Ok(Forward {
            permission: PERM_JOBS_RUN,
            workspace: Some(ws),
            job_run: true,
        });
    }
    let permission = match (resource, is_read(method), is_write(method)) {
        ("jobs", true, _) => "jobs:read",
        ("jobs", _, true) => "jobs:write",
        ("orchestration", true, _) => "orchestration:read",
        ("orchestration", _, true) => "orchestration:write",
        ("secrets", true, _) => "secrets:read",
        ("secrets", _, true) => "secrets:write",
        ("variables", true, _) => "variables:read",
        ("variables", _, true) => "variables:write",
        _ => return Err(Error::MethodNotAllowed(ALLOW_RESOURCE)),
    };
    Ok(Forward {
        permission,
        workspace: Some(ws),
        job_run: false,
    })
}

/// `{job}/run` or `{job}/run/` (the trigger), and every spelling some origin would route to
/// the same action: `RUN` (case-insensitive routers such as Express's default), `run.json`
/// (Rails' `(.:format)`, Spring's suffix match) and `run/...` (prefix routes). All of them need
/// `jobs:run` and are handled as the trigger, so `jobs:write` can never start a run.
fn is_run_like(after_jobs: &str) -> bool {
    let Some((job, rest)) = after_jobs.split_once('/') else {
        return false;
    };
    let action = rest.split('/').next().unwrap_or("");
    let action = action.split_once('.').map_or(action, |(stem, _)| stem);
    !job.is_empty() && action.eq_ignore_ascii_case("run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_routes_admin_paths_and_their_methods() {
        use crate::core::pool::PoolKind;
        assert_eq!(resolve("GET", "/v1/pools"), Ok(Route::ListPools));
        assert_eq!(
            resolve("GET", "/v1/pools/users//"),
            Err(Error::NotFound),
            "an empty id"
        );
        assert_eq!(resolve("GET", "/v1/pools/"), Ok(Route::ListPools));
        assert_eq!(
            resolve("PUT", "/v1/pools/users/alice"),
            Ok(Route::Pool(PoolKind::User, "alice"))
        );
        for method in ["GET", "HEAD", "DELETE"] {
            assert_eq!(
                resolve(method, "/v1/pools/workspaces/ws1"),
                Ok(Route::Pool(PoolKind::Workspace, "ws1"))
            );
        }
        assert_eq!(
            resolve("POST", "/v1/pools/users/alice"),
            Err(Error::MethodNotAllowed("GET, HEAD, PUT, DELETE"))
        );
        assert_eq!(
            resolve("GET", "/v1/pools/users/alice/usage"),
            Ok(Route::PoolUsage(PoolKind::User, "alice"))
        );
        assert_eq!(
            resolve("PUT", "/v1/pools/users/alice/usage"),
            Err(Error::MethodNotAllowed(ALLOW_READ))
        );
        for missing in [
            "/v1/pools/users",
            "/v1/pools/users/",
            "/v1/pools/teams/x",
            "/v1/poolsx",
            "/v1/pools/users/a/b",
        ] {
            assert_eq!(resolve("GET", missing), Err(Error::NotFound), "{missing}");
        }
        assert_eq!(resolve("POST", "/v1/leaks"), Ok(Route::Leaks));
        assert_eq!(
            resolve("GET", "/"),
            Err(Error::NotFound),
            "the root is not trimmed away"
        );
    }

    #[test]
    fn lowercase_percent_encoding_decodes_like_uppercase() {
        assert_eq!(
            check_path("/developers/workspaces/ws1/jobs/a%2fb"),
            Err(Error::InvalidPath)
        );
        assert_eq!(
            check_path("/developers/workspaces/ws1/jobs/a%2Fb"),
            Err(Error::InvalidPath)
        );
        assert_eq!(
            check_path("/developers/workspaces/ws1/jobs/%7e"),
            Err(Error::InvalidPath),
            "an encoded unreserved ~"
        );
        assert_eq!(check_path("/developers/workspaces/ws1/jobs/a%20b"), Ok(()));
        assert_eq!(
            [b'0', b'9', b'a', b'f', b'A', b'F', b'g'].map(hex_val),
            [
                Some(0),
                Some(9),
                Some(10),
                Some(15),
                Some(10),
                Some(15),
                None
            ]
        );
    }

    fn fwd(method: &str, path: &str) -> Result<(&'static str, Option<String>, bool), Error> {
        match resolve(method, path)? {
            Route::Forward(f) => Ok((f.permission, f.workspace.map(str::to_owned), f.job_run)),
            other => panic!("not a forward: {other:?}"),
        }
    }

    #[test]
    fn dot_segments_are_refused() {
        for p in [
            "/developers/workspaces/ws1/../ws2/jobs/",
            "/developers/workspaces/./ws1/",
            "/developers/workspaces/ws1/%2e%2e/ws2/",
            "/developers/workspaces/ws1/%2E/jobs/",
            "/developers/workspaces/ws1/.%2e/",
            "/..",
            "/developers/..",
        ] {
            assert_eq!(check_path(p), Err(Error::InvalidPath), "{p}");
        }
    }

    #[test]
    fn empty_segments_are_refused_but_a_trailing_slash_is_not() {
        assert_eq!(
            check_path("/developers//workspaces/"),
            Err(Error::InvalidPath)
        );
        assert_eq!(
            check_path("/developers/workspaces/ws1//jobs/"),
            Err(Error::InvalidPath)
        );
        assert_eq!(check_path("//"), Err(Error::InvalidPath));
        assert_eq!(check_path("/developers/workspaces/ws1/jobs/"), Ok(()));
        assert_eq!(check_path("/developers/workspaces/ws1/jobs"), Ok(()));
        assert_eq!(check_path("/"), Ok(()));
    }

    #[test]
    fn encoded_slash_backslash_nul_and_controls_are_refused() {
        for p in [
            "/developers/workspaces/ws1%2Fws2/jobs/",
            "/developers/workspaces/ws1%2fws2/",
            "/developers/workspaces/ws1%5Cjobs/",
            "/developers/workspaces/ws1\\jobs/",
            "/developers/workspaces/ws1%00/",
            "/developers/workspaces/ws1\0/",
            "/developers/workspaces/ws1%0a/",
            "/developers/workspaces/ws1\n/",
            "/developers/workspaces/ws1%1F/",
            "/developers/workspaces/ws1%7f/",
            "/developers/workspaces/ws1\x7f/",
            "/developers/workspaces/ws1%zz/",
            "/developers/workspaces/ws1%2/",
            "developers/workspaces/",
            "",
        ] {
            assert_eq!(check_path(p), Err(Error::InvalidPath), "{p:?}");
        }
        assert_eq!(check_path("/developers/workspaces/ws1/jobs/a%20b/"), Ok(()));
    }

    #[test]
    fn segments_an_origin_reads_differently_are_refused() {
        for p in [
            // `;` path parameters: Tomcat/Jetty read `..;` as `..`.
            "/developers/workspaces/ws1/jobs/..;/..;/ws2/secrets/s1",
            "/developers/workspaces/ws1/jobs;x=1/",
            "/developers/workspaces/ws1;/jobs/",
            "/developers/workspaces/ws1/jobs/%3B/",
            "/developers/workspaces/ws1/jobs/..%3b/",
            // Double encoding: `%252e` is `%2e` after one decode, `.` after two.
            "/developers/workspaces/ws1/jobs/%252e%252e/%252e%252e/ws2/",
            "/developers/workspaces/ws1/jobs/%25/",
            "/developers/workspaces/ws1/jobs/%252F/",
            // Unicode look-alikes: fullwidth full stop and solidus, raw and encoded.
            "/developers/workspaces/ws1/jobs/%ef%bc%8e%ef%bc%8e/",
            "/developers/workspaces/ws1/jobs/%EF%BC%8F/",
            "/developers/workspaces/ws1/jobs/\u{ff0e}\u{ff0e}/",
            "/developers/workspaces/ws1/jobs/caf\u{e9}/",
            // Any byte outside printable ASCII, encoded.
            "/developers/workspaces/ws1/jobs/%80/",
            "/developers/workspaces/ws1/jobs/a%FFb/",
            "/developers/workspaces/ws1/jobs/%c0%ae%c0%ae/",
        ] {
            assert_eq!(check_path(p), Err(Error::InvalidPath), "{p:?}");
        }
        // Printable ASCII, encoded or not, stays legal; so does a `;` in the query string, which
        // is not part of the path checked here.
        for p in [
            "/developers/workspaces/ws1/jobs/a%20b/",
            "/developers/workspaces/ws1/jobs/a-b.c~d_e/",
            "/developers/workspaces/ws1/jobs/%21%2A%27%28%29/",
            "/developers/workspaces/ws1/jobs/a:b@c=d,e+f/",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p:?}");
        }
        let (path, query) = split_url("http://h/developers/workspaces/ws1/jobs/?a=1;b=2");
        assert_eq!(query, Some("a=1;b=2"));
        assert_eq!(check_path(path), Ok(()));
    }

    #[test]
    fn workspace_routes_need_workspaces_read() {
        assert_eq!(
            fwd("GET", "/developers/workspaces/"),
            Ok(("workspaces:read", None, false))
        );
        assert_eq!(
            fwd("GET", "/developers/workspaces"),
            Ok(("workspaces:read", None, false))
        );
        assert_eq!(
            fwd("GET", "/developers/workspaces/ws-1/"),
            Ok(("workspaces:read", Some("ws-1".into()), false))
        );
        assert_eq!(
            fwd("POST", "/developers/workspaces/"),
            Err(Error::MethodNotAllowed(ALLOW_READ))
        );
    }

    #[test]
    fn resources_map_to_read_and_write() {
        for r in RESOURCES {
            let path = format!("/developers/workspaces/w/{r}/x/");
            for m in ["GET", "HEAD"] {
                assert_eq!(fwd(m, &path).unwrap().0, format!("{r}:read"));
            }
            for m in ["POST", "PUT", "PATCH", "DELETE"] {
                assert_eq!(fwd(m, &path).unwrap().0, format!("{r}:write"));
            }
            assert_eq!(
                fwd("OPTIONS", &path),
                Err(Error::MethodNotAllowed(ALLOW_RESOURCE))
            );
            assert_eq!(
                fwd("TRACE", &path),
                Err(Error::MethodNotAllowed(ALLOW_RESOURCE))
            );
        }
    }

    #[test]
    fn the_run_route_needs_jobs_run() {
        for p in [
            "/developers/workspaces/w1/jobs/j1/run/",
            "/developers/workspaces/w1/jobs/j1/run",
        ] {
            assert_eq!(fwd("POST", p), Ok(("jobs:run", Some("w1".into()), true)));
        }
        assert_eq!(
            fwd("GET", "/developers/workspaces/w1/jobs/j1/run/")
                .unwrap()
                .0,
            "jobs:read"
        );
        // A deeper path under run/ is routed to the run by prefix-matching origins.
        assert_eq!(
            fwd("POST", "/developers/workspaces/w1/jobs/j1/run/x/")
                .unwrap()
                .0,
            "jobs:run"
        );
        assert_eq!(
            fwd("POST", "/developers/workspaces/w1/jobs/run/")
                .unwrap()
                .0,
            "jobs:write"
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for p in [
            "/",
            "/developers/",
            "/developers/other/",
            "/developers/workspacesX/",
            "/developers/workspaces/w1/unknown/",
            "/developers/workspaces/w%201/",
            "/v2/me",
            "/v1/api-keys/key_0123456789abcdef/other",
            "/v1/api-keys/key_0123456789abcdef/roll/x",
        ] {
            assert_eq!(resolve("GET", p), Err(Error::NotFound), "{p}");
        }
        let long = format!("/developers/workspaces/{}/", "a".repeat(65));
        assert_eq!(resolve("GET", &long), Err(Error::NotFound));
    }

    #[test]
    fn urls_split_without_normalization() {
        assert_eq!(
            split_url("http://h:1/developers/workspaces/a/../b/?x=1&y=%2F#f"),
            ("/developers/workspaces/a/../b/", Some("x=1&y=%2F"))
        );
        assert_eq!(split_url("https://h"), ("", None));
        assert_eq!(split_url("http://h/"), ("/", None));
        assert_eq!(split_url("http://h/p?"), ("/p", Some("")));
    }

    #[test]
    fn gateway_routes() {
        assert_eq!(resolve("GET", "/healthz"), Ok(Route::Health));
        assert_eq!(
            resolve("POST", "/healthz"),
            Err(Error::MethodNotAllowed(ALLOW_READ))
        );
        assert_eq!(resolve("GET", "/v1/me"), Ok(Route::Me));
        assert_eq!(resolve("GET", "/v1/openapi.json"), Ok(Route::OpenApi));
        assert_eq!(resolve("GET", "/.well-known/jwks.json"), Ok(Route::Jwks));
        assert_eq!(
            resolve("POST", "/.well-known/jwks.json"),
            Err(Error::MethodNotAllowed(ALLOW_READ))
        );
        assert_eq!(resolve("POST", "/v1/api-keys"), Ok(Route::CreateKey));
        assert_eq!(resolve("GET", "/v1/api-keys"), Ok(Route::ListKeys));
        assert_eq!(
            resolve("POST", "/v1/settings-sessions"),
            Ok(Route::CreateSettingsSession)
        );
        assert_eq!(
            resolve("POST", "/v1/api-keys/import"),
            Ok(Route::ImportKeys)
        );
        assert_eq!(
            resolve("POST", "/v1/api-keys/import/"),
            Ok(Route::ImportKeys)
        );
        assert_eq!(
            resolve("GET", "/v1/api-keys/import"),
            Err(Error::MethodNotAllowed("POST"))
        );
        assert_eq!(
            resolve("GET", "/v1/settings-sessions"),
            Err(Error::MethodNotAllowed("POST"))
        );
        assert_eq!(
            resolve("PUT", "/v1/api-keys"),
            Err(Error::MethodNotAllowed("GET, HEAD, POST"))
        );
        assert_eq!(
            resolve("GET", "/v1/api-keys/key_1"),
            Ok(Route::GetKey("key_1"))
        );
        assert_eq!(
            resolve("DELETE", "/v1/api-keys/key_1"),
            Ok(Route::RevokeKey("key_1"))
        );
        assert_eq!(
            resolve("PATCH", "/v1/api-keys/key_1"),
            Ok(Route::UpdateKey("key_1"))
        );
        assert_eq!(
            resolve("POST", "/v1/api-keys/key_1/roll"),
            Ok(Route::RollKey("key_1"))
        );
        assert_eq!(
            resolve("GET", "/v1/api-keys/key_1/roll"),
            Err(Error::MethodNotAllowed("POST"))
        );
        assert_eq!(
            resolve("GET", "/v1/api-keys/key_1/usage"),
            Ok(Route::KeyUsage("key_1"))
        );
        assert_eq!(
            resolve("POST", "/v1/api-keys/key_1/usage"),
            Err(Error::MethodNotAllowed(ALLOW_READ))
        );
    }

    #[test]
    fn every_spelling_of_run_needs_jobs_run() {
        for path in [
            "/developers/workspaces/ws1/jobs/j/run",
            "/developers/workspaces/ws1/jobs/j/run/",
            "/developers/workspaces/ws1/jobs/j/RUN",
            "/developers/workspaces/ws1/jobs/j/Run/",
            "/developers/workspaces/ws1/jobs/j/run.json",
            "/developers/workspaces/ws1/jobs/j/run/now",
        ] {
            assert_eq!(
                fwd("POST", path).unwrap(),
                ("jobs:run", Some("ws1".to_owned()), true),
                "{path}"
            );
        }
        // Not a run: other actions, and reads of a run path.
        assert_eq!(
            fwd("POST", "/developers/workspaces/ws1/jobs/j/runs")
                .unwrap()
                .0,
            "jobs:write"
        );
        assert_eq!(
            fwd("GET", "/developers/workspaces/ws1/jobs/j/run")
                .unwrap()
                .0,
            "jobs:read"
        );
        // An encoded unreserved character is refused before routing.
        for path in [
            "/developers/workspaces/ws1/jobs/j/%72un",
            "/developers/workspaces/ws%31/jobs/",
            "/developers/workspaces/ws1/%6aobs/",
            "/developers/workspaces/ws1/jobs/a%2db",
        ] {
            assert_eq!(check_path(path), Err(Error::InvalidPath), "{path}");
        }
        assert_eq!(check_path("/developers/workspaces/ws1/jobs/a%20b"), Ok(()));
        assert_eq!(
            [b'0', b'9', b'a', b'f', b'A', b'F', b'g'].map(hex_val),
            [
                Some(0),
                Some(9),
                Some(10),
                Some(15),
                Some(10),
                Some(15),
                None
            ]
        );
    }
}
