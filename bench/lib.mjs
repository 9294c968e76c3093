// Shared by the benchmark scripts: a fast nginx origin, keygate and a pass-through Worker on
// workerd through Miniflare's own socket, wrk runs, and key creation.

import { spawn } from "node:child_process";
import { createHash, pbkdf2Sync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";

import { freePort, ROOT } from "../tests/e2e/harness.mjs";

function toMs(v, unit) {
  const n = Number(v);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : n;
}

// Asynchronous on purpose: Miniflare serves parts of the runtime (logs, loopback services)
// from this Node process, which a synchronous child-process call would stall.
function runWrk(args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn("wrk", args, { env: { ...process.env, ...env } });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}: ${out}`))));
  });
}

export async function wrk(url, script, env = {}, { seconds, connections, threads = 2 }) {
  const args = ["-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, "--latency"];
  if (script) args.push("-s", join(ROOT, "bench", "wrk", script));
  args.push(url);
  const out = await runWrk(args, env);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const lat = (p) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    return m ? toMs(m[1], m[2]) : NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const total = Number(/(\d+) requests in/.exec(out)[1]);
  const errors = /Socket errors:.*/.exec(out)?.[0] ?? "";
  return { rps, p50: lat(50), p99: lat(99), non2xx, total, errors, raw: out };
}

export async function startNginx() {
  const dir = mkdtempSync(join(tmpdir(), "keygate-nginx-"));
  const port = await freePort();
  const conf = readFileSync(join(ROOT, "bench", "nginx.conf.template"), "utf8")
    .replaceAll("__DIR__", dir)
    .replaceAll("__PORT__", String(port));
  writeFileSync(join(dir, "nginx.conf"), conf);
  const proc = spawn("nginx", ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/`);
      await r.arrayBuffer();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => {
      proc.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// `extra`: further Miniflare options (the profiler adds `inspectorPort`). `vars`: overrides of
// wrangler.toml's vars (e.g. LEASE_MS). `objectDelayMs`: a simulated distance to the keys'
// objects (bench/delayed-object.mjs). The returned `counts()` tells how many requests the
// Worker logged and how many object calls their `lease` field implies (asked + renewals).
export async function startKeygate(originUrl, adminToken, signingSecret, extra = {}, { vars = {}, objectDelayMs = 0 } = {}) {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(join(ROOT, "wrangler.toml"));
  // The keygate-assets Worker is not started here: no case asks for the settings page's files.
  if (workerOptions.serviceBindings) delete workerOptions.serviceBindings.ASSETS;
  const port = await freePort();
  const counts = { requests: 0, objectCalls: 0, poolCalls: 0 };
  const count = (chunk) => {
    const text = String(chunk);
    counts.requests += (text.match(/"request_id":/g) ?? []).length;
    counts.objectCalls += (text.match(/"lease":"(asked|local_renewing|exact)"/g) ?? []).length;
    // Calls to pools' objects (contract section 17), counted apart: a hot pool's own figure.
    for (const m of text.matchAll(/"pool_calls":(\d+)/g)) counts.poolCalls += Number(m[1]);
  };
  // Options in Miniflare 4's shape (what wrangler's `unstable_getMiniflareWorkerOptions` gives),
  // converted for Miniflare 5 (wrangler 4.164 and later).
  const mf = new Miniflare(convertV4MiniflareOptions({
    host: "127.0.0.1",
    port,
    ...workerOptions,
    name: "keygate",
    // The modules listed (entry first): Miniflare 5 takes no `modulesRules` from v4 options,
    // and build/index.js is an ES module that build/package.json does not declare as one.
    modulesRoot: ROOT,
    modules: [
      ...(objectDelayMs > 0 ? [{ type: "ESModule", path: join(ROOT, "bench", "delayed-object.mjs") }] : []),
      { type: "ESModule", path: join(ROOT, "build", "index.js") },
      { type: "CompiledWasm", path: join(ROOT, "build", "index_bg.wasm") },
    ],
    bindings: {
      ...workerOptions.bindings,
      ...vars,
      ORIGIN_URL: originUrl,
      ADMIN_TOKEN: adminToken,
      ORIGIN_SIGNING_SECRET: signingSecret,
      ...(objectDelayMs > 0 ? { BENCH_OBJECT_DELAY_MS: String(objectDelayMs) } : {}),
    },
    // The Worker still writes its log line per request; this Node process (which also runs
    // wrk's bookkeeping) counts and drops them instead of printing tens of thousands of lines.
    // Miniflare 5 parses workerd's output into structured lines and hands each to this.
    handleStructuredLogs: ({ message }) => count(message),
    ...extra,
  }));
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    url,
    stop: () => mf.dispose(),
    counts: () => ({ ...counts }),
  };
}

