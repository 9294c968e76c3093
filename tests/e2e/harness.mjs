// Starts the real thing for end-to-end tests: an origin HTTP server on 127.0.0.1 and keygate
// under `wrangler dev` (workerd) with fresh local KV state, secrets made at test time, and the
// worker's whole log captured for the secret-hygiene checks.

import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";

import { startOrigin } from "../../examples/origin.mjs";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");
/** workerd needs a few seconds to start; a cold build may take longer. */
const START_TIMEOUT_MS = 180_000;

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sha256hex = (s) => createHash("sha256").update(s).digest("hex");
export const secret = (label) => `${label}-${randomBytes(24).toString("hex")}`;

/**
 * Starts origin + gateway. Options:
 * - `vars`: extra `--var` values (strings), e.g. `{ ORIGIN_TIMEOUT_MS: "1500" }`;
 * - `secrets`: env-file values; default a fresh ADMIN_TOKEN and ORIGIN_SIGNING_SECRET; pass
 *   `null` for one to leave it unset;
 * - `originUrl`: override ORIGIN_URL (default: the started origin);
 * - `handle`: origin hook (see examples/origin.mjs);
 * - `persist`: a local-state folder to reuse (another gateway's `persist`), default a fresh one;
 * - `config`: a wrangler config file to use instead of wrangler.toml (for misconfigurations);
 * - `env`: extra environment for wrangler (e.g. a private WRANGLER_REGISTRY_PATH);
 * - `testScheduled`: run with `--test-scheduled`, so `GET /__scheduled?cron=...` fires the
 *   Cron Trigger.
 * Any other entry of `secrets` (e.g. WEBHOOK_SECRET) is written to the env file too, and
 * checked absent from the log like the others.
 */
export async function startGateway({ vars = {}, secrets = {}, originUrl, handle, persist, config, env = {}, testScheduled = false } = {}) {
  const adminToken = secrets.ADMIN_TOKEN === undefined ? secret("admin") : secrets.ADMIN_TOKEN;
  const signingSecret =
    secrets.ORIGIN_SIGNING_SECRET === undefined ? secret("sign") : secrets.ORIGIN_SIGNING_SECRET;
  const origin = await startOrigin({ signingSecret, handle });
  const dir = mkdtempSync(join(tmpdir(), "keygate-e2e-"));
  const envFile = join(dir, "secrets.env");
  const lines = [];
  if (adminToken !== null) lines.push(`ADMIN_TOKEN=${adminToken}`);
  if (signingSecret !== null) lines.push(`ORIGIN_SIGNING_SECRET=${signingSecret}`);
  const extraSecrets = Object.entries(secrets).filter(
    ([k, v]) => !["ADMIN_TOKEN", "ORIGIN_SIGNING_SECRET"].includes(k) && v !== null && v !== undefined,
  );
  for (const [k, v] of extraSecrets) lines.push(`${k}=${v}`);
  writeFileSync(envFile, lines.join("\n") + "\n");

  const gw = {
    adminToken,
    signingSecret,
    origin,
    dir,
    persist: persist ?? join(dir, "state"),
    envFile,
    // KEYGATE_TEST_LEASE_MS runs a whole file in another lease mode (scripts/test.sh runs
    // limits.test.mjs again with 0, the exact mode); a test's own `vars` still win.
    vars: {
      ORIGIN_URL: originUrl ?? origin.url,
      ...(process.env.KEYGATE_TEST_LEASE_MS ? { LEASE_MS: process.env.KEYGATE_TEST_LEASE_MS } : {}),
      ...vars,
    },
    config,
    env,
    testScheduled,
    extraSecrets: extraSecrets.map(([, v]) => v),
    output: "",
    issuedKeys: [],
    proc: null,
  };
  // The origin checks a Keygate-Assertion against this gateway's published keys (section 16).
  const relaunch = async () => {
    await launch(gw);
    origin.setJwksUrl(`${gw.url}/.well-known/jwks.json`);
  };
  await relaunch();
  gw.restart = async () => {
    await stopProc(gw);
    await relaunch();
  };
  gw.stop = async () => {
    await stopProc(gw);
    // Secret hygiene, for every gateway any test starts: nothing secret in its whole log.
    const leaks = secretsInLog(gw);
    // And no exception thrown past the Worker's handlers: even when the client got the right
    // answer, the runtime may restart the isolate under the next request.
    const thrown = uncaughtInLog(gw);
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
    if (leaks.length) throw new Error(`secrets in the worker's log: ${leaks.join(", ")}`);
    if (thrown.length) throw new Error(`uncaught exceptions in the worker's log:\n${thrown.join("\n")}`);
  };
  /** Everything the worker and wrangler printed so far. */
  gw.log = () => gw.output;
  return gw;
}

