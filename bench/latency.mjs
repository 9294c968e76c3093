// Local latency of each stage of a request, through `wrangler dev` on 127.0.0.1, sequential
// requests (no load): what authenticating a valid key adds (its record is cached in the
// isolate after the first read, so this is mostly the per-key Durable Object round trip),
// measured as the difference between a valid key on /v1/me and /healthz. Not a throughput
// benchmark.
//
//   node bench/latency.mjs [requests per case, default 300]

import { call, createKey, startGateway, unissuedKey } from "../tests/e2e/harness.mjs";

const N = Number(process.argv[2] ?? 300);
const WARMUP = 30;

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function measure(label, fn) {
  for (let i = 0; i < WARMUP; i++) await fn();
  const t = [];
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  const row = { label, p50: pct(t, 50), p90: pct(t, 90), p99: pct(t, 99) };
  console.log(`${label.padEnd(48)} p50 ${row.p50.toFixed(2)} ms  p90 ${row.p90.toFixed(2)} ms  p99 ${row.p99.toFixed(2)} ms`);
  return row;
}

const gw = await startGateway();
try {
  const { key } = await createKey(gw, { rate_limit: { requests: 1000000, window_seconds: 60 } });
  const expect = (status) => (r) => {
    if (r.status !== status) throw new Error(`expected ${status}, got ${r.status}: ${r.text}`);
  };
  console.log(`${N} sequential requests per case after ${WARMUP} warm-up, wrangler dev on 127.0.0.1`);
  const health = await measure("GET /healthz (no storage)", () => call(gw, "GET", "/healthz").then(expect(200)));
  const bad = await measure("GET /v1/me, malformed key (no storage)", () => call(gw, "GET", "/v1/me", { key: "kg_x" }).then(expect(401)));
  const unknown = await measure("GET /v1/me, unknown key (KV read)", () => call(gw, "GET", "/v1/me", { key: unissuedKey() }).then(expect(401)));
  const valid = await measure("GET /v1/me, valid key (cached record + Durable Object)", () => call(gw, "GET", "/v1/me", { key }).then(expect(200)));
  const proxied = await measure("GET /developers/... valid key (+ origin)", () => call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key }).then(expect(200)));
  console.log(
    `Valid key minus /healthz (authentication + object call): p50 ${(valid.p50 - health.p50).toFixed(2)} ms, p90 ${(valid.p90 - health.p90).toFixed(2)} ms`,
  );
  void unknown;
  void bad;
  void proxied;
} finally {
  await gw.stop();
}
