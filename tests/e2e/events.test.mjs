// End to end through `wrangler dev` (workerd): the audit trail (docs/CONTRACT.md section 12)
// and the events (section 14): webhooks through the local Queue, signed the Standard Webhooks
// way and checked here with node:crypto, and the Cron Trigger's expiry warnings.

import assert from "node:assert/strict";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";

import { call, createKey, expectError, startGateway } from "./harness.mjs";

/** Polls `fn` until it returns a truthy value or `ms` pass; returns the last value. */
async function until(fn, ms = 15_000, step = 100) {
  const deadline = Date.now() + ms;
  let v;
  while (Date.now() < deadline) {
    v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, step));
  }
  return v;
}

/** All of a user's audit entries, newest first, following cursors `limit` at a time. */
async function trail(gw, userId, limit = 100, auth = { admin: true }) {
  const out = [];
  let cursor = "";
  for (let i = 0; i < 50; i++) {
    const q = new URLSearchParams({ user_id: userId, limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    const r = await call(gw, "GET", `/v1/audit-events?${q}`, auth);
    assert.equal(r.status, 200, r.text);
    out.push(...r.json.results);
    if (!r.json.next_cursor) return out;
    cursor = r.json.next_cursor;
  }
  throw new Error("cursor loop");
}

describe("section 12: the audit trail", () => {
  let gw;
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await gw?.stop();
  });

  it("records create, roll and revoke newest first with actor, time, request id and client IP", async () => {
    const user = `audit-${randomBytes(4).toString("hex")}`;
    const created = await call(gw, "POST", "/v1/api-keys", {
      admin: true,
      headers: { "cf-connecting-ip": "203.0.113.7", "x-request-id": "req-create-1" },
      body: { user_id: user, email: "a@example.com", name: "one", workspaces: ["ws1"], permissions: ["*"] },
    });
    assert.equal(created.status, 201, created.text);
    const id = created.json.id;
    const rolled = await call(gw, "POST", `/v1/api-keys/${id}/roll`, { admin: true, body: {} });
    assert.equal(rolled.status, 201, rolled.text);
    const revoked = await call(gw, "DELETE", `/v1/api-keys/${rolled.json.id}`, { admin: true });
    assert.equal(revoked.status, 200, revoked.text);
    // A second revoke changes nothing and records nothing.
    assert.equal((await call(gw, "DELETE", `/v1/api-keys/${rolled.json.id}`, { admin: true })).status, 200);

    const all = await trail(gw, user);
    assert.deepEqual(
      all.map((e) => [e.action, e.key_id]),
      [
        ["key.revoked", rolled.json.id],
        ["key.rolled", id],
        ["key.created", id],
      ],
    );
    const c = all[2];
    assert.deepEqual(c.actor, { type: "admin" });
    assert.equal(c.request_id, "req-create-1");
    assert.equal(c.client_ip, "203.0.113.7");
    assert.equal(c.user_id, user);
    assert.match(c.id, /^evt_[0-9a-f]{32}$/);
    assert.match(c.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(c.details.name, "one");
    assert.equal(all[1].details.new_key_id, rolled.json.id);
    // No key and no hash anywhere in the trail.
    const text = JSON.stringify(all);
    assert.ok(!text.includes(created.json.key) && !text.includes(rolled.json.key));
  });

  it("pages newest first with cursors, one entry at a time, none lost or repeated", async () => {
    const user = `pages-${randomBytes(4).toString("hex")}`;
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await createKey(gw, { user_id: user })).summary.id);
    const one = await trail(gw, user, 1);
    assert.deepEqual(
      one.map((e) => e.key_id),
      [...ids].reverse(),
    );
    const two = await trail(gw, user, 2);
    assert.deepEqual(two, one);
  });

  it("a key with api_keys:read sees its own user's trail only; admin must name the user", async () => {
    const mine = await createKey(gw, { permissions: ["api_keys:read"] });
    const other = await createKey(gw);
    const own = await call(gw, "GET", "/v1/audit-events", { key: mine.key });
    assert.equal(own.status, 200, own.text);
    assert.deepEqual(
      own.json.results.map((e) => e.key_id),
      [mine.summary.id],
    );
    expectError(
      assert,
      await call(gw, "GET", `/v1/audit-events?user_id=${other.summary.user_id}`, { key: mine.key }),
      403,
      "permission_denied",
    );
    const noRead = await createKey(gw, { permissions: ["jobs:read"] });
    expectError(assert, await call(gw, "GET", "/v1/audit-events", { key: noRead.key }), 403, "permission_denied");
    expectError(assert, await call(gw, "GET", "/v1/audit-events", { admin: true }), 400, "validation_error");
    const bad = await call(gw, "GET", `/v1/audit-events?user_id=${mine.summary.user_id}&cursor=nope`, { admin: true });
    assert.deepEqual(expectError(assert, bad, 400, "validation_error").fields.cursor.length, 1);
    expectError(assert, await call(gw, "POST", "/v1/audit-events", { admin: true }), 405, "method_not_allowed");
  });
});
