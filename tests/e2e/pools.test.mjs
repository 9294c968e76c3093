// Shared limits, pools (docs/CONTRACT.md section 17), through two locations (two wrangler dev
// gateways sharing KV and Durable Objects): the management routes and their audit entries, a
// user's pool shared by several keys, a workspace's pool shared by several users, the lease
// bound for a large pool, a pool's exact run quota under concurrent triggers of every kind
// (plain, a key with its own quota, idempotent), and a change or deletion reaching the other
// location within LEASE_MS plus a round trip, also where it had cached a refusal.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { call, createKey, expectError } from "./harness.mjs";
import { useTwoLocations } from "./two-locations.mjs";

const LEASE_MS = 1000;
/** A round trip to the object and the scheduling slack of two workerd processes on 2 cores. */
const SLACK_MS = 1500;

const { a, b } = useTwoLocations({ label: "pool", vars: { LEASE_MS: String(LEASE_MS) } });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const uid = (label) => `${label}-${randomBytes(4).toString("hex")}`;
const BIG = { requests: 100000, window_seconds: 60 };

const putPool = (gw, kind, id, body) => call(gw, "PUT", `/v1/pools/${kind}/${id}`, { admin: true, body });

/** `n` calls of `path` spread over `keys` (round robin), `concurrency` at a time; statuses and bodies. */
async function hammer(gw, keys, n, concurrency, path, method = "GET", extra = () => ({})) {
  const out = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const r = await call(gw, method, path, { key: keys[i % keys.length], ...extra(i) });
      out.push(r);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

const count = (rs, status, code) => rs.filter((r) => r.status === status && (!code || r.json?.code === code)).length;

describe("pool management (admin only)", () => {
  it("PUT creates (201) then replaces (200, created_at kept); GET shows what is left; DELETE is 204 then 404", async () => {
    const user = uid("mgmt");
    const created = await putPool(a, "users", user, { rate_limit: { requests: 50, window_seconds: 60 } });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(
      { kind: created.json.kind, id: created.json.id, rate_limit: created.json.rate_limit, quota: created.json.quota },
      { kind: "user", id: user, rate_limit: { requests: 50, window_seconds: 60 }, quota: null },
    );
    const replaced = await putPool(a, "users", user, { quota: { runs: 7, period: "month" } });
    assert.equal(replaced.status, 200, replaced.text);
    assert.equal(replaced.json.created_at, created.json.created_at);
    assert.equal(replaced.json.rate_limit, null, "a PUT replaces the whole definition");
    const got = await call(b, "GET", `/v1/pools/users/${user}`, { admin: true });
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(got.json.quota, { runs: 7, period: "month" });
    assert.equal(got.json.usage.quota.used, 0);
    assert.equal(got.json.usage.quota.remaining, 7);
    assert.match(got.json.usage.quota.period_end, /^\d{4}-\d{2}-01T00:00:00Z$/);
    assert.equal(got.json.usage.rate_limit, null);
    assert.equal(got.json.in_force, true, "its object holds its limits");
    const del = await call(a, "DELETE", `/v1/pools/users/${user}`, { admin: true });
    assert.equal(del.status, 204);
    expectError(assert, await call(b, "GET", `/v1/pools/users/${user}`, { admin: true }), 404, "not_found");
    expectError(assert, await call(a, "DELETE", `/v1/pools/users/${user}`, { admin: true }), 404, "not_found");
  });

  it("bad bodies and ids are 400 and change nothing; other methods 405; keys 403; no token 401", async () => {
    const ws = uid("ws");
    for (const body of [{}, { rate_limit: null }, { rate_limit: { requests: 0, window_seconds: 60 } }, { quota: { runs: 3, period: "week" } }, { quota: { runs: 3, period: "day" }, owner: "x" }]) {
      const r = await putPool(a, "workspaces", ws, body);
      const e = expectError(assert, r, 400, "validation_error");
      assert.ok(Object.keys(e.fields).length >= 1, r.text);
    }
    const badId = expectError(assert, await putPool(a, "workspaces", "a.b", { quota: { runs: 1, period: "day" } }), 400, "validation_error");
    assert.ok(badId.fields.id, JSON.stringify(badId));
    expectError(assert, await call(a, "GET", `/v1/pools/workspaces/${ws}`, { admin: true }), 404, "not_found");
    expectError(assert, await call(a, "GET", `/v1/pools/teams/${ws}`, { admin: true }), 404, "not_found");
    const post = await call(a, "POST", `/v1/pools/workspaces/${ws}`, { admin: true, body: {} });
    expectError(assert, post, 405, "method_not_allowed");
    assert.equal(post.headers.get("allow"), "GET, HEAD, PUT, DELETE");
    expectError(assert, await call(a, "DELETE", "/v1/pools", { admin: true }), 405, "method_not_allowed");
    const { key } = await createKey(a, { permissions: ["*"] });
    expectError(assert, await putPool(a, "workspaces", ws, { quota: { runs: 1, period: "day" } }).then(() => call(a, "GET", `/v1/pools/workspaces/${ws}`, { key })), 403, "permission_denied");
    expectError(assert, await call(a, "GET", "/v1/pools", {}), 401, "missing_api_key");
  });

  it("GET /v1/pools pages through users' and workspaces' pools", async () => {
    const ids = [uid("list"), uid("list"), uid("list")];
    await putPool(a, "users", ids[0], { rate_limit: BIG });
    await putPool(a, "users", ids[1], { rate_limit: BIG });
    await putPool(a, "workspaces", ids[2], { quota: { runs: 5, period: "day" } });
    const seen = [];
    let cursor = "";
    for (let page = 0; page < 50; page++) {
      const r = await call(a, "GET", `/v1/pools?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { admin: true });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.results.length <= 2);
      seen.push(...r.json.results.map((p) => `${p.kind}:${p.id}`));
      if (!r.json.next_cursor) break;
      cursor = r.json.next_cursor;
    }
    for (const want of [`user:${ids[0]}`, `user:${ids[1]}`, `workspace:${ids[2]}`]) assert.ok(seen.includes(want), want);
    expectError(assert, await call(a, "GET", "/v1/pools?limit=0", { admin: true }), 400, "validation_error");
  });

  it("changes are audited: a user's pool in the user's trail, a workspace's in the workspace's", async () => {
    const { key, summary } = await createKey(a);
    const user = summary.user_id;
    await putPool(a, "users", user, { rate_limit: BIG });
    await putPool(a, "users", user, { rate_limit: { requests: 9, window_seconds: 60 } });
    await call(a, "DELETE", `/v1/pools/users/${user}`, { admin: true });
    // The audit trails are per location in this harness (only the key objects are shared).
    const trail = await call(a, "GET", `/v1/audit-events?user_id=${user}`, { admin: true });
    const actions = trail.json.results.map((e) => e.action).filter((x) => x.startsWith("pool."));
    assert.deepEqual(actions, ["pool.deleted", "pool.updated", "pool.created"]);
    const updated = trail.json.results.find((e) => e.action === "pool.updated");
    assert.deepEqual(updated.details.rate_limit, { requests: 9, window_seconds: 60 });
    assert.deepEqual(updated.details.pool, { kind: "user", id: user });
    assert.match(JSON.stringify(updated.actor), /admin/);
    const ws = uid("wstrail");
    await putPool(a, "workspaces", ws, { quota: { runs: 2, period: "day" } });
    const wsTrail = await call(a, "GET", `/v1/audit-events?workspace_id=${ws}`, { admin: true });
    assert.equal(wsTrail.status, 200, wsTrail.text);
    assert.deepEqual(wsTrail.json.results.map((e) => e.action), ["pool.created"]);
    assert.equal(wsTrail.json.results[0].workspace_id, ws);
    assert.equal(wsTrail.json.results[0].user_id, null);
    expectError(assert, await call(a, "GET", `/v1/audit-events?workspace_id=${ws}`, { key }), 403, "permission_denied");
    expectError(assert, await call(a, "GET", `/v1/audit-events?workspace_id=${ws}&user_id=${user}`, { admin: true }), 400, "validation_error");
  });
});

describe("a user's pool: every key of the user counts together", () => {
  it("5/60 shared by three keys, hammered at both locations: exactly 5 allowed, the rest 429 pool_rate_limited", async () => {
    const user = uid("pooled");
    const keys = [];
    for (let i = 0; i < 3; i++) keys.push((await createKey(a, { user_id: user, rate_limit: BIG })).key);
    const { key: other } = await createKey(a, { rate_limit: BIG });
    assert.equal((await putPool(a, "users", user, { rate_limit: { requests: 5, window_seconds: 60 } })).status, 201);
    await sleep(LEASE_MS + 100); // B's directory learns the new pool within LEASE_MS
    const path = "/developers/workspaces/ws1/jobs/";
    const [x, y] = await Promise.all([hammer(a, keys, 15, 4, path), hammer(b, keys, 15, 4, path)]);
    const all = [...x, ...y];
    assert.equal(count(all, 200), 5, all.map((r) => r.status).join(","));
    assert.equal(count(all, 429, "pool_rate_limited"), 25);
    const refused = all.find((r) => r.status === 429);
    expectError(assert, refused, 429, "pool_rate_limited");
    assert.equal(refused.headers.get("ratelimit-limit"), "5", "the headers show the pool, the tightest");
    assert.equal(refused.headers.get("ratelimit-remaining"), "0");
    const allowed = all.find((r) => r.status === 200);
    assert.ok(Number(allowed.headers.get("ratelimit-remaining")) <= 4, "tightest remaining shown");
    // Another user's key is not in the pool; nor are management routes.
    assert.equal((await call(a, "GET", path, { key: other })).status, 200);
    assert.equal((await call(b, "GET", "/v1/me", { key: keys[0] })).status, 200, "only forwarded calls count");
    // One rate_limit.exceeded for the pool per location (one per hour everywhere on Cloudflare,
    // where every location records into the user's one trail), however many refusals.
    let exceeded = 0;
    for (const gw of [a, b]) {
      const t = await call(gw, "GET", `/v1/audit-events?user_id=${user}`, { admin: true });
      const mine = t.json.results.filter((e) => e.action === "rate_limit.exceeded");
      assert.ok(mine.length <= 1, JSON.stringify(mine));
      for (const e of mine) assert.deepEqual(e.details.pool, { kind: "user", id: user });
      exceeded += mine.length;
    }
    assert.ok(exceeded >= 1, "the pool's refusals were noticed");
    // Its usage series counts what it allowed and refused.
    const usage = await call(a, "GET", `/v1/pools/users/${user}/usage`, { admin: true });
    assert.equal(usage.status, 200, usage.text);
    assert.deepEqual(usage.json.pool, { kind: "user", id: user });
    const hour = usage.json.hourly.at(-1);
    assert.ok(hour.allowed >= 5, JSON.stringify(hour));
    assert.ok(hour.refused >= 1, JSON.stringify(hour));
  });
});

describe("a workspace's pool: every user's calls naming it count together", () => {
  it("20/60 hammered through both locations by keys of several users: exactly 20 allowed", async () => {
    const ws = uid("wsp");
    const keys = [];
    for (let i = 0; i < 4; i++) keys.push((await createKey(a, { workspaces: [ws, "ws1"], rate_limit: BIG })).key);
    assert.equal((await putPool(b, "workspaces", ws, { rate_limit: { requests: 20, window_seconds: 60 } })).status, 201);
    await sleep(LEASE_MS + 100);
    const path = `/developers/workspaces/${ws}/variables/`;
    const [x, y] = await Promise.all([hammer(a, keys, 30, 6, path), hammer(b, keys, 30, 6, path)]);
    const all = [...x, ...y];
    assert.equal(count(all, 200), 20, all.map((r) => r.status).join(","));
    assert.equal(count(all, 429, "pool_rate_limited"), 40);
    // A call naming another workspace is not in that pool.
    assert.equal((await call(a, "GET", "/developers/workspaces/ws1/variables/", { key: keys[0] })).status, 200);
  });

  it("600/60 (10/s, leased): never more than its limit plus rate x LEASE_MS, and most of it", async () => {
    const ws = uid("wsbig");
    const keys = [];
    for (let i = 0; i < 3; i++) keys.push((await createKey(a, { workspaces: [ws], rate_limit: BIG })).key);
    await putPool(a, "workspaces", ws, { rate_limit: { requests: 600, window_seconds: 60 } });
    await sleep(LEASE_MS + 100);
    const path = `/developers/workspaces/${ws}/jobs/`;
    const started = Date.now();
    const [x, y] = await Promise.all([hammer(a, keys, 500, 8, path), hammer(b, keys, 500, 8, path)]);
    const elapsed = Date.now() - started;
    const all = [...x, ...y];
    const allowed = count(all, 200);
    const bound = 600 + Math.ceil(((elapsed + LEASE_MS) * 600) / 60_000);
    assert.ok(allowed <= bound, `${allowed} allowed in ${elapsed} ms; bound ${bound}`);
    assert.ok(allowed >= 300, `${allowed} allowed: leases should not waste most of the limit`);
    assert.ok(all.every((r) => r.status === 200 || r.status === 429));
    console.log(`# 600/60 pool: ${allowed} of 1000 allowed in ${elapsed} ms (bound ${bound})`);
  });
});

describe("a pool's run quota is exact", () => {
  it("3 runs a day for a workspace, triggered concurrently at both locations by keys of every kind", async () => {
    const ws = uid("wsq");
    const plain = (await createKey(a, { workspaces: [ws], rate_limit: BIG })).key;
    const withQuota = await createKey(a, { workspaces: [ws], rate_limit: BIG, quota: { runs: 50, period: "day" } });
    const idem = (await createKey(a, { workspaces: [ws], rate_limit: BIG })).key;
    await putPool(a, "workspaces", ws, { quota: { runs: 3, period: "day" } });
    await sleep(LEASE_MS + 100);
    const path = `/developers/workspaces/${ws}/jobs/nightly/run`;
    const keys = [plain, withQuota.key, idem];
    const extra = (i) => (i % 3 === 2 ? { headers: { "idempotency-key": `run-${i}-${randomBytes(3).toString("hex")}` } } : {});
    const [x, y] = await Promise.all([
      hammer(a, keys, 12, 6, path, "POST", extra),
      hammer(b, keys, 12, 6, path, "POST", extra),
    ]);
    const all = [...x, ...y];
    const ran = all.filter((r) => r.status >= 200 && r.status < 300).length;
    assert.equal(ran, 3, all.map((r) => `${r.status}:${r.json?.code ?? ""}`).join(","));
    assert.equal(count(all, 429, "pool_quota_exceeded"), 21);
    const reached = [...a.origin.requests, ...b.origin.requests].filter((r) => r.url.includes(`/${ws}/jobs/nightly/run`)).length;
    assert.equal(reached, 3, "the origin saw exactly the runs the pool allowed");
    const refused = all.find((r) => r.status === 429);
    const retry = Number(refused.headers.get("retry-after"));
    assert.ok(retry >= 1 && retry <= 86_400, `Retry-After ${retry} within the day`);
    // The key with its own quota: only its allowed runs count; a pool's refusal gave its run back.
    // The key with its own quota: a pool's refusal gave its run back, so it counts at most the
    // runs that went through (3 in all, of every key), not its 8 attempts.
    const got = await call(a, "GET", `/v1/api-keys/${withQuota.summary.id}`, { admin: true });
    assert.ok(got.json.quota_used <= ran, `quota_used ${got.json.quota_used}: refused runs were given back`);
    const pool = await call(b, "GET", `/v1/pools/workspaces/${ws}`, { admin: true });
    assert.equal(pool.json.usage.quota.used, 3);
    assert.equal(pool.json.usage.quota.remaining, 0);
    // The run that used the last (and reached 80 %: ceil(0.8 x 3) = 3) left both notices, in the
    // workspace's trail of the location that ran it (trails are per location in this harness).
    const notices = [];
    for (const gw of [a, b]) {
      const t = await call(gw, "GET", `/v1/audit-events?workspace_id=${ws}`, { admin: true });
      notices.push(...t.json.results.filter((e) => e.action.startsWith("quota.")));
    }
    assert.deepEqual(notices.map((e) => e.action).sort(), ["quota.exhausted", "quota.threshold"]);
    for (const e of notices) {
      assert.deepEqual(e.details.pool, { kind: "workspace", id: ws });
      assert.equal(e.details.percent, e.action === "quota.exhausted" ? 100 : 80);
      assert.equal(e.actor.type, "system");
      assert.equal(e.key_id, null);
    }
  });

  it("an idempotent replay is free against the pool's quota; a refused attempt opens no record", async () => {
    const ws = uid("wsr");
    const { key } = await createKey(a, { workspaces: [ws], rate_limit: BIG });
    await putPool(a, "workspaces", ws, { quota: { runs: 1, period: "day" } });
    const path = `/developers/workspaces/${ws}/jobs/j/run`;
    const headers = { "idempotency-key": "same-run", "content-type": "application/json" };
    const first = await call(a, "POST", path, { key, headers, body: "{}" });
    assert.equal(first.status, 201, first.text);
    const replay = await call(b, "POST", path, { key, headers, body: "{}" });
    assert.equal(replay.status, 201, replay.text);
    assert.equal(replay.headers.get("idempotent-replayed"), "true");
    const other = { ...headers, "idempotency-key": "another-run" };
    expectError(assert, await call(a, "POST", path, { key, headers: other, body: "{}" }), 429, "pool_quota_exceeded");
    // Raised: the refused Idempotency-Key was not kept, so it runs now.
    await putPool(a, "workspaces", ws, { quota: { runs: 2, period: "day" } });
    const again = await call(a, "POST", path, { key, headers: other, body: "{}" });
    assert.equal(again.status, 201, again.text);
    assert.equal(again.headers.get("idempotent-replayed"), null);
  });
});

describe("a change or a deletion reaches the other location within LEASE_MS plus a round trip", () => {
  for (const [label, act] of [
    ["a deletion", (user) => call(a, "DELETE", `/v1/pools/users/${user}`, { admin: true })],
    ["a raise", (user) => putPool(a, "users", user, { rate_limit: BIG })],
  ]) {
    it(`${label} at A while B caches the pool's refusal`, async () => {
      const user = uid("chg");
      const { key } = await createKey(a, { user_id: user, rate_limit: BIG });
      await putPool(a, "users", user, { rate_limit: { requests: 2, window_seconds: 600 } });
      await sleep(LEASE_MS + 100);
      const path = "/developers/workspaces/ws1/jobs/";
      const rs = await hammer(b, [key], 6, 1, path);
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 429, 429, 429, 429], "B refuses from its cache");
      for (const r of rs.slice(2)) {
        // The object's wait (minutes), though B asks again after one lease period.
        assert.ok(Number(r.headers.get("retry-after")) >= 60, `Retry-After ${r.headers.get("retry-after")}`);
      }
      const changedAt = Date.now();
      assert.ok([200, 204].includes((await act(user)).status));
      let allowedAt = null;
      while (Date.now() - changedAt < LEASE_MS + SLACK_MS + 2000) {
        const r = await call(b, "GET", path, { key });
        if (r.status === 200) {
          allowedAt = Date.now();
          break;
        }
        expectError(assert, r, 429, "pool_rate_limited");
        await sleep(50);
      }
      assert.ok(allowedAt, "B serves the key again");
      assert.ok(allowedAt - changedAt <= LEASE_MS + SLACK_MS, `${allowedAt - changedAt} ms`);
    });
  }

  it("a rate limit added to a quota-only pool at A holds at B, which was serving calls", async () => {
    const ws = uid("wsadd");
    const { key } = await createKey(a, { workspaces: [ws], rate_limit: BIG });
    await putPool(a, "workspaces", ws, { quota: { runs: 100, period: "day" } });
    await sleep(LEASE_MS + 100);
    const path = `/developers/workspaces/${ws}/jobs/`;
    assert.deepEqual((await hammer(b, [key], 5, 1, path)).map((r) => r.status), [200, 200, 200, 200, 200]);
    await putPool(a, "workspaces", ws, { quota: { runs: 100, period: "day" }, rate_limit: { requests: 1, window_seconds: 600 } });
    const changedAt = Date.now();
    let refusedAt = null;
    while (Date.now() - changedAt < LEASE_MS + SLACK_MS + 2000) {
      const r = await call(b, "GET", path, { key });
      if (r.status === 429) {
        expectError(assert, r, 429, "pool_rate_limited");
        refusedAt = Date.now();
        break;
      }
      await sleep(50);
    }
    assert.ok(refusedAt, "B applies the new rate limit");
    assert.ok(refusedAt - changedAt <= LEASE_MS + SLACK_MS, `${refusedAt - changedAt} ms`);
  });

  it("a new pool applies at the location that created it at once", async () => {
    const user = uid("new");
    const { key } = await createKey(a, { user_id: user, rate_limit: BIG });
    const path = "/developers/workspaces/ws1/jobs/";
    assert.equal((await call(a, "GET", path, { key })).status, 200, "no pool yet, the directory remembers none");
    await putPool(a, "users", user, { rate_limit: { requests: 1, window_seconds: 600 } });
    assert.equal((await call(a, "GET", path, { key })).status, 200);
    expectError(assert, await call(a, "GET", path, { key }), 429, "pool_rate_limited");
  });
});
