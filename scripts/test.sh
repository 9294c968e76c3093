#!/usr/bin/env bash
# Every test keygate has: the README layout and contract checks, formatting and lints, native
# unit tests of the core, wasm-bindgen tests under Node, then end-to-end tests through
# `wrangler dev` (workerd) against a real origin on 127.0.0.1, and the settings page in a real
# browser through the same gateway. Installs what it needs first
# (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

# A test that hangs (a gateway killed under it, a fetch that never answers) fails after this
# long instead of holding CI until its overall limit; the slowest test takes about a minute.
TEST_TIMEOUT_MS=300000

step() { printf '\n== %s\n' "$*"; }

# First, being fast and needing only Node: the README layout and the contract document.
step "README layout matches the repository (scripts/check-layout.mjs)"
node scripts/check-layout.mjs
step "docs/CONTRACT.md matches api/openapi.json (scripts/check-contract.mjs)"
node scripts/check-contract.mjs

bash scripts/setup.sh
. scripts/env.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy (native core) -D warnings"
cargo clippy -q --all-targets -- -D warnings

step "cargo clippy (wasm32: core and worker glue) -D warnings"
(wasm_env && cargo clippy -q --target wasm32-unknown-unknown --release --all-targets -- -D warnings)

step "unit tests of the core (native)"
cargo test -q

step "wasm-bindgen-test (wasm32 under Node)"
(wasm_env && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --target wasm32-unknown-unknown --test wasm)

step "build the Worker (worker-build --release)"
bash scripts/build.sh

step "end-to-end through wrangler dev"
node --test --test-concurrency=1 --test-timeout="$TEST_TIMEOUT_MS" tests/e2e/

step "the exact limits again with LEASE_MS = 0 (one object call per request)"
KEYGATE_TEST_LEASE_MS=0 node --test --test-concurrency=1 --test-timeout="$TEST_TIMEOUT_MS" tests/e2e/limits.test.mjs

step "the settings page in a real browser (Chromium via playwright-core, through wrangler dev)"
node --test --test-concurrency=1 --test-timeout="$TEST_TIMEOUT_MS" tests/browser/
