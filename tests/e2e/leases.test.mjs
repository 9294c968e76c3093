// Leased allowances across two locations (docs/CONTRACT.md section 8), with the default
// LEASE_MS: the limit is never exceeded by more than one lease period of the rate (exact for a
// small limit), a hot key's object is called about once per lease period per location,
// revocation, a roll and a shortened expiry reach the other location within LEASE_MS plus one
// round trip, an unreachable object fails closed once the lease lapses, and a restart of the
// objects' process loses no allowance. Object calls are counted from the log's `lease` field.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { call, createKey, expectError } from "./harness.mjs";
import { useTwoLocations } from "./two-locations.mjs";

const LEASE_MS = 1000;
/** A round trip to the object and the scheduling slack of two workerd processes on 2 cores. */
const SLACK_MS = 1500;

const { a, b } = useTwoLocations({ label: "lease", vars: { LEASE_MS: String(LEASE_MS) } });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `n` requests, `concurrency` at a time, against `gw`; returns the statuses. */
async function hammer(gw, key, n, concurrency, path = "/v1/me") {
  const statuses = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next += 1;
      const r = await call(gw, "GET", path, { key });
      statuses.push(r.status);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

/** The `lease` field of every log line of `key_id` so far. */
function leasePaths(gw, keyId) {
  return gw
    .log()
    .split("\n")
    .filter((l) => l.includes(`"key_id":"${keyId}"`))
    .map((l) => /"lease":"([a-z_]+)"/.exec(l)?.[1])
    .filter(Boolean);
}

/** Object calls implied by the log: each `asked` request and each renewal started. */
const objectCalls = (paths) => paths.filter((p) => p === "asked" || p === "local_renewing").length;

describe("limits under leases, two locations", () => {
  it("a 5/60 key is exact: 5 allowed in all, under concurrency at both locations", async () => {
    const { key } = await createKey(a, { rate_limit: { requests: 5, window_seconds: 60 } });
    const [x, y] = await Promise.all([hammer(a, key, 20, 5), hammer(b, key, 20, 5)]);
    const all = [...x, ...y];
    assert.equal(all.filter((s) => s === 200).length, 5, JSON.stringify(all));
    assert.equal(all.filter((s) => s === 429).length, 35);
  });

  it("a high-rate key never gets more than its limit plus rate x LEASE_MS, and most of its limit", async () => {
    // 100 per 10 s: a rate of 10/s, so batches of up to 10 tokens per lease.
    const requests = 100;
    const windowMs = 10_000;
    const { key } = await createKey(a, { rate_limit: { requests, window_seconds: windowMs / 1000 } });
    const started = Date.now();
    const [x, y] = await Promise.all([hammer(a, key, 200, 8), hammer(b, key, 200, 8)]);
    const elapsed = Date.now() - started;
    const allowed = [...x, ...y].filter((s) => s === 200).length;
    const bound = requests + Math.ceil(((elapsed + LEASE_MS) * requests) / windowMs);
    assert.ok(allowed <= bound, `${allowed} allowed in ${elapsed} ms; bound ${bound}`);
    assert.ok(allowed >= requests / 2, `${allowed} allowed: leases should not waste most of the limit`);
    assert.ok([...x, ...y].every((s) => s === 200 || s === 429), "only 200 and 429");
  });

  it("a hot key: the object is called about once per LEASE_MS per location, not per request", async () => {
    const { key, summary } = await createKey(a, { rate_limit: { requests: 1000000, window_seconds: 60 } });
    const started = Date.now();
    const statuses = await hammer(b, key, 400, 8);
    const elapsed = Date.now() - started;
    assert.ok(statuses.every((s) => s === 200));
    await sleep(300);
    const paths = leasePaths(b, summary.id);
    assert.equal(paths.length, 400, "one log line per request, each with its lease path");
    const calls = objectCalls(paths);
    // The batch doubles from one token, then renews about once per lease period.
    const allowedCalls = 16 + 2 * Math.ceil(elapsed / LEASE_MS);
    assert.ok(calls <= allowedCalls, `${calls} object calls for 400 requests in ${elapsed} ms`);
    assert.ok(paths.filter((p) => p === "local").length >= 300, "most requests decided locally");
    console.log(`# hot key: ${calls} object calls for 400 requests in ${elapsed} ms at one location`);
  });
});

/** Calls `gw` in a loop until `refused(r)`; returns the time of the first refusal, or null. */
async function untilRefused(gw, key, refused, maxMs) {
  const end = Date.now() + maxMs;
  while (Date.now() < end) {
    const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
    if (refused(r)) return { at: Date.now(), r };
    assert.equal(r.status, 200, r.text);
  }
  return null;
}

describe("revocation, roll and expiry reach the other location within LEASE_MS plus a round trip", () => {
  for (const [label, act, code] of [
    ["a revocation", (id) => call(a, "DELETE", `/v1/api-keys/${id}`, { admin: true }), "revoked_api_key"],
    ["a roll with grace 0", (id) => call(a, "POST", `/v1/api-keys/${id}/roll`, { admin: true, body: {} }), "revoked_api_key"],
  ]) {
    it(`${label} at A while B is serving the key`, async () => {
      const { key, summary } = await createKey(a, { workspaces: ["ws1"], permissions: ["jobs:read"] });
      // B serves the key busily, so it holds a lease.
      await hammer(b, key, 60, 4, "/developers/workspaces/ws1/jobs/");
      const serving = untilRefused(b, key, (r) => r.status === 401, LEASE_MS + SLACK_MS + 2000);
      await sleep(50);
      const done = await act(summary.id);
      assert.ok(done.status === 200 || done.status === 201, done.text);
      if (done.json?.key) a.issuedKeys.push(done.json.key);
      const actedAt = Date.now();
      const first = await serving;
      assert.ok(first, "B kept serving the key");
      expectError(assert, first.r, 401, code);
      assert.ok(first.at - actedAt <= LEASE_MS + SLACK_MS, `refused ${first.at - actedAt} ms after`);
      // And never served again.
      const before = b.origin.requests.length;
      for (let i = 0; i < 10; i++) {
        expectError(assert, await call(b, "GET", "/developers/workspaces/ws1/jobs/", { key }), 401, code);
      }
      assert.equal(b.origin.requests.length, before);
    });
  }

  it("a shortened expiry (roll with grace) at A while B is serving the key", async () => {
    const { key, summary } = await createKey(a, { workspaces: ["ws1"], permissions: ["jobs:read"] });
    await hammer(b, key, 60, 4, "/developers/workspaces/ws1/jobs/");
    const rolled = await call(a, "POST", `/v1/api-keys/${summary.id}/roll`, { admin: true, body: { grace_seconds: 2 } });
    assert.equal(rolled.status, 201, rolled.text);
    a.issuedKeys.push(rolled.json.key);
    const graceEnd = Date.parse(rolled.json.created_at) + 2000;
    const first = await untilRefused(b, key, (r) => r.status === 401, 2000 + LEASE_MS + SLACK_MS + 2000);
    assert.ok(first, "B kept serving the key");
    expectError(assert, first.r, 401, "expired_api_key");
    assert.ok(first.at - graceEnd <= LEASE_MS + SLACK_MS + 1000, `refused ${first.at - graceEnd} ms after the grace`);
  });

  it("a key revoked at A mints nothing at B, even while B's lease of it still serves its reads", async () => {
    // Finding 10 of the security review: managing keys asks the key's object, not the lease.
    const user = `lease-mint-${Date.now()}`;
    const { key, summary } = await createKey(a, { user_id: user, workspaces: ["ws1"], permissions: ["api_keys:write", "jobs:read"] });
    await hammer(b, key, 60, 4, "/developers/workspaces/ws1/jobs/");
    const done = await call(a, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true });
    assert.equal(done.status, 200, done.text);
    const body = { user_id: user, name: "child", workspaces: ["ws1"], permissions: ["jobs:read"] };
    expectError(assert, await call(b, "POST", "/v1/api-keys", { key, body }), 401, "revoked_api_key");
    const list = await call(a, "GET", `/v1/api-keys?user_id=${user}`, { admin: true });
    assert.equal(list.json.results.length, 1, "no child was minted");
  });

  it("the revoking location refuses at once: it drops its own lease", async () => {
    const { key, summary } = await createKey(a, { workspaces: ["ws1"], permissions: ["jobs:read"] });
    await hammer(a, key, 60, 4, "/developers/workspaces/ws1/jobs/");
    const done = await call(a, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true });
    assert.equal(done.status, 200);
    expectError(assert, await call(a, "GET", "/developers/workspaces/ws1/jobs/", { key }), 401, "revoked_api_key");
  });
});

