//! Configuration from `wrangler.toml` vars and secrets (docs/CONTRACT.md section 9), parsed
//! and checked on each request (a handful of string reads; a bad value is logged once per isolate).

use super::names::{
    ADMIN_TOKEN_SECRET, ASSERTION_PUBLIC_KEYS_VAR, ASSERTION_SIGNING_KEY_SECRET,
    SECRET_SCANNING_KEYS_VAR, SIGNING_SECRET, WEBHOOK_SECRET, WEBHOOK_URL_VAR,
};
use crate::core::limits::RateLimit;

pub const DEFAULT_ORIGIN_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_KEY_PREFIX: &str = "kg";
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    requests: 600,
    window_seconds: 60,
};

/// `LEASE_MS` default: how long a granted token may be used (one second, section 8).
pub const DEFAULT_LEASE_MS: u64 = 1000;
/// Largest `LEASE_MS` accepted: bounds both the overshoot and how long a revocation may take.
pub const MAX_LEASE_MS: u64 = 5000;
/// The value of `LEGACY_KEYS` that turns djangorestframework-api-key's keys on (section 15).
pub const DRF_API_KEY: &str = "drf-api-key";
/// Longest allowed `KEY_PREFIX` (section 1).
pub const MAX_PREFIX_LEN: usize = 16;

/// Whether `prefix` is a valid `KEY_PREFIX`: 1–16 chars of `[a-z0-9]`.
pub fn is_valid_prefix(prefix: &str) -> bool {
    (1..=MAX_PREFIX_LEN).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// How long a key record may be served from this isolate's and the location's KV cache. It does
/// not bound revocation: the key's object knows revocations and shortened expiries and is
/// consulted through the lease (section 8).
pub const DEFAULT_KV_CACHE_TTL: u64 = 60;
/// Workers KV refuses a `cacheTtl` below this.
pub const MIN_KV_CACHE_TTL: u64 = 30;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Live keys one user may hold: bounds what one self-service key can mint, and the listing.
pub const DEFAULT_MAX_KEYS_PER_USER: u64 = 100;
/// Largest `MAX_KEYS_PER_USER` accepted: a user's live keys are counted in one KV list page.
pub const MAX_MAX_KEYS_PER_USER: u64 = 1000;
/// Longest origin timeout accepted (5 minutes).
pub const MAX_ORIGIN_TIMEOUT_MS: u64 = 300_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Scheme and authority, without a trailing slash: the authorized path is appended as is.
    pub origin_url: String,
    pub origin_timeout_ms: u64,
    pub key_prefix: String,
    pub default_rate_limit: RateLimit,
    pub kv_cache_ttl: u64,
    pub max_body_bytes: u64,
    pub max_keys_per_user: u64,
    /// How long a leased token may be used (section 8); 0: one object call per request.
    pub lease_ms: u64,
    /// `LEGACY_KEYS = "drf-api-key"`: keys of djangorestframework-api-key's shape are looked up
    /// among imported keys (section 15); off by default (such a key is then malformed).
    pub legacy_keys: bool,
    /// `PUBLIC_URL`: the gateway's public origin, the assertion's `iss` (section 16); `None`:
    /// the origin each request was addressed to.
    pub public_url: Option<String>,
    /// `ENVIRONMENT = "production"`: a signing key then needs `PUBLIC_URL` (so that `iss` does
    /// not change between a workers.dev name and a custom domain).
    pub production: bool,
    /// `WEBHOOK_URL`, when set and not empty: events are published (section 14) when
    /// `secrets.webhook` is set too.
    pub webhook_url: Option<String>,
    /// `ASSERTION_PUBLIC_KEYS`: the JSON of more public keys for the key set (section 16).
    pub assertion_public_keys: String,
    /// `SECRET_SCANNING_KEYS`: GitHub's public keys for leak reports, when set (section 14).
    pub secret_scanning_keys: Option<String>,
    /// The secrets (never printed), read with the vars.
    pub secrets: Secrets,
}

