// docs/CONTRACT.md sections 6 and 7 through `wrangler dev`: bodies limited while they stream
// (no Content-Length), bounded idempotency storage, and the job trigger never run twice for one
// (key, Idempotency-Key) whatever the answer's size or speed. The gateway here runs with a small
// MAX_BODY_BYTES and ORIGIN_TIMEOUT_MS so that the limits are reached quickly.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Agent, request as httpRequest } from "node:http";
import { describe, it } from "node:test";

import { call, createKey, expectError, randomClientIp, waitForLog, useGateway } from "./harness.mjs";

const MAX_BODY_BYTES = 100_000;
/** The management routes' own body limit (64 KiB), whatever MAX_BODY_BYTES is. */
const MAX_JSON_BODY_BYTES = 64 * 1024;
const ORIGIN_TIMEOUT_MS = 2_000;
/** The in-flight lease is ORIGIN_TIMEOUT_MS plus this margin. */
const IN_FLIGHT_MARGIN_MS = 10_000;
/** Stored answer bodies are kept up to 64 KiB; this one is over. */
const BIG_ANSWER_BYTES = 200 * 1024;
/** Live Idempotency-Keys per API key. */
const MAX_IDEMPOTENCY_RECORDS = 1_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const send201 = (res) => {
  res.writeHead(201, { "content-type": "application/json" });
  res.end(JSON.stringify({ execution_id: `exec_${randomBytes(8).toString("hex")}` }));
};

const gw = useGateway({
  vars: { MAX_BODY_BYTES: String(MAX_BODY_BYTES), ORIGIN_TIMEOUT_MS: String(ORIGIN_TIMEOUT_MS) },
  handle: async ({ req, res }) => {
    if (req.url.includes("/early-")) {
      // Answers at once, before reading (or while ignoring) the request body.
      res.writeHead(202, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify({ early: true }));
      return true;
    }
    if (req.url.includes("/jobs/big-")) {
      const pad = "x".repeat(BIG_ANSWER_BYTES);
      res.writeHead(201, { "content-type": "application/json", "x-job": "big" });
      res.end(JSON.stringify({ execution_id: `exec_${randomBytes(8).toString("hex")}`, pad }));
      return true;
    }
    if (req.url.includes("/jobs/slowok-")) {
      // The job runs and answers after a second: well inside ORIGIN_TIMEOUT_MS.
      await sleep(1_000);
      if (!res.destroyed) send201(res);
      return true;
    }
    if (req.url.includes("/jobs/slowheaders-")) {
      // The job starts, but no headers come back before ORIGIN_TIMEOUT_MS.
      await sleep(ORIGIN_TIMEOUT_MS + 1_000);
      if (!res.destroyed) send201(res);
      return true;
    }
    if (req.url.includes("/jobs/slowbody-")) {
      // Headers at once, then the body dribbles on past the in-flight lease.
      res.writeHead(201, { "content-type": "application/json", "x-job": "slow-body" });
      res.write('{"execution_id":"exec_slow","pad":"');
      const until = Date.now() + ORIGIN_TIMEOUT_MS + IN_FLIGHT_MARGIN_MS + 1_500;
      while (Date.now() < until && !res.destroyed) {
        res.write("y");
        await sleep(250);
      }
      if (!res.destroyed) res.end('"}');
      return true;
    }
    return false;
  },
});

const runPath = (job) => `/developers/workspaces/ws1/jobs/${job}/run/`;
const runsOf = (path) => gw.origin.requests.filter((r) => r.url === path).length;

/**
 * A request whose body is sent chunked (no Content-Length), `total` bytes in 8 KiB chunks.
 * Resolves to `{ status, text, json, headers }`; a connection the gateway closes after answering
 * is not an error once the answer is in.
 */
function chunked(method, path, headers, total, fill = "a", agent = false) {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(
      `${gw.url}${path}`,
      // A connection of its own unless the test shares one (`agent`).
      { method, agent, headers: { "cf-connecting-ip": randomClientIp(), ...headers } },
      (res) => {
        const parts = [];
        res.on("data", (c) => parts.push(c));
        res.on("end", () => {
          answered = true;
          const text = Buffer.concat(parts).toString("utf8");
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const get = (n) => res.headers[n.toLowerCase()] ?? null;
          resolve({ status: res.statusCode, text, json, headers: { get } });
        });
      },
    );
    req.on("error", (e) => (answered ? undefined : reject(e)));
    const chunk = Buffer.alloc(8 * 1024, fill);
    for (let sent = 0; sent < total; sent += chunk.length) {
      req.write(chunk.subarray(0, Math.min(chunk.length, total - sent)));
    }
    req.end();
  });
}

