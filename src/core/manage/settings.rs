//! The settings paths (docs/CONTRACT.md section 11): the page, the link that opens a session,
//! and the settings JSON API, which maps onto the key-management routes so that the page is
//! held to the same rules as the API. Also the security headers of every `/settings` answer,
//! and what the session's answer says of its user's shared limit.

use serde_json::Value;

use crate::core::error::Error;
use crate::core::pool::{pool_json, Pool, PoolFigures, PoolKind, PoolRef};
use crate::core::route::Route;
use crate::core::session::{session_body, Session, StoredSession};

pub const PATH_SETTINGS: &str = "/settings";
/// The page; the redirect target after the link is opened (it carries no secret).
pub const PATH_PAGE: &str = "/settings/";
pub const PATH_OPEN: &str = "/settings/open";
const API_PREFIX: &str = "/settings/api/";

/// Sent on every `/settings` answer, errors included: a strict Content-Security-Policy (only
/// this origin's script, style and connections; no inline script; no framing; forms post
/// here only), no framing for old browsers either, no `Referer` (the link's URL holds its
/// token), no MIME sniffing, and nothing stored by caches: the API's answers hold session data
/// and keys, and one rule for the whole path is one rule a test can prove (the page is a few
/// KB; caching it would save little).
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

/// The page's static files (keygate-assets' static assets, served by the gateway: `edge/assets.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Index,
    Script,
    Style,
}

/// A settings path, routed.
#[derive(Debug, PartialEq, Eq)]
pub enum Settings<'a> {
    /// `/settings` without the slash: to the page (its relative links need the slash).
    ToPage,
    Asset(Asset),
    /// `GET /settings/open?token=`.
    Open,
    /// `POST /settings/open` (form `token=`): the link chosen on the page that asks whether to
    /// leave another user's session ([`crate::core::switch`]).
    OpenChosen,
    /// `GET /settings/api/session`: the session and its user's pool.
    Session,
    /// `POST /settings/api/session/end`: sign-out.
    EndSession,
    /// `GET /settings/api/audit-events`.
    AuditEvents,
    /// A key-management route of the session's user: `GET|POST /settings/api/keys`,
    /// `POST /settings/api/keys/{id}/revoke|roll`, `GET /settings/api/keys/{id}[/usage]`.
    Keys(Route<'a>),
}

impl Settings<'_> {
    /// Whether the call changes state (and so needs the CSRF token; sign-out too, so that another
    /// site cannot end a user's session).
    pub fn changes_state(&self, method: &str) -> bool {
        matches!(self, Settings::Keys(_) | Settings::EndSession) && method == "POST"
    }
}

/// Whether `path` is under `/settings` (every such answer gets [`SECURITY_HEADERS`]).
pub fn is_settings_path(path: &str) -> bool {
    path == PATH_SETTINGS || path.starts_with(PATH_PAGE)
}

const ALLOW_READ: &str = "GET, HEAD";

/// Maps a settings path (see [`is_settings_path`]) to its route: 404 for other paths under
/// `/settings`, 405 with `Allow` for a known path with another method.
pub fn resolve<'a>(method: &str, path: &'a str) -> Result<Settings<'a>, Error> {
    let read = matches!(method, "GET" | "HEAD");
    let only_read = |s: Settings<'a>| {
        if read {
            Ok(s)
        } else {
            Err(Error::MethodNotAllowed(ALLOW_READ))
        }
    };
    match path {
        PATH_SETTINGS => return only_read(Settings::ToPage),
        "/settings/" | "/settings/index.html" => return only_read(Settings::Asset(Asset::Index)),
        "/settings/app.js" => return only_read(Settings::Asset(Asset::Script)),
        "/settings/app.css" => return only_read(Settings::Asset(Asset::Style)),
        // GET only: opening uses the link up, which a HEAD (a link checker's) must not do.
        PATH_OPEN if method == "GET" => return Ok(Settings::Open),
        PATH_OPEN if method == "POST" => return Ok(Settings::OpenChosen),
        PATH_OPEN => return Err(Error::MethodNotAllowed("GET, POST")),
        _ => {}
    }
    let api = path.strip_prefix(API_PREFIX).ok_or(Error::NotFound)?;
    let api = api.strip_suffix('/').unwrap_or(api);
    match api {
        "session" => only_read(Settings::Session),
        "session/end" if method == "POST" => Ok(Settings::EndSession),
        "session/end" => Err(Error::MethodNotAllowed("POST")),
        "audit-events" => only_read(Settings::AuditEvents),
        "keys" => match method {
            "GET" | "HEAD" => Ok(Settings::Keys(Route::ListKeys)),
            "POST" => Ok(Settings::Keys(Route::CreateKey)),
            _ => Err(Error::MethodNotAllowed("GET, HEAD, POST")),
        },
        _ => {
            let rest = api.strip_prefix("keys/").ok_or(Error::NotFound)?;
            let route = match rest.split_once('/') {
                None => return only_read(Settings::Keys(Route::GetKey(rest))),
                Some((id, "usage")) => return only_read(Settings::Keys(Route::KeyUsage(id))),
                Some((id, "revoke")) => Route::RevokeKey(id),
                Some((id, "roll")) => Route::RollKey(id),
                Some(_) => return Err(Error::NotFound),
            };
            if method == "POST" {
                Ok(Settings::Keys(route))
            } else {
                Err(Error::MethodNotAllowed("POST"))
            }
        }
    }
}

