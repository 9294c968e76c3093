#!/usr/bin/env bash
# Prints the release .wasm size and the upload size (raw and gzip) that
# `wrangler deploy --dry-run` reports. No account or network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/build.sh
out=$(mktemp -d)
wasm=$(ls build/*.wasm)
printf 'release wasm: %s bytes (%s)\n' "$(stat -c %s "$wasm")" "$wasm"
printf 'release wasm gzip -9: %s bytes\n' "$(gzip -9c "$wasm" | wc -c)"
wrangler deploy --dry-run --outdir "$out" 2>&1 | grep -i "upload" || true
rm -rf "$out"