/**
 * The gateway of a file (or of the `describe` it is called in): starts it in a node:test
 * `before` hook, stops it in an `after` hook (stop checks its whole log), and returns a stand-in
 * that is the gateway from then on: `const gw = useGateway(); ... call(gw, ...)`, `gw.origin`,
 * `gw.restart()`. `options` are startGateway's, or a function (it may be async) returning them,
 * called in the hook: for options that need something started first (a receiver, another
 * gateway's token).
 */
export function useGateway(options = {}) {
  return useStarted(
    async () => startGateway(typeof options === "function" ? await options() : options),
    (gw) => gw.stop(),
  )((gw) => gw);
}

/**
 * Hooks that start something before the tests where they are called and stop it after them.
 * Returns `through(pick)`: a stand-in for `pick(started)` that reads and writes every property
 * through to it, so that a file can name what it uses at the top although it exists only once
 * the hook has run. Used before that, a stand-in throws, except its `ready`: a promise of it,
 * for another root-level `before` hook that needs it (node:test runs root-level `before` hooks
 * side by side, not one after the other; inside a `describe` they run in order).
 */
export function useStarted(start, stop) {
  let started;
  let settle;
  const ready = new Promise((resolve, reject) => (settle = { resolve, reject }));
  ready.catch(() => {}); // a failed start is reported by its hook; nobody has to await `ready`
  before(async () => {
    try {
      started = await start();
    } catch (e) {
      settle.reject(e);
      throw e;
    }
    settle.resolve(started);
  });
  after(async () => {
    if (started) await stop(started);
  });
  return (pick) => {
    const target = () => {
      if (!started) throw new Error("not started yet: use it in a test or hook (or await its `ready`)");
      return pick(started);
    };
    return new Proxy(
      {},
      {
        // `then` undefined: the stand-in is not a promise, whatever awaits or returns it.
        get: (_, p) => (p === "ready" ? ready.then(pick) : p === "then" ? undefined : target()[p]),
        set: (_, p, v) => ((target()[p] = v), true),
        has: (_, p) => p in target(),
      },
    );
  };
}

/** Where configWithout writes its files: one folder per test process, removed when it exits. */
let withoutDir;

/**
 * wrangler.toml with parts taken out, written to a file of its own (pass it as `config`): a
 * deployment that lacks a binding, a migration or a var. Only the local sections change (the
 * `[env.*]` ones are left as they are). Every part named must be there, so that a test of a
 * missing binding cannot pass because the binding was renamed. Parts:
 * - `bindings`: names of bindings (`binding = ` or `name = ` of a `[[...]]` entry: KV, Durable
 *   Object, queue producer, rate limit, service), each entry removed;
 * - `migrations`: Durable Object classes whose `[[migrations]]` entry is removed;
 * - `vars`: names of `[vars]` entries removed.
 * And, for the two-location tests (two Workers sharing objects): `name`, the Worker's name, and
 * `objectsFrom`, `{ BINDING: "worker-name" }` to bind that Durable Object from another Worker.
 */
