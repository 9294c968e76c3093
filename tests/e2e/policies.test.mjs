// Key policies (docs/CONTRACT.md section 13), end to end: `allowed_ips` (IPv4, IPv6, CIDR edges,
// IPv4-mapped IPv6), `quota` (exact under concurrent triggers, replays free, Retry-After to the
// period's end, exhaustion recorded once), `disabled` (refused and resumed, also at a second
// location within LEASE_MS), `metadata` (returned, never forwarded), `PATCH` (never widening for
// a key, the admin may), and keys minting keys within their own policies.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { before, describe, it } from "node:test";

import { awayFromEdge, call, createKey, expectError, noInternals, useGateway } from "./harness.mjs";
import { startTwoLocations } from "./two-locations.mjs";

const gw = useGateway();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const JOBS = "/developers/workspaces/ws1/jobs/";
const RUN = "/developers/workspaces/ws1/jobs/j1/run/";
const from = (ip) => ({ "cf-connecting-ip": ip });
const patch = (id, body, auth) => call(gw, "PATCH", `/v1/api-keys/${id}`, { ...auth, body });
const get = async (id) => (await call(gw, "GET", `/v1/api-keys/${id}`, { admin: true })).json;
const runsAtOrigin = (g, job) => g.origin.requests.filter((r) => r.method === "POST" && r.url.includes(`/jobs/${job}/run`)).length;

/** The audit trail entries (section 12) of `keyId`, a key of `userId`, newest first. */
async function auditEntries(g, userId, keyId) {
  const r = await call(g, "GET", `/v1/audit-events?user_id=${encodeURIComponent(userId)}&limit=100`, { admin: true });
  assert.equal(r.status, 200, r.text);
  return r.json.results.filter((e) => e.key_id === keyId);
}

describe("allowed_ips", () => {
  let key;
  let id;
  before(async () => {
    const created = await createKey(gw, {
      allowed_ips: ["192.0.2.77/24", "2001:DB8:AA::1/48", "198.51.100.7"],
      permissions: ["jobs:read"],
    });
    key = created.key;
    id = created.summary.id;
    assert.deepEqual(created.summary.allowed_ips, ["192.0.2.0/24", "2001:db8:aa::/48", "198.51.100.7/32"], "canonicalised");
  });

  it("inside a block, at both edges, over IPv4, IPv6 and IPv4-mapped IPv6: served", async () => {
    for (const ip of ["192.0.2.0", "192.0.2.255", "2001:db8:aa::", "2001:db8:aa:ffff:ffff:ffff:ffff:ffff", "::ffff:192.0.2.9", "198.51.100.7"]) {
      const r = await call(gw, "GET", JOBS, { key, headers: from(ip) });
      assert.equal(r.status, 200, `${ip}: ${r.text}`);
    }
  });

  it("outside every block: 403 ip_not_allowed, nothing sent to the origin", async () => {
    const before = gw.origin.requests.length;
    for (const ip of ["192.0.1.255", "192.0.3.0", "2001:db8:ab::1", "2001:db8:a9:ffff::1", "198.51.100.8", "::ffff:192.0.3.1", "::1"]) {
      const r = await call(gw, "GET", JOBS, { key, headers: from(ip) });
      expectError(assert, r, 403, "ip_not_allowed");
      noInternals(assert, r);
    }
    assert.equal(gw.origin.requests.length, before);
  });

  it("the IP row comes before the workspace row, and /v1 routes obey it too", async () => {
    expectError(assert, await call(gw, "GET", "/developers/workspaces/ws9/jobs/", { key, headers: from("203.0.113.1") }), 403, "ip_not_allowed");
    expectError(assert, await call(gw, "GET", "/developers/workspaces/ws9/jobs/", { key, headers: from("192.0.2.1") }), 403, "workspace_forbidden");
    expectError(assert, await call(gw, "GET", "/v1/me", { key, headers: from("203.0.113.1") }), 403, "ip_not_allowed");
    const me = await call(gw, "GET", "/v1/me", { key, headers: from("192.0.2.1") });
    assert.equal(me.status, 200, me.text);
    assert.deepEqual(me.json.key.allowed_ips, ["192.0.2.0/24", "2001:db8:aa::/48", "198.51.100.7/32"]);
    assert.equal((await get(id)).disabled, false);
  });

  it("an invalid block or too many: 400 validation_error on allowed_ips, nothing stored", async () => {
    const user = `ips-${randomBytes(3).toString("hex")}`;
    const base = { user_id: user, name: "n", workspaces: ["ws1"], permissions: ["jobs:read"] };
    const tooMany = Array.from({ length: 33 }, (_, i) => `10.0.0.${i}`);
    for (const allowed_ips of [["10.0.0.0/33"], ["10.0.0.1/8", "nope"], [], "10.0.0.0/8", ["2001:db8::/129"], tooMany]) {
      const r = await call(gw, "POST", "/v1/api-keys", { admin: true, body: { ...base, allowed_ips } });
      const body = expectError(assert, r, 400, "validation_error");
      assert.ok(body.fields.allowed_ips, r.text);
    }
    const listed = await call(gw, "GET", `/v1/api-keys?user_id=${user}`, { admin: true });
    assert.deepEqual(listed.json.results, []);
  });
});