describe("section 6: a rate-limited key's trigger is refused before its body is read", () => {
  it("once this location knows the key is over its limit, an idempotent trigger is refused here (log: lease local), no object call, no body read", async () => {
    // Finding 6 of the security review: each refusal used to read the whole body (up to
    // MAX_BODY_BYTES) first, then ask the key's object. The log line's `lease` field says a
    // request was decided in the isolate; the refusal is taken before the body is read.
    const { key, summary } = await createKey(gw, { permissions: ["jobs:run"], rate_limit: { requests: 1, window_seconds: 60 } });
    const path = runPath(`rl-${randomBytes(3).toString("hex")}`);
    const trigger = (idem, body = {}) =>
      call(gw, "POST", path, { key, body, headers: { "idempotency-key": idem, "x-request-id": `rl-${idem}-${summary.id}` } });
    assert.equal((await trigger("one")).status, 201);
    expectError(assert, await trigger("two"), 429, "rate_limited");
    const big = "z".repeat(MAX_BODY_BYTES - 100);
    const r = await trigger("three", big);
    expectError(assert, r, 429, "rate_limited");
    assert.ok(Number(r.headers.get("retry-after")) >= 1);
    const lineOf = async (idem) => {
      const log = await waitForLog(gw, new RegExp(`"request_id":"rl-${idem}-${summary.id}"`));
      return JSON.parse(log.split("\n").find((l) => l.includes(`"request_id":"rl-${idem}-${summary.id}"`)).replace(/^[^{]*/, ""));
    };
    assert.equal((await lineOf("two")).lease, undefined, "the first refusal came from the key's object");
    const three = await lineOf("three");
    assert.equal(three.status, 429);
    assert.equal(three.lease, "local", "refused in the isolate, before reading the body");
    assert.equal(runsOf(path), 1);
  });
});

describe("section 7: bodies without Content-Length are limited while they stream", () => {
  it("a forwarded chunked POST under the limit arrives whole, read first and sent with its length", async () => {
    const { key } = await createKey(gw);
    const path = `/developers/workspaces/ws1/variables/v-${randomBytes(3).toString("hex")}`;
    const r = await chunked("POST", path, { authorization: `Api-Key ${key}` }, MAX_BODY_BYTES - 1000);
    assert.equal(r.status, 200, r.text);
    const got = gw.origin.requests.filter((q) => q.url === path);
    assert.equal(got.length, 1);
    assert.equal(got[0].body.length, MAX_BODY_BYTES - 1000);
    assert.equal(got[0].headers["content-length"], String(MAX_BODY_BYTES - 1000), "read whole, then sent with its length");
  });

  it("a streamed over-limit body, then a valid request on the same connection and on a new one: 413, then the right answers", async () => {
    // Finding 1 of the security review: the 413 used to leave uncaught exceptions behind and
    // the next request found the worker restarted (503). The harness also fails the file on
    // any uncaught exception in the log.
    const { key } = await createKey(gw);
    const auth = { authorization: `Api-Key ${key}` };
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const kind of ["variables/v-", "variables/early-"]) {
        // `early-`: an origin that answers before reading any body.
        const path = `/developers/workspaces/ws1/${kind}${randomBytes(3).toString("hex")}`;
        const small = () => chunked("POST", path, auth, 2_000, "s", agent);
        const first = await small();
        assert.equal(first.status, kind.includes("early-") ? 202 : 200, first.text);
        const over = await chunked("POST", path, auth, MAX_BODY_BYTES + 30_000, "o", agent);
        expectError(assert, over, 413, "payload_too_large");
        // The same connection when the gateway kept it, else a new one: the right answer.
        const again = await small();
        assert.equal(again.status, first.status, again.text);
        const fresh = await chunked("POST", path, auth, 2_000, "n");
        assert.equal(fresh.status, first.status, fresh.text);
        const got = gw.origin.requests.filter((q) => q.url === path);
        assert.equal(got.length, 3, "the over-limit body never reached the origin");
        if (!kind.includes("early-")) assert.ok(got.every((q) => q.body.length === 2_000));
      }
      // A declared length under the limit to an origin that answers before reading it:
      // streamed, relayed, and the next request is served.
      const early = `/developers/workspaces/ws1/variables/early-${randomBytes(3).toString("hex")}`;
      const declared = await call(gw, "POST", early, { key, body: "d".repeat(MAX_BODY_BYTES - 10) });
      assert.equal(declared.status, 202, declared.text);
      const next = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
      assert.equal(next.status, 200, next.text);
    } finally {
      agent.destroy();
    }
  });

  it("a forwarded chunked POST over MAX_BODY_BYTES: 413, and the origin never gets the whole body", async () => {
    const { key } = await createKey(gw);
    const path = `/developers/workspaces/ws1/variables/v-${randomBytes(3).toString("hex")}`;
    const total = MAX_BODY_BYTES + 50_000;
    const r = await chunked("POST", path, { authorization: `Api-Key ${key}` }, total);
    expectError(assert, r, 413, "payload_too_large");
    await sleep(300);
    const got = gw.origin.requests.filter((q) => q.url === path);
    assert.ok(got.every((q) => q.body.length <= MAX_BODY_BYTES), "nothing past the limit was forwarded");
    assert.equal(got.length, 0, "the origin saw an aborted request, not a complete one");
  });

  it("a chunked job-trigger body over MAX_BODY_BYTES with an Idempotency-Key: 413, nothing triggered, nothing remembered", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const job = `job-${randomBytes(4).toString("hex")}`;
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const headers = { authorization: `Api-Key ${key}`, "idempotency-key": idem, "content-type": "application/json" };
    const r = await chunked("POST", runPath(job), headers, MAX_BODY_BYTES + 20_000);
    expectError(assert, r, 413, "payload_too_large");
    assert.equal(runsOf(runPath(job)), 0);
    // The same Idempotency-Key with an acceptable body goes through: the refusal left no record.
    const ok = await call(gw, "POST", runPath(job), { key, body: { p: 1 }, headers: { "idempotency-key": idem } });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.headers.get("idempotent-replayed"), null);
    assert.equal(runsOf(runPath(job)), 1);
  });

  it("a chunked POST /v1/api-keys over 64 KiB: 413, no key created", async () => {
    const user = `big-${randomBytes(4).toString("hex")}`;
    const headers = { authorization: `Bearer ${gw.adminToken}`, "content-type": "application/json" };
    const r = await chunked("POST", "/v1/api-keys", headers, MAX_JSON_BODY_BYTES + 16 * 1024, " ");
    expectError(assert, r, 413, "payload_too_large");
    const list = await call(gw, "GET", `/v1/api-keys?user_id=${user}`, { admin: true });
    assert.deepEqual(list.json.results, []);
    // Just under the limit, the same route reads the body (and finds it is not a key request).
    const under = await chunked("POST", "/v1/api-keys", headers, MAX_JSON_BODY_BYTES - 1024, " ");
    expectError(assert, under, 400, "validation_error");
  });
});

