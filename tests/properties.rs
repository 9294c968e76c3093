//! Properties of every parser that sees attacker input, checked on generated inputs (proptest).
//!
//! `make test` runs each property on 2,000 inputs; the long run is
//! `PROPTEST_CASES=100000 cargo test --release --test properties` (`make fuzz`).
//!
//! Properties:
//! 1. No parser panics, whatever the input (Authorization, key, path, routing, create/roll
//!    bodies, list queries, Idempotency-Key, X-Request-Id).
//! 2. A path that is accepted is forwarded unchanged and names exactly the workspace that was
//!    authorized (the third segment), and that workspace id is well formed.
//! 3. A key with any single character changed is rejected before storage is read.
//! 4. What the header parser accepts as an API key has no whitespace or comma in it.
//! 5. No accepted path holds a segment an origin could decode or normalise into something else:
//!    after one or two rounds of percent-decoding, every segment is printable ASCII without
//!    `/`, `\`, `;` or `%`, is not `.` or `..`, and reads the same after both rounds.
//! 6. Leases: for any interleaving of several isolates' grants and uses of one key, the requests
//!    served never exceed the limit plus one lease period of its rate (none for small limits).
#![cfg(not(target_arch = "wasm32"))]

use keygate::core::auth::{parse_authorization, Credential};
use keygate::core::forward::accept_request_id;
use keygate::core::idempotency::check_idempotency_key;
use keygate::core::key::{check_key, format_key};
use keygate::core::keystate::{Hit, KeyState};
use keygate::core::lease::{batch_cap, LeaseTable, Take};
use keygate::core::pool::{PoolLimits, PoolState};
use keygate::core::ratelimit::RateLimit;
use keygate::core::request::{parse_create, parse_list_query, parse_roll};
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
        Just("..;".to_string()),
        Just("%3b".to_string()),
        Just("%3B".to_string()),
        Just("%252e%252e".to_string()),
        Just("%25".to_string()),
        Just("%ef%bc%8e%ef%bc%8e".to_string()),
        Just("\u{ff0e}\u{ff0e}".to_string()),
        Just("%c0%ae".to_string()),
        "[a-zA-Z0-9_.;%\\\\-]{1,12}",
        // Runs of escapes of any byte, mixed with the characters they could turn into.
        "(%[0-9A-Fa-f]{2}|[a-z.;%\\\\])(%[0-9A-Fa-f]{2}|[a-z.;%\\\\]){0,5}",
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

