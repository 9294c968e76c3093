#!/usr/bin/env bash
# Builds the Worker (build/worker/shim.mjs + the .wasm) with worker-build --release, and copies
# the files it serves through its ASSETS binding (wrangler.toml [assets]) to build/assets.
# Skips the build when nothing under src/, Cargo.* or this script changed, so that starting
# wrangler dev (which runs this) is fast on a warm tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# The served files, named by the paths the Worker asks the binding for (edge/assets.rs). Written
# only when changed, and nothing else kept there: wrangler dev reloads the Worker on any change
# in the assets directory, which would restart gateways other test files are running.
assets=build/assets
place() {
  mkdir -p "$(dirname "$2")"
  cmp -s "$1" "$2" || { cp "$1" "$2.tmp" && mv "$2.tmp" "$2"; }
}
# Each served file: its source, then its path in the assets.
served=(
  "web/settings/index.html settings/index.html"
  "web/settings/app.js settings/app.js"
  "web/settings/app.css settings/app.css"
  "api/openapi.json openapi.json"
)
keep=()
for pair in "${served[@]}"; do
  read -r from to <<<"$pair"
  place "$from" "$assets/$to"
  keep+=(! -path "$assets/$to")
done
find "$assets" -type f "${keep[@]}" -delete
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
