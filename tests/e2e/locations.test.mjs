// Two locations: two `wrangler dev` gateways (two isolates, each with its own record cache)
// sharing one KV namespace and one set of Durable Objects. Gateway A defines the objects;
// gateway B binds them from A through wrangler's dev registry, as every location binds the one
// object of a key on Cloudflare's network. This makes observable what one gateway cannot show:
// limits exact across isolates, and a revocation refused by the key's object at a location
// whose cached record (KV_CACHE_TTL) still says the key is valid.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { call, createKey, expectError } from "./harness.mjs";
import { useTwoLocations } from "./two-locations.mjs";

// LEASE_MS = 0: one object call per request, so every refusal below is at once (the lease
// bounds are tested in leases.test.mjs).
const { a, b } = useTwoLocations({ label: "loc", vars: { LEASE_MS: "0" } });

describe("sections 1 and 8 across two locations, LEASE_MS = 0", () => {
  it("a key's limit is exact across locations: 5/60 s alternating A and B gives 4,3,2,1,0, then 429 at either", async () => {
    const { key } = await createKey(a, { rate_limit: { requests: 5, window_seconds: 60 } });
    const remaining = [];
    for (const gw of [a, b, a, b, a]) {
      const r = await call(gw, "GET", "/v1/me", { key });
      assert.equal(r.status, 200, r.text);
      remaining.push(r.headers.get("ratelimit-remaining"));
    }
    assert.deepEqual(remaining, ["4", "3", "2", "1", "0"]);
    expectError(assert, await call(b, "GET", "/v1/me", { key }), 429, "rate_limited");
    expectError(assert, await call(a, "GET", "/v1/me", { key }), 429, "rate_limited");
  });

  it("a key revoked at A is refused at once at B, whose cached record still says valid", async () => {
    const { key, summary } = await createKey(a, { workspaces: ["ws1"], permissions: ["jobs:read"] });
    const path = "/developers/workspaces/ws1/jobs/";
    // B reads the record from KV and caches it (KV_CACHE_TTL = 300 s here).
    assert.equal((await call(b, "GET", path, { key })).status, 200);
    const revoked = await call(a, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true });
    assert.equal(revoked.status, 200, revoked.text);
    const before = b.origin.requests.length;
    expectError(assert, await call(b, "GET", path, { key }), 401, "revoked_api_key");
    expectError(assert, await call(b, "GET", "/v1/me", { key }), 401, "revoked_api_key");
    assert.equal(b.origin.requests.length, before, "nothing reached B's origin after the revocation");
  });

  it("a key rolled at A with a grace period stops at B when the grace ends, though B cached it as valid", async () => {
    const { key, summary } = await createKey(a, { permissions: ["jobs:read"] });
    assert.equal((await call(b, "GET", "/v1/me", { key })).status, 200);
    const rolled = await call(a, "POST", `/v1/api-keys/${summary.id}/roll`, { admin: true, body: { grace_seconds: 2 } });
    assert.equal(rolled.status, 201, rolled.text);
    assert.equal((await call(b, "GET", "/v1/me", { key })).status, 200, "within the grace period");
    await new Promise((r) => setTimeout(r, 3200));
    expectError(assert, await call(b, "GET", "/v1/me", { key }), 401, "expired_api_key");
    assert.equal((await call(b, "GET", "/v1/me", { key: rolled.json.key })).status, 200);
  });

  it("a key rolled with grace at A cannot mint at B a child that outlives the grace, though B cached it without expiry", async () => {
    const user = `minter-${Date.now()}`;
    const parent = await createKey(a, { user_id: user, permissions: ["api_keys:write", "jobs:read"] });
    const body = (extra) => ({ user_id: user, name: "child", workspaces: ["ws1"], permissions: ["jobs:read"], ...extra });
    // B caches the parent's record (no expiry).
    assert.equal((await call(b, "GET", "/v1/me", { key: parent.key })).status, 200);
    const rolled = await call(a, "POST", `/v1/api-keys/${parent.summary.id}/roll`, { admin: true, body: { grace_seconds: 3600 } });
    assert.equal(rolled.status, 201, rolled.text);
    a.issuedKeys.push(rolled.json.key);
    const graceEnd = Date.parse(rolled.json.created_at) + 3600 * 1000;
    const later = new Date(graceEnd + 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    const refused = await call(b, "POST", "/v1/api-keys", { key: parent.key, body: body({ expires_at: later }) });
    expectError(assert, refused, 403, "permission_denied");
    const inherited = await call(b, "POST", "/v1/api-keys", { key: parent.key, body: body({}) });
    assert.equal(inherited.status, 201, inherited.text);
    a.issuedKeys.push(inherited.json.key);
    assert.ok(Date.parse(inherited.json.expires_at) <= graceEnd + 1000, inherited.json.expires_at);
  });
});
