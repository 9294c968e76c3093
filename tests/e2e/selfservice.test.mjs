// Keys that create keys, and the bounds on what one user can hold (docs/CONTRACT.md section 4):
// a key may not mint a key with another e-mail or a higher rate limit than its own, a default
// above its own is capped, a user holds at most MAX_KEYS_PER_USER live keys, a non-ASCII
// e-mail is refused at creation, and a roll whose object step fails changes nothing.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";

import { awayFromEdge, call, createKey, expectError, useGateway, configWithout } from "./harness.mjs";

const MAX_KEYS = 3;
const persist = mkdtempSync(join(tmpdir(), "keygate-selfservice-"));
const gw = useGateway({ persist, vars: { MAX_KEYS_PER_USER: String(MAX_KEYS) } });

const user = (label) => `${label}-${randomBytes(4).toString("hex")}`;

async function listUser(userId) {
  const r = await call(gw, "GET", `/v1/api-keys?user_id=${userId}`, { admin: true });
  assert.equal(r.status, 200);
  return r.json.results;
}

describe("a key minting keys cannot widen them", () => {
  let alice;
  let parent;
  before(async () => {
    alice = user("alice");
    parent = await createKey(gw, {
      user_id: alice,
      email: "alice@example.com",
      workspaces: ["ws1"],
      permissions: ["api_keys:write", "jobs:read"],
      rate_limit: { requests: 10, window_seconds: 60 },
    });
  });
  const child = (extra) => ({
    user_id: alice,
    name: "child",
    workspaces: ["ws1"],
    permissions: ["jobs:read"],
    ...extra,
  });

  it("another e-mail is 400 on email, nothing stored", async () => {
    const r = await call(gw, "POST", "/v1/api-keys", {
      key: parent.key,
      body: child({ email: "cfo@corp.example" }),
    });
    const body = expectError(assert, r, 400, "validation_error");
    assert.ok(body.fields.email, JSON.stringify(body.fields));
    assert.equal((await listUser(alice)).length, 1);
  });

  it("a higher rate or a larger burst than its own is 403, nothing stored", async () => {
    for (const rate_limit of [
      { requests: 1000000, window_seconds: 1 },
      { requests: 10, window_seconds: 30 },
      { requests: 20, window_seconds: 3600 },
    ]) {
      const r = await call(gw, "POST", "/v1/api-keys", { key: parent.key, body: child({ rate_limit }) });
      expectError(assert, r, 403, "permission_denied");
    }
    assert.equal((await listUser(alice)).length, 1);
  });

  it("omitted, the e-mail is the creator's and the default rate is capped to the creator's", async () => {
    const r = await call(gw, "POST", "/v1/api-keys", { key: parent.key, body: child({}) });
    assert.equal(r.status, 201, r.text);
    gw.issuedKeys.push(r.json.key);
    assert.equal(r.json.email, "alice@example.com");
    // DEFAULT_RATE_LIMIT is 600/60, above the creator's 10/60.
    assert.deepEqual(r.json.rate_limit, { requests: 10, window_seconds: 60 });
    // The origin records the creator's e-mail as who triggered a run.
    const fwd = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key: r.json.key });
    assert.equal(fwd.status, 200);
    assert.equal(gw.origin.requests.at(-1).headers["x-keygate-user-email"], "alice@example.com");
  });

  it("a lower rate limit and the same e-mail are accepted", async () => {
    const r = await call(gw, "POST", "/v1/api-keys", {
      key: parent.key,
      body: child({ email: "alice@example.com", rate_limit: { requests: 5, window_seconds: 60 } }),
    });
    assert.equal(r.status, 201, r.text);
    gw.issuedKeys.push(r.json.key);
    assert.deepEqual(r.json.rate_limit, { requests: 5, window_seconds: 60 });
  });
});