/// Percent-decoding as a lenient origin does it: valid escapes decoded, anything else kept.
fn percent_decode_lenient(bytes: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
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
    fn accepted_segments_read_the_same_to_every_origin(path in path_strategy()) {
        if check_path(&path).is_err() {
            return Ok(());
        }
        let trimmed = path.strip_prefix('/').unwrap_or(&path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        for segment in trimmed.split('/').filter(|s| !s.is_empty()) {
            let once = percent_decode_lenient(segment.as_bytes());
            let twice = percent_decode_lenient(&once);
            for (round, decoded) in [(1, &once), (2, &twice)] {
                prop_assert!(
                    decoded.as_slice() != b"." && decoded.as_slice() != b"..",
                    "{path:?}: segment {segment:?} is a dot segment after {round} decode(s)"
                );
                prop_assert!(
                    decoded
                        .iter()
                        .all(|&b| (0x20..0x7f).contains(&b) && !b"/\\;%".contains(&b)),
                    "{path:?}: segment {segment:?} decodes ({round}) to {decoded:?}"
                );
            }
            // Printable ASCII is its own Unicode normal form, and a second decode is a no-op:
            // every origin reads the segment the gateway authorized.
            prop_assert_eq!(&once, &twice);
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
        let _ = parse_roll(&body, 1_800_000_000);
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
        let _ = parse_roll(serde_json::json!({"grace_seconds": grace}).to_string().as_bytes(), 1_800_000_000);
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

// ---------------------------------------------------------------------------------------------
// Leases across isolates (property 6): several isolates, each with its own `LeaseTable`, share
// one key's object (`KeyState`); requests arrive at random isolates and times, background
// renewals are answered late or never. Whatever the interleaving, the requests served in any
// interval [a, b] are at most what GCRA allows over it stretched by LEASE_MS:
// `requests + (b - a + LEASE_MS) * rate` (GCRA alone: `requests + (b - a) * rate`), and with no
// stretch at all for a key whose rate * LEASE_MS is under one token.

#[derive(Debug, Clone)]
enum Event {
    /// A request at isolate `i`, `dt` ms after the previous event.
    Request { i: usize, dt: u64 },
    /// Isolate `i`'s oldest background renewal is answered now (the object decides now).
    Answer { i: usize },
    /// Isolate `i`'s oldest background renewal fails (object unreachable).
    Fail { i: usize },
}

fn event(isolates: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0..isolates, 0u64..120).prop_map(|(i, dt)| Event::Request { i, dt }),
        3 => (0..isolates).prop_map(|i| Event::Answer { i }),
        1 => (0..isolates).prop_map(|i| Event::Fail { i }),
    ]
}

/// Serves the events; returns the times of the requests served.
fn run(limit: RateLimit, lease_ms: u64, isolates: usize, events: &[Event]) -> Vec<u64> {
    let mut object = KeyState::default();
    let cap = batch_cap(limit, lease_ms);
    let grant = |want, now| object.grant(limit, want, now);
    serve(grant, cap, lease_ms, false, isolates, events)
}

/// A pool's allowance (property 7): the pool's object grants under the limit it holds, while
/// the isolates size their batches from the limit they cached (`cached`, possibly an older,
/// larger one) and hold a refusal at most one lease period, as the pool gate does.
fn run_pool(
    limit: RateLimit,
    cached: RateLimit,
    lease_ms: u64,
    isolates: usize,
    events: &[Event],
) -> Vec<u64> {
    let mut object = KeyState::default();
    object.set_pool(Some(PoolLimits {
        rate_limit: Some(limit),
        quota: None,
    }));
    let grant = |want, now| {
        object
            .pool_grant(want, lease_ms, now)
            .hit
            .expect("the pool has a rate limit")
    };
    serve(
        grant,
        batch_cap(cached, lease_ms),
        lease_ms,
        true,
        isolates,
        events,
    )
}

/// The simulation: `grant(want, now)` is the object's answer, `cap` the isolates' batch cap;
/// with `pool`, each answer's refusal is held at most one lease period.
fn serve(
    mut grant: impl FnMut(u32, u64) -> Hit,
    cap: u32,
    lease_ms: u64,
    pool: bool,
    isolates: usize,
    events: &[Event],
) -> Vec<u64> {
    let mut tables: Vec<LeaseTable> = (0..isolates).map(|_| LeaseTable::default()).collect();
    let mut pending: Vec<Vec<(u32, u64)>> = vec![vec![]; isolates];
    let hold = |t: &mut LeaseTable, sent: u64| {
        if pool {
            t.hold_refusal_until("k", sent + lease_ms);
        }
    };
    let mut now = 1_000_000u64;
    let mut served = vec![];
    for e in events {
        match *e {
            Event::Request { i, dt } => {
                now += dt;
                let verdict = match tables[i].take("k", now, lease_ms, cap) {
                    Take::Decided { verdict, renew } => {
                        if let Some(want) = renew {
                            pending[i].push((want, now));
                        }
                        verdict
                    }
                    Take::Ask { want } => {
                        let answer = grant(want, now);
                        let verdict = tables[i].granted("k", &answer, now, lease_ms, true);
                        hold(&mut tables[i], now);
                        verdict
                    }
                    // The in-flight call is a background renewal: this request fails closed
                    // rather than waiting in the simulation.
                    Take::Wait => continue,
                };
                if matches!(verdict, Hit::Counted { decision, .. } if decision.allowed) {
                    served.push(now);
                }
            }
            Event::Answer { i } => {
                if !pending[i].is_empty() {
                    let (want, sent) = pending[i].remove(0);
                    let answer = grant(want, now);
                    tables[i].granted("k", &answer, sent, lease_ms, false);
                    hold(&mut tables[i], sent);
                }
            }
            Event::Fail { i } => {
                if !pending[i].is_empty() {
                    pending[i].remove(0);
                    tables[i].failed("k");
                }
            }
        }
    }
    served
}

/// Whether every interval `[a, b]` of served times holds at most
/// `requests + (b - a + stretch) * requests / window` of them.
fn within_bound(served: &[u64], limit: RateLimit, stretch_ms: u64) -> Result<(), String> {
    let n = u128::from(limit.requests);
    let window_ms = u128::from(limit.window_seconds) * 1000;
    for (i, &a) in served.iter().enumerate() {
        for (j, &b) in served.iter().enumerate().skip(i) {
            let count = (j - i + 1) as u128;
            // count <= n + (b - a + stretch) * n / window, in integers.
            if count > n && (count - n) * window_ms > u128::from(b - a + stretch_ms) * n {
                return Err(format!(
                    "{count} served in [{a}, {b}] ({limit}, stretch {stretch_ms} ms)"
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Property 6 (docs/CONTRACT.md section 8).
    #[test]
    fn served_never_exceeds_the_limit_plus_one_lease_period(
        requests in 1u32..200,
        window_seconds in 1u32..4,
        lease_ms in 0u64..2500,
        isolates in 1usize..4,
        events in prop::collection::vec(event(3), 1..400),
    ) {
        let limit = RateLimit { requests, window_seconds };
        let events: Vec<Event> = events
            .into_iter()
            .map(|e| match e {
                Event::Request { i, dt } => Event::Request { i: i % isolates, dt },
                Event::Answer { i } => Event::Answer { i: i % isolates },
                Event::Fail { i } => Event::Fail { i: i % isolates },
            })
            .collect();
        let served = run(limit, lease_ms, isolates, &events);
        // A batch of one is used by the request that asked for it: nothing is held, no stretch.
        let stretch = if batch_cap(limit, lease_ms) == 1 { 0 } else { lease_ms };
        prop_assert!(within_bound(&served, limit, stretch).is_ok(), "{:?}", within_bound(&served, limit, stretch));
    }

    /// Property 7 (docs/CONTRACT.md section 17): a pool's allowance holds the same bound as a
    /// key's, under its object's limit, even when the isolates' cached limit is larger (the pool
    /// was lowered and they have not yet seen it) and though a pool's refusal is held only one
    /// lease period: tokens leave the object's allowance when granted, and live one lease period.
    #[test]
    fn a_pool_never_exceeds_its_limit_plus_one_lease_period_even_with_a_stale_cached_limit(
        requests in 1u32..200,
        window_seconds in 1u32..4,
        cached_factor in 1u32..20,
        lease_ms in 1u64..2500,
        isolates in 1usize..4,
        events in prop::collection::vec(event(3), 1..400),
    ) {
        let limit = RateLimit { requests, window_seconds };
        let cached = RateLimit { requests: requests.saturating_mul(cached_factor).min(1_000_000), window_seconds };
        let events: Vec<Event> = events
            .into_iter()
            .map(|e| match e {
                Event::Request { i, dt } => Event::Request { i: i % isolates, dt },
                Event::Answer { i } => Event::Answer { i: i % isolates },
                Event::Fail { i } => Event::Fail { i: i % isolates },
            })
            .collect();
        let served = run_pool(limit, cached, lease_ms, isolates, &events);
        let stretch = if batch_cap(limit, lease_ms) == 1 { 0 } else { lease_ms };
        prop_assert!(within_bound(&served, limit, stretch).is_ok(), "{:?}", within_bound(&served, limit, stretch));
    }
}