/// The pool the page shows: the session's user's (docs/CONTRACT.md section 17), the one that
/// applies to every key of the user. A workspace's pool is not shown: it is shared with other
/// users, and which of them use it is not this user's business.
pub fn user_pool(session: &Session) -> PoolRef {
    PoolRef {
        kind: PoolKind::User,
        id: session.user_id.clone(),
    }
}

/// `GET /settings/api/session`: the session ([`session_body`]) and `pool`, its user's pool with
/// what is left of it (`usage`, from the pool's object), or `null`. `found` is the pool's KV
/// entry and its object's figures, `None` when KV has no such pool. A pool whose object holds
/// no limits is `null` too: the object is authoritative and is cleared first on a deletion,
/// so such a pool no longer limits anything (section 17), and the page must not say it does.
pub fn session_answer(
    stored: &StoredSession,
    found: Option<(&Pool, &PoolFigures)>,
    now: i64,
) -> Value {
    let mut body = session_body(stored);
    body["pool"] = match found {
        Some((pool, figures)) if figures.limits.is_some() => pool_json(pool, Some(figures), now),
        _ => Value::Null,
    };
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pool::PoolLimits;
    use crate::core::quota::{Period, Quota};
    use crate::core::ratelimit::RateLimit;
    use crate::core::session::tests::{session, NOW};

    fn stored() -> StoredSession {
        StoredSession {
            session: session(),
            opened: true,
            cookie_hash: None,
            csrf_token: "t".into(),
        }
    }

    fn pool(limits: PoolLimits) -> Pool {
        Pool {
            kind: PoolKind::User,
            id: "alice".into(),
            rate_limit: limits.rate_limit,
            quota: limits.quota,
            created_at: "2027-01-01T00:00:00Z".into(),
            updated_at: "2027-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_page_shows_the_users_own_pool() {
        let r = user_pool(&session());
        assert_eq!(r.kind, PoolKind::User);
        assert_eq!(r.storage_name(), "pool:user:alice");
    }

    #[test]
    fn the_session_answer_has_the_pool_or_null() {
        let none = session_answer(&stored(), None, NOW);
        assert_eq!(none["pool"], Value::Null);
        assert_eq!(none["user_id"], "alice");
        assert_eq!(
            none.as_object().unwrap().len(),
            9,
            "the session's 8 fields and pool"
        );

        let limits = PoolLimits {
            rate_limit: Some(RateLimit {
                requests: 100,
                window_seconds: 60,
            }),
            quota: Some(Quota {
                runs: 10,
                period: Period::Day,
            }),
        };
        let figures = PoolFigures {
            limits: Some(limits),
            remaining: Some(40),
            reset_secs: Some(36),
            quota_used: Some(7),
        };
        let p = pool(limits);
        let shown = session_answer(&stored(), Some((&p, &figures)), NOW);
        let usage = &shown["pool"]["usage"];
        assert_eq!(shown["pool"]["kind"], "user");
        assert_eq!(usage["rate_limit"]["remaining"], 40);
        assert_eq!(usage["rate_limit"]["limit"], 100);
        assert_eq!(usage["quota"]["remaining"], 3);
        assert_eq!(usage["quota"]["period_end"], "2027-01-16T00:00:00Z");
        assert!(shown["csrf_token"].is_string(), "the session is all there");
    }

    #[test]
    fn a_pool_its_object_no_longer_holds_is_not_shown() {
        let p = pool(PoolLimits {
            rate_limit: None,
            quota: Some(Quota {
                runs: 10,
                period: Period::Month,
            }),
        });
        let cleared = PoolFigures::default();
        let shown = session_answer(&stored(), Some((&p, &cleared)), NOW);
        assert_eq!(shown["pool"], Value::Null, "deleted: it limits nothing");
    }

    #[test]
    fn the_page_and_its_files() {
        assert_eq!(resolve("GET", "/settings"), Ok(Settings::ToPage));
        assert_eq!(
            resolve("GET", "/settings/"),
            Ok(Settings::Asset(Asset::Index))
        );
        assert_eq!(
            resolve("HEAD", "/settings/app.js"),
            Ok(Settings::Asset(Asset::Script))
        );
        assert_eq!(
            resolve("GET", "/settings/app.css"),
            Ok(Settings::Asset(Asset::Style))
        );
        assert_eq!(resolve("GET", "/settings/open"), Ok(Settings::Open));
        assert_eq!(resolve("POST", "/settings/open"), Ok(Settings::OpenChosen));
        for method in ["PUT", "HEAD"] {
            assert_eq!(
                resolve(method, "/settings/open"),
                Err(Error::MethodNotAllowed("GET, POST"))
            );
        }
        assert_eq!(resolve("GET", "/settings/other.js"), Err(Error::NotFound));
    }

    #[test]
    fn the_api_maps_onto_the_key_routes() {
        assert_eq!(
            resolve("GET", "/settings/api/session"),
            Ok(Settings::Session)
        );
        assert_eq!(
            resolve("GET", "/settings/api/audit-events"),
            Ok(Settings::AuditEvents)
        );
        assert_eq!(
            resolve("GET", "/settings/api/keys"),
            Ok(Settings::Keys(Route::ListKeys))
        );
        assert_eq!(
            resolve("POST", "/settings/api/keys/"),
            Ok(Settings::Keys(Route::CreateKey))
        );
        assert_eq!(
            resolve("GET", "/settings/api/keys/key_1"),
            Ok(Settings::Keys(Route::GetKey("key_1")))
        );
        assert_eq!(
            resolve("GET", "/settings/api/keys/key_1/usage"),
            Ok(Settings::Keys(Route::KeyUsage("key_1")))
        );
        assert_eq!(
            resolve("POST", "/settings/api/keys/key_1/usage"),
            Err(Error::MethodNotAllowed(ALLOW_READ))
        );
        assert_eq!(
            resolve("POST", "/settings/api/keys/key_1/revoke"),
            Ok(Settings::Keys(Route::RevokeKey("key_1")))
        );
        assert_eq!(
            resolve("POST", "/settings/api/keys/key_1/roll"),
            Ok(Settings::Keys(Route::RollKey("key_1")))
        );
        assert_eq!(
            resolve("GET", "/settings/api/keys/key_1/roll"),
            Err(Error::MethodNotAllowed("POST"))
        );
        assert_eq!(
            resolve("DELETE", "/settings/api/keys/key_1"),
            Err(Error::MethodNotAllowed(ALLOW_READ))
        );
        assert_eq!(
            resolve("POST", "/settings/api/keys/key_1/x"),
            Err(Error::NotFound)
        );
        assert_eq!(resolve("GET", "/settings/api/other"), Err(Error::NotFound));
    }

    #[test]
    fn only_posts_to_the_key_routes_change_state() {
        let create = resolve("POST", "/settings/api/keys").unwrap();
        assert!(create.changes_state("POST"));
        let list = resolve("GET", "/settings/api/keys").unwrap();
        assert!(!list.changes_state("GET"));
        assert!(!Settings::Session.changes_state("GET"));
        let end = resolve("POST", "/settings/api/session/end").unwrap();
        assert_eq!(end, Settings::EndSession);
        assert!(end.changes_state("POST"));
        assert_eq!(
            resolve("GET", "/settings/api/session/end"),
            Err(Error::MethodNotAllowed("POST"))
        );
    }

    #[test]
    fn settings_paths_are_told_from_others() {
        assert!(is_settings_path("/settings"));
        assert!(is_settings_path("/settings/api/keys"));
        assert!(!is_settings_path("/settingsx"));
        assert!(!is_settings_path("/v1/settings-sessions"));
    }
}
