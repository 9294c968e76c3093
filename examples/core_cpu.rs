//! CPU time of the gateway's own work per request (parse, hash, checks, rate-limit arithmetic,
//! signature, log line), natively. The wasm figure comes from `tests/wasm_cpu.rs`.
//!
//!   cargo run --release --example core_cpu [iterations]

use std::hint::black_box;
use std::time::Instant;

use keygate::hotpath::{one_request, Fixture};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let f = Fixture::new();
    for _ in 0..n / 10 {
        black_box(one_request(black_box(&f)));
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            black_box(one_request(black_box(&f)));
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / f64::from(n));
    }
    println!("native: {best:.0} ns per request (best of 5 x {n})");
}
