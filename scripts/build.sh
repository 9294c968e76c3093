#!/usr/bin/env bash
# Builds the Worker (build/worker/shim.mjs + the .wasm) with worker-build --release, and copies
# the files it serves through its ASSETS binding (wrangler.toml [assets]) to build/assets.
# Skips the build when nothing under src/, Cargo.* or this script changed, so that starting
# wrangler dev (which runs this) is fast on a warm tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# The served files, named by the paths the Worker asks the binding for (edge/assets.rs).
mkdir -p build/assets/settings
cp web/settings/index.html web/settings/app.js web/settings/app.css web/settings/switch.html \
  build/assets/settings/
cp api/openapi.json build/assets/openapi.json
stamp=build/.keygate-stamp
if [ -f "$stamp" ] && [ -f build/worker/shim.mjs ] && \
   [ -z "$(find src Cargo.toml Cargo.lock scripts/build.sh -newer "$stamp" -print -quit)" ]; then
  exit 0
fi
wasm_env
# Stamped with the time the build started: a source saved while it runs triggers the next one.
# (build/ does not exist yet in a fresh clone.)
mkdir -p build
touch "$stamp.new"
worker-build --release >&2
mv "$stamp.new" "$stamp"