// `withObject`: the variant that also calls a Durable Object per request (bench/passthrough-do.mjs).
const COMPATIBILITY_DATE = /^compatibility_date = "([^"]+)"$/m.exec(readFileSync(join(ROOT, "wrangler.toml"), "utf8"))[1];

/** The Rust floor: bench/passthrough-rs built by scripts/bench.sh (worker-build --release). */
export async function startPassthroughRust(originUrl) {
  const port = await freePort();
  const dir = join(ROOT, "bench", "passthrough-rs", "build");
  const mf = new Miniflare(convertV4MiniflareOptions({
    host: "127.0.0.1",
    port,
    compatibilityDate: COMPATIBILITY_DATE,
    modulesRoot: dir,
    modules: [
      { type: "ESModule", path: join(dir, "index.js") },
      { type: "CompiledWasm", path: join(dir, "index_bg.wasm") },
    ],
    bindings: { ORIGIN_URL: originUrl },
  }));
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return { url, stop: () => mf.dispose() };
}

export async function startPassthrough(originUrl, { withObject = false } = {}) {
  const port = await freePort();
  const mf = new Miniflare(convertV4MiniflareOptions({
    host: "127.0.0.1",
    port,
    modules: true,
    scriptPath: join(ROOT, "bench", withObject ? "passthrough-do.mjs" : "passthrough.mjs"),
    // keygate's own (wrangler.toml), so that both run with the same runtime behaviour.
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: { ORIGIN_URL: originUrl },
    ...(withObject ? { durableObjects: { COUNTER: { className: "Counter", useSQLite: true } } } : {}),
  }));
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return { url, stop: () => mf.dispose() };
}

/**
 * Imports a key of djangorestframework-api-key's shape (docs/CONTRACT.md section 15), made here,
 * stored as `scheme` says: `sha512` (the package's 3.x) or `pbkdf2` (Django's default hasher at
 * 1,000,000 iterations). Returns the plaintext key.
 */
export async function importKey(gwUrl, adminToken, scheme) {
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const alnum = (n) => [...randomBytes(n)].map((b) => chars[b % chars.length]).join("");
  const key = `${alnum(8)}.${alnum(32)}`;
  const salt = alnum(22);
  const hashed_key =
    scheme === "sha512"
      ? `sha512$$${createHash("sha512").update(key).digest("hex")}`
      : `pbkdf2_sha256$1000000$${salt}$${pbkdf2Sync(key, salt, 1_000_000, 32, "sha256").toString("base64")}`;
  const r = await fetch(`${gwUrl}/v1/api-keys/import`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      format: "drf-api-key",
      keys: [{
        prefix: key.split(".")[0], hashed_key, user_id: "bench", name: `bench ${scheme}`,
        workspaces: ["ws1"], permissions: ["jobs:read", "jobs:run"],
        rate_limit: { requests: 1000000, window_seconds: 60 },
      }],
    }),
  });
  const j = await r.json();
  if (r.status !== 200 || j.results?.[0]?.status !== "imported") throw new Error(`import key: ${r.status} ${JSON.stringify(j)}`);
  return key;
}

export async function createKey(gwUrl, adminToken, { userId = "bench", workspaces = ["ws1"] } = {}) {
  const r = await fetch(`${gwUrl}/v1/api-keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      user_id: userId,
      email: "bench@example.com",
      name: "bench",
      workspaces,
      permissions: ["jobs:read", "jobs:run"],
      rate_limit: { requests: 1000000, window_seconds: 60 },
    }),
  });
  const j = await r.json();
  if (r.status !== 201) throw new Error(`create key: ${r.status} ${JSON.stringify(j)}`);
  return j.key;
}


/** Puts a pool (contract section 17) on `gwUrl`: `kind` "users" or "workspaces". */
export async function putPool(gwUrl, adminToken, kind, id, body) {
  const r = await fetch(`${gwUrl}/v1/pools/${kind}/${id}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (r.status !== 201 && r.status !== 200) throw new Error(`put pool: ${r.status} ${await r.text()}`);
}