export function configWithout({ bindings = [], migrations = [], vars = [], name, objectsFrom = {} } = {}) {
  const full = readFileSync(join(ROOT, "wrangler.toml"), "utf8");
  const envAt = full.search(/^\[env\./m);
  const local = envAt < 0 ? full : full.slice(0, envAt);
  // A table: its header line and the lines up to the next header. The comment above a header
  // goes with the table before it, so a removed table may take the next one's comment along:
  // comments only, which change nothing.
  let tables = local.split(/^(?=\[)/m);
  const found = new Set();
  const named = (table, id) => new RegExp(`^(binding|name) = "${id}"$`, "m").test(table) && table.startsWith("[[");
  tables = tables.filter((t) => {
    const binding = bindings.find((id) => named(t, id));
    const migration = migrations.find((c) => t.startsWith("[[migrations]]") && t.includes(`"${c}"`));
    for (const hit of [binding, migration]) if (hit) found.add(hit);
    return !binding && !migration;
  });
  tables = tables.map((t) => {
    if (t.startsWith("[vars]")) {
      for (const v of vars) {
        const line = new RegExp(`^${v} = .*\n`, "m");
        if (!line.test(t)) continue;
        found.add(v);
        t = t.replace(line, "");
      }
    }
    for (const [id, worker] of Object.entries(objectsFrom)) {
      if (t.startsWith("[[durable_objects.bindings]]") && named(t, id)) {
        found.add(id);
        t = t.replace(new RegExp(`^name = "${id}"\n`, "m"), (l) => `${l}script_name = "${worker}"\n`);
      }
    }
    return t;
  });
  if (name !== undefined) tables[0] = tables[0].replace(/^name = .*$/m, `name = "${name}"`);
  const missing = [...bindings, ...migrations, ...vars, ...Object.keys(objectsFrom)].filter((x) => !found.has(x));
  if (missing.length) throw new Error(`wrangler.toml has no ${missing.join(", ")} to take out or change`);
  if (!withoutDir) {
    withoutDir = mkdtempSync(join(tmpdir(), "keygate-config-"));
    process.once("exit", () => rmSync(withoutDir, { recursive: true, force: true }));
  }
  const path = join(withoutDir, `${name ?? "wrangler"}-${randomBytes(4).toString("hex")}.toml`);
  writeFileSync(path, tables.join("") + full.slice(local.length));
  return path;
}

/** Whether this process has brought the Worker's build up to date (once per test file). */
let built = false;
let configs = 0;

/**
 * The config `wrangler dev` runs with: `source` (wrangler.toml unless a test gives its own)
 * without its `[build]` table, written to the repository's root (so that relative paths such as
 * `main` stay right wherever `source` is, e.g. configWithout's) and removed when the gateway
 * stops. With a custom build, wrangler dev runs it once more when its file watcher
 * becomes ready and then restarts workerd under the tests already running: requests in flight
 * fail with "worker restarted mid-request", and the restarted workerd can find its port still
 * held. So the harness builds once itself (`scripts/build.sh`, a no-op when nothing changed)
 * and the gateway never rebuilds.
 */
function withoutCustomBuild(source) {
  if (!built) {
    execFileSync("bash", [join(ROOT, "scripts", "build.sh")], { stdio: ["ignore", "ignore", "inherit"] });
    built = true;
  }
  const toml = readFileSync(source, "utf8").replace(/^\[build\]\n(?:(?!\[).*\n)*/m, "");
  const path = join(ROOT, `.test-wrangler-run-${process.pid}-${++configs}.toml`);
  writeFileSync(path, toml);
  return path;
}

/**
 * Starts `wrangler dev` for `gw`, on fresh free ports. End-to-end files run side by side, so a
 * port found free can be taken by another file's gateway before this one binds it: a start that
 * fails that way is tried again on other ports.
 */
async function launch(gw) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchOnce(gw);
    } catch (e) {
      const taken = /EADDRINUSE|address already in use/i.test(String(e.message));
      if (!taken || attempt >= 3) throw e;
    }
  }
}

