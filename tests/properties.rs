//! Properties of every parser that sees attacker input, checked on generated inputs (proptest).
//!
//! `make test` runs each property on 2,000 inputs; the long run is
//! `PROPTEST_CASES=200000 cargo test --release --test properties` (see README).
//!
//! Properties:
//! 1. No parser panics, whatever the input (Authorization, key, path, routing, create/roll
//!    bodies, list queries, Idempotency-Key, X-Request-Id).
//! 2. A path that is accepted is forwarded unchanged and names exactly the workspace that was
//!    authorized (the third segment), and that workspace id is well formed.
//! 3. A key with any single character changed is rejected before storage is read.
//! 4. What the header parser accepts as an API key has no whitespace or comma in it.
#![cfg(not(target_arch = "wasm32"))]

use keygate::core::auth::{parse_authorization, Credential};
use keygate::core::forward::accept_request_id;
use keygate::core::idempotency::check_idempotency_key;
use keygate::core::key::{check_key, format_key};
use keygate::core::record::{parse_create, parse_list_query, parse_roll, RateLimit};
use keygate::core::route::{check_path, is_workspace_id, resolve, split_url, Route};
use proptest::prelude::*;

const DEFAULT_CASES: u32 = 2_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Path-like strings: mostly segments from an alphabet rich in the dangerous characters.
fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("developers".to_string()),
        Just("workspaces".to_string()),
        Just("jobs".to_string()),
        Just("run".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("%2e%2E".to_string()),
        Just("%2F".to_string()),
        Just("%5c".to_string()),
        Just("%00".to_string()),
        Just("".to_string()),
        "[a-zA-Z0-9_.%\\\\-]{1,12}",
        any::<String>(),
    ];
    (prop::collection::vec(segment, 0..8), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = String::from("/");
        p.push_str(&segs.join("/"));
        if slash {
            p.push('/');
        }
        // A raw `?` or `#` ends the path in any URL: the runtime never hands one over inside it.
        p.replace(['?', '#'], "x")
    })
}

fn method_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("PATCH".to_string()),
        Just("DELETE".to_string()),
        Just("OPTIONS".to_string()),
        "[A-Z]{1,8}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn authorization_parsing_never_panics(h in any::<String>()) {
        if let Ok(Credential::ApiKey(k)) | Ok(Credential::Admin(k)) = parse_authorization(Some(&h)) {
            prop_assert!(!k.is_empty());
            prop_assert!(!k.contains([' ', '\t', ',']));
        }
    }

    #[test]
    fn key_checking_never_panics(prefix in "[a-z0-9]{1,16}", key in any::<String>()) {
        let _ = check_key(&prefix, &key);
    }

    #[test]
    fn any_single_character_change_is_rejected(
        body in prop::array::uniform32(any::<u8>()),
        pos in 0usize..75,
        replacement in any::<char>(),
    ) {
        let key = format_key("kg", &body);
        prop_assert!(check_key("kg", &key).is_ok());
        let mut chars: Vec<char> = key.chars().collect();
        prop_assume!(chars[pos] != replacement);
        chars[pos] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(check_key("kg", &changed).is_err());
    }

    #[test]
    fn accepted_paths_name_the_authorized_workspace(method in method_strategy(), path in path_strategy()) {
        if check_path(&path).is_err() {
            return Ok(());
        }
        // What is checked is what is forwarded: the URL split gives back the same path.
        let url = format!("https://gw.example.com{path}?q=1");
        prop_assert_eq!(split_url(&url).0, path.as_str());
        if let Ok(Route::Forward(fwd)) = resolve(&method, &path) {
            let segments: Vec<&str> = path.split('/').collect();
            prop_assert_eq!(segments[1], "developers");
            prop_assert_eq!(segments[2], "workspaces");
            match fwd.workspace {
                Some(ws) => {
                    prop_assert!(is_workspace_id(ws));
                    prop_assert_eq!(segments[3], ws);
                }
                None => prop_assert!(segments.len() <= 4 && segments.get(3).is_none_or(|s| s.is_empty())),
            }
            for s in &segments[1..segments.len() - 1] {
                prop_assert!(!s.is_empty() && *s != "." && *s != "..");
            }
        }
    }

    #[test]
    fn routing_never_panics(method in any::<String>(), path in any::<String>()) {
        let _ = check_path(&path);
        let _ = resolve(&method, &path);
        let _ = split_url(&path);
    }

    #[test]
    fn create_bodies_never_panic(body in any::<Vec<u8>>()) {
        let _ = parse_create(&body, 1_800_000_000, RateLimit { requests: 600, window_seconds: 60 });
        let _ = parse_roll(&body);
    }

    #[test]
    fn json_shaped_create_bodies_never_panic(
        user_id in any::<String>(),
        name in any::<String>(),
        ws in prop::collection::vec(any::<String>(), 0..4),
        perms in prop::collection::vec(prop_oneof![Just("jobs:run".to_string()), Just("*".to_string()), any::<String>()], 0..4),
        expires in prop_oneof![Just("2030-01-01T00:00:00Z".to_string()), any::<String>()],
        requests in any::<i64>(),
        grace in any::<i64>(),
    ) {
        let body = serde_json::json!({
            "user_id": user_id, "name": name, "workspaces": ws, "permissions": perms,
            "expires_at": expires, "rate_limit": {"requests": requests, "window_seconds": 60},
        });
        if let Ok(k) = parse_create(body.to_string().as_bytes(), 1_800_000_000, RateLimit { requests: 1, window_seconds: 1 }) {
            prop_assert!(!k.workspaces.is_empty() && !k.permissions.is_empty());
            prop_assert!(k.rate_limit.requests >= 1);
        }
        let _ = parse_roll(serde_json::json!({"grace_seconds": grace}).to_string().as_bytes());
    }

    #[test]
    fn list_queries_never_panic(q in any::<String>()) {
        let _ = parse_list_query(Some(&q));
    }

    #[test]
    fn idempotency_keys_and_request_ids(v in any::<String>()) {
        if check_idempotency_key(&v).is_ok() {
            prop_assert!((1..=255).contains(&v.len()));
            prop_assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
        if let Some(id) = accept_request_id(Some(&v)) {
            prop_assert!((1..=64).contains(&id.len()));
            prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        }
    }
}