describe("quota", () => {
  /** Seconds from now to the next UTC midnight / first of next month. */
  const toMidnight = () => {
    const now = new Date();
    return (Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1) - now.getTime()) / 1000;
  };
  const toNextMonth = () => {
    const now = new Date();
    return (Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1) - now.getTime()) / 1000;
  };

  it("exact under 12 concurrent triggers: 5 of 5/day allowed, never 6; Retry-After to UTC midnight; exhaustion recorded once", async () => {
    await awayFromEdge(86_400_000, 15_000); // every trigger in one UTC day
    const { key, summary } = await createKey(gw, { quota: { runs: 5, period: "day" }, permissions: ["jobs:run"] });
    assert.deepEqual(summary.quota, { runs: 5, period: "day" });
    assert.equal(summary.quota_used, 0);
    const job = `q-${randomBytes(3).toString("hex")}`;
    const results = await Promise.all(
      Array.from({ length: 12 }, () => call(gw, "POST", `/developers/workspaces/ws1/jobs/${job}/run/`, { key, body: {} })),
    );
    const ok = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status !== 201);
    assert.equal(ok.length, 5, results.map((r) => r.status).join(","));
    for (const r of refused) {
      expectError(assert, r, 429, "quota_exceeded");
      const retry = Number(r.headers.get("retry-after"));
      assert.ok(Math.abs(retry - toMidnight()) <= 3, `Retry-After ${retry}, midnight in ${toMidnight()}`);
    }
    assert.equal(runsAtOrigin(gw, job), 5, "nothing over the quota reached the origin");
    assert.equal((await get(summary.id)).quota_used, 5);
    const entries = await auditEntries(gw, summary.user_id, summary.id);
    const exhausted = entries.filter((a) => a.action === "quota.exhausted");
    assert.equal(exhausted.length, 1, "recorded once per period");
    assert.equal(exhausted[0].actor.type, "system");
    assert.equal(exhausted[0].details.percent, 100);
    // The 4th of 5 runs crossed 80 %, once, however the 12 triggers raced.
    const threshold = entries.filter((a) => a.action === "quota.threshold");
    assert.equal(threshold.length, 1, "the threshold recorded once per period");
    assert.equal(threshold[0].details.percent, 80);
  });

  it("an idempotent replay is free: 2/month allows A, its replays, B; refuses C; still replays A", async () => {
    const { key, summary } = await createKey(gw, { quota: { runs: 2, period: "month" }, permissions: ["jobs:run"] });
    const job = `r-${randomBytes(3).toString("hex")}`;
    const path = `/developers/workspaces/ws1/jobs/${job}/run/`;
    const trigger = (idem) => call(gw, "POST", path, { key, body: {}, headers: { "idempotency-key": idem } });
    const a = await trigger("A");
    assert.equal(a.status, 201, a.text);
    for (let i = 0; i < 3; i++) {
      const replay = await trigger("A");
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get("idempotent-replayed"), "true");
      assert.equal(replay.json.execution_id, a.json.execution_id);
    }
    assert.equal((await trigger("B")).status, 201);
    const c = await trigger("C");
    expectError(assert, c, 429, "quota_exceeded");
    const retry = Number(c.headers.get("retry-after"));
    assert.ok(Math.abs(retry - toNextMonth()) <= 3, `Retry-After ${retry}, next month in ${toNextMonth()}`);
    // Without an Idempotency-Key too.
    expectError(assert, await call(gw, "POST", path, { key, body: {} }), 429, "quota_exceeded");
    assert.equal((await trigger("A")).headers.get("idempotent-replayed"), "true", "a replay after exhaustion still answers");
    assert.equal(runsAtOrigin(gw, job), 2);
    assert.equal((await get(summary.id)).quota_used, 2);
  });

  it("only job triggers count: other routes of a key with a quota are not refused by it", async () => {
    const { key, summary } = await createKey(gw, { quota: { runs: 1, period: "day" }, permissions: ["jobs:run", "jobs:read"] });
    assert.equal((await call(gw, "POST", RUN, { key, body: {} })).status, 201);
    expectError(assert, await call(gw, "POST", RUN, { key, body: {} }), 429, "quota_exceeded");
    for (let i = 0; i < 3; i++) assert.equal((await call(gw, "GET", JOBS, { key })).status, 200);
    const me = await call(gw, "GET", "/v1/me", { key });
    assert.equal(me.json.key.quota_used, 1);
    assert.equal(me.json.key.id, summary.id);
  });

  it("a trigger refused before the count (IP, workspace, permission) takes no run", async () => {
    const { key, summary } = await createKey(gw, {
      quota: { runs: 1, period: "day" },
      permissions: ["jobs:run"],
      allowed_ips: ["192.0.2.0/24"],
    });
    const inside = from("192.0.2.5");
    expectError(assert, await call(gw, "POST", RUN, { key, body: {}, headers: from("203.0.113.5") }), 403, "ip_not_allowed");
    expectError(assert, await call(gw, "POST", "/developers/workspaces/ws2/jobs/j1/run/", { key, body: {}, headers: inside }), 403, "workspace_forbidden");
    expectError(assert, await call(gw, "GET", JOBS, { key, headers: inside }), 403, "permission_denied");
    assert.equal((await get(summary.id)).quota_used, 0);
    assert.equal((await call(gw, "POST", RUN, { key, body: {}, headers: inside })).status, 201);
    expectError(assert, await call(gw, "POST", RUN, { key, body: {}, headers: inside }), 429, "quota_exceeded");
  });

  it("a bad quota: 400 validation_error on quota", async () => {
    for (const quota of [{ runs: 0, period: "day" }, { runs: 3, period: "week" }, { runs: 3 }, 5]) {
      const r = await call(gw, "POST", "/v1/api-keys", {
        admin: true,
        body: { user_id: "q", name: "n", workspaces: ["ws1"], permissions: ["jobs:run"], quota },
      });
      assert.ok(expectError(assert, r, 400, "validation_error").fields.quota, r.text);
    }
  });
});