/// A secret's value: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Every secret the Worker reads (section 9), read once per isolate with the vars (a secret is
/// fixed for a deployed version, like a var); `None` when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// `ADMIN_TOKEN` (empty: the admin is disabled, section 2).
    pub admin_token: Option<Secret>,
    /// `ORIGIN_SIGNING_SECRET`, when not empty (section 7).
    pub origin_signing: Option<Secret>,
    /// `WEBHOOK_SECRET` (section 14).
    pub webhook: Option<Secret>,
    /// `ASSERTION_SIGNING_KEY`, when not blank (section 16).
    pub assertion_signing_key: Option<Secret>,
}

impl Secrets {
    /// Reads each secret with `get`.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Secrets {
        Secrets {
            admin_token: get(ADMIN_TOKEN_SECRET).map(Secret),
            origin_signing: get(SIGNING_SECRET).filter(|s| !s.is_empty()).map(Secret),
            webhook: get(WEBHOOK_SECRET).map(Secret),
            assertion_signing_key: get(ASSERTION_SIGNING_KEY_SECRET)
                .filter(|s| !s.trim().is_empty())
                .map(Secret),
        }
    }
}

/// A configuration problem, named for the operator's log (never shown to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl Config {
    /// Builds the configuration from a lookup of vars and one of secrets; absent vars take
    /// their defaults.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::from_vars(get)?;
        config.secrets = Secrets::read(secret);
        Ok(config)
    }

    /// Builds the configuration from a lookup of vars, with no secrets.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let origin_url = get("ORIGIN_URL")
            .ok_or_else(|| ConfigError("ORIGIN_URL is not set".into()))
            .and_then(|u| parse_origin(&u))?;
        let origin_timeout_ms = number(&get, "ORIGIN_TIMEOUT_MS", DEFAULT_ORIGIN_TIMEOUT_MS)?;
        if !(1..=MAX_ORIGIN_TIMEOUT_MS).contains(&origin_timeout_ms) {
            return Err(ConfigError(format!(
                "ORIGIN_TIMEOUT_MS must be 1-{MAX_ORIGIN_TIMEOUT_MS}"
            )));
        }
        let key_prefix = get("KEY_PREFIX").unwrap_or_else(|| DEFAULT_KEY_PREFIX.into());
        if !is_valid_prefix(&key_prefix) {
            return Err(ConfigError(
                "KEY_PREFIX must be 1-16 characters of a-z 0-9".into(),
            ));
        }
        let default_rate_limit = match get("DEFAULT_RATE_LIMIT") {
            None => DEFAULT_RATE_LIMIT,
            Some(s) => RateLimit::parse(&s).ok_or_else(|| {
                ConfigError("DEFAULT_RATE_LIMIT must look like 600/60 (requests/seconds)".into())
            })?,
        };
        let kv_cache_ttl = number(&get, "KV_CACHE_TTL", DEFAULT_KV_CACHE_TTL)?;
        if kv_cache_ttl != 0 && kv_cache_ttl < MIN_KV_CACHE_TTL {
            return Err(ConfigError(format!(
                "KV_CACHE_TTL must be 0 (no edge cache) or at least {MIN_KV_CACHE_TTL}"
            )));
        }
        let max_body_bytes = number(&get, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?;
        let max_keys_per_user = number(&get, "MAX_KEYS_PER_USER", DEFAULT_MAX_KEYS_PER_USER)?;
        if !(1..=MAX_MAX_KEYS_PER_USER).contains(&max_keys_per_user) {
            return Err(ConfigError(format!(
                "MAX_KEYS_PER_USER must be 1-{MAX_MAX_KEYS_PER_USER}"
            )));
        }
        let lease_ms = number(&get, "LEASE_MS", DEFAULT_LEASE_MS)?;
        if lease_ms > MAX_LEASE_MS {
            return Err(ConfigError(format!("LEASE_MS must be 0-{MAX_LEASE_MS}")));
        }
        let legacy_keys = match get("LEGACY_KEYS").as_deref().map(str::trim) {
            None | Some("") => false,
            Some(DRF_API_KEY) => true,
            Some(_) => {
                return Err(ConfigError(format!(
                    "LEGACY_KEYS must be empty or \"{DRF_API_KEY}\""
                )))
            }
        };
        let public_url = match get("PUBLIC_URL").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => Some(parse_origin(u).map_err(|_| {
                ConfigError("PUBLIC_URL must be an http(s) origin without a path, or empty".into())
            })?),
        };
        let production = get("ENVIRONMENT").as_deref().map(str::trim) == Some("production");
        Ok(Config {
            origin_url,
            origin_timeout_ms,
            key_prefix,
            default_rate_limit,
            kv_cache_ttl,
            max_body_bytes,
            max_keys_per_user,
            lease_ms,
            legacy_keys,
            public_url,
            production,
            webhook_url: get(WEBHOOK_URL_VAR).filter(|u| !u.is_empty()),
            assertion_public_keys: get(ASSERTION_PUBLIC_KEYS_VAR).unwrap_or_default(),
            secret_scanning_keys: get(SECRET_SCANNING_KEYS_VAR),
            secrets: Secrets::default(),
        })
    }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("{name} must be a whole number"))),
    }
}

