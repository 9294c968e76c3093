//! The lease guarantee (docs/CONTRACT.md section 8), checked on generated interleavings
//! (proptest): several isolates, each with its own [`LeaseTable`], share one key's object
//! ([`KeyState`]); requests arrive at random isolates and times, background renewals are
//! answered late or never. Whatever the interleaving:
//!
//! 1. The requests served, in any interval `[a, b]`, are at most what GCRA allows over that
//!    interval stretched by `LEASE_MS`: `requests + (b - a + LEASE_MS) * rate`. GCRA itself
//!    allows `requests + (b - a) * rate`, so the overshoot is one lease period of the rate.
//! 2. A key whose `rate * LEASE_MS` is under one token is exact: the same bound with no stretch.
//!
//! `make test` runs 2,000 interleavings; `PROPTEST_CASES` sets another number.
#![cfg(not(target_arch = "wasm32"))]

use keygate::core::keystate::{Hit, KeyState};
use keygate::core::lease::{batch_cap, LeaseTable, Take};
use keygate::core::ratelimit::RateLimit;
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
    let mut tables: Vec<LeaseTable> = (0..isolates).map(|_| LeaseTable::default()).collect();
    let mut pending: Vec<Vec<(u32, u64)>> = vec![vec![]; isolates];
    let cap = batch_cap(limit, lease_ms);
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
                        let answer = object.grant(limit, want, now);
                        tables[i].granted("k", &answer, now, lease_ms, true)
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
                    let answer = object.grant(limit, want, now);
                    tables[i].granted("k", &answer, sent, lease_ms, false);
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
}