describe("disabled", () => {
  it("created disabled: 401 disabled_api_key at once (no request ever served); enabled by PATCH: served", async () => {
    const { key, summary } = await createKey(gw, { disabled: true, permissions: ["jobs:read"] });
    assert.equal(summary.disabled, true);
    const before = gw.origin.requests.length;
    expectError(assert, await call(gw, "GET", JOBS, { key }), 401, "disabled_api_key");
    expectError(assert, await call(gw, "GET", "/v1/me", { key }), 401, "disabled_api_key");
    // Disabled comes before the IP row.
    const fenced = await createKey(gw, { disabled: true, allowed_ips: ["10.0.0.0/8"] });
    expectError(assert, await call(gw, "GET", JOBS, { key: fenced.key, headers: from("192.0.2.1") }), 401, "disabled_api_key");
    assert.equal(gw.origin.requests.length, before);
    const enabled = await patch(summary.id, { disabled: false }, { admin: true });
    assert.equal(enabled.status, 200, enabled.text);
    assert.equal(enabled.json.disabled, false);
    assert.equal((await call(gw, "GET", JOBS, { key })).status, 200);
  });

  it("disabled at A while B serves the key: refused at B within LEASE_MS; enabled at A: served at B again within LEASE_MS", async () => {
    const LEASE_MS = 1000;
    const SLACK_MS = 1500;
    const { a, b, stop } = await startTwoLocations({ label: "pol", vars: { LEASE_MS: String(LEASE_MS) } });
    try {
      const { key, summary } = await createKey(a, { permissions: ["jobs:read"] });
      // B serves the key (and holds a lease of it).
      for (let i = 0; i < 20; i++) assert.equal((await call(b, "GET", JOBS, { key })).status, 200);
      const until = async (want, ms) => {
        const deadline = Date.now() + ms;
        while (Date.now() < deadline) {
          const r = await call(b, "GET", JOBS, { key });
          if (want(r)) return { r, at: Date.now() };
          await sleep(20);
        }
        return null;
      };
      const off = await call(a, "PATCH", `/v1/api-keys/${summary.id}`, { admin: true, body: { disabled: true } });
      assert.equal(off.status, 200, off.text);
      const offAt = Date.now();
      const refused = await until((r) => r.status === 401, LEASE_MS + SLACK_MS + 2000);
      assert.ok(refused, "B kept serving a disabled key");
      expectError(assert, refused.r, 401, "disabled_api_key");
      assert.ok(refused.at - offAt <= LEASE_MS + SLACK_MS, `refused ${refused.at - offAt} ms after`);
      const on = await call(a, "PATCH", `/v1/api-keys/${summary.id}`, { admin: true, body: { disabled: false } });
      assert.equal(on.status, 200, on.text);
      const onAt = Date.now();
      const served = await until((r) => r.status === 200, LEASE_MS + SLACK_MS + 2000);
      assert.ok(served, "B never served the key again");
      assert.ok(served.at - onAt <= LEASE_MS + SLACK_MS, `served ${served.at - onAt} ms after`);
    } finally {
      await stop();
    }
  });
});