async function launchOnce(gw) {
  gw.port = await freePort();
  const inspector = await freePort();
  gw.url = `http://127.0.0.1:${gw.port}`;
  const args = [
    "dev",
    "--ip", "127.0.0.1",
    "--port", String(gw.port),
    "--inspector-port", String(inspector),
    "--persist-to", gw.persist,
    "--env-file", gw.envFile,
    "--show-interactive-dev-session=false",
    "--log-level", "log",
  ];
  gw.runConfig = withoutCustomBuild(gw.config ?? join(ROOT, "wrangler.toml"));
  // The keygate-assets Worker beside it (the settings page's files, the OpenAPI document).
  args.push("--config", gw.runConfig, "--config", join(ROOT, "wrangler.assets.toml"));
  if (gw.testScheduled) args.push("--test-scheduled");
  for (const [k, v] of Object.entries(gw.vars)) args.push("--var", `${k}:${v}`);
  const proc = spawn(WRANGLER, args, {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1", ...gw.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  gw.proc = proc;
  // With two Workers (keygate and keygate-assets) wrangler prefixes each Worker's lines with its
  // name ("[keygate] {...}"): taken off, so a log line reads as the Worker wrote it.
  const unprefixed = (d) => String(d).replace(/^\[[\w-]+\] /gm, "");
  proc.stdout.on("data", (d) => (gw.output += unprefixed(d)));
  proc.stderr.on("data", (d) => (gw.output += unprefixed(d)));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) {
      rmSync(gw.runConfig, { force: true });
      throw new Error(`wrangler dev exited with ${proc.exitCode}:\n${gw.output.slice(-3000)}`);
    }
    try {
      const r = await fetch(`${gw.url}/healthz`);
      await r.arrayBuffer();
      if (r.status === 200 || r.status === 503) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stopProc(gw);
  throw new Error(`wrangler dev did not start in time:\n${gw.output.slice(-3000)}`);
}

async function stopProc(gw) {
  await endProc(gw.proc);
  if (gw.runConfig) rmSync(gw.runConfig, { force: true });
}

async function endProc(p) {
  if (!p || p.exitCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  try {
    process.kill(-p.pid, "SIGTERM");
  } catch {
    /* already gone */
  }
  const t = setTimeout(() => {
    try {
      process.kill(-p.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }, 5000);
  await exited;
  clearTimeout(t);
}

/**
 * One HTTP call. `key` sends `Api-Key`, `admin` sends the admin bearer token; `auth` sends a raw
 * Authorization value. Returns `{ status, headers, text, json }`.
 */
export async function call(gw, method, path, { key, admin, auth, body, headers = {} } = {}) {
  // A fresh client address per call unless the test names one, so that the failed-attempt
  // throttle (per CF-Connecting-IP) only engages where a test means it to. It is only a header:
  // all traffic goes to 127.0.0.1.
  const h = { "cf-connecting-ip": randomClientIp(), ...headers };
  if (key !== undefined) h.authorization = `Api-Key ${key}`;
  if (admin) h.authorization = `Bearer ${admin === true ? gw.adminToken : admin}`;
  if (auth !== undefined) h.authorization = auth;
  let payload = body;
  if (body !== undefined && typeof body !== "string" && !(body instanceof Uint8Array)) {
    payload = JSON.stringify(body);
    h["content-type"] ??= "application/json";
  }
  const r = await fetch(gw.url + path, { method, headers: h, body: payload, redirect: "manual" });
  const text = await r.text();
  const json = parseJson(text);
  if (json && typeof json.key === "string") gw.issuedKeys.push(json.key);
  return { status: r.status, headers: r.headers, text, json };
}

/**
 * An address from the IPv6 documentation prefix (RFC 3849), never routed anywhere, in a random
 * /64 (the gateway counts IPv6 clients per /64). `prefix64` (e.g. "2001:db8:1:2") picks the /64.
 */
export function randomClientIp(prefix64) {
  const hex = () => randomBytes(2).toString("hex");
  const network = prefix64 ?? `2001:db8:${hex()}:${hex()}`;
  return `${network}:${hex()}:${hex()}:${hex()}:${hex()}`;
}

/** The failed-attempt binding's period (wrangler.toml `[[ratelimits]]`, `period = 60`). */
export const FAILURE_PERIOD_MS = 60_000;

/**
 * Waits, if needed, until at least `needMs` are left in the failed-attempt binding's current
 * period. Locally the Rate Limiting binding counts in fixed windows aligned to the clock
 * (Miniflare clears every bucket when `Date.now() / period` changes), so a run of failures that
 * straddles a window edge starts counting again from zero half-way through.
 */
export const inOneFailureWindow = (needMs = 20_000) => awayFromEdge(FAILURE_PERIOD_MS, needMs);

/**
 * Waits, if needed, until at least `needMs` are left before the next multiple of `periodMs`
 * since the epoch: a UTC hour (usage buckets) or day (quota periods) for a test whose counts
 * must land in one period.
 */
export async function awayFromEdge(periodMs, needMs) {
  const left = periodMs - (Date.now() % periodMs);
  if (left < needMs) await new Promise((r) => setTimeout(r, left + 50));
}

/** A raw HTTP/1.1 request, for headers `fetch` refuses to send (Connection, TE, ...). */
export function rawCall(gw, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const all = { "cf-connecting-ip": randomClientIp(), ...headers };
    const req = httpRequest(`${gw.url}${path}`, { method, headers: all }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const get = (n) => {
          const v = res.headers[n.toLowerCase()];
          return Array.isArray(v) ? v.join(", ") : (v ?? null);
        };
        resolve({ status: res.statusCode, headers: { get }, text, json });
      });
    });
    req.on("error", reject);
    if (body) req.write(body);
    req.end();
  });
}