describe("the objects' process restarts, then becomes unreachable", () => {
  it("a restart loses no allowance: tokens granted before it still count", async () => {
    const requests = 60;
    const { key } = await createKey(a, { rate_limit: { requests, window_seconds: 60 } });
    const started = Date.now();
    const first = await hammer(b, key, 80, 4);
    assert.ok(first.filter((s) => s === 200).length >= requests / 2);
    await a.restart();
    await sleep(500);
    const second = await hammer(b, key, 40, 4);
    const elapsed = Date.now() - started;
    const allowed = [...first, ...second].filter((s) => s === 200).length;
    const bound = requests + Math.ceil(((elapsed + LEASE_MS) * requests) / 60_000);
    assert.ok(allowed <= bound, `${allowed} allowed across the restart; bound ${bound}`);
  });

  it("object unreachable: B serves until its lease deadline, then 503, never a pass-through", async () => {
    const { key } = await createKey(a, {
      workspaces: ["ws1"],
      permissions: ["jobs:read"],
      rate_limit: { requests: 1000000, window_seconds: 60 },
    });
    await hammer(b, key, 100, 4, "/developers/workspaces/ws1/jobs/");
    await a.stop();
    const stoppedAt = Date.now();
    let firstFailure = null;
    let servedAfterDeadline = 0;
    while (Date.now() - stoppedAt < LEASE_MS + SLACK_MS + 2000) {
      const r = await call(b, "GET", "/developers/workspaces/ws1/jobs/", { key });
      if (r.status === 200) {
        if (firstFailure) servedAfterDeadline += 1;
      } else {
        expectError(assert, r, 503, "unavailable");
        firstFailure ??= Date.now();
      }
    }
    assert.ok(firstFailure, "B failed closed once its lease lapsed");
    assert.ok(firstFailure - stoppedAt <= LEASE_MS + SLACK_MS, `first 503 ${firstFailure - stoppedAt} ms after`);
    assert.equal(servedAfterDeadline, 0, "nothing served after the first 503");
  });
});