describe("metadata", () => {
  it("returned in summaries, never forwarded to the origin", async () => {
    const marker = `meta-${randomBytes(8).toString("hex")}`;
    const { key, summary } = await createKey(gw, { metadata: { team: "data", marker }, permissions: ["*"] });
    assert.deepEqual(summary.metadata, { team: "data", marker });
    assert.deepEqual((await get(summary.id)).metadata, { team: "data", marker });
    const before = gw.origin.requests.length;
    assert.equal((await call(gw, "GET", JOBS, { key })).status, 200);
    assert.equal((await call(gw, "POST", RUN, { key, body: {} })).status, 201);
    assert.equal((await call(gw, "POST", "/developers/workspaces/ws1/variables", { key, body: { a: 1 } })).status, 200);
    const seen = gw.origin.requests.slice(before);
    assert.equal(seen.length, 3);
    for (const r of seen) {
      assert.ok(!JSON.stringify(r.headers).includes(marker), "not in any header");
      assert.ok(!r.body.includes(marker), "not in the body");
      assert.ok(!r.url.includes(marker));
    }
  });

  it("over 1 KiB or not an object: 400 validation_error on metadata", async () => {
    for (const metadata of [{ a: "x".repeat(1100) }, ["a"], "a"]) {
      const r = await call(gw, "POST", "/v1/api-keys", {
        admin: true,
        body: { user_id: "m", name: "n", workspaces: ["ws1"], permissions: ["jobs:read"], metadata },
      });
      assert.ok(expectError(assert, r, 400, "validation_error").fields.metadata, r.text);
    }
  });
});

