// End to end through `wrangler dev`: usage per key (docs/CONTRACT.md section 12), kept by the
// key's object: allowed, refused by the rate limit and job triggers per hour and per day, and
// who may read it. One gateway counts exactly (LEASE_MS = 0), the other leases (the default),
// where `allowed` counts granted tokens: never below the requests served, at most two batches
// (the one in use and one renewal ahead) above them.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { awayFromEdge, call, createKey, expectError, useGateway } from "./harness.mjs";

const exact = useGateway({ vars: { LEASE_MS: "0" } });
const leased = useGateway({ vars: { LEASE_MS: "1000" } });

const runPath = (job) => `/developers/workspaces/ws1/jobs/${job}/run/`;
const usage = (gw, id, opts = { admin: true }) => call(gw, "GET", `/v1/api-keys/${id}/usage`, opts);
const total = (points, field) => points.reduce((n, p) => n + p[field], 0);

describe("section 12: usage per key", () => {
  it("counts allowed, refused and job triggers exactly with LEASE_MS = 0, in the current hour and day", async () => {
    await awayFromEdge(3600_000, 15_000); // every count in one UTC hour (and so one day)
    const { key, summary } = await createKey(exact, { rate_limit: { requests: 3, window_seconds: 60 } });
    const fresh = await usage(exact, summary.id);
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(fresh.json.key_id, summary.id);
    assert.equal(fresh.json.hourly.length, 48);
    assert.equal(fresh.json.daily.length, 30);
    assert.equal(total(fresh.json.hourly, "allowed"), 0);
    assert.equal(typeof fresh.json.counted, "string");

    const trigger = await call(exact, "POST", runPath("j1"), {
      key,
      headers: { "idempotency-key": `run-${randomBytes(4).toString("hex")}` },
      body: {},
    });
    assert.ok(trigger.status < 300, trigger.text);
    const statuses = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await call(exact, "GET", "/developers/workspaces/ws1/jobs", { key })).status);
    }
    // Three tokens: the trigger took one, two GETs pass, three are refused.
    assert.deepEqual(statuses, [200, 200, 429, 429, 429]);

    const u = (await usage(exact, summary.id)).json;
    const now = u.hourly.at(-1);
    assert.deepEqual(
      { allowed: now.allowed, refused: now.refused, triggers: now.triggers },
      { allowed: 2, refused: 3, triggers: 1 },
    );
    const today = u.daily.at(-1);
    assert.deepEqual(
      { allowed: today.allowed, refused: today.refused, triggers: today.triggers },
      { allowed: 2, refused: 3, triggers: 1 },
    );
    // Periods are whole hours and days, oldest first, the last one current.
    assert.match(now.start, /^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
    assert.match(today.start, /T00:00:00Z$/);
    assert.ok(Date.parse(now.start) <= Date.now() && Date.now() - Date.parse(now.start) < 3600_000);
    assert.equal(Date.parse(u.hourly[1].start) - Date.parse(u.hourly[0].start), 3600_000);
    assert.equal(total(u.hourly.slice(0, -2), "allowed"), 0);
  });

  it("with leases: allowed is never below the requests served and at most two batches above", async () => {
    const { key, summary } = await createKey(leased, { rate_limit: { requests: 600, window_seconds: 60 } });
    const served = 12;
    for (let i = 0; i < served; i++) {
      const r = await call(leased, "GET", "/developers/workspaces/ws1/jobs", { key });
      assert.equal(r.status, 200);
    }
    const u = (await usage(leased, summary.id)).json;
    const allowed = total(u.hourly, "allowed");
    // One isolate, batches of at most rate x LEASE_MS = 10 tokens, at most two held at once
    // (the batches ramp 1, 2, 4, 8, 10 while the key is hot).
    assert.ok(allowed >= served && allowed <= served + 20, `allowed ${allowed} for ${served} served`);
    assert.equal(total(u.hourly, "refused"), 0);
  });

  it("who may read it: admin, the key's own user with api_keys:read; another user's key is 404", async () => {
    const owner = await createKey(exact, { permissions: ["api_keys:read"] });
    const sibling = await createKey(exact, { user_id: owner.summary.user_id, permissions: ["jobs:read"] });
    const stranger = await createKey(exact, { permissions: ["api_keys:read"] });

    const own = await usage(exact, sibling.summary.id, { key: owner.key });
    assert.equal(own.status, 200, own.text);
    assert.equal(own.json.key_id, sibling.summary.id);
    expectError(assert, await usage(exact, owner.summary.id, { key: sibling.key }), 403, "permission_denied");
    expectError(assert, await usage(exact, owner.summary.id, { key: stranger.key }), 404, "not_found");
    expectError(assert, await usage(exact, "key_0000000000000000"), 404, "not_found");
    expectError(assert, await usage(exact, "nonsense"), 404, "not_found");
    expectError(assert, await usage(exact, owner.summary.id, {}), 401, "missing_api_key");
    const post = await call(exact, "POST", `/v1/api-keys/${owner.summary.id}/usage`, { admin: true });
    expectError(assert, post, 405, "method_not_allowed");
  });
});
