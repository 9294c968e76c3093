# Sourced by the other scripts: the environment that scripts/setup.sh prepared.
# shellcheck shell=bash
KEYGATE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -f "$KEYGATE_ROOT/.keygate-env" ]; then
  bash "$KEYGATE_ROOT/scripts/setup.sh"
fi
# shellcheck disable=SC1091
. "$KEYGATE_ROOT/.keygate-env"
export PATH="$KEYGATE_ROOT/node_modules/.bin:$PATH"
# The project's own Node.js when the machine's is older than 22.12 (setup.sh, step 3).
if [ -n "${KEYGATE_NODE_BIN:-}" ]; then export PATH="$KEYGATE_NODE_BIN:$PATH"; fi
# worker-build would download these; the pinned npm/cargo installs are used instead.
export ESBUILD_BIN="$KEYGATE_ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$KEYGATE_ROOT/node_modules/.bin/wasm-opt"
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WRANGLER_SEND_METRICS=false
# Only for wasm32 builds: the host toolchain stays rustup's.
wasm_env() {
  if [ -n "$RUSTC_FOR_WASM" ]; then export RUSTC="$RUSTC_FOR_WASM"; fi
  # worker-build asks the `rustc` on PATH for the wasm32 libdir (and would run `rustup target
  # add` when rustup's has none): put the toolchain that has it first.
  # The project's Node stays ahead of /usr/bin/node (wasm-bindgen-test-runner runs `node`).
  if [ "$RUSTC_FOR_WASM" = /usr/bin/rustc ]; then export PATH="${KEYGATE_NODE_BIN:+$KEYGATE_NODE_BIN:}/usr/bin:$PATH"; fi
  if [ -n "$LINKER_FOR_WASM" ]; then export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$LINKER_FOR_WASM"; fi
}
