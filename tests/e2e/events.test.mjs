// End to end through `wrangler dev` (workerd): the audit trail (docs/CONTRACT.md section 12)
// and the events (section 14): webhooks through the local Queue, signed the Standard Webhooks
// way and checked here with node:crypto, and the Cron Trigger's expiry warnings.

import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, randomBytes, sign, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { awayFromEdge, call, createKey, expectError, noInternals, sha256hex, startGateway, waitForLog, useGateway, configWithout } from "./harness.mjs";

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

const runLines = /\{[^\n{]*"cron":"0 \* \* \* \*"[^\n]*"scan_complete"[^\n]*\}/g;
/** Fires one Cron run (a gateway started with `testScheduled`) and answers its log line. */
async function cronRun(gw) {
  const seen = (gw.output.match(runLines) ?? []).length;
  const r = await fetch(`${gw.url}/__scheduled?cron=${encodeURIComponent("0 * * * *")}`);
  assert.equal(r.status, 200, await r.text());
  const deadline = Date.now() + 10_000;
  while ((gw.output.match(runLines) ?? []).length <= seen && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const line = (gw.output.match(runLines) ?? [])[seen];
  assert.ok(line, "the run logged its line");
  return JSON.parse(line);
}

describe("section 14: one user's many expiring keys do not hold up another's notice", () => {
  // Finding 5 of the security review: each run re-asked every notice already sent, one call
  // each, and one user's 800 short-lived keys spent a run's budget before another user's key
  // was reached. Now one call per user per page carries all of that user's notices.
  const gw = useGateway({ testScheduled: true });

  it("a user with many due notices costs one call a run, the other user is served in the same run, and each notice goes out once", async () => {
    const soon = () => new Date(Date.now() + 3 * 86_400_000).toISOString();
    // "a-…" lists before "b-…" in the index, so the heavy user is reached first.
    const heavy = `a-heavy-${randomBytes(3).toString("hex")}`;
    const other = `b-other-${randomBytes(3).toString("hex")}`;
    const MANY = 25;
    for (let i = 0; i < MANY; i++) await createKey(gw, { user_id: heavy, expires_at: soon() });
    const theirs = await createKey(gw, { user_id: other, expires_at: soon() });
    const first = await cronRun(gw);
    assert.deepEqual(
      { calls: first.calls, notices: first.notices, new_notices: first.new_notices, failures: first.failures },
      { calls: 2, notices: MANY + 1, new_notices: MANY + 1, failures: 0 },
      JSON.stringify(first),
    );
    const warned = (await trail(gw, other)).filter((e) => e.action === "key.expiring");
    assert.deepEqual(warned.map((e) => e.key_id), [theirs.summary.id], "the other user was not held up");
    // Again: the same two calls, nothing new.
    const second = await cronRun(gw);
    assert.deepEqual({ calls: second.calls, new_notices: second.new_notices }, { calls: 2, new_notices: 0 });
    const heavyWarned = (await trail(gw, heavy)).filter((e) => e.action === "key.expiring");
    assert.equal(new Set(heavyWarned.map((e) => e.key_id)).size, MANY);
    assert.equal(heavyWarned.length, MANY, "each once");
  });
});

describe("section 12: the audit trail", () => {
  const gw = useGateway();

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

  it("two revokes of one key at once are one key.revoked entry", async () => {
    const user = `race-${randomBytes(4).toString("hex")}`;
    const { summary } = await createKey(gw, { user_id: user });
    const answers = await Promise.all(
      [1, 2, 3].map(() => call(gw, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true })),
    );
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200],
    );
    const revoked = (await trail(gw, user)).filter((e) => e.action === "key.revoked");
    assert.equal(revoked.length, 1, JSON.stringify(revoked.map((e) => e.request_id)));
  });

  it("a client's X-Request-Id reused on another change cannot hide it from the trail", async () => {
    // The entry id deduplicates retried writes of one change; it must not merge two changes
    // just because the client sent the same request id twice (two rolls of a key in grace).
    const user = `reuse-${randomBytes(4).toString("hex")}`;
    const { summary } = await createKey(gw, { user_id: user });
    const headers = { "x-request-id": "same-id" };
    const first = await call(gw, "POST", `/v1/api-keys/${summary.id}/roll`, {
      admin: true,
      headers,
      body: { grace_seconds: 3600 },
    });
    assert.equal(first.status, 201, first.text);
    const second = await call(gw, "POST", `/v1/api-keys/${summary.id}/roll`, {
      admin: true,
      headers,
      body: { grace_seconds: 3600 },
    });
    assert.equal(second.status, 201, second.text);
    const rolls = (await trail(gw, user)).filter((e) => e.action === "key.rolled");
    assert.deepEqual(rolls.map((e) => e.details.new_key_id).sort(), [first.json.id, second.json.id].sort());
    assert.notEqual(rolls[0].id, rolls[1].id);
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

/**
 * A webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures on its own
 * (node:crypto, not keygate's code), answers 500 to the first `failFirst` deliveries, then 200,
 * and keeps every delivery and the distinct accepted events by webhook-id.
 */
async function startReceiver(secret, failFirst) {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const rx = { deliveries: [], accepted: new Map(), failFirst };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const id = req.headers["webhook-id"];
      const ts = req.headers["webhook-timestamp"];
      const expected = createHmac("sha256", key).update(`${id}.${ts}.${body}`).digest();
      const valid = (req.headers["webhook-signature"] ?? "").split(" ").some((s) => {
        const [v, b64] = s.split(",");
        const got = Buffer.from(b64 ?? "", "base64");
        return v === "v1" && got.length === expected.length && timingSafeEqual(got, expected);
      });
      const fresh = Math.abs(Date.now() / 1000 - Number(ts)) < 300;
      rx.deliveries.push({ id, ts, body, valid, fresh, at: Date.now() });
      if (!valid || !fresh) {
        res.writeHead(401).end();
        return;
      }
      if (rx.failFirst > 0) {
        rx.failFirst -= 1;
        res.writeHead(500).end();
        return;
      }
      if (!rx.accepted.has(id)) rx.accepted.set(id, JSON.parse(body));
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  rx.url = `http://127.0.0.1:${server.address().port}/hooks`;
  rx.close = () => new Promise((r) => server.close(r));
  return rx;
}

/** A GitHub secret scanning key pair made here, published to the gateway (leaks.test.mjs). */
const SCANNING_KEY_ID = "events-test-key";
const scanning = generateKeyPairSync("ec", { namedCurve: "P-256" });
const SCANNING_KEYS = JSON.stringify({
  public_keys: [
    { key_identifier: SCANNING_KEY_ID, key: scanning.publicKey.export({ type: "spki", format: "pem" }), is_current: true },
  ],
});

describe("section 14: webhooks through the queue", () => {
  let rx;
  const secret = `whsec_${randomBytes(32).toString("base64")}`;
  const gw = useGateway(async () => {
    rx = await startReceiver(secret, 2);
    return {
      vars: { WEBHOOK_URL: rx.url, WEBHOOK_RETRY_BASE_SECONDS: "1", SECRET_SCANNING_KEYS: SCANNING_KEYS },
      secrets: { WEBHOOK_SECRET: secret },
      testScheduled: true,
    };
  });

  /**
   * The one accepted event of `type` about `keyId`, once a second has passed for any copy to
   * follow: delivered exactly once (one webhook-id, one delivery, validly signed), and no
   * delivery about the key holds `key` or its hash.
   */
  async function deliveredOnce(type, keyId, key) {
    const of = () => [...rx.accepted.values()].filter((e) => e.type === type && e.data.key_id === keyId);
    assert.ok(await until(() => of().length), `no ${type} for ${keyId}; accepted: ${[...rx.accepted.values()].map((e) => e.type)}`);
    await new Promise((r) => setTimeout(r, 1000));
    const events = of();
    assert.equal(events.length, 1, `one ${type} event`);
    const [event] = events;
    const copies = rx.deliveries.filter((d) => d.id === event.id);
    assert.equal(copies.length, 1, `${type} delivered once`);
    assert.ok(copies[0].valid && copies[0].fresh);
    for (const d of rx.deliveries.filter((d) => d.body.includes(keyId))) {
      assert.ok(!d.body.includes(key) && !d.body.includes(sha256hex(key)), "no key or hash in an event");
      assert.ok(!d.body.includes(key.slice(key.indexOf("_") + 1, -8)), "no key body in an event");
    }
    return event;
  }

  const cronRun = async () => {
    const r = await fetch(`${gw.url}/__scheduled?cron=${encodeURIComponent("0 * * * *")}`);
    assert.equal(r.status, 200, await r.text());
  };
  after(async () => {
    await rx?.close();
  });

  it("a created key is delivered signed; 500 twice, then 200: the same webhook-id each time", async () => {
    const started = Date.now();
    const { key, summary } = await createKey(gw);
    const event = await until(() => [...rx.accepted.values()].find((e) => e.data.key_id === summary.id), 30_000);
    assert.ok(event, `no delivery accepted; deliveries: ${JSON.stringify(rx.deliveries.map((d) => d.id))}`);
    const mine = rx.deliveries.filter((d) => d.id === event.id);
    assert.equal(mine.length, 3, "two failures, then the delivery that succeeded");
    assert.ok(mine.every((d) => d.valid && d.fresh));
    assert.equal(event.type, "key.created");
    assert.match(event.id, /^evt_[0-9a-f]{32}$/);
    assert.deepEqual(event.data.actor, { type: "admin" });
    assert.equal(event.data.user_id, summary.user_id);
    assert.ok(!mine.some((d) => d.body.includes(key)), "no key in the event");
    // The audit entry and the event are one change: same id.
    const trail = await call(gw, "GET", `/v1/audit-events?user_id=${summary.user_id}`, { admin: true });
    assert.equal(trail.json.results[0].id, event.id);
    console.log(`# webhook: accepted after 2 failures in ${Date.now() - started} ms`);
  });

  it("a revoke is published once: key.revoked, accepted on first delivery", async () => {
    const { summary } = await createKey(gw);
    assert.equal((await call(gw, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true })).status, 200);
    const ev = await until(() =>
      [...rx.accepted.values()].find((e) => e.type === "key.revoked" && e.data.key_id === summary.id),
    );
    assert.ok(ev);
    assert.equal(rx.deliveries.filter((d) => d.id === ev.id).length, 1);
  });

  it("a suspension and a resumption are published as key.updated with data.disabled; the trail says key.disabled / key.enabled", async () => {
    const { summary } = await createKey(gw);
    const patch = (disabled) => call(gw, "PATCH", `/v1/api-keys/${summary.id}`, { admin: true, body: { disabled } });
    assert.equal((await patch(true)).status, 200);
    assert.equal((await patch(false)).status, 200);
    const updates = await until(() => {
      const mine = [...rx.accepted.values()].filter((e) => e.data.key_id === summary.id && e.type === "key.updated");
      return mine.length === 2 ? mine : null;
    });
    assert.ok(updates, "two key.updated events");
    assert.deepEqual(updates.map((e) => e.data.disabled).sort(), [false, true]);
    assert.ok(![...rx.accepted.values()].some((e) => e.data.key_id === summary.id && /abled$/.test(e.type)));
    const trail = await call(gw, "GET", `/v1/audit-events?user_id=${summary.user_id}`, { admin: true });
    const byId = new Map(trail.json.results.map((a) => [a.id, a.action]));
    assert.deepEqual(updates.map((e) => byId.get(e.id)).sort(), ["key.disabled", "key.enabled"]);
  });

  it("the Cron Trigger warns once of a key expiring in 3 days (key.expiring, 7 days) across two runs", async () => {
    const day = 86_400_000;
    const soon = await createKey(gw, { expires_at: new Date(Date.now() + 3 * day).toISOString() });
    const sooner = await createKey(gw, { expires_at: new Date(Date.now() + day / 2).toISOString() });
    const later = await createKey(gw, { expires_at: new Date(Date.now() + 10 * day).toISOString() });
    for (let run = 0; run < 2; run++) {
      const r = await fetch(`${gw.url}/__scheduled?cron=${encodeURIComponent("0 * * * *")}`);
      assert.equal(r.status, 200, await r.text());
    }
    const expiring = (id) => [...rx.accepted.values()].filter((e) => e.type === "key.expiring" && e.data.key_id === id);
    assert.ok(await until(() => expiring(soon.summary.id).length && expiring(sooner.summary.id).length));
    const [warning] = expiring(soon.summary.id);
    assert.equal(warning.data.days, 7);
    assert.deepEqual(warning.data.actor, { type: "system" });
    assert.equal(expiring(sooner.summary.id)[0].data.days, 1);
    // Each run logs its tally: nothing failed, and the whole (small) index was read.
    const runLine = /\{[^\n{]*"cron":"0 \* \* \* \*"[^\n]*"scan_complete"[^\n]*\}/;
    const line = JSON.parse((await waitForLog(gw, runLine)).match(runLine)[0]);
    assert.equal(line.failures, 0);
    assert.equal(line.scan_complete, true);
    assert.equal(line.cause, null);
    // A third run, and time for anything left in the queue: still one delivery each.
    await fetch(`${gw.url}/__scheduled?cron=${encodeURIComponent("0 * * * *")}`);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(rx.deliveries.filter((d) => d.id === warning.id).length, 1);
    assert.equal(expiring(later.summary.id).length, 0);
    const trail = await call(gw, "GET", `/v1/audit-events?user_id=${soon.summary.user_id}`, { admin: true });
    assert.deepEqual(
      trail.json.results.map((e) => e.action),
      ["key.expiring", "key.created"],
    );
    assert.equal(trail.json.results[0].id, warning.id);
  });

  it("a rename (PATCH) is published once as key.updated, with the key id and no key", async () => {
    const { key, summary } = await createKey(gw);
    const r = await call(gw, "PATCH", `/v1/api-keys/${summary.id}`, { admin: true, body: { name: "renamed" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, "renamed");
    const ev = await deliveredOnce("key.updated", summary.id, key);
    assert.equal(ev.data.user_id, summary.user_id);
    assert.deepEqual(ev.data.actor, { type: "admin" });
  });

  it("the run that uses up a quota publishes quota.exhausted once (actor system), and refusals after it none", async () => {
    await awayFromEdge(86_400_000, 15_000); // both triggers in one UTC day
    const { key, summary } = await createKey(gw, { quota: { runs: 1, period: "day" }, permissions: ["jobs:run"] });
    const run = () => call(gw, "POST", "/developers/workspaces/ws1/jobs/j1/run/", { key, body: {} });
    assert.equal((await run()).status, 201);
    expectError(assert, await run(), 429, "quota_exceeded");
    const ev = await deliveredOnce("quota.exhausted", summary.id, key);
    assert.equal(ev.data.user_id, summary.user_id);
    assert.deepEqual(ev.data.actor, { type: "system" });
    assert.equal(ev.data.percent, 100);
    // With runs = 1 the one run is also the threshold's: both, the threshold recorded first.
    const th = await deliveredOnce("quota.threshold", summary.id, key);
    assert.equal(th.data.percent, 80);
    const notices = (await trail(gw, summary.user_id)).filter((e) => e.action.startsWith("quota."));
    assert.deepEqual(notices.map((e) => e.action), ["quota.exhausted", "quota.threshold"], "newest first");
  });

  it("5 runs of a 5/day quota: one quota.threshold (80) after the 4th, one quota.exhausted (100) after the 5th, in the trail and delivered", async () => {
    await awayFromEdge(86_400_000, 20_000); // every trigger in one UTC day
    const { key, summary } = await createKey(gw, { quota: { runs: 5, period: "day" }, permissions: ["jobs:run"] });
    const run = () => call(gw, "POST", "/developers/workspaces/ws1/jobs/j5/run/", { key, body: {} });
    const notices = async () => (await trail(gw, summary.user_id)).filter((e) => e.action.startsWith("quota."));
    const seen = [];
    for (let i = 1; i <= 5; i++) {
      assert.equal((await run()).status, 201, `run ${i}`);
      // Recorded before the trigger is answered, so the trail already shows it.
      seen.push((await notices()).map((e) => e.action));
    }
    assert.deepEqual(seen, [[], [], [], ["quota.threshold"], ["quota.exhausted", "quota.threshold"]]);
    for (let i = 0; i < 3; i++) expectError(assert, await run(), 429, "quota_exceeded");
    const [exhausted, threshold] = await notices();
    assert.equal((await notices()).length, 2, "refusals add nothing");
    const period_start = `${new Date().toISOString().slice(0, 10)}T00:00:00Z`;
    for (const [entry, percent] of [[threshold, 80], [exhausted, 100]]) {
      assert.deepEqual(entry.actor, { type: "system" });
      assert.equal(entry.key_id, summary.id);
      assert.deepEqual(entry.details, { quota: { runs: 5, period: "day" }, period_start, percent });
    }
    const th = await deliveredOnce("quota.threshold", summary.id, key);
    assert.equal(th.id, threshold.id);
    assert.equal(th.data.percent, 80);
    assert.deepEqual(th.data.actor, { type: "system" });
    const ex = await deliveredOnce("quota.exhausted", summary.id, key);
    assert.equal(ex.id, exhausted.id);
    assert.equal(ex.data.percent, 100);
    assert.ok(Date.parse(th.created_at) <= Date.parse(ex.created_at));
  });

  it("a key hammered past its rate limit: one rate_limit.exceeded (actor system, limit, hour) however many refusals, on every path", async () => {
    await awayFromEdge(3_600_000, 30_000); // every refusal in one UTC hour
    const limit = { requests: 2, window_seconds: 3600 };
    const { key, summary } = await createKey(gw, { rate_limit: limit, permissions: ["jobs:read", "jobs:run", "api_keys:read"] });
    const statuses = [];
    for (let i = 0; i < 30; i++) statuses.push((await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key })).status);
    assert.deepEqual(statuses.slice(0, 2), [200, 200]);
    assert.ok(statuses.slice(2).every((s) => s === 429), statuses.join(","));
    // Refused on the other paths too: a job trigger with and without Idempotency-Key, /v1.
    const trigger = (headers = {}) => call(gw, "POST", "/developers/workspaces/ws1/jobs/j1/run/", { key, body: {}, headers });
    expectError(assert, await trigger(), 429, "rate_limited");
    expectError(assert, await trigger({ "idempotency-key": "idem-1" }), 429, "rate_limited");
    expectError(assert, await call(gw, "GET", "/v1/me", { key }), 429, "rate_limited");
    const exceeded = async () => (await trail(gw, summary.user_id)).filter((e) => e.action === "rate_limit.exceeded");
    // Recorded in the background, after the 429s were answered.
    assert.ok(await until(async () => (await exceeded()).length), "rate_limit.exceeded recorded");
    const ev = await deliveredOnce("rate_limit.exceeded", summary.id, key);
    for (let i = 0; i < 20; i++) expectError(assert, await call(gw, "GET", "/v1/me", { key }), 429, "rate_limited");
    await new Promise((r) => setTimeout(r, 1000));
    const entries = await exceeded();
    assert.equal(entries.length, 1, "one per key per hour");
    const [entry] = entries;
    const now = new Date();
    const hour_start = `${now.toISOString().slice(0, 13)}:00:00Z`;
    assert.deepEqual(entry.actor, { type: "system" });
    assert.equal(entry.key_id, summary.id);
    assert.deepEqual(entry.details, { limit, hour_start });
    assert.equal(ev.id, entry.id);
    assert.deepEqual(ev.data.limit, limit);
    assert.equal(ev.data.hour_start, hour_start);
    assert.equal(ev.data.percent, undefined);
    assert.equal([...rx.accepted.values()].filter((e) => e.type === "rate_limit.exceeded" && e.data.key_id === summary.id).length, 1);
    // Another key's refusals are its own notice.
    const other = await createKey(gw, { rate_limit: { requests: 1, window_seconds: 3600 } });
    assert.equal((await call(gw, "GET", "/v1/me", { key: other.key })).status, 200);
    expectError(assert, await call(gw, "GET", "/v1/me", { key: other.key }), 429, "rate_limited");
    const theirs = await deliveredOnce("rate_limit.exceeded", other.summary.id, other.key);
    assert.notEqual(theirs.id, ev.id);
  });

  it("a signed leak report publishes key.leaked once, with the URL and source, and no key", async () => {
    const { key, summary } = await createKey(gw);
    const url = "https://github.com/octo/repo/blob/main/leak.py";
    const body = JSON.stringify([{ token: key, type: "keygate_api_key", url, source: "content" }]);
    const r = await call(gw, "POST", "/v1/leaks", {
      body,
      headers: {
        "content-type": "application/json",
        "github-public-key-identifier": SCANNING_KEY_ID,
        "github-public-key-signature": sign("sha256", Buffer.from(body), scanning.privateKey).toString("base64"),
      },
    });
    assert.equal(r.status, 200, r.status);
    assert.equal(r.json[0].label, "true_positive");
    const ev = await deliveredOnce("key.leaked", summary.id, key);
    assert.equal(ev.data.url, url);
    assert.equal(ev.data.source, "content");
    assert.deepEqual(ev.data.actor, { type: "leak_report", url });
  });

  it("the Cron Trigger publishes key.expired once for a key whose expiry passed (a roll's 1 s grace), across two runs", async () => {
    // A created key must expire at least 60 s ahead; a roll with grace shortens the old key's
    // expiry to the grace's end, which is the contract's own way to a key that expires now.
    const { key, summary } = await createKey(gw);
    const rolled = await call(gw, "POST", `/v1/api-keys/${summary.id}/roll`, { admin: true, body: { grace_seconds: 1 } });
    assert.equal(rolled.status, 201, rolled.status);
    const old = await call(gw, "GET", `/v1/api-keys/${summary.id}`, { admin: true });
    const expiresAt = Date.parse(old.json.expires_at);
    assert.ok(expiresAt - Date.now() <= 2000, `the old key expires at ${old.json.expires_at}`);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 1100));
    expectError(assert, await call(gw, "GET", "/v1/me", { key }), 401, "expired_api_key");
    await cronRun();
    await cronRun();
    const ev = await deliveredOnce("key.expired", summary.id, key);
    assert.deepEqual(ev.data.actor, { type: "system" });
    assert.equal(ev.data.user_id, summary.user_id);
    assert.equal(ev.data.expires_at, old.json.expires_at);
    // The new key expires never: no notice about it.
    assert.equal([...rx.accepted.values()].filter((e) => e.data.key_id === rolled.json.id && e.type.startsWith("key.exp")).length, 0);
  });
});

describe("section 14: a receiver that redirects", () => {
  // The signed event goes to WEBHOOK_URL only: a redirect (a moved or compromised receiver)
  // is a failed delivery, retried, never followed to wherever it points.
  let rx, redirector;
  const hits = [];
  const secret = `whsec_${randomBytes(32).toString("base64")}`;
  const gw = useGateway(async () => {
    rx = await startReceiver(secret, 0);
    redirector = createServer((req, res) => {
      hits.push(req.headers["webhook-id"]);
      req.resume();
      res.writeHead(307, { location: rx.url }).end();
    });
    await new Promise((r) => redirector.listen(0, "127.0.0.1", r));
    return {
      vars: {
        WEBHOOK_URL: `http://127.0.0.1:${redirector.address().port}/hooks`,
        WEBHOOK_RETRY_BASE_SECONDS: "1",
      },
      secrets: { WEBHOOK_SECRET: secret },
    };
  });
  after(async () => {
    await rx?.close();
    await new Promise((r) => redirector?.close(r) ?? r());
  });

  it("is not followed: the event is retried at WEBHOOK_URL and never reaches the redirect's target", async () => {
    await createKey(gw);
    assert.ok(await until(() => hits.length >= 2, 20_000), `deliveries to WEBHOOK_URL: ${hits.length}`);
    assert.equal(rx.deliveries.length, 0, "the redirect's target received the event");
  });
});

describe("sections 12 and 14: when recording or publishing fails", () => {
  it("audit log unreachable: a create is undone (503, no key), a revoke stands with a note", async () => {
    const persist = mkdtempSync(join(tmpdir(), "keygate-shared-state-"));
    const config = configWithout({ bindings: ["USER_LOG"] });
    let gw;
    try {
      gw = await startGateway({ persist });
      const { key, summary } = await createKey(gw);
      await gw.stop();
      gw = await startGateway({ persist, config });
      const user = `undone-${randomBytes(4).toString("hex")}`;
      const r = await call(gw, "POST", "/v1/api-keys", {
        admin: true,
        body: { user_id: user, name: "n", workspaces: ["ws1"], permissions: ["*"] },
      });
      expectError(assert, r, 503, "unavailable");
      noInternals(assert, r);
      const listed = await call(gw, "GET", `/v1/api-keys?user_id=${user}`, { admin: true });
      assert.deepEqual(listed.json.results, [], "the unrecorded key was removed");
      const revoked = await call(gw, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true });
      assert.equal(revoked.status, 200, revoked.text);
      assert.ok(revoked.json.revoked_at);
      expectError(assert, await call(gw, "GET", "/v1/me", { key }), 401, "revoked_api_key");
      assert.match(await waitForLog(gw, /"cause":"audit_after_revoke"/), /"cause":"audit_after_revoke"/);
      // Issuing a settings link is recorded first: unrecorded, no link is handed out.
      const session = await call(gw, "POST", "/v1/settings-sessions", {
        admin: true,
        body: { user_id: user, email: "u@example.com", workspaces: ["ws1"], permissions: ["jobs:read"] },
      });
      expectError(assert, session, 503, "unavailable");
      assert.ok(!session.text.includes("token="), "no link in the answer");
      const because = /"path":"\/v1\/settings-sessions".*"cause":"audit_log"/;
      assert.match(await waitForLog(gw, because), because);
    } finally {
      await gw?.stop();
      rmSync(persist, { recursive: true, force: true });
    }
  });

  it("audit log unreachable: a hammered rate-limited key stays 429 and costs one notice attempt, not one per refusal; a quota run goes ahead with a note", async () => {
    await awayFromEdge(3_600_000, 60_000); // every refusal in one UTC hour
    const persist = mkdtempSync(join(tmpdir(), "keygate-shared-state-"));
    const config = configWithout({ bindings: ["USER_LOG"] });
    let gw;
    try {
      gw = await startGateway({ persist });
      const limited = await createKey(gw, { rate_limit: { requests: 1, window_seconds: 3600 } });
      const quota = await createKey(gw, { quota: { runs: 1, period: "day" }, permissions: ["jobs:run"] });
      await gw.stop();
      gw = await startGateway({ persist, config });
      assert.equal((await call(gw, "GET", "/v1/me", { key: limited.key })).status, 200);
      for (let i = 0; i < 40; i++) {
        const r = await call(gw, "GET", "/v1/me", { key: limited.key });
        expectError(assert, r, 429, "rate_limited");
      }
      const failed = /"notice":"rate_limit.exceeded"/;
      assert.match(await waitForLog(gw, failed), failed, "the failed notice is logged");
      await new Promise((r) => setTimeout(r, 1500));
      const lines = gw.output.match(new RegExp(failed.source, "g")) ?? [];
      assert.equal(lines.length, 1, `one attempt for 40 refusals: ${lines.join("\n")}`);
      const [line] = gw.output.split("\n").filter((l) => failed.test(l));
      const logged = JSON.parse(line.slice(line.indexOf("{")));
      assert.deepEqual([logged.level, logged.key_id, logged.cause], ["error", limited.summary.id, "audit_log"]);
      const run = await call(gw, "POST", "/developers/workspaces/ws1/jobs/j1/run/", { key: quota.key, body: {} });
      assert.equal(run.status, 201, run.text);
      const noted = /"path":"\/developers\/workspaces\/ws1\/jobs\/j1\/run\/".*"cause":"audit_quota_notice"/;
      assert.match(await waitForLog(gw, noted), noted);
    } finally {
      await gw?.stop();
      rmSync(persist, { recursive: true, force: true });
    }
  });

  it("a revocation whose key object was unreachable after its KV write is recorded by the retry, once", async () => {
    // Finding 7 of the security review: the retry used to revoke without recording anything.
    const persist = mkdtempSync(join(tmpdir(), "keygate-revoke-retry-"));
    const config = configWithout({ bindings: ["KEY_STATE"] });
    let gw;
    try {
      gw = await startGateway({ persist });
      const { summary } = await createKey(gw);
      await gw.stop();
      gw = await startGateway({ persist, config });
      const failed = await call(gw, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true });
      expectError(assert, failed, 503, "unavailable");
      await gw.stop();
      gw = await startGateway({ persist });
      for (let i = 0; i < 2; i++) {
        const retried = await call(gw, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true });
        assert.equal(retried.status, 200, retried.text);
      }
      const revoked = (await trail(gw, summary.user_id)).filter((e) => e.action === "key.revoked");
      assert.equal(revoked.length, 1, "recorded by the retry, and once");
    } finally {
      await gw?.stop();
      rmSync(persist, { recursive: true, force: true });
    }
  });

  it("audit log unreachable during a Cron run: its notices are skipped (one failure per user), the run completes, and the next run sends them once", async () => {
    const persist = mkdtempSync(join(tmpdir(), "keygate-cron-fail-"));
    const config = configWithout({ bindings: ["USER_LOG"] });
    const cron = cronRun;
    const soon = () => new Date(Date.now() + 3 * 86_400_000).toISOString();
    let gw;
    try {
      gw = await startGateway({ persist });
      // Two users with notices due: one with two keys, one with one.
      const a1 = await createKey(gw, { expires_at: soon() });
      const a2 = await createKey(gw, { user_id: a1.summary.user_id, expires_at: soon() });
      const b = await createKey(gw, { expires_at: soon() });
      await gw.stop();

      gw = await startGateway({ persist, config, testScheduled: true });
      const failed = await cron(gw);
      assert.equal(failed.failures, 2, "one failure per user whose trail is down");
      assert.equal(failed.new_notices, 0);
      assert.equal(failed.scan_complete, true, "a failing notice no longer ends the run");
      assert.equal(failed.cause, null);
      await gw.stop();

      gw = await startGateway({ persist, testScheduled: true });
      // Two runs: the skipped notices are sent by the first, and not again by the second.
      for (const [run, sent] of [[0, 3], [1, 0]]) {
        const ok = await cron(gw);
        assert.equal(ok.failures, 0, `run ${run}`);
        assert.equal(ok.calls, 2, `run ${run}: one call per user`);
        assert.equal(ok.new_notices, sent, `run ${run}`);
        assert.equal(ok.scan_complete, true);
      }
      for (const [user, ids] of [
        [a1.summary.user_id, [a1.summary.id, a2.summary.id]],
        [b.summary.user_id, [b.summary.id]],
      ]) {
        const trail = await call(gw, "GET", `/v1/audit-events?user_id=${user}`, { admin: true });
        assert.equal(trail.status, 200, trail.text);
        const notices = trail.json.results.filter((e) => e.action === "key.expiring");
        assert.deepEqual(notices.map((e) => e.key_id).sort(), [...ids].sort(), "each skipped notice sent once");
      }
    } finally {
      await gw?.stop();
      rmSync(persist, { recursive: true, force: true });
    }
  });

  it("queue unreachable: the event waits in the user's object and is delivered once it is back", async () => {
    const secret = `whsec_${randomBytes(32).toString("base64")}`;
    const rx = await startReceiver(secret, 0);
    const persist = mkdtempSync(join(tmpdir(), "keygate-shared-state-"));
    const config = configWithout({ bindings: ["EVENTS"] });
    const opts = { persist, vars: { WEBHOOK_URL: rx.url, WEBHOOK_RETRY_BASE_SECONDS: "1" }, secrets: { WEBHOOK_SECRET: secret } };
    let gw;
    try {
      gw = await startGateway({ ...opts, config });
      const { summary } = await createKey(gw);
      // Recorded (the trail has it) but not sent: the producer is missing.
      const trail = await call(gw, "GET", `/v1/audit-events?user_id=${summary.user_id}`, { admin: true });
      assert.equal(trail.json.results[0].action, "key.created");
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(rx.deliveries.length, 0);
      await gw.stop();
      // Same objects, now with the queue: the object's alarm (every 10 s) hands the event over.
      gw = await startGateway(opts);
      const started = Date.now();
      const ev = await until(() => [...rx.accepted.values()].find((e) => e.data.key_id === summary.id), 40_000);
      assert.ok(ev, "the waiting event was delivered");
      assert.equal(ev.id, trail.json.results[0].id);
      console.log(`# outbox: delivered ${Date.now() - started} ms after the queue came back`);
    } finally {
      await gw?.stop();
      await rx.close();
      rmSync(persist, { recursive: true, force: true });
    }
  });
});
