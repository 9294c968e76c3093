#!/usr/bin/env bash
# Side-by-side benchmark (bench/run.mjs), loopback only, about 7 minutes; writes BENCHMARKS.md.
# With --soak: the bounded soak (bench/soak.mjs) instead; with --profile: bench/profile.mjs.
# Installs nginx-light and wrk from Debian's packages if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] || ! command -v wrk >/dev/null; then
  echo "[bench] installing Debian's nginx-light and wrk" >&2
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light wrk
fi
export PATH="$PATH:/usr/sbin"
bash scripts/build.sh
# The Rust floor (bench only, never deployed), built like keygate: bench/passthrough-rs.
(cd bench/passthrough-rs && wasm_env && CARGO_TARGET_DIR="$PWD/../../target/bench-passthrough" worker-build --release >&2)
if [ "${1:-}" = "--soak" ]; then
  shift
  node bench/soak.mjs "$@"
elif [ "${1:-}" = "--profile" ]; then
  shift
  node bench/profile.mjs "$@"
else
  node bench/run.mjs "$@"
fi