describe("PATCH /v1/api-keys/{id}", () => {
  let user;
  let manager; // a key of the user with api_keys:write
  let target;
  before(async () => {
    user = `patch-${randomBytes(3).toString("hex")}`;
    manager = await createKey(gw, { user_id: user, email: "p@example.com", permissions: ["api_keys:write", "api_keys:read", "jobs:read"], workspaces: ["*"] });
    target = await createKey(gw, {
      user_id: user,
      email: "p@example.com",
      permissions: ["jobs:read", "jobs:run"],
      allowed_ips: ["10.0.0.0/8"],
      quota: { runs: 10, period: "day" },
    });
  });
  const asKey = (body, id = target.summary.id, key = manager.key) => patch(id, body, { key });

  it("a key can narrow allowed_ips and quota, rename, and set metadata; the change takes effect", async () => {
    const r = await asKey({ name: "narrowed", allowed_ips: ["10.1.0.0/16"], quota: { runs: 3, period: "day" }, metadata: { env: "prod" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, "narrowed");
    assert.deepEqual(r.json.allowed_ips, ["10.1.0.0/16"]);
    assert.deepEqual(r.json.quota, { runs: 3, period: "day" });
    assert.deepEqual(r.json.metadata, { env: "prod" });
    expectError(assert, await call(gw, "GET", JOBS, { key: target.key, headers: from("10.2.0.1") }), 403, "ip_not_allowed");
    assert.equal((await call(gw, "GET", JOBS, { key: target.key, headers: from("10.1.255.255") })).status, 200);
    const updated = (await auditEntries(gw, user, target.summary.id)).filter((a) => a.action === "key.updated");
    assert.equal(updated.length, 1);
    assert.deepEqual(Object.keys(updated[0].details).sort(), ["allowed_ips", "metadata", "name", "quota"]);
    assert.equal(updated[0].actor.key_id, manager.summary.id);
  });

  it("a key can't widen: each widening is 403 permission_denied and changes nothing", async () => {
    const before = await get(target.summary.id);
    for (const body of [
      { allowed_ips: null },
      { allowed_ips: ["0.0.0.0/0"] },
      { allowed_ips: ["10.1.0.0/16", "192.0.2.1"] },
      { quota: null },
      { quota: { runs: 4, period: "day" } },
      { quota: { runs: 1, period: "month" } },
    ]) {
      expectError(assert, await asKey(body), 403, "permission_denied");
    }
    assert.deepEqual(await get(target.summary.id), before);
  });

  it("a key on itself: only within the same rules", async () => {
    const self = await createKey(gw, {
      user_id: user,
      email: "p@example.com",
      permissions: ["api_keys:write"],
      quota: { runs: 5, period: "month" },
    });
    const own = (body) => asKey(body, self.summary.id, self.key);
    expectError(assert, await own({ quota: { runs: 6, period: "month" } }), 403, "permission_denied");
    expectError(assert, await own({ quota: null }), 403, "permission_denied");
    const lower = await own({ quota: { runs: 4, period: "month" } });
    assert.equal(lower.status, 200, lower.text);
    assert.equal(lower.json.quota.runs, 4);
  });

  it("the admin may widen anything", async () => {
    const r = await patch(target.summary.id, { allowed_ips: null, quota: { runs: 100, period: "month" } }, { admin: true });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.allowed_ips, null);
    assert.deepEqual(r.json.quota, { runs: 100, period: "month" });
    assert.equal((await call(gw, "GET", JOBS, { key: target.key, headers: from("203.0.113.9") })).status, 200);
  });

  it("disabled by a key: that user's key may enable it; disabled by the admin: only the admin", async () => {
    const off = await asKey({ disabled: true });
    assert.equal(off.status, 200, off.text);
    assert.equal(off.json.disabled, true);
    expectError(assert, await call(gw, "GET", JOBS, { key: target.key }), 401, "disabled_api_key");
    const on = await asKey({ disabled: false });
    assert.equal(on.status, 200, on.text);
    assert.equal((await call(gw, "GET", JOBS, { key: target.key })).status, 200);

    assert.equal((await patch(target.summary.id, { disabled: true }, { admin: true })).status, 200);
    expectError(assert, await asKey({ disabled: false }), 403, "permission_denied");
    expectError(assert, await call(gw, "GET", JOBS, { key: target.key }), 401, "disabled_api_key");
    assert.equal((await patch(target.summary.id, { disabled: false }, { admin: true })).status, 200);
    assert.equal((await call(gw, "GET", JOBS, { key: target.key })).status, 200);
    const actions = (await auditEntries(gw, user, target.summary.id)).map((a) => a.action);
    assert.equal(actions.filter((a) => a === "key.disabled").length, 2);
    assert.equal(actions.filter((a) => a === "key.enabled").length, 2);
  });

  it("suspended by a key, then by the admin: the admin's suspension is recorded and no key lifts it, by PATCH or roll", async () => {
    // Finding 2 of the security review: the admin's PATCH used to answer 200 and change
    // nothing, and a sibling key could then lift the suspension.
    const k = await createKey(gw, { user_id: user, email: "p@example.com", permissions: ["jobs:read"] });
    const before = (await auditEntries(gw, user, k.summary.id)).filter((a) => a.action === "key.disabled").length;
    assert.equal((await asKey({ disabled: true }, k.summary.id)).status, 200);
    const admin = await patch(k.summary.id, { disabled: true }, { admin: true });
    assert.equal(admin.status, 200, admin.text);
    assert.equal(admin.json.disabled, true);
    const disabled = (await auditEntries(gw, user, k.summary.id)).filter((a) => a.action === "key.disabled");
    assert.equal(disabled.length, before + 2, "the admin's suspension is its own entry");
    assert.equal(disabled[0].actor.type, "admin", JSON.stringify(disabled[0]));
    expectError(assert, await asKey({ disabled: false }, k.summary.id), 403, "permission_denied");
    const roll = await call(gw, "POST", `/v1/api-keys/${k.summary.id}/roll`, { key: manager.key, body: { disabled: false } });
    expectError(assert, roll, 403, "permission_denied");
    expectError(assert, await call(gw, "GET", JOBS, { key: k.key }), 401, "disabled_api_key");
    const lifted = await patch(k.summary.id, { disabled: false }, { admin: true });
    assert.equal(lifted.status, 200, lifted.text);
    assert.equal((await call(gw, "GET", JOBS, { key: k.key })).status, 200);
  });

  it("expires_at: shortened only; extending, removing or a past time is 400; the shorter expiry holds", async () => {
    const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
    const k = await createKey(gw, { expires_at: iso(Date.now() + 3600_000), permissions: ["jobs:read"] });
    for (const expires_at of [iso(Date.now() + 7200_000), null, iso(Date.now() - 1000)]) {
      const r = await patch(k.summary.id, { expires_at }, { admin: true });
      assert.ok(expectError(assert, r, 400, "validation_error").fields.expires_at, r.text);
    }
    const soon = iso(Date.now() + 62_000);
    const r = await patch(k.summary.id, { expires_at: soon }, { admin: true });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.expires_at, soon);
    assert.equal((await call(gw, "GET", JOBS, { key: k.key })).status, 200);
    // A key without an expiry may be given one, however far (KV refuses expirations past
    // 2038: such a record is kept without one, not refused with a 503).
    const open = await createKey(gw, { permissions: ["jobs:read"] });
    const far = await patch(open.summary.id, { expires_at: "2100-01-01T00:00:00Z" }, { admin: true });
    assert.equal(far.status, 200, far.text);
    assert.equal(far.json.expires_at, "2100-01-01T00:00:00Z");
    const farther = await createKey(gw, { expires_at: "9999-12-31T23:59:59Z" });
    assert.equal(farther.summary.expires_at, "9999-12-31T23:59:59Z");
  });

  it("bad bodies: unknown field, empty body, wrong types; another user's key is not found", async () => {
    for (const body of [{ rate_limit: { requests: 1, window_seconds: 1 } }, {}, { disabled: "no" }, { name: "" }]) {
      expectError(assert, await patch(target.summary.id, body, { admin: true }), 400, "validation_error");
    }
    const stranger = await createKey(gw, { permissions: ["jobs:read"] });
    expectError(assert, await asKey({ name: "x" }, stranger.summary.id), 404, "not_found");
    // api_keys:read is not enough.
    const reader = await createKey(gw, { user_id: user, email: "p@example.com", permissions: ["api_keys:read"] });
    expectError(assert, await asKey({ name: "x" }, target.summary.id, reader.key), 403, "permission_denied");
  });

  it("a revoked key cannot be changed", async () => {
    const k = await createKey(gw, { permissions: ["jobs:read"] });
    assert.equal((await call(gw, "DELETE", `/v1/api-keys/${k.summary.id}`, { admin: true })).status, 200);
    expectError(assert, await patch(k.summary.id, { name: "again" }, { admin: true }), 400, "validation_error");
  });
});

