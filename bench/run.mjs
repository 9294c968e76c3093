// Side-by-side throughput and latency, loopback only, bounded in time (about 7 minutes):
//   (a) the origin directly (nginx)
//   (b) a minimal pass-through Worker (the floor)
//   (br) the Rust floor: the plainest pass-through with the `worker` crate (bench/passthrough-rs)
//   (b2) the pass-through plus one Durable Object call with a durable write (the floor of any
//        design that counts every request exactly, as docs/CONTRACT.md section 8 asks)
//   (c) keygate, valid key, proxied GET, leases (LEASE_MS 1000, the default)
//   (c0) the same with LEASE_MS = 0 (one object call per request, exact)
//   (d) keygate, job-trigger route, distinct Idempotency-Keys
//   (e) keygate, invalid keys (bad checksum) from one client address (the attack path)
//   (ca) (c) with the signed assertion on (ASSERTION_SIGNING_KEY: ES256 per request, section 16)
//   (m), (m512), (mpb) keygate with LEGACY_KEYS = drf-api-key (contract section 15): a native
//        key, an imported SHA-512 key, an imported PBKDF2 key (1,000,000 iterations) after its
//        first call; (ml) keys of the imported shape with unknown prefixes from one address
//   (b1), (c1), (c01) b, c and c0 again with one connection: the latency each call gets
//   (c1_dN), (c01_dN) c1 and c01 with a simulated distance of N ms to the keys' objects
//        (bench/delayed-object.mjs delays every object answer; N = 50, 150)
// Object calls per 1,000 requests are counted from the Worker's log (its `lease` field).
// The Workers run on workerd through Miniflare's own socket (wrangler dev's proxy layers would
// be the bottleneck otherwise), with the same wrk settings for every case.
//
//   node bench/run.mjs [--seconds 8] [--runs 3] [--connections 32] [--no-write] [--only b,c]
// (--only measures a subset while iterating on one change; it never writes BENCHMARKS.md)

import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync, statSync } from "node:fs";
import { tmpdir, cpus } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

import { ROOT } from "../tests/e2e/harness.mjs";
import { createKey, importKey, putPool, startKeygate, startNginx, startPassthrough, startPassthroughRust, wrk as wrkWith } from "./lib.mjs";

const wrk = (url, script, env = {}, seconds = SECONDS) =>
  wrkWith(url, script, env, { seconds, connections: CONNECTIONS, threads: THREADS });
