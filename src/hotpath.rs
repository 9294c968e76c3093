//! The gateway's own work for one proxied request with a valid key, in the order the glue does
//! it and through the same functions ([`crate::core::access`] for every decision), without I/O: what the CPU benchmarks time natively (`examples/core_cpu.rs`) and in wasm
//! (`tests/wasm_cpu.rs`). Not called by the Worker (so it is not shipped: LTO drops it).

use crate::core::access;
use crate::core::auth::{parse_authorization, Credential};
use crate::core::forward::{accept_request_id, drop_request_header, signature_header};
use crate::core::key::{check_key, format_key, hash_key};
use crate::core::keystate::Hit;
use crate::core::log::LogLine;
use crate::core::plan::{plan, Plan};
use crate::core::ratelimit::{gcra, RateLimit};
use crate::core::record::{KeyRecord, NewKey};
use crate::core::route::{check_path, resolve, split_url, Route};

/// Inputs prepared once: a key, its stored record (as KV returns it) and request headers.
pub struct Fixture {
    pub url: String,
    pub authorization: String,
    pub record_json: String,
    pub headers: Vec<(String, String)>,
    pub secret: Vec<u8>,
    pub now: i64,
}

impl Fixture {
    pub fn new() -> Self {
        let key = format_key("kg", &[7u8; 32]);
        let record = NewKey {
            user_id: "alice".into(),
            email: Some("alice@example.com".into()),
            name: "airflow".into(),
            workspaces: vec!["ws1".into(), "ws2".into()],
            permissions: vec!["jobs:read".into(), "jobs:run".into()],
            expires_at: Some(1_900_000_000),
            rate_limit: RateLimit {
                requests: 600,
                window_seconds: 60,
            },
            policy: Default::default(),
        }
        .into_record(
            "key_0123456789abcdef".into(),
            "kg_070707".into(),
            1_800_000_000,
        );
        let headers = [
            ("accept", "application/json"),
            ("user-agent", "airflow/2.9"),
            ("authorization", "redacted"),
            ("x-request-id", "trace-123"),
            ("x-keygate-user-id", "spoof"),
            ("content-type", "application/json"),
            ("accept-encoding", "gzip"),
            ("cf-connecting-ip", "203.0.113.9"),
        ];
        Fixture {
            url: "https://gw.example.com/developers/workspaces/ws1/jobs/?page=2".into(),
            authorization: format!("Api-Key {key}"),
            record_json: serde_json::to_string(&record).unwrap_or_default(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret: b"signing-secret-for-benchmarks".to_vec(),
            now: 1_800_000_100,
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs every decision of one request; returns a number derived from all of them so that the
/// optimizer cannot drop any step.
pub fn one_request(f: &Fixture) -> usize {
    let (path, query) = split_url(&f.url);
    let mut acc = 0;
    if check_path(path).is_err() {
        return 0;
    }
    let Ok(Route::Forward(fwd)) = resolve("GET", path) else {
        return 0;
    };
    let Ok(Credential::ApiKey(key)) = parse_authorization(Some(&f.authorization)) else {
        return 0;
    };
    if check_key("kg", key).is_err() {
        return 0;
    }
    let hash = hash_key(key);
    acc += hash.len();
    let Ok(record) = serde_json::from_str::<KeyRecord>(&f.record_json) else {
        return 0;
    };
    let route = Route::Forward(fwd);
    let Some(need) = access::need(&route) else {
        return 0;
    };
    if access::credential(&need, false).is_err() || access::usable(&record, f.now).is_err() {
        return 0;
    }
    // The plan the glue follows (a GET: decided from the key's lease).
    if plan(&route, &record, None) != Plan::Lease {
        return 0;
    }
    // What the key's object does for the request (GCRA), then the decision the glue applies.
    let (tat, decision) = gcra(0, (f.now as u64) * 1000, record.rate_limit);
    let verdict = Hit::Counted {
        decision,
        expires_at: None,
        granted: 1,
    };
    if access::decide_key(&record, f.now, &verdict, &need, None).is_err() {
        return 0;
    }
    let Route::Forward(fwd) = route else {
        return 0;
    };
    acc += decision.remaining as usize + (tat & 1) as usize;
    for (name, _) in &f.headers {
        acc += usize::from(drop_request_header(name, None));
    }
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let sig = signature_header(
        &f.secret,
        f.now,
        "GET",
        &pq,
        &record.id,
        &record.user_id,
        fwd.workspace,
    );
    acc += sig.len();
    let rid = accept_request_id(Some("trace-123")).unwrap_or("x");
    let line = LogLine {
        request_id: rid,
        method: "GET",
        path,
        status: 200,
        code: None,
        key_id: Some(&record.id),
        user_id: Some(&record.user_id),
        duration_ms: 1,
        cause: None,
        lease: Some("local"),
        pool_calls: None,
    }
    .to_json();
    acc + line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmarked_path_takes_every_step() {
        // A zero would mean some check refused the fixture and the path was cut short.
        assert!(one_request(&Fixture::new()) > 100);
    }
}