describe("keys minting keys stay within the creator's policies", () => {
  it("allowed_ips and quota are inherited when omitted; wider ones are 403", async () => {
    const user = `mint-${randomBytes(3).toString("hex")}`;
    const parent = await createKey(gw, {
      user_id: user,
      email: "m@example.com",
      permissions: ["api_keys:write", "jobs:run"],
      allowed_ips: ["192.0.2.0/24"],
      quota: { runs: 7, period: "day" },
    });
    const mint = (extra) =>
      call(gw, "POST", "/v1/api-keys", {
        key: parent.key,
        headers: from("192.0.2.10"),
        body: { user_id: user, name: "child", workspaces: ["ws1"], permissions: ["jobs:run"], ...extra },
      });
    const child = await mint({});
    assert.equal(child.status, 201, child.text);
    assert.deepEqual(child.json.allowed_ips, ["192.0.2.0/24"]);
    assert.deepEqual(child.json.quota, { runs: 7, period: "day" });
    const narrower = await mint({ allowed_ips: ["192.0.2.128/25"], quota: { runs: 2, period: "day" } });
    assert.equal(narrower.status, 201, narrower.text);
    for (const extra of [{ allowed_ips: ["0.0.0.0/0"] }, { quota: { runs: 8, period: "day" } }, { quota: { runs: 1, period: "month" } }]) {
      expectError(assert, await mint(extra), 403, "permission_denied");
    }
    // A roll by the key copies the policies.
    const rolled = await call(gw, "POST", `/v1/api-keys/${child.json.id}/roll`, { key: parent.key, headers: from("192.0.2.10"), body: {} });
    assert.equal(rolled.status, 201, rolled.text);
    assert.deepEqual(rolled.json.allowed_ips, ["192.0.2.0/24"]);
    assert.deepEqual(rolled.json.quota, { runs: 7, period: "day" });
  });

  it("a quota bounds the key and every key it mints or rolls into: one count for the family", async () => {
    // Finding 4 of the security review: children used to start with a fresh count, and a
    // roll at 0, so a 1-run/day key got 5 runs to the origin in one day.
    await awayFromEdge(86_400_000, 30_000); // every trigger in one UTC day
    const user = `family-${randomBytes(3).toString("hex")}`;
    const parent = await createKey(gw, {
      user_id: user,
      email: "f@example.com",
      permissions: ["api_keys:write", "jobs:run"],
      quota: { runs: 2, period: "day" },
    });
    const mint = async () => {
      const r = await call(gw, "POST", "/v1/api-keys", {
        key: parent.key,
        body: { user_id: user, name: "child", workspaces: ["ws1"], permissions: ["jobs:run"] },
      });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.quota_used, 0);
      return r.json;
    };
    const [a, b] = [await mint(), await mint()];
    const job = `fam-${randomBytes(3).toString("hex")}`;
    const path = `/developers/workspaces/ws1/jobs/${job}/run/`;
    const run = (key, idem) =>
      call(gw, "POST", path, { key, body: {}, headers: idem ? { "idempotency-key": idem } : {} });
    assert.equal((await run(a.key)).status, 201);
    assert.equal((await run(parent.key, "p-1")).status, 201);
    // The family's two runs are spent: every member is refused, with or without a key.
    expectError(assert, await run(b.key), 429, "quota_exceeded");
    expectError(assert, await run(b.key, "b-1"), 429, "quota_exceeded");
    expectError(assert, await run(a.key), 429, "quota_exceeded");
    expectError(assert, await run(parent.key), 429, "quota_exceeded");
    // A child's child counts there too, and so does a roll (never from 0).
    const grandchild = await call(gw, "POST", "/v1/api-keys", {
      key: a.key,
      body: { user_id: user, name: "grandchild", workspaces: ["ws1"], permissions: ["jobs:run"] },
    });
    assert.equal(grandchild.status, 403, "a child without api_keys:write mints nothing");
    const rolledChild = await call(gw, "POST", `/v1/api-keys/${b.id}/roll`, { key: parent.key, body: {} });
    assert.equal(rolledChild.status, 201, rolledChild.text);
    expectError(assert, await run(rolledChild.json.key), 429, "quota_exceeded");
    const rolled = await call(gw, "POST", `/v1/api-keys/${parent.summary.id}/roll`, { admin: true, body: {} });
    assert.equal(rolled.status, 201, rolled.text);
    assert.equal(rolled.json.quota_used, 2, "the roll goes on counting");
    expectError(assert, await run(rolled.json.key), 429, "quota_exceeded");
    assert.equal(runsAtOrigin(gw, job), 2, "two runs reached the origin, as the quota says");
    assert.equal((await get(b.id)).quota_used, 2, "each member shows the family's count");
    // A refused idempotent attempt opens no record: the same Idempotency-Key is refused
    // again, not answered 409 as in flight.
    expectError(assert, await run(a.key, "a-1"), 429, "quota_exceeded");
    expectError(assert, await run(a.key, "a-1"), 429, "quota_exceeded");
  });
});