let counter = 0;
/** Creates a key as admin; returns `{ key, summary }`. */
export async function createKey(gw, fields = {}) {
  counter += 1;
  const body = {
    user_id: `user-${counter}-${randomBytes(3).toString("hex")}`,
    email: `user${counter}@example.com`,
    name: `test key ${counter}`,
    workspaces: ["ws1"],
    permissions: ["*"],
    ...fields,
  };
  const r = await call(gw, "POST", "/v1/api-keys", { admin: true, body });
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${r.text}`);
  const { key, ...summary } = r.json;
  return { key, summary };
}

/** A well-formed key (right shape and checksum) that was never issued. */
export function unissuedKey(prefix = "kg") {
  const body = `${prefix}_${randomBytes(32).toString("hex")}`;
  return body + crc32(body).toString(16).padStart(8, "0");
}

export function crc32(str) {
  let c;
  let crc = 0xffffffff;
  for (const byte of Buffer.from(str, "ascii")) {
    c = (crc ^ byte) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Asserts the error shape of docs/CONTRACT.md section 3 and returns the body. */
export function expectError(assert, r, status, code) {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.text}`);
  assert.equal(r.headers.get("content-type"), "application/json");
  assert.equal(r.json?.code, code, r.text);
  assert.equal(typeof r.json.detail, "string");
  assert.ok(r.json.detail.length > 0);
  assert.equal(r.json.request_id, r.headers.get("x-request-id"));
  if (status === 401) {
    assert.equal(r.headers.get("www-authenticate"), 'Api-Key realm="keygate"');
  }
  if (status === 429) assert.ok(Number(r.headers.get("retry-after")) >= 1);
  return r.json;
}