describe("section 6: the job runs once whatever the answer's size or speed", () => {
  it("an answer larger than the stored bound: the first caller gets all of it; retries replay status and headers", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const path = runPath(`big-${randomBytes(4).toString("hex")}`);
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const first = await call(gw, "POST", path, { key, body: { p: 1 }, headers: { "idempotency-key": idem } });
    assert.equal(first.status, 201);
    assert.ok(first.text.length > BIG_ANSWER_BYTES, `${first.text.length}`);
    assert.ok(first.json.execution_id);
    assert.equal(first.headers.get("idempotent-body-omitted"), null);
    for (let i = 0; i < 2; i++) {
      const again = await call(gw, "POST", path, { key, body: { p: 1 }, headers: { "idempotency-key": idem } });
      assert.equal(again.status, 201);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      assert.equal(again.headers.get("idempotent-body-omitted"), "true");
      assert.equal(again.headers.get("x-job"), "big");
      assert.equal(again.headers.get("content-type"), "application/json");
      assert.equal(again.text, "");
    }
    assert.equal(runsOf(path), 1);
  });

  it("an answer whose body outlasts the in-flight lease is not run again by a retry", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const path = runPath(`slowbody-${randomBytes(4).toString("hex")}`);
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const opts = { key, body: { p: 1 }, headers: { "idempotency-key": idem } };
    const t0 = Date.now();
    const first = call(gw, "POST", path, opts);
    await sleep(500);
    // While the origin is still answering: in progress.
    expectError(assert, await call(gw, "POST", path, opts), 409, "idempotency_in_progress");
    // The exchange is bounded by ORIGIN_TIMEOUT_MS, headers and body: 504, though the job ran.
    const done = await first;
    expectError(assert, done, 504, "origin_timeout");
    assert.ok(Date.now() - t0 < ORIGIN_TIMEOUT_MS + 3_000, `${Date.now() - t0} ms`);
    // After the lease would have lapsed (the origin is still sending), a retry replays the
    // remembered status and headers instead of triggering the job again.
    await sleep(Math.max(0, t0 + ORIGIN_TIMEOUT_MS + IN_FLIGHT_MARGIN_MS + 500 - Date.now()));
    const retry = await call(gw, "POST", path, opts);
    assert.equal(retry.status, 201, retry.text);
    assert.equal(retry.headers.get("idempotent-replayed"), "true");
    assert.equal(retry.headers.get("idempotent-body-omitted"), "true");
    assert.equal(retry.headers.get("x-job"), "slow-body");
    assert.equal(runsOf(path), 1);
  });
});