/// Accepts an origin only, `http(s)://host[:port]` with at most one trailing `/`; returns it
/// without the slash. A path, query or fragment is refused: the signature covers the request
/// path the gateway authorized, so an origin behind a base path would see another path than the
/// one signed and refuse every call (contract section 7).
fn parse_origin(raw: &str) -> Result<String, ConfigError> {
    // A deliberately narrow check instead of `url::Url::parse`: a full WHATWG parser drags the
    // IDNA Unicode tables into the Worker (measured in BENCHMARKS.md), while an origin is an
    // ASCII `http(s)://host[:port]` that the runtime's own fetch parses again anyway.
    let bad = || {
        ConfigError(
            "ORIGIN_URL must be an http(s) origin without a path, such as https://api.example.com"
                .into(),
        )
    };
    let raw = raw.trim();
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let host_ok = !host.is_empty()
        && (host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            || (host.starts_with('[') && host.ends_with(']') && host.len() > 2));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    let path_ok = path.is_empty() || path == "/";
    if !(host_ok && port_ok && path_ok) {
        return Err(bad());
    }
    Ok(raw.strip_suffix('/').unwrap_or(raw).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secrets = Secrets::read(|name| (name == ADMIN_TOKEN_SECRET).then(|| "hunter2".into()));
        let shown = format!("{secrets:?}");
        assert!(shown.contains("Some(Secret(..))"), "{shown}");
        assert!(!shown.contains("hunter2"));
        assert_eq!(secrets.admin_token.unwrap().expose(), "hunter2");
    }

    #[test]
    fn bounds_of_kv_cache_ttl_lease_ms_and_an_ipv6_origin() {
        let with = |name: &'static str, value: &'static str| {
            Config::from_vars(move |n| match n {
                n if n == name => Some(value.to_owned()),
                "ORIGIN_URL" => Some("http://127.0.0.1:9".to_owned()),
                _ => None,
            })
        };
        assert!(with("KV_CACHE_TTL", "30").is_ok(), "KV's minimum itself");
        assert!(with("KV_CACHE_TTL", "29").is_err());
        assert!(
            with("LEASE_MS", "5000").is_ok(),
            "the largest LEASE_MS itself"
        );
        assert!(with("LEASE_MS", "5001").is_err());
        assert!(with("ORIGIN_URL", "http://[::1]:8080").is_ok());
        assert!(
            with("ORIGIN_URL", "http://[]:8080").is_err(),
            "an empty IPv6 literal"
        );
        assert!(with("ORIGIN_URL", "http://[::1:8080").is_err());
    }
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn secrets_are_read_with_the_vars_and_never_printed() {
        let vars = |n: &str| match n {
            "ORIGIN_URL" => Some("http://127.0.0.1:9".to_owned()),
            "WEBHOOK_URL" => Some(String::new()),
            _ => None,
        };
        let secret = |n: &str| match n {
            "ADMIN_TOKEN" => Some("admin-secret-value".to_owned()),
            "ORIGIN_SIGNING_SECRET" => Some(String::new()),
            "ASSERTION_SIGNING_KEY" => Some("  ".to_owned()),
            _ => None,
        };
        let c = Config::from_env(vars, secret).unwrap();
        assert_eq!(
            c.secrets.admin_token.as_ref().map(Secret::expose),
            Some("admin-secret-value")
        );
        assert_eq!(
            c.secrets.origin_signing, None,
            "an empty signing secret is none"
        );
        assert_eq!(c.secrets.assertion_signing_key, None, "a blank key is none");
        assert_eq!(c.webhook_url, None, "an empty WEBHOOK_URL is none");
        assert!(!format!("{c:?}").contains("admin-secret-value"));
    }

    #[test]
    fn defaults() {
        let c = cfg(&[("ORIGIN_URL", "http://127.0.0.1:8080/")]).unwrap();
        assert_eq!(c.origin_url, "http://127.0.0.1:8080");
        for ok in [
            "https://api.example.com",
            "http://[::1]:8080/",
            "http://[::1]",
            "https://x-y.z:443",
        ] {
            assert!(cfg(&[("ORIGIN_URL", ok)]).is_ok(), "{ok}");
        }
        assert_eq!(c.key_prefix, "kg");
        assert_eq!(c.default_rate_limit, DEFAULT_RATE_LIMIT);
        assert_eq!(c.origin_timeout_ms, 30_000);
        assert_eq!(c.kv_cache_ttl, 60);
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.max_keys_per_user, 100);
        assert_eq!(c.lease_ms, 1000);
        assert!(!c.legacy_keys);
        assert_eq!(c.public_url, None);
        assert!(!c.production);
        let p = cfg(&[
            ("ORIGIN_URL", "http://x"),
            ("PUBLIC_URL", "https://keygate.example.com/"),
            ("ENVIRONMENT", "production"),
        ])
        .unwrap();
        assert_eq!(p.public_url.as_deref(), Some("https://keygate.example.com"));
        assert!(p.production);
        let on = cfg(&[("ORIGIN_URL", "http://x"), ("LEGACY_KEYS", "drf-api-key")]).unwrap();
        assert!(on.legacy_keys);
        assert!(
            !cfg(&[("ORIGIN_URL", "http://x"), ("LEGACY_KEYS", "")])
                .unwrap()
                .legacy_keys
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (pairs, needle) in [
            (vec![], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "not a url")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "ftp://x")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x?q=1")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://user@x")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x:99999")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x:")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "https://a b")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x/base")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x:8080/a/b/")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x//")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x/?q=1")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x/#f")], "ORIGIN_URL"),
            (vec![("ORIGIN_URL", "http://x#f")], "ORIGIN_URL"),
            (
                vec![("ORIGIN_URL", "http://x"), ("KEY_PREFIX", "KG")],
                "KEY_PREFIX",
            ),
            (
                vec![("ORIGIN_URL", "http://x"), ("LEASE_MS", "5001")],
                "LEASE_MS",
            ),
            (
                vec![("ORIGIN_URL", "http://x"), ("MAX_KEYS_PER_USER", "0")],
                "MAX_KEYS_PER_USER",
            ),
            (
                vec![("ORIGIN_URL", "http://x"), ("ORIGIN_TIMEOUT_MS", "soon")],
                "ORIGIN_TIMEOUT_MS",
            ),
            (
                vec![("ORIGIN_URL", "http://x"), ("DEFAULT_RATE_LIMIT", "10")],
                "DEFAULT_RATE_LIMIT",
            ),
            (
                vec![("ORIGIN_URL", "http://x"), ("KV_CACHE_TTL", "5")],
                "KV_CACHE_TTL",
            ),
            (
                vec![("ORIGIN_URL", "http://x"), ("LEGACY_KEYS", "sha512")],
                "LEGACY_KEYS",
            ),
            (
                vec![
                    ("ORIGIN_URL", "http://x"),
                    ("PUBLIC_URL", "https://k.example.com/x"),
                ],
                "PUBLIC_URL",
            ),
        ] {
            let e = cfg(&pairs).unwrap_err();
            assert!(e.0.contains(needle), "{e:?} should name {needle}");
        }
    }
}
