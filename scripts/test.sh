#!/usr/bin/env bash
# Every test keygate has: the README layout and contract checks, formatting and lints, native
# unit tests of the core, wasm-bindgen tests under Node, then end-to-end tests through
# `wrangler dev` (workerd) against a real origin on 127.0.0.1, and the settings page in a real
# browser through the same gateway. Installs what it needs first (idempotent). Prints how long
# each phase took, at the end (also when one fails).
set -euo pipefail
cd "$(dirname "$0")/.."

# A test that hangs (a gateway killed under it, a fetch that never answers) fails after this
# long instead of holding CI until its overall limit; the slowest test takes about a minute.
TEST_TIMEOUT_MS=300000
# End-to-end files run side by side, each with its own gateways on free ports and fresh state:
# most of their time is spent waiting (lease periods, rate windows, a session's expiry), not
# computing. KEYGATE_E2E_JOBS=1 runs them one by one.
E2E_JOBS="${KEYGATE_E2E_JOBS:-3}"

PHASES=()
STARTED=$SECONDS
# phase NAME COMMAND...: runs one phase and notes its duration.
phase() {
  local name=$1
  shift
  printf '\n== %s\n' "$name"
  local t0=$SECONDS
  "$@"
  PHASES+=("$(printf '%5ds  %s' $((SECONDS - t0)) "$name")")
}
report() {
  local status=$?
  # A failure in the foreground leaves no Rust check running behind.
  [ -n "${RUST_PID:-}" ] && kill "$RUST_PID" 2>/dev/null && wait "$RUST_PID" 2>/dev/null
  printf '\n== time per phase (s)\n'
  printf '%s\n' "${PHASES[@]}"
  printf '%5ds  in all (%s)\n' $((SECONDS - STARTED)) "$([ "$status" = 0 ] && echo passed || echo FAILED)"
}
trap report EXIT

phase "setup (scripts/setup.sh; seconds when everything is there)" bash scripts/setup.sh
. scripts/env.sh
printf '\n== Node.js %s (%s), wrangler %s\n' "$(node --version)" "$(command -v node)" "$(wrangler --version)"

phase "README layout matches the repository (scripts/check-layout.mjs)" node scripts/check-layout.mjs
phase "docs/CONTRACT.md matches api/openapi.json (scripts/check-contract.mjs)" node scripts/check-contract.mjs
phase "cargo fmt --check" cargo fmt --check
phase "keygate_drf, the Django package (pytest, clients/django/tests)" \
  bash -c 'cd clients/django && ../../.venv/bin/python -m pytest -q -p no:cacheprovider tests' 
# The Rust checks that the end-to-end tests do not need run beside them (and beside the release
# build), at the lowest CPU priority: the end-to-end files mostly wait (lease periods, rate windows, a session's expiry),
# and the compiler takes the idle time without slowing them. Their output is shown afterwards.
# The wasm32 lints use the dev profile, like the wasm tests after them: the host build scripts
# and macros both need are compiled once (the release build itself is checked by compiling).
RUST_LOG_DIR=$(mktemp -d)
: >"$RUST_LOG_DIR/times"
rust_checks() {
  local n=0 name
  run() {
    name=$1
    shift
    n=$((n + 1))
    local t0=$SECONDS log="$RUST_LOG_DIR/$n.log"
    printf '== %s\n' "$name" >"$log"
    if "$@" >>"$log" 2>&1; then
      printf '%5ds  %s\n' $((SECONDS - t0)) "$name" >>"$RUST_LOG_DIR/times"
    else
      printf '%5ds  %s (FAILED)\n' $((SECONDS - t0)) "$name" >>"$RUST_LOG_DIR/times"
      return 1
    fi
  }
  run "cargo clippy (native core) -D warnings" cargo clippy -q --all-targets -- -D warnings &&
    run "cargo clippy (wasm32: core and worker glue) -D warnings" \
      bash -c '. scripts/env.sh && wasm_env && cargo clippy -q --target wasm32-unknown-unknown --all-targets -- -D warnings' &&
    run "unit tests of the core and properties (native)" cargo test -q &&
    run "wasm-bindgen-test (wasm32 under Node)" \
      bash -c '. scripts/env.sh && wasm_env && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test --target wasm32-unknown-unknown --test wasm'
}
nice -n 19 bash -c "$(declare -f rust_checks); RUST_LOG_DIR=$RUST_LOG_DIR; rust_checks" &
RUST_PID=$!

# The release build runs at normal priority: the end-to-end files need it, and the Rust checks
# above take only the CPU it leaves idle (its serial steps: linking, wasm-bindgen, wasm-opt).
phase "build the Worker (worker-build --release)" bash scripts/build.sh

# Every end-to-end file (limits.test.mjs twice: limits-exact.test.mjs is it with LEASE_MS = 0)
# and the settings page in a real browser (Chromium via playwright-core), each through its own
# wrangler dev gateway(s).
phase "end to end through wrangler dev, and the settings page in Chromium ($E2E_JOBS files at a time)" \
  node --test --test-concurrency="$E2E_JOBS" --test-timeout="$TEST_TIMEOUT_MS" \
  tests/e2e/*.test.mjs tests/browser/*.test.mjs

rust_status=0
wait "$RUST_PID" || rust_status=$?
cat "$RUST_LOG_DIR"/[0-9]*.log
while IFS= read -r line; do PHASES+=("$line (beside the end-to-end tests)"); done <"$RUST_LOG_DIR/times"
rm -rf "$RUST_LOG_DIR"
[ "$rust_status" = 0 ]
