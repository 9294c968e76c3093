#!/usr/bin/env bash
# CPU per request of the gateway's own work (src/hotpath.rs): natively, and compiled to
# wasm32 under Node's V8 (wasm-bindgen-test-runner), release builds both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo run -q --release --example core_cpu
(wasm_env && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --release --target wasm32-unknown-unknown --test wasm_cpu -- --nocapture 2>&1 |
  grep -E "wasm:|test result")
