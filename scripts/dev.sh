#!/usr/bin/env bash
# Runs keygate under `wrangler dev` on http://127.0.0.1:8787 with local KV (persisted under
# .wrangler/), and the example origin on http://127.0.0.1:8788. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

# Development secrets, made once per checkout and never committed (.dev.vars is git-ignored).
if [ ! -f .dev.vars ]; then
  node -e 'const c=require("crypto");const r=()=>c.randomBytes(24).toString("hex");
    console.log(`ADMIN_TOKEN=dev-${r()}\nORIGIN_SIGNING_SECRET=dev-${r()}`)' >.dev.vars
  echo "[dev] wrote development secrets to .dev.vars"
fi

node examples/origin.mjs --port "${ORIGIN_PORT:-8788}" &
origin_pid=$!
trap 'kill $origin_pid 2>/dev/null || true' EXIT INT TERM

bash scripts/build.sh
wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" \
  --var "ORIGIN_URL:http://127.0.0.1:${ORIGIN_PORT:-8788}" \
  --show-interactive-dev-session=false
