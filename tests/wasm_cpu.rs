//! CPU time of the gateway's own work per request, compiled to wasm32 and run in Node's V8
//! (the engine workerd embeds). Prints the figure; asserts only that the path ran.
//!
//!   see scripts/cpu.sh (`make cpu`)
#![cfg(target_arch = "wasm32")]

use keygate::hotpath::{one_request, Fixture};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

const ITERATIONS: u32 = 20_000;

#[wasm_bindgen_test]
fn cpu_per_request_in_wasm() {
    let f = Fixture::new();
    let mut acc = 0usize;
    for _ in 0..ITERATIONS / 10 {
        acc = acc.wrapping_add(one_request(&f));
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = worker::js_sys::Date::now();
        for _ in 0..ITERATIONS {
            acc = acc.wrapping_add(one_request(&f));
        }
        best = best.min((worker::js_sys::Date::now() - t) * 1e6 / f64::from(ITERATIONS));
    }
    assert!(acc > 0);
    console_log!("wasm: {best:.0} ns per request (best of 5 x {ITERATIONS})");
}
