// docs/CONTRACT.md sections 2 (first and last rows), 6 and 8 through `wrangler dev`: per-key rate limits in
// the key's Durable Object, failed-attempt throttling per client IP, and the idempotent
// job-trigger route.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { call, createKey, expectError, inOneFailureWindow, randomClientIp, unissuedKey, useGateway } from "./harness.mjs";

const SLOW_MS = 1500;
const flakyFailures = new Map();

const gw = useGateway({
  handle: async ({ req, res }) => {
    if (req.url.includes("/jobs/slow-")) await new Promise((r) => setTimeout(r, SLOW_MS));
    if (req.url.includes("/jobs/flaky-")) {
      // The first attempt per Idempotency-Key fails with 503; later ones go through.
      const k = req.headers["idempotency-key"];
      if (!flakyFailures.has(k)) {
        flakyFailures.set(k, 1);
        res.writeHead(503, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "temporarily overloaded" }));
        return true;
      }
    }
    return false;
  },
});

const runsOf = (path) => gw.origin.requests.filter((r) => r.url === path).length;

describe("contract section 8: per-key rate limits", () => {
  it("5 requests / 60 s: 1-5 pass with RateLimit-Remaining 4,3,2,1,0; the 6th is 429 with Retry-After", async () => {
    const { key } = await createKey(gw, { rate_limit: { requests: 5, window_seconds: 60 } });
    const remaining = [];
    for (let i = 0; i < 5; i++) {
      const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get("ratelimit-limit"), "5");
      assert.ok(Number(r.headers.get("ratelimit-reset")) > 0);
      remaining.push(Number(r.headers.get("ratelimit-remaining")));
    }
    assert.deepEqual(remaining, [4, 3, 2, 1, 0]);
    const before = gw.origin.requests.length;
    const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
    const body = expectError(assert, r, 429, "rate_limited");
    assert.ok(body.detail);
    const retry = Number(r.headers.get("retry-after"));
    assert.ok(retry >= 1 && retry <= 12, `Retry-After ${retry}`);
    assert.equal(r.headers.get("ratelimit-remaining"), "0");
    assert.equal(gw.origin.requests.length, before, "a limited call never reaches the origin");
  });

  it("every key-authenticated route counts, /v1 included, and carries the headers", async () => {
    const { key } = await createKey(gw, { rate_limit: { requests: 3, window_seconds: 60 }, permissions: ["api_keys:read", "jobs:read"] });
    const a = await call(gw, "GET", "/v1/me", { key });
    assert.equal(a.headers.get("ratelimit-remaining"), "2");
    const b = await call(gw, "GET", "/v1/api-keys", { key });
    assert.equal(b.status, 200);
    assert.equal(b.headers.get("ratelimit-remaining"), "1");
    // A 403 is still an authenticated request: counted, with headers.
    const c = await call(gw, "GET", "/developers/workspaces/ws1/secrets/", { key });
    expectError(assert, c, 403, "permission_denied");
    assert.equal(c.headers.get("ratelimit-remaining"), "0");
    expectError(assert, await call(gw, "GET", "/v1/me", { key }), 429, "rate_limited");
    // Earlier rows win over the rate limit.
    expectError(assert, await call(gw, "GET", "/developers/workspaces/other/jobs/", { key }), 403, "workspace_forbidden");
  });

  it("25 concurrent requests on a key allowing 10: exactly 10 pass", async () => {
    const { key } = await createKey(gw, { rate_limit: { requests: 10, window_seconds: 3600 } });
    const results = await Promise.all(
      Array.from({ length: 25 }, () => call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key })),
    );
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 10, statuses.join(","));
    assert.equal(statuses.filter((s) => s === 429).length, 15, statuses.join(","));
    const remaining = results.filter((r) => r.status === 200).map((r) => Number(r.headers.get("ratelimit-remaining")));
    assert.deepEqual(remaining.sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("keys have independent allowances", async () => {
    const a = await createKey(gw, { rate_limit: { requests: 1, window_seconds: 3600 } });
    const b = await createKey(gw, { rate_limit: { requests: 1, window_seconds: 3600 } });
    assert.equal((await call(gw, "GET", "/v1/me", { key: a.key })).status, 200);
    expectError(assert, await call(gw, "GET", "/v1/me", { key: a.key }), 429, "rate_limited");
    assert.equal((await call(gw, "GET", "/v1/me", { key: b.key })).status, 200);
  });

  it("last_used_at appears after use", async () => {
    const { key, summary } = await createKey(gw);
    assert.equal(summary.last_used_at, null);
    const fresh = await call(gw, "GET", `/v1/api-keys/${summary.id}`, { admin: true });
    assert.equal(fresh.json.last_used_at, null);
    const t0 = Math.floor(Date.now() / 1000);
    assert.equal((await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key })).status, 200);
    const used = await call(gw, "GET", `/v1/api-keys/${summary.id}`, { admin: true });
    assert.ok(used.json.last_used_at, used.text);
    const t = Date.parse(used.json.last_used_at) / 1000;
    assert.ok(t >= t0 - 1 && t <= t0 + 5, `${used.json.last_used_at}`);
    const list = await call(gw, "GET", `/v1/api-keys?user_id=${summary.user_id}`, { admin: true });
    assert.equal(list.json.results[0].last_used_at, used.json.last_used_at);
  });
});

