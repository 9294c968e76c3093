// Failures of configuration and of the origin: each gives the answer of docs/CONTRACT.md
// (sections 7 and 9), never a pass-through and never an internal error string, and the gateway
// keeps serving.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createTcpServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { startOrigin } from "../../examples/origin.mjs";
import { call, crc32, createKey, expectError, freePort, startGateway, unissuedKey, waitForLog, noInternals, configWithout } from "./harness.mjs";

const started = [];
after(async () => {
  for (const g of started) await g.stop();
});

async function gateway(opts) {
  const g = await startGateway(opts);
  started.push(g);
  return g;
}

describe("origin unreachable", () => {
  it("502 origin_unavailable, and the gateway keeps serving", async () => {
    const closed = await freePort(); // nothing listens there
    const gw = await gateway({ originUrl: `http://127.0.0.1:${closed}` });
    const { key } = await createKey(gw);
    for (let i = 0; i < 3; i++) {
      const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
      expectError(assert, r, 502, "origin_unavailable");
      noInternals(assert, r);
    }
    const me = await call(gw, "GET", "/v1/me", { key });
    assert.equal(me.status, 200);
    assert.equal(gw.origin.requests.length, 0);
  });
});

describe("secrets not configured", () => {
  it("no ADMIN_TOKEN: admin calls get 403 admin_disabled; no signing secret: 503, nothing forwarded", async () => {
    const persist = mkdtempSync(join(tmpdir(), "keygate-shared-state-"));
    const first = await gateway({ persist });
    const { key } = await createKey(first);
    await first.stop();
    started.splice(started.indexOf(first), 1);
    // Same local KV, now without either secret.
    const gw = await gateway({ secrets: { ADMIN_TOKEN: null, ORIGIN_SIGNING_SECRET: null }, persist });
    const r = await call(gw, "GET", "/v1/api-keys?user_id=x", { admin: "anything" });
    expectError(assert, r, 403, "admin_disabled");
    const fwd = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
    expectError(assert, fwd, 503, "unavailable");
    noInternals(assert, fwd);
    assert.equal(gw.origin.requests.length, 0);
    // Keys still authenticate on gateway routes.
    assert.equal((await call(gw, "GET", "/v1/me", { key })).status, 200);
    rmSync(persist, { recursive: true, force: true });
  });
});

describe("bad configuration", () => {
  it("an ORIGIN_URL that is not a URL: 503 unavailable, reported once in the log, no panic", async () => {
    const gw = await gateway({ originUrl: "not a url" });
    for (let i = 0; i < 4; i++) {
      const r = await call(gw, "GET", "/healthz");
      expectError(assert, r, 503, "unavailable");
      noInternals(assert, r);
    }
    const r = await call(gw, "POST", "/v1/api-keys", { admin: true, body: {} });
    expectError(assert, r, 503, "unavailable");
    await waitForLog(gw, /config_error/);
    await new Promise((res) => setTimeout(res, 300));
    const reports = gw.log().split("\n").filter((l) => l.includes("config_error"));
    assert.equal(reports.length, 1, gw.log().slice(-2000));
    assert.match(reports[0], /ORIGIN_URL/);
    assert.ok(!/panicked/.test(gw.log()));
  });
});

