// End to end through `wrangler dev` (workerd) with local KV and a real origin on 127.0.0.1:
// the key management API (docs/CONTRACT.md table 4): create, list with cursors, get, revoke,
// roll, the self-service rules of a key with api_keys:read/write, and validation errors.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { call, createKey, expectError, sha256hex, useGateway } from "./harness.mjs";

const gw = useGateway();

describe("table 4: the key management API", () => {
  it("POST /v1/api-keys (admin): 201, key shown once, no-store, summary fields", async () => {
    const r = await call(gw, "POST", "/v1/api-keys", {
      admin: true,
      body: {
        user_id: "alice@corp",
        email: "alice@example.com",
        name: "airflow prod",
        workspaces: ["ws1", "ws2"],
        permissions: ["jobs:run", "jobs:read"],
        expires_at: new Date(Date.now() + 3600_000).toISOString(),
        rate_limit: { requests: 50, window_seconds: 10 },
      },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get("cache-control"), "no-store");
    const k = r.json;
    assert.match(k.key, /^kg_[0-9a-f]{72}$/);
    assert.match(k.id, /^key_[0-9a-f]{16}$/);
    assert.equal(k.hint, k.key.slice(0, 9));
    assert.deepEqual(k.rate_limit, { requests: 50, window_seconds: 10 });
    assert.equal(k.revoked_at, null);
    assert.equal(k.last_used_at, null);
    assert.match(k.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    for (const f of ["id", "hint", "name", "user_id", "email", "workspaces", "permissions", "rate_limit", "created_at", "expires_at", "revoked_at", "last_used_at", "key"]) {
      assert.ok(f in k, f);
    }
    // Never shown again.
    const g = await call(gw, "GET", `/v1/api-keys/${k.id}`, { admin: true });
    assert.equal(g.status, 200);
    assert.ok(!("key" in g.json));
    assert.ok(!g.text.includes(k.key));
    assert.ok(!g.text.includes(sha256hex(k.key)));
  });

  it("POST /v1/api-keys: default rate limit and ids are unique", async () => {
    const a = await createKey(gw);
    const b = await createKey(gw);
    assert.deepEqual(a.summary.rate_limit, { requests: 600, window_seconds: 60 });
    assert.notEqual(a.summary.id, b.summary.id);
    assert.notEqual(a.key, b.key);
  });

  it("POST /v1/api-keys: validation errors name their fields and store nothing", async () => {
    const user = `val-${randomBytes(3).toString("hex")}`;
    const r = await call(gw, "POST", "/v1/api-keys", {
      admin: true,
      body: {
        user_id: user,
        name: "",
        workspaces: [],
        permissions: ["jobs:fly"],
        expires_at: new Date(Date.now() + 10_000).toISOString(),
        rate_limit: { requests: 0, window_seconds: 60 },
        colour: "blue",
      },
    });
    const body = expectError(assert, r, 400, "validation_error");
    for (const f of ["name", "workspaces", "permissions", "expires_at", "rate_limit", "colour"]) {
      assert.ok(Array.isArray(body.fields[f]) && body.fields[f].length > 0, `${f}: ${r.text}`);
    }
    assert.ok(!("user_id" in body.fields));
    const missing = await call(gw, "POST", "/v1/api-keys", { admin: true, body: {} });
    const m = expectError(assert, missing, 400, "validation_error");
    for (const f of ["user_id", "name", "workspaces", "permissions"]) assert.ok(m.fields[f], f);
    const notJson = await call(gw, "POST", "/v1/api-keys", { admin: true, body: "{oops", headers: { "content-type": "application/json" } });
    assert.ok(expectError(assert, notJson, 400, "validation_error").fields.body);
    const list = await call(gw, "GET", `/v1/api-keys?user_id=${user}`, { admin: true });
    assert.deepEqual(list.json.results, []);
  });

  it("POST /v1/api-keys with api_keys:write: own user only, no wider than itself", async () => {
    const parent = await createKey(gw, {
      workspaces: ["ws1", "ws2"],
      permissions: ["api_keys:write", "api_keys:read", "jobs:read"],
      expires_at: new Date(Date.now() + 7200_000).toISOString(),
    });
    const user = parent.summary.user_id;
    const ok = await call(gw, "POST", "/v1/api-keys", {
      key: parent.key,
      body: { user_id: user, name: "child", workspaces: ["ws1"], permissions: ["jobs:read"] },
    });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.json.expires_at, parent.summary.expires_at, "inherits the creator's expiry");
    const child = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key: ok.json.key });
    assert.equal(child.status, 200);

    for (const body of [
      { user_id: "someone-else", name: "x", workspaces: ["ws1"], permissions: ["jobs:read"] },
      { user_id: user, name: "x", workspaces: ["*"], permissions: ["jobs:read"] },
      { user_id: user, name: "x", workspaces: ["ws3"], permissions: ["jobs:read"] },
      { user_id: user, name: "x", workspaces: ["ws1"], permissions: ["jobs:run"] },
      { user_id: user, name: "x", workspaces: ["ws1"], permissions: ["*"] },
      { user_id: user, name: "x", workspaces: ["ws1"], permissions: ["jobs:read"], expires_at: new Date(Date.now() + 9000_000).toISOString() },
    ]) {
      const r = await call(gw, "POST", "/v1/api-keys", { key: parent.key, body });
      expectError(assert, r, 403, "permission_denied");
    }
    const noWrite = await createKey(gw, { permissions: ["jobs:read", "api_keys:read"] });
    const r = await call(gw, "POST", "/v1/api-keys", {
      key: noWrite.key,
      body: { user_id: noWrite.summary.user_id, name: "x", workspaces: ["ws1"], permissions: ["jobs:read"] },
    });
    expectError(assert, r, 403, "permission_denied");
  });

  it("GET /v1/api-keys: admin pages through a user's keys with next_cursor", async () => {
    const user = `lister-${randomBytes(3).toString("hex")}`;
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await createKey(gw, { user_id: user })).summary.id);
    const other = await createKey(gw);
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const q = `/v1/api-keys?user_id=${encodeURIComponent(user)}&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const r = await call(gw, "GET", q, { admin: true });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.results.length <= 2);
      for (const s of r.json.results) {
        assert.equal(s.user_id, user);
        assert.ok(!("key" in s));
        seen.push(s.id);
      }
      cursor = r.json.next_cursor;
      assert.ok(cursor === null || typeof cursor === "string");
      pages += 1;
    } while (cursor && pages < 10);
    assert.deepEqual([...seen].sort(), [...ids].sort());
    assert.ok(!seen.includes(other.summary.id));
    assert.ok(pages >= 3);
  });

  it("GET /v1/api-keys: admin without user_id is 400; a key lists its own user only", async () => {
    const r = await call(gw, "GET", "/v1/api-keys", { admin: true });
    assert.ok(expectError(assert, r, 400, "validation_error").fields.user_id);
    const bad = await call(gw, "GET", "/v1/api-keys?user_id=x&limit=0", { admin: true });
    assert.ok(expectError(assert, bad, 400, "validation_error").fields.limit);

    const reader = await createKey(gw, { permissions: ["api_keys:read"] });
    const sibling = await createKey(gw, { user_id: reader.summary.user_id });
    const own = await call(gw, "GET", "/v1/api-keys", { key: reader.key });
    assert.equal(own.status, 200, own.text);
    assert.deepEqual(own.json.results.map((s) => s.id).sort(), [reader.summary.id, sibling.summary.id].sort());
    const other = await call(gw, "GET", "/v1/api-keys?user_id=someone-else", { key: reader.key });
    expectError(assert, other, 403, "permission_denied");
  });

  it("GET /v1/api-keys/{id}: admin, or own user with api_keys:read; others and bad ids 404", async () => {
    const target = await createKey(gw, { permissions: ["api_keys:read"] });
    const admin = await call(gw, "GET", `/v1/api-keys/${target.summary.id}`, { admin: true });
    assert.equal(admin.status, 200);
    assert.deepEqual(admin.json, target.summary);
    const self = await call(gw, "GET", `/v1/api-keys/${target.summary.id}`, { key: target.key });
    assert.equal(self.status, 200);
    const stranger = await createKey(gw, { permissions: ["api_keys:read"] });
    expectError(assert, await call(gw, "GET", `/v1/api-keys/${target.summary.id}`, { key: stranger.key }), 404, "not_found");
    expectError(assert, await call(gw, "GET", "/v1/api-keys/key_0000000000000000", { admin: true }), 404, "not_found");
    expectError(assert, await call(gw, "GET", "/v1/api-keys/not-a-key-id", { admin: true }), 404, "not_found");
    const noRead = await createKey(gw, { permissions: ["jobs:read"] });
    expectError(assert, await call(gw, "GET", `/v1/api-keys/${noRead.summary.id}`, { key: noRead.key }), 403, "permission_denied");
  });

  it("DELETE /v1/api-keys/{id}: revokes, returns the summary; twice is not an error", async () => {
    const k = await createKey(gw);
    const first = await call(gw, "DELETE", `/v1/api-keys/${k.summary.id}`, { admin: true });
    assert.equal(first.status, 200);
    assert.equal(first.json.id, k.summary.id);
    assert.match(first.json.revoked_at, /Z$/);
    const second = await call(gw, "DELETE", `/v1/api-keys/${k.summary.id}`, { admin: true });
    assert.equal(second.status, 200);
    assert.equal(second.json.revoked_at, first.json.revoked_at);
    expectError(assert, await call(gw, "GET", "/v1/me", { key: k.key }), 401, "revoked_api_key");
    expectError(assert, await call(gw, "DELETE", "/v1/api-keys/key_ffffffffffffffff", { admin: true }), 404, "not_found");
  });

  it("DELETE /v1/api-keys/{id} by a key: own user with api_keys:write only", async () => {
    const writer = await createKey(gw, { permissions: ["api_keys:write"] });
    const sibling = await createKey(gw, { user_id: writer.summary.user_id });
    const stranger = await createKey(gw);
    expectError(assert, await call(gw, "DELETE", `/v1/api-keys/${stranger.summary.id}`, { key: writer.key }), 404, "not_found");
    assert.equal((await call(gw, "GET", "/v1/me", { key: stranger.key })).status, 200);
    const r = await call(gw, "DELETE", `/v1/api-keys/${sibling.summary.id}`, { key: writer.key });
    assert.equal(r.status, 200);
    expectError(assert, await call(gw, "GET", "/v1/me", { key: sibling.key }), 401, "revoked_api_key");
  });

  it("POST /v1/api-keys/{id}/roll: new key, same attributes; grace 0 revokes the old one now", async () => {
    const k = await createKey(gw, { workspaces: ["ws1", "ws9"], permissions: ["jobs:read", "jobs:run"], rate_limit: { requests: 7, window_seconds: 9 } });
    const r = await call(gw, "POST", `/v1/api-keys/${k.summary.id}/roll`, { admin: true, body: {} });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get("cache-control"), "no-store");
    assert.notEqual(r.json.id, k.summary.id);
    assert.notEqual(r.json.key, k.key);
    for (const f of ["user_id", "email", "name", "workspaces", "permissions", "rate_limit", "expires_at"]) {
      assert.deepEqual(r.json[f], k.summary[f], f);
    }
    expectError(assert, await call(gw, "GET", "/v1/me", { key: k.key }), 401, "revoked_api_key");
    assert.equal((await call(gw, "GET", "/v1/me", { key: r.json.key })).status, 200);
    const again = await call(gw, "POST", `/v1/api-keys/${k.summary.id}/roll`, { admin: true, body: {} });
    assert.ok(expectError(assert, again, 400, "validation_error").fields.id);
  });

  it("POST /v1/api-keys/{id}/roll with grace: both keys work until the grace ends", async () => {
    const k = await createKey(gw);
    const r = await call(gw, "POST", `/v1/api-keys/${k.summary.id}/roll`, { admin: true, body: { grace_seconds: 3600 } });
    assert.equal(r.status, 201);
    assert.equal((await call(gw, "GET", "/v1/me", { key: k.key })).status, 200);
    assert.equal((await call(gw, "GET", "/v1/me", { key: r.json.key })).status, 200);
    const old = await call(gw, "GET", `/v1/api-keys/${k.summary.id}`, { admin: true });
    const left = Date.parse(old.json.expires_at) - Date.now();
    assert.ok(left > 3500_000 && left <= 3601_000, `${left}`);
    const bad = await call(gw, "POST", `/v1/api-keys/${r.json.id}/roll`, { admin: true, body: { grace_seconds: 604801 } });
    assert.ok(expectError(assert, bad, 400, "validation_error").fields.grace_seconds);
  });

  it("roll by a key cannot hand out a key wider than the caller", async () => {
    const narrow = await createKey(gw, { permissions: ["api_keys:write"] });
    const wide = await createKey(gw, { user_id: narrow.summary.user_id, permissions: ["*"] });
    const r = await call(gw, "POST", `/v1/api-keys/${wide.summary.id}/roll`, { key: narrow.key, body: {} });
    expectError(assert, r, 403, "permission_denied");
    assert.equal((await call(gw, "GET", "/v1/me", { key: wide.key })).status, 200, "nothing changed");
  });
});