describe("contract section 2, first row: failed attempts per client IP", () => {
  it("40 bad keys from one IP: 401 for the first 30, then 429; another IP with a valid key is unaffected", async () => {
    await inOneFailureWindow();
    const attacker = randomClientIp();
    const { key } = await createKey(gw);
    const codes = [];
    for (let i = 0; i < 40; i++) {
      // Alternate malformed keys (no storage read) and well-formed unknown ones (one KV read).
      const bad = i % 2 ? unissuedKey() : `kg_${randomBytes(8).toString("hex")}`;
      const r = await call(gw, "GET", "/v1/me", { key: bad, headers: { "cf-connecting-ip": attacker } });
      codes.push(r.json.code);
      if (r.status === 429) {
        expectError(assert, r, 429, "too_many_failed_attempts");
      }
    }
    assert.deepEqual(codes.slice(0, 30).filter((c) => c === "too_many_failed_attempts"), []);
    assert.deepEqual(new Set(codes.slice(30)), new Set(["too_many_failed_attempts"]));
    const other = await call(gw, "GET", "/v1/me", { key, headers: { "cf-connecting-ip": randomClientIp() } });
    assert.equal(other.status, 200);
    // While blocked, even a valid key from the attacker's address is refused (the row is first).
    const same = await call(gw, "GET", "/v1/me", { key, headers: { "cf-connecting-ip": attacker } });
    expectError(assert, same, 429, "too_many_failed_attempts");
  });

  it("successful authentications are never counted", async () => {
    const client = randomClientIp();
    const { key } = await createKey(gw, { rate_limit: { requests: 1000, window_seconds: 60 } });
    for (let i = 0; i < 40; i++) {
      const r = await call(gw, "GET", "/v1/me", { key, headers: { "cf-connecting-ip": client } });
      assert.equal(r.status, 200);
    }
  });

  it("wrong admin tokens count as failed attempts too", async () => {
    await inOneFailureWindow();
    const ip = randomClientIp();
    let last;
    for (let i = 0; i < 31; i++) {
      last = await call(gw, "GET", "/v1/api-keys?user_id=x", { admin: `guess-${i}`, headers: { "cf-connecting-ip": ip } });
    }
    expectError(assert, last, 429, "too_many_failed_attempts");
  });
});