describe("MAX_KEYS_PER_USER", () => {
  it(`a user holds at most ${MAX_KEYS} live keys: one more is 409 key_limit_reached, nothing stored; revoking frees a place`, async () => {
    const bob = user("bob");
    const made = [];
    for (let i = 0; i < MAX_KEYS; i++) made.push(await createKey(gw, { user_id: bob }));
    const body = { user_id: bob, name: "one too many", workspaces: ["ws1"], permissions: ["jobs:read"] };
    const r = await call(gw, "POST", "/v1/api-keys", { admin: true, body });
    expectError(assert, r, 409, "key_limit_reached");
    assert.equal((await listUser(bob)).length, MAX_KEYS);
    const revoked = await call(gw, "DELETE", `/v1/api-keys/${made[0].summary.id}`, { admin: true });
    assert.equal(revoked.status, 200);
    const again = await call(gw, "POST", "/v1/api-keys", { admin: true, body });
    assert.equal(again.status, 201, again.text);
    gw.issuedKeys.push(again.json.key);
  });

  it("30 concurrent creates for one user: exactly the cap is created, the rest 409", async () => {
    // Finding 14 of the security review: the KV listing let one more through under load; the
    // user's object now counts every create, one at a time.
    const erin = user("erin");
    const body = { user_id: erin, name: "race", workspaces: ["ws1"], permissions: ["jobs:read"] };
    const results = await Promise.all(
      Array.from({ length: 30 }, () => call(gw, "POST", "/v1/api-keys", { admin: true, body })),
    );
    const made = results.filter((r) => r.status === 201);
    for (const r of results.filter((r) => r.status !== 201)) expectError(assert, r, 409, "key_limit_reached");
    assert.equal(made.length, MAX_KEYS, results.map((r) => r.status).join(","));
    assert.equal((await listUser(erin)).length, MAX_KEYS);
  });

  it("a key minting for its own user is held to the same cap", async () => {
    const carol = user("carol");
    const parent = await createKey(gw, { user_id: carol, permissions: ["api_keys:write", "jobs:read"] });
    for (let i = 1; i < MAX_KEYS; i++) await createKey(gw, { user_id: carol });
    const r = await call(gw, "POST", "/v1/api-keys", {
      key: parent.key,
      body: { user_id: carol, name: "x", workspaces: ["ws1"], permissions: ["jobs:read"] },
    });
    expectError(assert, r, 409, "key_limit_reached");
  });
});

describe("rolls and the cap", () => {
  it(`repeated rolls with grace cannot mint keys without bound: at most ${MAX_KEYS} + 1 live keys`, async () => {
    const frank = user("frank");
    const { summary } = await createKey(gw, { user_id: frank });
    const statuses = [];
    for (let i = 0; i < MAX_KEYS + 1; i++) {
      // The same old key, still live during its grace, rolled again and again.
      const r = await call(gw, "POST", `/v1/api-keys/${summary.id}/roll`, { admin: true, body: { grace_seconds: 3600 } });
      if (r.json?.key) gw.issuedKeys.push(r.json.key);
      statuses.push(r.status);
      if (r.status !== 201) expectError(assert, r, 409, "key_limit_reached");
    }
    assert.deepEqual(statuses, [201, 201, 201, 409]);
    assert.equal((await listUser(frank)).filter((k) => k.revoked_at === null).length, MAX_KEYS + 1);
  });
});