describe("a roll may set the new key's policies", () => {
  const roll = (id, body, auth) => call(gw, "POST", `/v1/api-keys/${id}/roll`, { ...auth, body });

  it("the admin sets allowed_ips, quota, metadata and disabled on the new key; the old key keeps its own", async () => {
    const old = await createKey(gw, { permissions: ["jobs:read", "jobs:run"], allowed_ips: ["10.0.0.0/8"], metadata: { team: "a" } });
    const r = await roll(old.summary.id, {
      grace_seconds: 300,
      allowed_ips: ["198.51.100.0/24"],
      quota: { runs: 4, period: "month" },
      metadata: { team: "b" },
    }, { admin: true });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json.allowed_ips, ["198.51.100.0/24"]);
    assert.deepEqual(r.json.quota, { runs: 4, period: "month" });
    assert.deepEqual(r.json.metadata, { team: "b" });
    assert.equal(r.json.disabled, false);
    // The new key obeys its own list; the old one, in its grace period, still its own.
    expectError(assert, await call(gw, "GET", JOBS, { key: r.json.key, headers: from("10.1.2.3") }), 403, "ip_not_allowed");
    assert.equal((await call(gw, "GET", JOBS, { key: r.json.key, headers: from("198.51.100.7") })).status, 200);
    assert.equal((await call(gw, "GET", JOBS, { key: old.key, headers: from("10.1.2.3") })).status, 200);
    assert.deepEqual((await get(old.summary.id)).allowed_ips, ["10.0.0.0/8"]);
    // null removes a policy; the roll's audit entry names what it set.
    const again = await roll(r.json.id, { allowed_ips: null, disabled: true }, { admin: true });
    assert.equal(again.status, 201, again.text);
    assert.equal(again.json.allowed_ips, null);
    assert.equal(again.json.disabled, true);
    expectError(assert, await call(gw, "GET", JOBS, { key: again.json.key }), 401, "disabled_api_key");
    const rolled = (await auditEntries(gw, old.summary.user_id, r.json.id)).find((a) => a.action === "key.rolled");
    assert.deepEqual(rolled.details.changed, { allowed_ips: null, disabled: true });
  });

  it("a key may only narrow them: a widening roll is 403 and changes nothing; a narrowing one holds", async () => {
    const user = `roll-${randomBytes(3).toString("hex")}`;
    const manager = await createKey(gw, { user_id: user, email: "r@example.com", permissions: ["api_keys:write", "api_keys:read", "jobs:run"] });
    const target = await createKey(gw, {
      user_id: user,
      email: "r@example.com",
      permissions: ["jobs:run"],
      allowed_ips: ["10.0.0.0/8"],
      quota: { runs: 10, period: "day" },
    });
    const asKey = (body) => roll(target.summary.id, body, { key: manager.key });
    const before = (await call(gw, "GET", `/v1/api-keys?user_id=${user}`, { admin: true })).json.results.length;
    for (const body of [{ allowed_ips: ["0.0.0.0/0"] }, { allowed_ips: null }, { quota: { runs: 11, period: "day" } }, { quota: null }]) {
      expectError(assert, await asKey(body), 403, "permission_denied");
    }
    for (const body of [{ name: "renamed" }, { expires_at: "2099-01-01T00:00:00Z" }, { quota: { runs: 0, period: "day" } }]) {
      expectError(assert, await asKey(body), 400, "validation_error");
    }
    const after = (await call(gw, "GET", `/v1/api-keys?user_id=${user}`, { admin: true })).json.results;
    assert.equal(after.length, before, "no key was made by a refused roll");
    assert.ok(after.every((k) => k.revoked_at === null), "and none revoked");
    assert.equal((await call(gw, "POST", RUN, { key: target.key, headers: from("10.0.0.1"), body: {} })).status, 201);
    const narrowed = await asKey({ allowed_ips: ["10.9.0.0/16"], quota: { runs: 2, period: "day" } });
    assert.equal(narrowed.status, 201, narrowed.text);
    assert.deepEqual(narrowed.json.allowed_ips, ["10.9.0.0/16"]);
    assert.deepEqual(narrowed.json.quota, { runs: 2, period: "day" });
    expectError(assert, await call(gw, "POST", RUN, { key: narrowed.json.key, headers: from("10.0.0.1"), body: {} }), 403, "ip_not_allowed");
    expectError(assert, await call(gw, "POST", RUN, { key: target.key, headers: from("10.0.0.1"), body: {} }), 401, "revoked_api_key");
  });

  it("a key cannot lift the admin's suspension by rolling: 403; a plain roll keeps the new key suspended, the admin's", async () => {
    const user = `rolloff-${randomBytes(3).toString("hex")}`;
    const manager = await createKey(gw, { user_id: user, email: "o@example.com", permissions: ["api_keys:write", "api_keys:read", "jobs:read"] });
    const target = await createKey(gw, { user_id: user, email: "o@example.com", permissions: ["jobs:read"] });
    assert.equal((await patch(target.summary.id, { disabled: true }, { admin: true })).status, 200);
    expectError(assert, await roll(target.summary.id, { disabled: false }, { key: manager.key }), 403, "permission_denied");
    expectError(assert, await call(gw, "GET", JOBS, { key: target.key }), 401, "disabled_api_key");
    const plain = await roll(target.summary.id, {}, { key: manager.key });
    assert.equal(plain.status, 201, plain.text);
    assert.equal(plain.json.disabled, true);
    expectError(assert, await call(gw, "GET", JOBS, { key: plain.json.key }), 401, "disabled_api_key");
    expectError(assert, await patch(plain.json.id, { disabled: false }, { key: manager.key }), 403, "permission_denied");
    // The admin's roll that resumes it is also the new key's key.enabled.
    const resumed = await roll(plain.json.id, { disabled: false }, { admin: true });
    assert.equal(resumed.status, 201, resumed.text);
    assert.equal((await call(gw, "GET", JOBS, { key: resumed.json.key })).status, 200);
    const actions = (await auditEntries(gw, user, resumed.json.id)).map((a) => a.action);
    assert.ok(actions.includes("key.enabled"), JSON.stringify(actions));
  });
});