describe("contract section 6: idempotent job trigger", () => {
  const runPath = (job) => `/developers/workspaces/ws1/jobs/${job}/run/`;

  it("a retry with the same Idempotency-Key replays the first answer; the job runs once", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const job = `job-${randomBytes(4).toString("hex")}`;
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const first = await call(gw, "POST", runPath(job), { key, body: { p: 1 }, headers: { "idempotency-key": idem } });
    assert.equal(first.status, 201, first.text);
    assert.equal(first.headers.get("idempotent-replayed"), null);
    const again = await call(gw, "POST", runPath(job), { key, body: { p: 1 }, headers: { "idempotency-key": idem } });
    assert.equal(again.status, 201);
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.equal(again.json.execution_id, first.json.execution_id);
    assert.equal(again.headers.get("content-type"), "application/json");
    assert.ok(again.headers.get("ratelimit-limit"));
    assert.equal(runsOf(runPath(job)), 1);
    // Without the trailing slash it is the same route, but a different path: a different request.
    const noSlash = await call(gw, "POST", runPath(job).slice(0, -1), { key, body: { p: 1 }, headers: { "idempotency-key": idem } });
    expectError(assert, noSlash, 422, "idempotency_key_reused");
  });

  it("the same Idempotency-Key with a different body or path: 422 idempotency_key_reused", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const job = `job-${randomBytes(4).toString("hex")}`;
    assert.equal((await call(gw, "POST", runPath(job), { key, body: { p: 1 }, headers: { "idempotency-key": idem } })).status, 201);
    const body = await call(gw, "POST", runPath(job), { key, body: { p: 2 }, headers: { "idempotency-key": idem } });
    expectError(assert, body, 422, "idempotency_key_reused");
    const path = await call(gw, "POST", runPath(`${job}-b`), { key, body: { p: 1 }, headers: { "idempotency-key": idem } });
    expectError(assert, path, 422, "idempotency_key_reused");
    assert.equal(runsOf(runPath(job)), 1);
    assert.equal(runsOf(runPath(`${job}-b`)), 0);
  });

  it("Idempotency-Keys are per API key", async () => {
    const a = await createKey(gw, { permissions: ["jobs:run"] });
    const b = await createKey(gw, { permissions: ["jobs:run"] });
    const idem = `shared-${randomBytes(6).toString("hex")}`;
    const job = `job-${randomBytes(4).toString("hex")}`;
    const ra = await call(gw, "POST", runPath(job), { key: a.key, headers: { "idempotency-key": idem } });
    const rb = await call(gw, "POST", runPath(job), { key: b.key, headers: { "idempotency-key": idem } });
    assert.equal(ra.status, 201);
    assert.equal(rb.status, 201);
    assert.equal(rb.headers.get("idempotent-replayed"), null);
    assert.notEqual(ra.json.execution_id, rb.json.execution_id);
  });

  it("a retry while the first is in flight: 409 idempotency_in_progress", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const slowPath = `/developers/workspaces/ws1/jobs/slow-${randomBytes(3).toString("hex")}/run/`;
    const first = call(gw, "POST", slowPath, { key, headers: { "idempotency-key": idem } });
    await new Promise((r) => setTimeout(r, 300));
    const second = await call(gw, "POST", slowPath, { key, headers: { "idempotency-key": idem } });
    expectError(assert, second, 409, "idempotency_in_progress");
    const done = await first;
    assert.ok(done.status < 500, done.text);
    const third = await call(gw, "POST", slowPath, { key, headers: { "idempotency-key": idem } });
    assert.equal(third.headers.get("idempotent-replayed"), "true");
    assert.equal(runsOf(slowPath), 1);
  });

  it("10 concurrent identical retries produce exactly one origin call", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const slowPath = `/developers/workspaces/ws1/jobs/slow-${randomBytes(3).toString("hex")}/run/`;
    const results = await Promise.all(
      Array.from({ length: 10 }, () => call(gw, "POST", slowPath, { key, body: { x: 1 }, headers: { "idempotency-key": idem } })),
    );
    const statuses = results.map((r) => r.status);
    assert.equal(runsOf(slowPath), 1, statuses.join(","));
    assert.equal(statuses.filter((s) => s === 200 || s === 201).length, 1, statuses.join(","));
    assert.ok(statuses.every((s) => s === 200 || s === 201 || s === 409), statuses.join(","));
  });

  it("a 5xx from the origin is not remembered: the retry goes through", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const job = `flaky-${randomBytes(3).toString("hex")}`;
    const path = `/developers/workspaces/ws1/jobs/${job}/run/`;
    const first = await call(gw, "POST", path, { key, headers: { "idempotency-key": idem } });
    assert.equal(first.status, 503);
    assert.equal(first.json.error, "temporarily overloaded", "the origin's own answer is relayed");
    const retry = await call(gw, "POST", path, { key, headers: { "idempotency-key": idem } });
    assert.ok(retry.status < 300, retry.text);
    assert.equal(retry.headers.get("idempotent-replayed"), null);
    const replay = await call(gw, "POST", path, { key, headers: { "idempotency-key": idem } });
    assert.equal(replay.headers.get("idempotent-replayed"), "true");
    assert.equal(runsOf(path), 2);
  });

  it("a trigger with an Idempotency-Key counts every attempt and refuses in the contract's order", async () => {
    // The trigger folds its count into the object call that opens the record; attempts refused
    // before that call must still count, and the rows must still apply in the order of contract section 2.
    const { key } = await createKey(gw, { permissions: ["jobs:run"], rate_limit: { requests: 3, window_seconds: 3600 } });
    const job = `job-${randomBytes(4).toString("hex")}`;
    const idem = () => `idem-${randomBytes(6).toString("hex")}`;
    const ok = await call(gw, "POST", runPath(job), { key, body: { p: 1 }, headers: { "idempotency-key": idem() } });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.headers.get("ratelimit-remaining"), "2");
    const badIdem = await call(gw, "POST", runPath(job), { key, headers: { "idempotency-key": "x".repeat(256) } });
    expectError(assert, badIdem, 400, "validation_error");
    assert.equal(badIdem.headers.get("ratelimit-remaining"), "1", "a refused attempt is counted");
    const otherWs = await call(gw, "POST", `/developers/workspaces/ws2/jobs/${job}/run/`, { key, headers: { "idempotency-key": idem() } });
    expectError(assert, otherWs, 403, "workspace_forbidden");
    assert.equal(otherWs.headers.get("ratelimit-remaining"), "0");
    // Over the limit: 429 before validation and before any record or origin call...
    const limited = await call(gw, "POST", runPath(job), { key, body: { p: 2 }, headers: { "idempotency-key": idem() } });
    expectError(assert, limited, 429, "rate_limited");
    expectError(assert, await call(gw, "POST", runPath(job), { key, headers: { "idempotency-key": "" } }), 429, "rate_limited");
    // ...but after the workspace and permission rows.
    expectError(assert, await call(gw, "POST", `/developers/workspaces/ws2/jobs/${job}/run/`, { key, headers: { "idempotency-key": idem() } }), 403, "workspace_forbidden");
    assert.equal(runsOf(runPath(job)), 1);
  });

  it("an Idempotency-Key that is not 1-255 printable ASCII characters: 400, nothing triggered", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const job = `job-${randomBytes(4).toString("hex")}`;
    const r = await call(gw, "POST", runPath(job), { key, headers: { "idempotency-key": "x".repeat(256) } });
    assert.ok(expectError(assert, r, 400, "validation_error").fields["Idempotency-Key"]);
    assert.equal(runsOf(runPath(job)), 0);
  });
});

describe("contract section 8: state survives a restart", () => {
  it("rate-limit state and idempotency records survive a wrangler dev restart on the same local state", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run", "jobs:read"], rate_limit: { requests: 3, window_seconds: 3600 } });
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const job = `job-${randomBytes(4).toString("hex")}`;
    const first = await call(gw, "POST", `/developers/workspaces/ws1/jobs/${job}/run/`, { key, headers: { "idempotency-key": idem } });
    assert.equal(first.status, 201);
    assert.equal((await call(gw, "GET", "/v1/me", { key })).headers.get("ratelimit-remaining"), "1");
    await gw.restart();
    const replay = await call(gw, "POST", `/developers/workspaces/ws1/jobs/${job}/run/`, { key, headers: { "idempotency-key": idem } });
    assert.equal(replay.headers.get("idempotent-replayed"), "true");
    assert.equal(replay.json.execution_id, first.json.execution_id);
    assert.equal(replay.headers.get("ratelimit-remaining"), "0");
    expectError(assert, await call(gw, "GET", "/v1/me", { key }), 429, "rate_limited");
  });
});
