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
# The assertion's development signing key (docs/CONTRACT.md section 16): a P-256 JWK made here,
# added to a .dev.vars made before it existed too.
if ! grep -q '^ASSERTION_SIGNING_KEY=' .dev.vars; then
  node -e 'const c=require("crypto");const {privateKey}=c.generateKeyPairSync("ec",{namedCurve:"P-256"});
    const jwk={...privateKey.export({format:"jwk"}),kid:`dev-${c.randomBytes(4).toString("hex")}`,alg:"ES256"};
    console.log(`ASSERTION_SIGNING_KEY=${JSON.stringify(jwk)}`)' >>.dev.vars
  echo "[dev] wrote a development assertion signing key to .dev.vars"
fi

node examples/origin.mjs --port "${ORIGIN_PORT:-8788}" \
  --jwks "http://127.0.0.1:${PORT:-8787}/.well-known/jwks.json" &
origin_pid=$!
trap 'kill $origin_pid 2>/dev/null || true' EXIT INT TERM

# `make dev SCHEDULED=1` (or SCHEDULED=1 bash scripts/dev.sh) also serves wrangler's
# `/__scheduled` endpoint, to run the Cron Trigger by hand (docs/CONTRACT.md section 14); off by
# default, since it is one more path on the gateway that nobody asked for.
scheduled=()
if [ "${SCHEDULED:-0}" = 1 ]; then
  scheduled=(--test-scheduled)
fi

bash scripts/build.sh
# keygate and, beside it, keygate-assets (the settings page's files, the OpenAPI document).
wrangler dev --config wrangler.toml --config wrangler.assets.toml \
  --ip 127.0.0.1 --port "${PORT:-8787}" \
  --var "ORIGIN_URL:http://127.0.0.1:${ORIGIN_PORT:-8788}" \
  --show-interactive-dev-session=false "${scheduled[@]}" &
gateway_pid=$!
trap 'kill $origin_pid $gateway_pid 2>/dev/null || true' EXIT INT TERM

# Once the gateway answers: a settings link for a demo user (docs/CONTRACT.md section 11), made
# with the development admin token the way a platform's backend would. It works once, for an hour.
gateway="http://127.0.0.1:${PORT:-8787}"
for _ in $(seq 1 240); do
  curl -fs "$gateway/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
admin_token=$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars)
link=$(curl -fs "$gateway/v1/settings-sessions" -H "Authorization: Bearer $admin_token" \
  -H 'Content-Type: application/json' \
  -d '{"user_id":"demo","email":"demo@example.com","workspaces":["demo","staging"],
       "permissions":["workspaces:read","jobs:read","jobs:run"],"max_expiry_days":90,
       "ttl_seconds":3600}' |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).url))' ||
  true)
if [ -n "$link" ]; then
  echo "[dev] settings page for the demo user (single use, 1 h; run 'make dev' again for another):"
  echo "[dev]   $link"
else
  echo "[dev] could not open a settings session (is the gateway up?)" >&2
fi
wait $gateway_pid