describe("section 6: a client that hangs up during the exchange", () => {
  it("the exchange finishes and is remembered: the retry replays it, the job ran once", async () => {
    // Finding 15 of the security review: the exchange ran inside the client's request, so a
    // client that hung up left the record in flight until its lease lapsed, and the job could
    // run twice.
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const path = runPath(`slowok-${randomBytes(4).toString("hex")}`);
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const controller = new AbortController();
    const gone = fetch(gw.url + path, {
      method: "POST",
      headers: { authorization: `Api-Key ${key}`, "idempotency-key": idem, "content-type": "application/json", "cf-connecting-ip": randomClientIp() },
      body: "{}",
      signal: controller.signal,
    }).catch(() => "aborted");
    await sleep(300);
    controller.abort();
    assert.equal(await gone, "aborted");
    await sleep(2_000);
    const retry = await call(gw, "POST", path, { key, body: {}, headers: { "idempotency-key": idem } });
    assert.equal(retry.status, 201, retry.text);
    assert.equal(retry.headers.get("idempotent-replayed"), "true", "answered from the record, not run again");
    assert.equal(runsOf(path), 1);
  });
});

describe("section 6: an origin that does not answer in time may be running the job", () => {
  it("504, remembered: a retry replays the 504 instead of triggering the job again", async () => {
    const { key } = await createKey(gw, { permissions: ["jobs:run"] });
    const path = runPath(`slowheaders-${randomBytes(4).toString("hex")}`);
    const opts = { key, body: { p: 1 }, headers: { "idempotency-key": `idem-${randomBytes(6).toString("hex")}` } };
    expectError(assert, await call(gw, "POST", path, opts), 504, "origin_timeout");
    for (let i = 0; i < 2; i++) {
      const retry = await call(gw, "POST", path, opts);
      assert.equal(retry.status, 504, retry.text);
      assert.equal(retry.json.code, "origin_timeout");
      assert.equal(retry.headers.get("idempotent-replayed"), "true");
    }
    assert.equal(runsOf(path), 1, "the job was sent to the origin once");
  });
});

describe("section 6: idempotency records per key are bounded", () => {
  it(`a key holding ${MAX_IDEMPOTENCY_RECORDS} live records refuses new Idempotency-Keys (429), keeps replaying known ones, and keeps working without one`, async () => {
    const { key } = await createKey(gw, {
      permissions: ["jobs:run", "jobs:read"],
      rate_limit: { requests: 1_000_000, window_seconds: 60 },
    });
    const path = runPath(`fill-${randomBytes(4).toString("hex")}`);
    const trigger = (idem) => call(gw, "POST", path, { key, headers: { "idempotency-key": idem } });
    const CONCURRENCY = 16;
    let next = 0;
    const statuses = [];
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < MAX_IDEMPOTENCY_RECORDS) {
          const i = next++;
          statuses.push((await trigger(`fill-${i}`)).status);
        }
      }),
    );
    assert.deepEqual([...new Set(statuses)], [201]);
    assert.equal(runsOf(path), MAX_IDEMPOTENCY_RECORDS);
    const full = await trigger("one-more");
    expectError(assert, full, 429, "too_many_idempotency_keys");
    const retryAfter = Number(full.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 3600, `Retry-After ${retryAfter}`);
    assert.equal(runsOf(path), MAX_IDEMPOTENCY_RECORDS, "nothing triggered");
    // Known Idempotency-Keys are still replayed...
    const known = await trigger("fill-7");
    assert.equal(known.status, 201);
    assert.equal(known.headers.get("idempotent-replayed"), "true");
    // ...and the key itself is never locked out: its rate limit and plain calls keep working.
    const plain = await call(gw, "POST", path, { key });
    assert.equal(plain.status, 201, plain.text);
    assert.ok(plain.headers.get("ratelimit-remaining"));
    assert.equal((await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key })).status, 200);
    assert.equal((await call(gw, "GET", "/v1/me", { key })).status, 200);
  });
});