describe("section 9: KEY_PREFIX", () => {
  it("keys are issued and accepted with a non-default prefix (hint and checksum follow it); a kg_ key, even one issued before, is malformed", async () => {
    const gw = await gateway();
    const { key: before } = await createKey(gw);
    assert.equal((await call(gw, "GET", "/v1/me", { key: before })).status, 200);
    // Same local KV and objects, now with another prefix.
    gw.vars.KEY_PREFIX = "acme2";
    await gw.restart();
    const { key, summary } = await createKey(gw);
    assert.match(key, /^acme2_[0-9a-f]{64}[0-9a-f]{8}$/);
    assert.equal(key.slice(-8), crc32(key.slice(0, -8)).toString(16).padStart(8, "0"), "the checksum covers the prefix");
    assert.equal(summary.hint, key.slice(0, "acme2_".length + 6));
    const me = await call(gw, "GET", "/v1/me", { key });
    assert.equal(me.status, 200, me.text);
    assert.equal(me.json.key.id, summary.id);
    // The default prefix is now just a wrong prefix: refused by shape, before any storage read.
    expectError(assert, await call(gw, "GET", "/v1/me", { key: before }), 401, "malformed_api_key");
    expectError(assert, await call(gw, "GET", "/v1/me", { key: unissuedKey("kg") }), 401, "malformed_api_key");
    // A never-issued key of the new shape passes the shape check and is looked up.
    expectError(assert, await call(gw, "GET", "/v1/me", { key: unissuedKey("acme2") }), 401, "invalid_api_key");
  });
});

describe("section 9: vars out of range", () => {
  it("LEASE_MS, KV_CACHE_TTL, DEFAULT_RATE_LIMIT, MAX_KEYS_PER_USER out of range: 503 unavailable, one config_error naming the var, nothing forwarded", async () => {
    const gw = await gateway();
    const good = { ...gw.vars };
    const { key } = await createKey(gw);
    const bad = [
      ["LEASE_MS", "5001"],
      ["LEASE_MS", "-1"],
      ["KV_CACHE_TTL", "29"],
      ["DEFAULT_RATE_LIMIT", "600"],
      ["DEFAULT_RATE_LIMIT", "0/60"],
      ["MAX_KEYS_PER_USER", "0"],
      ["MAX_KEYS_PER_USER", "1001"],
    ];
    for (const [name, value] of bad) {
      gw.vars = { ...good, [name]: value };
      const logFrom = gw.log().length;
      await gw.restart();
      const what = `${name}=${value}`;
      for (const [m, p, opts] of [
        ["GET", "/healthz", {}],
        ["GET", "/v1/me", { key }],
        ["GET", "/developers/workspaces/ws1/jobs/", { key }],
        ["POST", "/v1/api-keys", { admin: true, body: { user_id: "u", name: "n", workspaces: ["ws1"], permissions: ["*"] } }],
      ]) {
        const r = await call(gw, m, p, opts);
        assert.equal(r.status, 503, `${what}: ${m} ${p}: ${r.status}`);
        expectError(assert, r, 503, "unavailable");
        noInternals(assert, r);
        assert.ok(!r.text.includes(name), `${what}: the answer does not name the var`);
      }
      await waitForLog(gw, new RegExp(`config_error[^\\n]*${name}`));
      await new Promise((res) => setTimeout(res, 200));
      const reports = gw.log().slice(logFrom).split("\n").filter((l) => l.includes("config_error"));
      assert.equal(reports.length, 1, `${what}: one config_error line`);
      assert.match(reports[0], new RegExp(name), what);
    }
    assert.equal(gw.origin.requests.length, 0, "nothing reached the origin");
    // Put right, the same state serves again: it was the configuration, not the data.
    gw.vars = good;
    await gw.restart();
    assert.equal((await call(gw, "GET", "/v1/me", { key })).status, 200);
  });
});

describe("ORIGIN_URL with a path", () => {
  it("is a configuration error: 503 unavailable, reported once, nothing reaches the origin", async () => {
    // The signature covers the authorized path, not a base path in front of it: an origin
    // behind one would see another path than the one signed.
    const origin = await startOrigin({ signingSecret: "unused" });
    try {
      const gw = await gateway({ originUrl: `${origin.url}/base/` });
      for (const [m, p, opts] of [
        ["GET", "/healthz", {}],
        ["GET", "/developers/workspaces/ws1/jobs/", { key: unissuedKey() }],
        ["POST", "/v1/api-keys", { admin: true, body: {} }],
      ]) {
        const r = await call(gw, m, p, opts);
        expectError(assert, r, 503, "unavailable");
        noInternals(assert, r);
      }
      await waitForLog(gw, /config_error/);
      await new Promise((res) => setTimeout(res, 300));
      const reports = gw.log().split("\n").filter((l) => l.includes("config_error"));
      assert.equal(reports.length, 1, gw.log().slice(-2000));
      assert.match(reports[0], /ORIGIN_URL/);
      assert.equal(origin.requests.length, 0);
      assert.equal(gw.origin.requests.length, 0);
    } finally {
      await origin.close();
    }
  });
});