// One connection, one request at a time: what the gateway adds to a single call, without the
// queueing that dominates every latency figure of a saturated run.
const wrk1 = (url, script, env = {}, seconds = SECONDS) =>
  wrkWith(url, script, env, { seconds, connections: 1, threads: 1 });

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("seconds", 8);
const RUNS = arg("runs", 3);
const CONNECTIONS = arg("connections", 32);
const THREADS = 2;
const WARMUP_SECONDS = 2;
/** API keys per trigger run: 1,000 idempotency records each, more than a run needs. */
const TRIGGER_KEYS = 12;
const ONLY = (() => {
  const i = process.argv.indexOf("--only");
  return i > 0 ? process.argv[i + 1].split(",") : null;
})();
const WRITE = !process.argv.includes("--no-write") && !ONLY;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function sizes() {
  const wasm = join(ROOT, "build", "index_bg.wasm");
  const raw = statSync(wasm).size;
  const gz = gzipSync(readFileSync(wasm), { level: 9 }).length;
  let upload = "";
  try {
    const out = execFileSync(join(ROOT, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", mkdtempSync(join(tmpdir(), "kg-dry-"))], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    upload = /Total Upload:\s*([^\n]+)/.exec(out)?.[1]?.trim() ?? "";
  } catch (e) {
    upload = /Total Upload:\s*([^\n]+)/.exec(String(e.stdout))?.[1]?.trim() ?? "n/a";
  }
  return { raw, gz, upload };
}

const adminToken = `bench-${randomBytes(16).toString("hex")}`;
const signingSecret = `bench-${randomBytes(16).toString("hex")}`;
const origin = await startNginx();
const pass = await startPassthrough(origin.url);
const passDo = await startPassthrough(origin.url, { withObject: true });
const passRs = !ONLY || ONLY.includes("br") ? await startPassthroughRust(origin.url) : null;
const kg = await startKeygate(origin.url, adminToken, signingSecret);
const exact = { vars: { LEASE_MS: "0" } };
const kg0 = await startKeygate(origin.url, adminToken, signingSecret, {}, exact);
const assertionKey = JSON.stringify({ ...generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" }), kid: "bench" });
const kga = !ONLY || ONLY.includes("ca")
  ? await startKeygate(origin.url, adminToken, signingSecret, {}, { vars: { ASSERTION_SIGNING_KEY: assertionKey } })
  : null;
const MIGRATION = ["m", "m512", "mpb", "ml"];
const kgl = !ONLY || ONLY.some((id) => MIGRATION.includes(id))
  ? await startKeygate(origin.url, adminToken, signingSecret, {}, { vars: { LEGACY_KEYS: "drf-api-key" } })
  : null;
const DISTANCES = [50, 150];
const far = {};
for (const d of DISTANCES) {
  if (ONLY && !ONLY.some((id) => id.endsWith(`_d${d}`))) continue;
  far[d] = {
    lease: await startKeygate(origin.url, adminToken, signingSecret, {}, { objectDelayMs: d }),
    exact: await startKeygate(origin.url, adminToken, signingSecret, {}, { ...exact, objectDelayMs: d }),
  };
}
const stopAll = async () => {
  await kg.stop();
  await kg0.stop();
  await kgl?.stop();
  await kga?.stop();
  for (const f of Object.values(far)) {
    await f.lease.stop();
    await f.exact.stop();
  }
  await pass.stop();
  await passDo.stop();
  await passRs?.stop();
  origin.stop();
};

const results = {};
/** The imported keys of the (m) cases, and the first PBKDF2 call's latency. */
const legacy = {};
try {
  const key = await createKey(kg.url, adminToken);
  const key0 = await createKey(kg0.url, adminToken);
  const farKeys = {};
  for (const [d, f] of Object.entries(far)) {
    farKeys[d] = { lease: await createKey(f.lease.url, adminToken), exact: await createKey(f.exact.url, adminToken) };
  }
  const jobs = "/developers/workspaces/ws1/jobs/";
  // (cp): a key in a user pool and a workspace pool (contract section 17), on the gateway of (c),
  // with limits the load never reaches: what counting a request against two pools costs.
  const pooledJobs = "/developers/workspaces/wspool/jobs/";
  const pooledKey = !ONLY || ONLY.includes("cp") ? await createKey(kg.url, adminToken, { userId: "bench-pooled", workspaces: ["wspool"] }) : null;
  if (pooledKey) {
    const huge = { rate_limit: { requests: 1000000, window_seconds: 60 } };
    await putPool(kg.url, adminToken, "users", "bench-pooled", huge);
    await putPool(kg.url, adminToken, "workspaces", "wspool", huge);
  }
  if (kgl) {
    legacy.native = await createKey(kgl.url, adminToken);
    legacy.sha512 = await importKey(kgl.url, adminToken, "sha512");
    legacy.pbkdf2 = await importKey(kgl.url, adminToken, "pbkdf2");
    // The first call of a PBKDF2 key runs the check (then the key is upgraded): its latency.
    const t0 = performance.now();
    const first = await fetch(kgl.url + jobs, { headers: { authorization: `Api-Key ${legacy.pbkdf2}` } });
    legacy.firstMs = performance.now() - t0;
    if (first.status !== 200) throw new Error(`first PBKDF2 call: ${first.status}`);
    console.log(`first call of an imported PBKDF2 key (1,000,000 iterations): ${legacy.firstMs.toFixed(0)} ms`);
  }
  const run = "/developers/workspaces/ws1/jobs/daily_etl/run/";
  const cases = [
    ["a", "origin directly (nginx)", (t) => wrk(origin.url + jobs, null, {}, t)],
    ["b", "pass-through Worker (floor)", (t) => wrk(pass.url + jobs, null, {}, t)],
    ...(passRs ? [["br", "plain Rust pass-through (worker crate): the Rust floor", (t) => wrk(passRs.url + jobs, null, {}, t)]] : []),
    ["b2", "pass-through + one Durable Object call (exact floor)", (t) => wrk(passDo.url + jobs, null, {}, t)],
    ["c", "keygate, valid key, proxied GET (leases)", (t) => wrk(kg.url + jobs, "key.lua", { KEY: key }, t), kg],
    ...(pooledKey ? [["cp", "keygate, valid key in a user pool and a workspace pool (leases)", (t) => wrk(kg.url + pooledJobs, "key.lua", { KEY: pooledKey }, t), kg]] : []),
    ["c0", "keygate, valid key, proxied GET, LEASE_MS=0", (t) => wrk(kg0.url + jobs, "key.lua", { KEY: key0 }, t), kg0],
    // Fresh API keys per run, used in turn: a key holds at most 1,000 idempotency records
    // (contract section 6), and a run makes more triggers than that.
    ["d", "keygate, job trigger, distinct Idempotency-Keys", async (t) => wrk(kg.url + run, "run.lua", { KEYS: (await Promise.all(Array.from({ length: TRIGGER_KEYS }, () => createKey(kg.url, adminToken)))).join(","), RUN_ID: randomBytes(6).toString("hex") }, t)],
    ["e", "keygate, invalid keys, one client address", (t) => wrk(kg.url + jobs, "invalid.lua", {}, t)],
    ...(kga ? [["ca", "keygate, valid key, proxied GET, signed assertion on", async (t) => wrk(kga.url + jobs, "key.lua", { KEY: (legacy.assertionKey ??= await createKey(kga.url, adminToken)) }, t), kga]] : []),
    ...(kgl
      ? [
          ["m", "keygate, LEGACY_KEYS on, native key", (t) => wrk(kgl.url + jobs, "key.lua", { KEY: legacy.native }, t), kgl],
          ["m512", "keygate, imported SHA-512 key", (t) => wrk(kgl.url + jobs, "key.lua", { KEY: legacy.sha512 }, t), kgl],
          ["mpb", "keygate, imported PBKDF2 key, after its first call", (t) => wrk(kgl.url + jobs, "key.lua", { KEY: legacy.pbkdf2 }, t), kgl],
          ["ml", "keygate, imported-shape unknown keys, one address", (t) => wrk(kgl.url + jobs, "legacy-unknown.lua", {}, t)],
        ]
      : []),
    ["b1", "pass-through Worker, one connection", (t) => wrk1(pass.url + jobs, null, {}, t)],
    ["c1", "keygate, valid key, proxied GET, one connection (leases)", (t) => wrk1(kg.url + jobs, "key.lua", { KEY: key }, t), kg],
    ["c01", "keygate, LEASE_MS=0, one connection", (t) => wrk1(kg0.url + jobs, "key.lua", { KEY: key0 }, t), kg0],
    ...Object.entries(far).flatMap(([d, f]) => [
      [`c1_d${d}`, `keygate, leases, one connection, object ${d} ms away`, (t) => wrk1(f.lease.url + jobs, "key.lua", { KEY: farKeys[d].lease }, t), f.lease],
      [`c01_d${d}`, `keygate, LEASE_MS=0, one connection, object ${d} ms away`, (t) => wrk1(f.exact.url + jobs, "key.lua", { KEY: farKeys[d].exact }, t), f.exact],
    ]),
  ].filter(([id]) => !ONLY || ONLY.includes(id));
  console.log(`wrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s, ${RUNS} runs per case, ${cpus().length} cores`);
  // Warm every path once (JIT, KV, Durable Object).
  for (const [, , fn] of cases) await fn(WARMUP_SECONDS);
  for (let r = 0; r < RUNS; r++) {
    for (const [id, label, fn, inst] of cases) {
      const before = inst?.counts();
      const res = await fn();
      if (inst) {
        // The log lines arrive asynchronously: let the last ones in before counting.
        await new Promise((r) => setTimeout(r, 300));
        const after = inst.counts();
        const requests = after.requests - before.requests;
        res.callsPer1000 = requests > 0 ? ((after.objectCalls - before.objectCalls) * 1000) / requests : NaN;
        res.poolCallsPer1000 = requests > 0 ? ((after.poolCalls - before.poolCalls) * 1000) / requests : NaN;
      }
      (results[id] ??= { label, runs: [] }).runs.push(res);
      const calls = inst ? `  object calls/1000 ${res.callsPer1000.toFixed(1)}${res.poolCallsPer1000 > 0 ? ` + pools ${res.poolCallsPer1000.toFixed(1)}` : ""}` : "";
      console.log(`run ${r + 1} ${id} ${label.padEnd(48)} ${res.rps.toFixed(0).padStart(6)} req/s  p50 ${res.p50.toFixed(2)} ms  p99 ${res.p99.toFixed(2)} ms  non-2xx ${res.non2xx}/${res.total} ${res.errors}${calls}`);
    }
  }
} finally {
  await stopAll();
}

const summary = Object.entries(results).map(([id, { label, runs }]) => {
  const rps = runs.map((x) => x.rps);
  return {
    id,
    label,
    rps: median(rps),
    spread: `${Math.min(...rps).toFixed(0)}–${Math.max(...rps).toFixed(0)}`,
    p50: median(runs.map((x) => x.p50)),
    p99: median(runs.map((x) => x.p99)),
    non2xx: runs.map((x) => `${x.non2xx}/${x.total}`).join(", "),
    calls: runs[0].callsPer1000 === undefined ? "" : median(runs.map((x) => x.callsPer1000)).toFixed(1),
    poolCalls: runs[0].poolCallsPer1000 === undefined ? "" : median(runs.map((x) => x.poolCallsPer1000)).toFixed(1),
  };
});
const by = Object.fromEntries(summary.map((s) => [s.id, s]));
const size = sizes();
const lines = [];
lines.push(`Command: \`make bench\` (\`node bench/run.mjs --seconds ${SECONDS} --runs ${RUNS} --connections ${CONNECTIONS}\`), ${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0].model.trim()}).`);
lines.push(`wrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s per run (b1, c1: -t1 -c1); median of ${RUNS} runs (spread = min–max req/s). Workers on workerd via Miniflare's socket; origin nginx; all on 127.0.0.1.`);
lines.push("");
lines.push("| case | req/s (median) | spread | p50 ms | p99 ms | object calls per 1,000 requests | non-2xx per run |");
lines.push("| --- | --- | --- | --- | --- | --- | --- |");
for (const s of summary) {
  lines.push(`| (${s.id}) ${s.label} | ${s.rps.toFixed(0)} | ${s.spread} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.calls} | ${s.non2xx} |`);
}
lines.push("");
const ratio = (x, y) => (by[x] && by[y] ? (by[x].rps / by[y].rps).toFixed(2) : "n/a");
if (by.c && by.b) lines.push(`- c/b throughput (leases): **${(by.c.rps / by.b.rps).toFixed(2)}** (target ≥ 0.8); p99 added over b: **${(by.c.p99 - by.b.p99).toFixed(2)} ms**; object calls per 1,000 requests: **${by.c.calls}** (target ≤ 5)`);
if (by.c && by.br) lines.push(`- against the Rust floor: c/br **${ratio("c", "br")}** (target ≥ 0.9)${by.ca ? `, with the signed assertion ca/br **${ratio("ca", "br")}**` : ""}; br/b **${ratio("br", "b")}** (the \`worker\` crate's own cost against the JavaScript pass-through); c/b **${ratio("c", "b")}**`);
if (by.cp && by.c) lines.push(`- pools (section 17): cp/c **${ratio("cp", "c")}** (target ≥ 0.9, a key in a user pool and a workspace pool against one in none, same gateway and run); pools' object calls per 1,000 requests **${by.cp.poolCalls}** (target ≤ 5; the key's own: ${by.cp.calls})`);
if (by.c0 && by.b) lines.push(`- c0/b throughput (LEASE_MS = 0): **${(by.c0.rps / by.b.rps).toFixed(2)}**; object calls per 1,000 requests: **${by.c0.calls}**`);
for (const d of [0, ...DISTANCES]) {
  const l = d === 0 ? by.c1 : by[`c1_d${d}`];
  const e = d === 0 ? by.c01 : by[`c01_d${d}`];
  if (l && e && by.b1) {
    lines.push(`- object ${d} ms away, one connection, added over b1: leases p50 **${(l.p50 - by.b1.p50).toFixed(2)} ms** / p99 **${(l.p99 - by.b1.p99).toFixed(2)} ms**; LEASE_MS = 0 p50 **${(e.p50 - by.b1.p50).toFixed(2)} ms** / p99 **${(e.p99 - by.b1.p99).toFixed(2)} ms**${d === 150 ? " (target: leases p50 ≤ 3 ms)" : ""}`);
  }
}
if (by.c1 && by.b1) lines.push(`- added per call, one connection (c1 − b1): p50 **${(by.c1.p50 - by.b1.p50).toFixed(2)} ms**, p99 **${(by.c1.p99 - by.b1.p99).toFixed(2)} ms**`);
if (by.b2) lines.push(`- b2/b throughput: **${ratio("b2", "b")}** (what one object call per request costs any exact design); c/b2: **${ratio("c", "b2")}**`);
lines.push(`- d/b throughput: **${ratio("d", "b")}**`);
lines.push(`- e/b throughput: **${ratio("e", "b")}** (target ≥ 1.0; no KV read for a bad checksum)`);
if (by.ca && by.c) lines.push(`- the signed assertion (section 16): ca/c **${ratio("ca", "c")}** (target ≥ 0.9); p50 added **${(by.ca.p50 - by.c.p50).toFixed(2)} ms**`);
if (by.m) {
  lines.push(`- imported keys (section 15), against a native key on the same gateway: m512/m **${ratio("m512", "m")}**, mpb/m **${ratio("mpb", "m")}** (target ≥ 0.95); first call of a PBKDF2 key (1,000,000 iterations) **${legacy.firstMs.toFixed(0)} ms**; ml/b (unknown imported-shape keys from one address, throttled like (e)): **${ratio("ml", "b")}**`);
}
lines.push(`- release .wasm ${size.raw} B, gzip -9 ${size.gz} B; wrangler upload ${size.upload} (target: upload under 450 KiB gzip)`);
const block = lines.join("\n");
console.log(`\n${block}`);

if (WRITE) {
  const file = join(ROOT, "BENCHMARKS.md");
  const text = readFileSync(file, "utf8");
  const start = "<!-- bench:start -->";
  const end = "<!-- bench:end -->";
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  const next = i >= 0 && j > i
    ? text.slice(0, i + start.length) + "\n" + block + "\n" + text.slice(j)
    : `${text}\n## Side by side (make bench)\n\n${start}\n${block}\n${end}\n`;
  writeFileSync(file, next);
  console.log("\nwritten to BENCHMARKS.md");
}