/** Which kinds of secret appear in the gateway's log (empty when none). */
export function secretsInLog(gw) {
  const log = gw.output;
  const leaks = new Set();
  for (const k of gw.issuedKeys) {
    if (log.includes(k)) leaks.add("an issued key");
    if (log.includes(sha256hex(k))) leaks.add("a key hash");
    if (log.includes(k.slice(k.indexOf("_") + 1, k.indexOf("_") + 65))) leaks.add("a key body");
  }
  if (gw.adminToken && log.includes(gw.adminToken)) leaks.add("the admin token");
  if (gw.signingSecret && log.includes(gw.signingSecret)) leaks.add("the signing secret");
  for (const v of gw.extraSecrets ?? []) if (log.includes(v)) leaks.add("a configured secret");
  if (/v1=[0-9a-f]{64}/.test(log)) leaks.add("a signature");
  return [...leaks];
}

/** A line of workerd's saying the Worker threw past its handler. */
const UNCAUGHT = /uncaught exception|Uncaught/i;

/**
 * Such lines that the Worker cannot prevent, each with the reason; none is needed today. An
 * entry is `[pattern, reason]`.
 */
export const UNCAUGHT_ALLOWED = [];

/** The log lines (with the line after each, where workerd prints the error) that say the
 * Worker threw past its handler, minus [`UNCAUGHT_ALLOWED`]. */
export function uncaughtInLog(gw) {
  const lines = gw.output.split("\n");
  const found = [];
  lines.forEach((line, i) => {
    if (!UNCAUGHT.test(line)) return;
    if (UNCAUGHT_ALLOWED.some(([re]) => re.test(line))) return;
    found.push([line, lines[i + 1] ?? ""].join(" | ").slice(0, 400));
  });
  return found;
}

/** Waits (up to `ms`) until the gateway's log matches `re`; workerd's output arrives async. */
export async function waitForLog(gw, re, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!re.test(gw.output) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return gw.output;
}

// For the signature helpers below.
import { createHmac } from "node:crypto";

/**
 * Whether the `X-Keygate-Signature` of a request the origin recorded (`origin.requests[i]`) is
 * the HMAC-SHA256 under `signingSecret` of what the gateway signs (docs/CONTRACT.md section 7):
 * `t\nMETHOD\npath?query\nkey id\nuser id\nworkspace`. Computed here, independently of the
 * example origin's own `verifySignature`, so that a fault in one cannot hide one in the other.
 * Checks the MAC only (no replay window).
 */
export function signedWith(signingSecret, record) {
  const h = record.headers;
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(h["x-keygate-signature"] ?? "");
  if (!m) return false;
  const payload = [
    m[1],
    record.method,
    record.url,
    h["x-keygate-key-id"] ?? "",
    h["x-keygate-user-id"] ?? "",
    h["x-keygate-workspace-id"] ?? "",
  ].join("\n");
  return createHmac("sha256", signingSecret).update(payload).digest("hex") === m[2];
}

/**
 * Sends a request the origin recorded to another server as the gateway sent it (method, path and
 * query, body, and the identity headers the signature covers plus the request id), so that
 * two origins can judge the very same signed call. Returns `{ status, json, text }`.
 */
export async function replayTo(url, record) {
  const headers = {};
  for (const [k, v] of Object.entries(record.headers)) {
    if (k.startsWith("x-keygate-") || k === "x-request-id" || k === "content-type") headers[k] = v;
  }
  const hasBody = !["GET", "HEAD"].includes(record.method);
  const r = await fetch(url + record.url, {
    method: record.method,
    headers,
    body: hasBody ? record.body : undefined,
    redirect: "manual",
  });
  const text = await r.text();
  const json = parseJson(text);
  return { status: r.status, json, text };
}

/** Asserts that an error body carries no internal string (stack, runtime error, Rust value). */
export function noInternals(assert, r) {
  for (const needle of ["panicked", "RuntimeError", "unreachable", "Error:", "at ", "stack", "JsValue"]) {
    assert.ok(!r.text.includes(needle), `error body leaks "${needle}": ${r.text}`);
  }
}

/** The body as JSON, or undefined when it is not JSON. */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