describe("failed-attempt throttle unavailable", () => {
  it("a deployment without the AUTH_FAILURES binding answers 503 to every call that authenticates", async () => {
    // Without the binding, failures could not be counted and guessing would be free: fail closed.
    const config = configWithout({ bindings: ["AUTH_FAILURES"] });
    const persist = mkdtempSync(join(tmpdir(), "keygate-shared-state-"));
    try {
      const first = await gateway({ persist });
      const { key } = await createKey(first);
      await first.stop();
      started.splice(started.indexOf(first), 1);
      // Same local KV and objects, now without the binding.
      const gw = await gateway({ config, persist });
      for (const [m, p, opts] of [
        ["GET", "/v1/me", { key }],
        ["GET", "/developers/workspaces/ws1/jobs/", { key }],
        ["POST", "/developers/workspaces/ws1/jobs/j/run/", { key }],
        ["GET", "/v1/me", { key: unissuedKey() }],
        ["GET", "/v1/me", { auth: "Api-Key nonsense" }],
        ["GET", `/v1/api-keys?user_id=x`, { admin: true }],
        ["GET", `/v1/api-keys?user_id=x`, { admin: "a-wrong-token" }],
      ]) {
        const r = await call(gw, m, p, opts);
        expectError(assert, r, 503, "unavailable");
        noInternals(assert, r);
      }
      assert.equal(gw.origin.requests.length, 0);
      assert.match(await waitForLog(gw, /"cause":"auth_failures_binding"/), /"cause":"auth_failures_binding"/);
      // Routes without a credential still answer.
      assert.equal((await call(gw, "GET", "/healthz")).status, 200);
      assert.equal((await call(gw, "GET", "/v1/openapi.json")).status, 200);
    } finally {
      rmSync(persist, { recursive: true, force: true });
    }
  });
});

describe("static assets unavailable", () => {
  it("a deployment without the ASSETS binding answers the page's files and the OpenAPI document 503 (cause assets), and the rest as usual", async () => {
    const gw = await gateway({ config: configWithout({ bindings: ["ASSETS"] }) });
    for (const path of ["/settings/", "/settings/index.html", "/settings/app.js", "/settings/app.css", "/v1/openapi.json"]) {
      const r = await call(gw, "GET", path);
      expectError(assert, r, 503, "unavailable");
      noInternals(assert, r);
      if (path.startsWith("/settings")) {
        // Still the one code path's headers, error or not.
        assert.match(r.headers.get("content-security-policy") ?? "", /default-src 'none'/, path);
      }
    }
    assert.match(await waitForLog(gw, /"cause":"assets"/), /"path":"\/settings\/"/);
    const { key } = await createKey(gw);
    assert.equal((await call(gw, "GET", "/v1/me", { key })).status, 200);
    assert.equal((await call(gw, "GET", "/healthz")).status, 200);
  });
});