describe("changes per user and day", () => {
  /** MAX_CHANGES_PER_USER_PER_DAY in src/core/notify/auditlog.rs. */
  const MAX_CHANGES = 1000;

  it(`a user's keys make at most ${MAX_CHANGES} changes a UTC day: then 429 too_many_changes, nothing changed; the admin is not held`, async () => {
    // Finding 12 of the security review: every change is kept in the user's trail, which had
    // no bound a key could not pass.
    await awayFromEdge(86_400_000, 120_000); // every change in one UTC day
    const gail = user("gail");
    const manager = await createKey(gw, { user_id: gail, permissions: ["api_keys:write", "jobs:read"], rate_limit: { requests: 100_000, window_seconds: 60 } });
    const target = await createKey(gw, { user_id: gail, permissions: ["jobs:read"] });
    const rename = (name) => call(gw, "PATCH", `/v1/api-keys/${target.summary.id}`, { key: manager.key, body: { name } });
    let next = 0;
    const statuses = [];
    const worker = async () => {
      while (next < MAX_CHANGES) {
        next += 1;
        statuses.push((await rename(`n${next}`)).status);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const counts = {};
    for (const s of statuses) counts[s] = (counts[s] ?? 0) + 1;
    assert.deepEqual(counts, { 200: MAX_CHANGES });
    const over = await rename("one too many");
    const body = expectError(assert, over, 429, "too_many_changes");
    const tomorrow = Math.ceil((Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1) - Date.now()) / 1000);
    assert.ok(Math.abs(Number(over.headers.get("retry-after")) - tomorrow) <= 3, over.headers.get("retry-after"));
    assert.ok(body.detail.length > 0);
    const now = await call(gw, "GET", `/v1/api-keys/${target.summary.id}`, { admin: true });
    assert.notEqual(now.json.name, "one too many", "nothing changed");
    // Refused requests do not count, so they cannot have spent it: a bad body is still a 400.
    expectError(assert, await call(gw, "PATCH", `/v1/api-keys/${target.summary.id}`, { key: manager.key, body: { name: "" } }), 400, "validation_error");
    // The admin still changes the user's keys, and the user can still revoke them (a leaked
    // key must never keep its user from revoking it).
    const admin = await call(gw, "PATCH", `/v1/api-keys/${target.summary.id}`, { admin: true, body: { name: "by admin" } });
    assert.equal(admin.status, 200, admin.text);
    const revoked = await call(gw, "DELETE", `/v1/api-keys/${target.summary.id}`, { key: manager.key });
    assert.equal(revoked.status, 200, revoked.text);
  });
});

describe("e-mail addresses", () => {
  it("a non-ASCII e-mail is refused at creation (it could not travel in a header), nothing stored", async () => {
    const dave = user("dave");
    for (const email of ["josé@exämple.com", "a b@example.com"]) {
      const r = await call(gw, "POST", "/v1/api-keys", {
        admin: true,
        body: { user_id: dave, email, name: "n", workspaces: ["ws1"], permissions: ["jobs:read"] },
      });
      const body = expectError(assert, r, 400, "validation_error");
      assert.ok(body.fields.email, email);
    }
    assert.equal((await listUser(dave)).length, 0);
  });
});

describe("a roll whose object step fails", () => {
  // The same KV, a deployment whose Durable Object binding is missing: every object call fails.
  // Options in a function: they need the file's gateway, started by then.
  const broken = useGateway(() => ({
    config: configWithout({ bindings: ["KEY_STATE"], migrations: ["KeyStateObject"] }),
    persist,
    secrets: { ADMIN_TOKEN: gw.adminToken, ORIGIN_SIGNING_SECRET: gw.signingSecret },
  }));

  it("503, the old key unchanged and still rollable, no new key; the retry works", async () => {
    const erin = user("erin");
    const old = await createKey(gw, { user_id: erin });
    broken.issuedKeys.push(old.key);
    const failed = await call(broken, "POST", `/v1/api-keys/${old.summary.id}/roll`, { admin: true, body: {} });
    expectError(assert, failed, 503, "unavailable");
    assert.equal(failed.json.key, undefined);
    // Nothing changed: one key, not revoked, still working.
    const keys = await listUser(erin);
    assert.equal(keys.length, 1);
    assert.equal(keys[0].revoked_at, null);
    assert.equal((await call(gw, "GET", "/v1/me", { key: old.key })).status, 200);
    // The retry at a healthy location works, and only then is the old key refused.
    const retry = await call(gw, "POST", `/v1/api-keys/${old.summary.id}/roll`, { admin: true, body: {} });
    assert.equal(retry.status, 201, retry.text);
    gw.issuedKeys.push(retry.json.key);
    expectError(assert, await call(gw, "GET", "/v1/me", { key: old.key }), 401, "revoked_api_key");
    assert.equal((await call(gw, "GET", "/v1/me", { key: retry.json.key })).status, 200);
  });
});
