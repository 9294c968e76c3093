#!/usr/bin/env bash
# Builds the Worker (build/worker/shim.mjs + the .wasm) with worker-build --release.
# Skips the build when nothing under src/, api/ and web/ (both embedded), Cargo.* or this
# script changed, so that starting wrangler dev (which runs this) is fast on a warm tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
stamp=build/.keygate-stamp
if [ -f "$stamp" ] && [ -f build/worker/shim.mjs ] && \
   [ -z "$(find src api web Cargo.toml Cargo.lock scripts/build.sh -newer "$stamp" -print -quit)" ]; then
  exit 0
fi
wasm_env
# Stamped with the time the build started: a source saved while it runs triggers the next one.
# (build/ does not exist yet in a fresh clone.)
mkdir -p build
touch "$stamp.new"
worker-build --release >&2
mv "$stamp.new" "$stamp"