describe("Durable Object unavailable", () => {
  it("a deployment without the KEY_STATE binding answers 503 for every key, never lets a call through", async () => {
    // wrangler.toml without the Durable Object binding (and its migration): the object that
    // counts and can revoke is unreachable, so no key may pass.
    const config = configWithout({ bindings: ["KEY_STATE"], migrations: ["KeyStateObject"] });
    const gw = await gateway({ config });
    const { key } = await createKey(gw); // KV only: still works
    for (const [m, p] of [["GET", "/v1/me"], ["GET", "/developers/workspaces/ws1/jobs/"], ["POST", "/developers/workspaces/ws1/jobs/j/run/"]]) {
      const r = await call(gw, m, p, { key });
      expectError(assert, r, 503, "unavailable");
      noInternals(assert, r);
      assert.equal(r.headers.get("ratelimit-remaining"), null);
    }
    assert.equal(gw.origin.requests.length, 0);
    // Bad keys are still refused as such (no Durable Object needed to say no).
    const bad = await call(gw, "GET", "/v1/me", { key: key.slice(0, -1) + (key.endsWith("0") ? "1" : "0") });
    expectError(assert, bad, 401, "malformed_api_key");
    assert.match(await waitForLog(gw, /"cause":"durable_object"/), /"cause":"durable_object"/);
  });
});

describe("origin misbehaving", () => {
  it("an origin that answers garbage instead of HTTP: 502 origin_unavailable, then keeps serving", async () => {
    const garbage = createTcpServer((sock) => {
      sock.on("data", () => {
        sock.end("THIS IS NOT HTTP\r\n\0\0\r\n\r\n");
      });
    });
    await new Promise((r) => garbage.listen(0, "127.0.0.1", r));
    try {
      const gw = await gateway({ originUrl: `http://127.0.0.1:${garbage.address().port}` });
      const { key } = await createKey(gw);
      for (let i = 0; i < 3; i++) {
        const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
        expectError(assert, r, 502, "origin_unavailable");
        noInternals(assert, r);
      }
      assert.equal((await call(gw, "GET", "/v1/me", { key })).status, 200);
    } finally {
      garbage.close();
    }
  });

  it("a huge origin body is streamed through intact", async () => {
    const SIZE = 24 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, "k");
    const gw = await gateway({
      handle: async ({ req, res }) => {
        if (!req.url.includes("/huge/")) return false;
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(SIZE) });
        for (let sent = 0; sent < SIZE; sent += chunk.length) {
          if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
        }
        res.end();
        return true;
      },
    });
    const { key } = await createKey(gw);
    const r = await fetch(`${gw.url}/developers/workspaces/ws1/variables/huge/`, {
      headers: { authorization: `Api-Key ${key}`, "cf-connecting-ip": "2001:db8::1" },
    });
    assert.equal(r.status, 200);
    const body = Buffer.from(await r.arrayBuffer());
    assert.equal(body.length, SIZE);
    const expected = createHash("sha256");
    for (let sent = 0; sent < SIZE; sent += chunk.length) expected.update(chunk);
    assert.equal(createHash("sha256").update(body).digest("hex"), expected.digest("hex"));
    assert.equal((await call(gw, "GET", "/v1/me", { key })).status, 200);
  });
});

describe("KV unavailable", () => {
  it("a deployment without the KEYS binding: 503 for anything needing a record, never a pass-through", async () => {
    const config = configWithout({ bindings: ["KEYS"] });
    const gw = await gateway({ config });
    const create = await call(gw, "POST", "/v1/api-keys", {
      admin: true,
      body: { user_id: "u", name: "n", workspaces: ["*"], permissions: ["*"] },
    });
    expectError(assert, create, 503, "unavailable");
    noInternals(assert, create);
    const forged = (await import("./harness.mjs")).unissuedKey();
    for (const [m, p] of [["GET", "/v1/me"], ["GET", "/developers/workspaces/ws1/jobs/"]]) {
      const r = await call(gw, m, p, { key: forged });
      expectError(assert, r, 503, "unavailable");
      noInternals(assert, r);
    }
    assert.equal(gw.origin.requests.length, 0);
    assert.match(await waitForLog(gw, /"cause":"kv_binding"/), /"cause":"kv_binding"/);
    assert.equal((await call(gw, "GET", "/healthz")).status, 200);
  });
});
