// End to end through `wrangler dev` (workerd) with a real origin on 127.0.0.1: settings sessions
// and the settings JSON API (docs/CONTRACT.md section 11): admin-only creation and validation,
// the single-use link, the cookie's attributes, the security headers, the session's ceiling,
// CSRF, ownership, a key made on the page working through the gateway, and the user's shared
// limit (pool, section 17) in the session's answer, failing closed. Expiry is proved for
// real without a test-only setting: a session of the shortest TTL (60 s) is opened first, and
// the last test waits for its end (most of that minute is spent by the tests in between).

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";

import { call, createKey, expectError, inOneFailureWindow, noInternals, randomClientIp, rawCall, startGateway, useGateway, configWithout } from "./harness.mjs";

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const SECURITY_HEADERS = {
  "content-security-policy": CSP,
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
};
const DAY_MS = 86_400_000;
/** Slack for clocks read on two sides of an HTTP call. */
const SLACK_S = 5;

const gw = useGateway();
/** Every session secret the tests saw: none may appear in the worker's log. */
const secrets = [];
/** A session of the shortest TTL, opened at start, and a link of the same age never opened. */
let early;
let earlyLink;

const user = (name) => `${name}-${randomBytes(3).toString("hex")}`;

function sessionBody(fields = {}) {
  const id = fields.user_id ?? user("alice");
  return {
    user_id: id,
    email: `${id}@example.com`,
    workspaces: ["ws1", "ws2"],
    permissions: ["jobs:read", "jobs:run", "workspaces:read"],
    max_expiry_days: 7,
    return_url: "https://app.example.com/account",
    ...fields,
  };
}

/** Creates a session as admin: `{ url, token, expires_at, body }`. */
async function createSession(fields = {}) {
  const body = sessionBody(fields);
  const r = await call(gw, "POST", "/v1/settings-sessions", { admin: true, body });
  assert.equal(r.status, 201, r.text);
  const token = new URL(r.json.url).searchParams.get("token");
  secrets.push(token);
  return { ...r.json, token, body };
}

/** Opens a link like a browser would (without following the redirect). */
async function openLink(url) {
  const r = await fetch(url, { redirect: "manual" });
  await r.arrayBuffer();
  return r;
}

/** A session, opened: `{ cookie, csrf, session, ... }`. */
async function openSession(fields = {}) {
  const s = await createSession(fields);
  const r = await openLink(s.url);
  assert.equal(r.status, 303);
  const [setCookie, setSwitchCookie] = r.headers.getSetCookie();
  const cookie = setCookie.split(";")[0];
  const switchCookie = setSwitchCookie.split(";")[0];
  secrets.push(cookie.slice(cookie.indexOf("=") + 1));
  const me = await api("GET", "/settings/api/session", { cookie });
  assert.equal(me.status, 200, me.text);
  secrets.push(me.json.csrf_token);
  return { ...s, setCookie, setSwitchCookie, cookie, switchCookie, csrf: me.json.csrf_token, session: me.json };
}

/** A settings API call with the session's cookie and, when given, its CSRF token and an Origin. */
function api(method, path, { cookie, csrf, origin, body } = {}) {
  const headers = {};
  if (cookie) headers.cookie = cookie;
  if (csrf) headers["x-csrf-token"] = csrf;
  if (origin) headers.origin = origin;
  return call(gw, method, path, { body, headers });
}

const write = (s, method, path, body) =>
  api(method, path, { cookie: s.cookie, csrf: s.csrf, origin: gw.url, body });

async function keysOf(s) {
  const r = await api("GET", "/settings/api/keys", { cookie: s.cookie });
  assert.equal(r.status, 200, r.text);
  return r.json.results;
}

/** A fetch response as `call` answers: `{ status, headers, text, json }`. */
async function asResult(r) {
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json };
}

function assertSecurityHeaders(r, what) {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) {
    assert.equal(r.headers.get(name), value, `${name} on ${what}`);
  }
}

before(async () => {
  await gw.ready; // root-level hooks run side by side
  early = await openSession({ ttl_seconds: 60 });
  earlyLink = await createSession({ ttl_seconds: 60 });
});

describe("POST /v1/settings-sessions", () => {
  it("admin only: no credential 401, a key (even with every permission) 403, a wrong token 401", async () => {
    const body = sessionBody();
    expectError(assert, await call(gw, "POST", "/v1/settings-sessions", { body }), 401, "missing_api_key");
    const { key } = await createKey(gw, { workspaces: ["*"], permissions: ["*"] });
    expectError(assert, await call(gw, "POST", "/v1/settings-sessions", { key, body }), 403, "permission_denied");
    expectError(assert, await call(gw, "POST", "/v1/settings-sessions", { admin: "wrong", body }), 401, "invalid_admin_token");
    expectError(assert, await call(gw, "GET", "/v1/settings-sessions", { admin: true }), 405, "method_not_allowed");
  });

  it("201 {url, expires_at}: a link to this gateway with a 256-bit token, 900 s by default, not cached", async () => {
    const started = Date.now();
    const r = await call(gw, "POST", "/v1/settings-sessions", { admin: true, body: sessionBody() });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get("cache-control"), "no-store");
    assert.deepEqual(Object.keys(r.json).sort(), ["expires_at", "url"]);
    assert.match(r.json.url, new RegExp(`^${gw.url}/settings/open\\?token=[A-Za-z0-9_-]{43}$`));
    secrets.push(new URL(r.json.url).searchParams.get("token"));
    const ttl = (Date.parse(r.json.expires_at) - started) / 1000;
    assert.ok(Math.abs(ttl - 900) <= SLACK_S, `expires in ${ttl} s`);
  });

  it("validation: every bad field named, 400 validation_error, and no link", async () => {
    const r = await call(gw, "POST", "/v1/settings-sessions", {
      admin: true,
      body: {
        user_id: "a b",
        email: "not-an-email",
        workspaces: [],
        permissions: ["jobs:fly"],
        max_expiry_days: 0,
        return_url: "javascript:alert(1)",
        ttl_seconds: 59,
        colour: "blue",
      },
    });
    const body = expectError(assert, r, 400, "validation_error");
    for (const f of ["user_id", "email", "workspaces", "permissions", "max_expiry_days", "return_url", "ttl_seconds", "colour"]) {
      assert.ok(body.fields[f]?.length > 0, `${f}: ${r.text}`);
    }
    assert.ok(!r.text.includes("/settings/open"));
    for (const bad of [{ ttl_seconds: 3601 }, { return_url: "//evil.example/" }, { email: undefined }, { workspaces: ["*", "ws1"] }]) {
      const b = sessionBody(bad);
      if ("email" in bad) delete b.email;
      const x = await call(gw, "POST", "/v1/settings-sessions", { admin: true, body: b });
      expectError(assert, x, 400, "validation_error");
    }
  });
});

describe("GET /settings/open: the link", () => {
  it("works once: 303 to /settings/ (no secret in it) with the cookie; again 410 link_expired, no cookie", async () => {
    const s = await createSession();
    const head = await fetch(s.url, { method: "HEAD", redirect: "manual" });
    assert.equal(head.status, 405, "a HEAD does not use the link up");
    assert.equal(head.headers.get("set-cookie"), null);
    const first = await openLink(s.url);
    assert.equal(first.status, 303);
    assert.equal(first.headers.get("location"), "/settings/");
    assert.ok(first.headers.get("set-cookie"));
    const second = await openLink(s.url);
    assert.equal(second.status, 410);
    assert.equal(second.headers.get("set-cookie"), null);
    const again = await call(gw, "GET", `/settings/open?token=${s.token}`);
    expectError(assert, again, 410, "link_expired");
    assertSecurityHeaders(again, "a used link");
  });

  it("opened five times at once: exactly one 303 with a cookie, four 410 without", async () => {
    const s = await createSession();
    const all = await Promise.all([1, 2, 3, 4, 5].map(() => openLink(s.url)));
    const won = all.filter((r) => r.status === 303);
    assert.equal(won.length, 1, `statuses: ${all.map((r) => r.status)}`);
    assert.ok(won[0].headers.get("set-cookie"));
    for (const r of all.filter((x) => x !== won[0])) {
      assert.equal(r.status, 410);
      assert.equal(r.headers.get("set-cookie"), null);
    }
  });

  it("an unknown, malformed or missing token is the same 410, with no cookie", async () => {
    for (const q of [`?token=${randomBytes(32).toString("base64url")}`, "?token=short", ""]) {
      const r = await call(gw, "GET", `/settings/open${q}`);
      expectError(assert, r, 410, "link_expired");
      assert.equal(r.headers.get("set-cookie"), null);
    }
  });

  it("the cookie: HttpOnly, SameSite=Strict, Path=/settings, Max-Age = the session's remaining life, no Secure on 127.0.0.1", async () => {
    const s = await openSession({ ttl_seconds: 600 });
    const attrs = s.setCookie.split(";").map((a) => a.trim());
    assert.match(attrs[0], /^kg_settings=[0-9a-f]{64}\.[A-Za-z0-9_-]{43}$/);
    assert.ok(attrs.includes("HttpOnly"), s.setCookie);
    assert.ok(attrs.includes("SameSite=Strict"), s.setCookie);
    assert.ok(attrs.includes("Path=/settings"), s.setCookie);
    assert.ok(!attrs.some((a) => /^secure$/i.test(a)), "no Secure on a local host");
    const maxAge = Number(attrs.find((a) => a.startsWith("Max-Age=")).slice(8));
    const remaining = (Date.parse(s.expires_at) - Date.now()) / 1000;
    assert.ok(maxAge <= 600 && Math.abs(maxAge - remaining) <= SLACK_S, `Max-Age ${maxAge}, remaining ${remaining}`);
    // Its copy for /settings/open only (section 11: a link of another user asks first), sent
    // on a navigation from another site too.
    const copy = s.setSwitchCookie.split(";").map((a) => a.trim());
    assert.equal(copy[0], s.cookie.replace(/^kg_settings=/, "kg_settings_open="));
    for (const a of ["HttpOnly", "SameSite=Lax", "Path=/settings/open", `Max-Age=${maxAge}`]) assert.ok(copy.includes(a), s.setSwitchCookie);
    // The object's stored expiry, as the session says it, is the one the link was made with.
    assert.equal(s.session.expires_at, s.expires_at);
    // Neither the link's token nor the cookie's secret is the other.
    assert.ok(!s.cookie.includes(s.token));
  });

  it("the cookie is Secure when the gateway is reached by another name than localhost or 127.0.0.1, and so is its clearing", async () => {
    // The gateway decides from the request's own URL, whose host is the Host header: a name
    // other than this machine's (here only a header; the connection is still to 127.0.0.1).
    const attrsOf = (setCookie) => setCookie.split(";").map((a) => a.trim());
    const isSecure = (setCookie) => attrsOf(setCookie).some((a) => /^secure$/i.test(a));
    for (const [host, secure] of [
      [`keygate.example.com:${gw.port}`, true],
      ["keygate.example.com", true],
      [`localhost:${gw.port}`, false],
    ]) {
      const s = await createSession();
      const open = await rawCall(gw, "GET", `/settings/open?token=${s.token}`, { host });
      assert.equal(open.status, 303, `${host}: ${open.status}`);
      const setCookie = open.headers.get("set-cookie");
      assert.ok(setCookie, `${host}: a cookie`);
      const cookie = setCookie.split(";")[0];
      secrets.push(cookie.slice(cookie.indexOf("=") + 1));
      assert.equal(isSecure(setCookie), secure, `${host}: Secure ${secure}`);
      assert.ok(attrsOf(setCookie).includes("HttpOnly") && attrsOf(setCookie).includes("SameSite=Strict"));
      // Sign-out under the same name clears the cookie with the same attributes.
      const me = await api("GET", "/settings/api/session", { cookie });
      assert.equal(me.status, 200, `${host}: session ${me.status}`);
      secrets.push(me.json.csrf_token);
      const end = await rawCall(gw, "POST", "/settings/api/session/end", {
        host,
        cookie,
        "x-csrf-token": me.json.csrf_token,
      });
      assert.equal(end.status, 200, `${host}: sign-out ${end.status}`);
      const cleared = end.headers.get("set-cookie");
      assert.match(cleared, /^kg_settings=; /);
      assert.equal(isSecure(cleared), secure, `${host}: clearing Secure ${secure}`);
    }
  });
});

describe("the page and its headers", () => {
  it("GET /settings/, app.js, app.css: the embedded files with their types and the security headers", async () => {
    for (const [path, type] of [
      ["/settings/", "text/html; charset=utf-8"],
      ["/settings/app.js", "text/javascript; charset=utf-8"],
      ["/settings/app.css", "text/css; charset=utf-8"],
    ]) {
      const r = await call(gw, "GET", path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get("content-type"), type, path);
      assert.ok(r.text.length > 0, path);
      assertSecurityHeaders(r, path);
    }
    const html = await call(gw, "GET", "/settings/");
    assert.match(html.text, /<script src="app\.js"/);
    const bare = await call(gw, "GET", "/settings");
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.get("location"), "/settings/");
  });

  it("every /settings answer carries them: the API, its errors, unknown paths, wrong methods", async () => {
    const s = await openSession();
    const answers = {
      "the session": await api("GET", "/settings/api/session", { cookie: s.cookie }),
      "the key list": await api("GET", "/settings/api/keys", { cookie: s.cookie }),
      "a 401": await api("GET", "/settings/api/keys"),
      "a 403": await api("POST", "/settings/api/keys", { cookie: s.cookie, body: {} }),
      "a 404": await call(gw, "GET", "/settings/nothing-here"),
      "a 405": await call(gw, "DELETE", "/settings/"),
      "an invalid path": await call(gw, "GET", "/settings/a%2fb"),
    };
    for (const [what, r] of Object.entries(answers)) assertSecurityHeaders(r, what);
  });
});

describe("GET /settings/api/session and the cookie", () => {
  it("the session's fields and its CSRF token", async () => {
    const s = await openSession();
    assert.deepEqual(Object.keys(s.session).sort(), [
      "csrf_token", "email", "expires_at", "max_expiry_days", "permissions", "pool", "return_url", "user_id", "workspaces",
    ]);
    assert.equal(s.session.pool, null, "no pool for this user");
    assert.equal(s.session.user_id, s.body.user_id);
    assert.equal(s.session.email, s.body.email);
    assert.deepEqual(s.session.workspaces, ["ws1", "ws2"]);
    assert.deepEqual(s.session.permissions, ["jobs:read", "jobs:run", "workspaces:read"]);
    assert.equal(s.session.max_expiry_days, 7);
    assert.equal(s.session.return_url, "https://app.example.com/account");
    assert.match(s.session.csrf_token, /^[A-Za-z0-9_-]{43}$/);
  });

  it("no cookie, a malformed one, or a wrong secret: 401 missing_session", async () => {
    const s = await openSession();
    const [name, value] = s.cookie.split("=");
    const wrong = value.slice(0, -1) + (value.endsWith("A") ? "B" : "A");
    for (const cookie of [undefined, "kg_settings=garbage", `other=${value}`, `${name}=${wrong}`]) {
      expectError(assert, await api("GET", "/settings/api/session", { cookie }), 401, "missing_session");
      expectError(assert, await api("GET", "/settings/api/keys", { cookie }), 401, "missing_session");
    }
  });

  it("the cookie of one session never opens another: each link has its own secret", async () => {
    const a = await openSession();
    const b = await openSession();
    const [, va] = a.cookie.split("=");
    const [nb] = b.cookie.split("=")[1].split(".");
    const mixed = `kg_settings=${nb}.${va.split(".")[1]}`;
    expectError(assert, await api("GET", "/settings/api/session", { cookie: mixed }), 401, "missing_session");
  });
});

describe("GET /settings/api/session: the user's shared limit (pool, section 17)", () => {
  const putPool = (kind, id, body) => call(gw, "PUT", `/v1/pools/${kind}/${id}`, { admin: true, body });
  const poolOf = async (s) => {
    const r = await api("GET", "/settings/api/session", { cookie: s.cookie });
    assert.equal(r.status, 200, r.text);
    return r.json.pool;
  };
  /** The next UTC midnight: the end of a daily quota's period. */
  const nextMidnight = () => {
    const d = new Date();
    return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)).toISOString().replace(/\.000Z$/, "Z");
  };

  it("null without a user pool: a workspace's pool of the same id is not the user's", async () => {
    const s = await openSession();
    assert.equal(await poolOf(s), null);
    const ws = await putPool("workspaces", s.body.user_id, { quota: { runs: 3, period: "day" } });
    assert.equal(ws.status, 201, ws.text);
    assert.equal(await poolOf(s), null, "only the user's own pool is shown");
    assert.equal((await call(gw, "DELETE", `/v1/pools/workspaces/${s.body.user_id}`, { admin: true })).status, 204);
  });

  it("with a pool: its definition and what is left, which forwarded calls of the user's keys consume; gone once deleted", async () => {
    const s = await openSession();
    const id = s.body.user_id;
    // A window of a day: the allowance comes back one request per 864 s, so none returns
    // between the calls below and the figures read after them.
    const definition = { rate_limit: { requests: 100, window_seconds: 86_400 }, quota: { runs: 10, period: "day" } };
    const put = await putPool("users", id, definition);
    assert.equal(put.status, 201, put.text);

    const fresh = await poolOf(s);
    assert.equal(fresh.kind, "user");
    assert.equal(fresh.id, id);
    assert.deepEqual(fresh.rate_limit, definition.rate_limit);
    assert.deepEqual(fresh.quota, definition.quota);
    assert.deepEqual(fresh.usage, {
      rate_limit: { limit: 100, remaining: 100, reset: 0 },
      quota: { runs: 10, period: "day", used: 0, remaining: 10, period_end: nextMidnight() },
    });

    // Two keys of the user, each with a call through the gateway: one request, one job run.
    const reader = await createKey(gw, { user_id: id, email: s.body.email, permissions: ["jobs:read"] });
    const runner = await createKey(gw, { user_id: id, email: s.body.email, permissions: ["jobs:run"] });
    const listed = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key: reader.key });
    assert.equal(listed.status, 200, listed.text);
    const ran = await call(gw, "POST", "/developers/workspaces/ws1/jobs/j1/run/", { key: runner.key, body: {} });
    assert.equal(ran.status, 201, ran.text);

    const used = await poolOf(s);
    assert.equal(used.usage.quota.used, 1, "the job run");
    assert.equal(used.usage.quota.remaining, 9);
    // Both calls took the pool's allowance (an isolate's lease of it counts as spent; at this
    // rate a lease holds one request).
    const left = used.usage.rate_limit.remaining;
    assert.ok(left <= 98 && left >= 95, `remaining ${left} after two calls`);
    assert.ok(used.usage.rate_limit.reset > 0, "a full allowance is some time away");
    // The same figures as the admin's view of the pool.
    const admin = await call(gw, "GET", `/v1/pools/users/${id}`, { admin: true });
    assert.deepEqual(admin.json.usage.quota, used.usage.quota);
    assert.equal(admin.json.usage.rate_limit.remaining, left);

    assert.equal((await call(gw, "DELETE", `/v1/pools/users/${id}`, { admin: true })).status, 204);
    assert.equal(await poolOf(s), null, "a deleted pool is not shown");
  });
});

describe("POST /settings/api/session/end (sign-out)", () => {
  it("needs the CSRF token: without it (or with a foreign Origin) 403 csrf_failed, and the session still works", async () => {
    const s = await openSession();
    for (const [what, opts] of [
      ["no token", { cookie: s.cookie, origin: gw.url }],
      ["a wrong token", { cookie: s.cookie, csrf: "x".repeat(43), origin: gw.url }],
      ["a foreign Origin", { cookie: s.cookie, csrf: s.csrf, origin: "https://evil.example" }],
    ]) {
      const r = await api("POST", "/settings/api/session/end", opts);
      expectError(assert, r, 403, "csrf_failed");
      assert.equal(r.headers.get("set-cookie"), null, `${what}: the cookie is not cleared`);
      const me = await api("GET", "/settings/api/session", { cookie: s.cookie });
      assert.equal(me.status, 200, `${what}: ${me.text}`);
    }
    expectError(assert, await api("GET", "/settings/api/session/end", { cookie: s.cookie }), 405, "method_not_allowed");
    expectError(assert, await api("POST", "/settings/api/session/end", {}), 401, "missing_session");
  });

  it("ends the session: the answer clears the cookie, and the same cookie is 401 session_expired afterwards", async () => {
    const s = await openSession();
    const other = await openSession();
    const r = await write(s, "POST", "/settings/api/session/end");
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { ended: true });
    assert.deepEqual(r.headers.getSetCookie(), [
      "kg_settings=; HttpOnly; SameSite=Strict; Path=/settings; Max-Age=0",
      "kg_settings_open=; HttpOnly; SameSite=Lax; Path=/settings/open; Max-Age=0",
    ]);
    assertSecurityHeaders(r, "sign-out");
    for (const [method, path, opts] of [
      ["GET", "/settings/api/session", { cookie: s.cookie }],
      ["GET", "/settings/api/keys", { cookie: s.cookie }],
      ["POST", "/settings/api/keys", { cookie: s.cookie, csrf: s.csrf, origin: gw.url, body: { name: "after" } }],
      ["POST", "/settings/api/session/end", { cookie: s.cookie, csrf: s.csrf, origin: gw.url }],
    ]) {
      expectError(assert, await api(method, path, opts), 401, "session_expired");
    }
    // Another session of the same user is not touched.
    assert.equal((await api("GET", "/settings/api/session", { cookie: other.cookie })).status, 200);
  });
});

describe("the settings API: the API's rules with the session's ceiling", () => {
  let s;
  before(async () => {
    s = await openSession();
  });

  it("a key made on the page: the session's user and e-mail, expiry defaulted to max_expiry_days, shown once, and it works", async () => {
    const r = await write(s, "POST", "/settings/api/keys", {
      name: "laptop",
      workspaces: ["ws1"],
      permissions: ["jobs:read", "workspaces:read"],
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get("cache-control"), "no-store");
    assert.match(r.json.key, /^kg_[0-9a-f]{72}$/);
    assert.equal(r.json.user_id, s.body.user_id);
    assert.equal(r.json.email, s.body.email);
    const days = (Date.parse(r.json.expires_at) - Date.now()) / DAY_MS;
    assert.ok(Math.abs(days - 7) < 0.01, `expires in ${days} days`);
    const listed = await keysOf(s);
    assert.deepEqual(listed.map((k) => k.id), [r.json.id]);
    assert.ok(!JSON.stringify(listed).includes(r.json.key), "never shown again");
    // A real call through the gateway, as the session's user.
    const fwd = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key: r.json.key });
    assert.equal(fwd.status, 200, fwd.text);
    const seen = gw.origin.requests.at(-1).headers;
    assert.equal(seen["x-keygate-user-id"], s.body.user_id);
    assert.equal(seen["x-keygate-user-email"], s.body.email);
    // The same key seen by the admin API.
    const admin = await call(gw, "GET", `/v1/api-keys/${r.json.id}`, { admin: true });
    assert.equal(admin.json.user_id, s.body.user_id);
    // Its usage, as the API's usage route answers it, with that call counted.
    const usage = await api("GET", `/settings/api/keys/${r.json.id}/usage`, { cookie: s.cookie });
    assert.equal(usage.status, 200, usage.text);
    const apiUsage = await call(gw, "GET", `/v1/api-keys/${r.json.id}/usage`, { admin: true });
    assert.deepEqual(Object.keys(usage.json).sort(), Object.keys(apiUsage.json).sort());
    assert.equal(usage.json.key_id, r.json.id);
    assert.equal(usage.json.hourly.length, 48);
    assert.ok(usage.json.hourly.at(-1).allowed >= 1, "the call above is counted (at grant, with leases)");
  });

  it("the ceiling: a workspace, permission, expiry or rate beyond it is 403 permission_denied, nothing stored", async () => {
    const before = (await keysOf(s)).length;
    const base = { name: "x", workspaces: ["ws1"], permissions: ["jobs:read"] };
    for (const wider of [
      { workspaces: ["ws3"] },
      { workspaces: ["*"] },
      { permissions: ["secrets:read"] },
      { permissions: ["*"] },
      { expires_at: new Date(Date.now() + 7 * DAY_MS + 60_000).toISOString() },
      { rate_limit: { requests: 601, window_seconds: 60 } },
    ]) {
      const r = await write(s, "POST", "/settings/api/keys", { ...base, ...wider });
      expectError(assert, r, 403, "permission_denied");
    }
    assert.equal((await keysOf(s)).length, before);
    // Within it: an earlier expiry and a lower rate are kept as asked.
    const expires = new Date(Date.now() + DAY_MS).toISOString().replace(/\.\d+Z$/, "Z");
    const ok = await write(s, "POST", "/settings/api/keys", {
      ...base,
      expires_at: expires,
      rate_limit: { requests: 10, window_seconds: 60 },
    });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.json.expires_at, expires);
    assert.deepEqual(ok.json.rate_limit, { requests: 10, window_seconds: 60 });
  });

  it("another user_id or e-mail in the body is 400 on that field, nothing stored", async () => {
    const before = (await keysOf(s)).length;
    const base = { name: "x", workspaces: ["ws1"], permissions: ["jobs:read"] };
    const other = await write(s, "POST", "/settings/api/keys", { ...base, user_id: "mallory" });
    assert.ok(expectError(assert, other, 400, "validation_error").fields.user_id);
    const mail = await write(s, "POST", "/settings/api/keys", { ...base, email: "cfo@example.com" });
    assert.ok(expectError(assert, mail, 400, "validation_error").fields.email);
    assert.equal((await keysOf(s)).length, before);
    assert.equal((await call(gw, "GET", "/v1/api-keys?user_id=mallory", { admin: true })).json.results.length, 0);
    // Naming the session's own owner is the same as leaving it out.
    const same = await write(s, "POST", "/settings/api/keys", { ...base, user_id: s.body.user_id, email: s.body.email });
    assert.equal(same.status, 201, same.text);
  });

  it("CSRF: no token, a wrong token or a foreign Origin is 403 csrf_failed and changes nothing", async () => {
    const made = await write(s, "POST", "/settings/api/keys", { name: "csrf", workspaces: ["ws1"], permissions: ["jobs:read"] });
    assert.equal(made.status, 201, made.text);
    const listBefore = await keysOf(s);
    const body = { name: "forged", workspaces: ["ws1"], permissions: ["jobs:read"] };
    const attempts = [
      ["no token", { cookie: s.cookie, origin: gw.url }],
      ["a wrong token", { cookie: s.cookie, csrf: s.csrf.slice(0, -1) + (s.csrf.endsWith("A") ? "B" : "A"), origin: gw.url }],
      ["another session's token", { cookie: s.cookie, csrf: early.csrf }],
      ["a foreign Origin", { cookie: s.cookie, csrf: s.csrf, origin: "https://evil.example" }],
      ["a null Origin", { cookie: s.cookie, csrf: s.csrf, origin: "null" }],
    ];
    for (const [what, auth] of attempts) {
      for (const [path, b] of [
        ["/settings/api/keys", body],
        [`/settings/api/keys/${made.json.id}/revoke`, undefined],
        [`/settings/api/keys/${made.json.id}/roll`, {}],
      ]) {
        const r = await api("POST", path, { ...auth, body: b });
        expectError(assert, r, 403, "csrf_failed");
        assert.ok(!r.text.includes(s.csrf), `${what}: the token is not echoed`);
      }
    }
    assert.deepEqual(await keysOf(s), listBefore, "nothing changed");
    const live = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key: made.json.key });
    assert.equal(live.status, 200, "the key is still live");
    // The token without an Origin header (a client that sends none) is accepted.
    const noOrigin = await api("POST", `/settings/api/keys/${made.json.id}/revoke`, { cookie: s.cookie, csrf: s.csrf });
    assert.equal(noOrigin.status, 200, noOrigin.text);
  });

  it("revoke and roll (with grace) of the session's own keys", async () => {
    const made = await write(s, "POST", "/settings/api/keys", { name: "to roll", workspaces: ["ws1"], permissions: ["jobs:read"] });
    const rolled = await write(s, "POST", `/settings/api/keys/${made.json.id}/roll`, { grace_seconds: 3600 });
    assert.equal(rolled.status, 201, rolled.text);
    assert.equal(rolled.headers.get("cache-control"), "no-store");
    assert.notEqual(rolled.json.key, made.json.key);
    assert.equal(rolled.json.user_id, s.body.user_id);
    assert.deepEqual(rolled.json.workspaces, ["ws1"]);
    for (const key of [made.json.key, rolled.json.key]) {
      const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key });
      assert.equal(r.status, 200, "both work during the grace period");
    }
    const revoked = await write(s, "POST", `/settings/api/keys/${rolled.json.id}/revoke`);
    assert.equal(revoked.status, 200, revoked.text);
    assert.ok(revoked.json.revoked_at);
    assert.ok(!("key" in revoked.json));
    const after = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key: rolled.json.key });
    expectError(assert, after, 401, "revoked_api_key");
  });

  it("a key wider than the ceiling (made by the admin) can be revoked on the page but not rolled (403)", async () => {
    const wide = await createKey(gw, { user_id: s.body.user_id, workspaces: ["*"], permissions: ["*"] });
    const roll = await write(s, "POST", `/settings/api/keys/${wide.summary.id}/roll`, {});
    expectError(assert, roll, 403, "permission_denied");
    const still = await call(gw, "GET", "/developers/workspaces/ws9/jobs/", { key: wide.key });
    assert.equal(still.status, 200, "the refused roll changed nothing");
    const revoke = await write(s, "POST", `/settings/api/keys/${wide.summary.id}/revoke`);
    assert.equal(revoke.status, 200, revoke.text);
  });

  it("another user's key id is 404 for get, revoke and roll, and it stays live", async () => {
    const theirs = await createKey(gw, { user_id: user("bob") });
    const id = theirs.summary.id;
    expectError(assert, await api("GET", `/settings/api/keys/${id}`, { cookie: s.cookie }), 404, "not_found");
    expectError(assert, await write(s, "POST", `/settings/api/keys/${id}/revoke`), 404, "not_found");
    expectError(assert, await write(s, "POST", `/settings/api/keys/${id}/roll`, {}), 404, "not_found");
    expectError(assert, await api("GET", `/settings/api/keys/${id}/usage`, { cookie: s.cookie }), 404, "not_found");
    const live = await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key: theirs.key });
    assert.equal(live.status, 200);
    // Listing another user is refused like a key's.
    const list = await api("GET", `/settings/api/keys?user_id=${theirs.summary.user_id}`, { cookie: s.cookie });
    expectError(assert, list, 403, "permission_denied");
  });

  it("GET /settings/api/audit-events: the session's user's trail, with the opening recorded as a settings session's", async () => {
    const r = await api("GET", "/settings/api/audit-events?limit=100", { cookie: s.cookie });
    assert.equal(r.status, 200, r.text);
    assert.ok(Array.isArray(r.json.results));
    assert.ok("next_cursor" in r.json);
    // Issued by the admin, then opened by the user: both in the trail, newest first.
    const mine = r.json.results.filter((e) => e.action.startsWith("settings_session."));
    assert.deepEqual(mine.slice(0, 2).map((e) => [e.action, e.actor.type]), [
      ["settings_session.opened", "settings_session"],
      ["settings_session.created", "admin"],
    ]);
    assert.deepEqual(mine[1].details.workspaces, s.body.workspaces);
    assert.ok(!JSON.stringify(mine).includes("token"), "no link token in the trail");
    // Until the trail's storage is merged, audit::record logs each entry; either way the
    // opening must be there, with the session's user as actor.
    const opened = (e) =>
      e.action === "settings_session.opened" && e.user_id === s.body.user_id &&
      e.actor?.type === "settings_session" && e.actor?.user_id === s.body.user_id;
    const inLog = gw
      .log()
      .split("\n")
      .flatMap((line) => {
        const m = line.match(/\{"audit":.*\}/);
        try {
          return m ? [JSON.parse(m[0]).audit] : [];
        } catch {
          return [];
        }
      });
    assert.ok(r.json.results.some(opened) || inLog.some(opened), "the opening is in the trail");
  });
});

describe("guessing", () => {
  it("refused cookies and links count as failed attempts: 401/410 for 30, then 429 for that client only; no cookie does not count", async () => {
    await inOneFailureWindow();
    const ip = randomClientIp();
    const codes = [];
    for (let i = 0; i < 32; i++) {
      const secret = randomBytes(32).toString("base64url");
      const r = i % 2
        ? await call(gw, "GET", `/settings/open?token=${secret}`, { headers: { "cf-connecting-ip": ip } })
        : await call(gw, "GET", "/settings/api/session", {
            headers: { "cf-connecting-ip": ip, cookie: `kg_settings=${randomBytes(32).toString("hex")}.${secret}` },
          });
      codes.push(r.json.code);
    }
    assert.deepEqual(new Set(codes.slice(0, 30)), new Set(["missing_session", "link_expired"]));
    assert.deepEqual(new Set(codes.slice(30)), new Set(["too_many_failed_attempts"]));
    const fine = await openSession();
    const other = await api("GET", "/settings/api/session", { cookie: fine.cookie });
    assert.equal(other.status, 200, "another client is unaffected");
    const same = await call(gw, "GET", "/settings/api/session", { headers: { "cf-connecting-ip": ip, cookie: fine.cookie } });
    expectError(assert, same, 429, "too_many_failed_attempts");
    const quiet = randomClientIp();
    for (let i = 0; i < 35; i++) {
      const r = await call(gw, "GET", "/settings/api/keys", { headers: { "cf-connecting-ip": quiet } });
      expectError(assert, r, 401, "missing_session");
    }
  });
});

describe("guessing without a storage read", () => {
  it("a missing or malformed link token counts (410 for 30, then 429); a malformed cookie does not", async () => {
    await inOneFailureWindow();
    const ip = randomClientIp();
    // Malformed cookies first, from a client with no failures yet: none of them counts, so
    // all 35 (more than the limit of 30) stay 401.
    for (const cookie of ["kg_settings=x", "kg_settings=abc.def", `kg_settings=${"g".repeat(64)}.${"a".repeat(43)}`, "other=1"]) {
      for (let i = 0; i < 9; i++) {
        const r = await call(gw, "GET", "/settings/api/session", { headers: { "cf-connecting-ip": ip, cookie } });
        expectError(assert, r, 401, "missing_session");
      }
    }
    // Then links that never reach a session's object: no token, an empty one, a short one.
    const paths = ["/settings/open", "/settings/open?token=", "/settings/open?token=short"];
    const codes = [];
    for (let i = 0; i < 31; i++) {
      const r = await call(gw, "GET", paths[i % paths.length], { headers: { "cf-connecting-ip": ip } });
      codes.push(r.json.code);
    }
    assert.deepEqual(new Set(codes.slice(0, 30)), new Set(["link_expired"]));
    assert.equal(codes[30], "too_many_failed_attempts");
  });
});

describe("fail closed", () => {
  it("without the SETTINGS_SESSIONS binding: 503 unavailable to open, use or create a session, no internals, no cookie", async () => {
    const config = configWithout({ bindings: ["SETTINGS_SESSIONS"] });
    let broken;
    try {
      broken = await startGateway({ config });
      const created = await call(broken, "POST", "/v1/settings-sessions", { admin: true, body: sessionBody() });
      expectError(assert, created, 503, "unavailable");
      noInternals(assert, created);
      const secret = randomBytes(32).toString("base64url");
      const opened = await call(broken, "GET", `/settings/open?token=${secret}`);
      expectError(assert, opened, 503, "unavailable");
      assert.equal(opened.headers.get("set-cookie"), null);
      const used = await call(broken, "GET", "/settings/api/keys", {
        headers: { cookie: `kg_settings=${randomBytes(32).toString("hex")}.${secret}` },
      });
      expectError(assert, used, 503, "unavailable");
      noInternals(assert, used);
      assertSecurityHeaders(used, "a 503");
      // The rest of the gateway is unaffected.
      const { key } = await createKey(broken);
      assert.equal((await call(broken, "GET", "/v1/me", { key })).status, 200);
    } finally {
      await broken?.stop();
    }
  });
});

describe("fail closed: the user's pool", () => {
  it("its object unreachable: 503 unavailable for a user with a pool, no internals; a user without one is not asked about", async () => {
    const config = configWithout({ bindings: ["KEY_STATE"] });
    const persist = join(tmpdir(), `keygate-settings-pool-${randomBytes(4).toString("hex")}`);
    let g;
    /** A session of `g`, opened: its cookie. */
    const opened = async (fields) => {
      const made = await call(g, "POST", "/v1/settings-sessions", { admin: true, body: sessionBody(fields) });
      assert.equal(made.status, 201, made.text);
      secrets.push(new URL(made.json.url).searchParams.get("token"));
      const r = await openLink(made.json.url);
      assert.equal(r.status, 303);
      return r.headers.getSetCookie()[0].split(";")[0];
    };
    const me = (cookie) => call(g, "GET", "/settings/api/session", { headers: { cookie } });
    try {
      // Sessions and a pool made where everything works, then read where the objects of
      // keys and pools are not bound (the same stored state).
      g = await startGateway({ persist });
      const pooled = user("pooled");
      const withPool = await opened({ user_id: pooled });
      const without = await opened();
      const put = await call(g, "PUT", `/v1/pools/users/${pooled}`, { admin: true, body: { quota: { runs: 5, period: "month" } } });
      assert.equal(put.status, 201, put.text);
      assert.equal((await me(withPool)).json.pool?.usage?.quota?.remaining, 5, "shown while its object answers");
      await g.stop();

      g = await startGateway({ persist, config });
      const failed = await me(withPool);
      expectError(assert, failed, 503, "unavailable");
      noInternals(assert, failed);
      assertSecurityHeaders(failed, "the session's 503");
      assert.ok(!failed.text.includes("csrf_token"), "no session data in the refusal");
      const fine = await me(without);
      assert.equal(fine.status, 200, fine.text);
      assert.equal(fine.json.pool, null);
    } finally {
      await g?.stop();
      rmSync(persist, { recursive: true, force: true });
    }
  });
});

describe("section 11: another user's link opened where a session is live (login CSRF)", () => {
  // Finding 11 of the security review: anyone's link opened in a browser (a cross-site
  // navigation is enough) replaced that browser's session, so keys made next belonged to the
  // link's user.
  const navigate = (url, cookie) =>
    fetch(url, { redirect: "manual", headers: { "cf-connecting-ip": randomClientIp(), ...(cookie ? { cookie } : {}) } });
  const choose = (token, origin) =>
    fetch(`${gw.url}/settings/open`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": randomClientIp(), ...(origin ? { origin } : {}) },
      body: `token=${token}`,
    });

  it("asks first: a page naming both accounts, the link unused and the session kept until the person chooses", async () => {
    const mine = await openSession();
    const theirs = await createSession({ user_id: user("mallory") });
    // A navigation from another site carries only the Lax copy of the cookie.
    const asked = await navigate(theirs.url, mine.switchCookie);
    const page = await asked.text();
    assert.equal(asked.status, 200, page);
    assert.match(asked.headers.get("content-type"), /^text\/html/);
    assert.equal(asked.headers.get("set-cookie"), null, "nothing replaced");
    assertSecurityHeaders(asked, "the choice page");
    for (const who of [mine.body.email, mine.body.user_id, theirs.body.email, theirs.body.user_id]) {
      assert.ok(page.includes(who), `the page names ${who}`);
    }
    // The session is still the person's own, and the link still unused.
    const me = await api("GET", "/settings/api/session", { cookie: mine.cookie });
    assert.equal(me.json.user_id, mine.body.user_id);
    // Only the gateway's own page may choose: another origin, or none, is refused.
    expectError(assert, await asResult(await choose(theirs.token, "https://evil.example")), 403, "csrf_failed");
    expectError(assert, await asResult(await choose(theirs.token)), 403, "csrf_failed");
    // Choosing it opens it, once.
    const chosen = await choose(theirs.token, gw.url);
    assert.equal(chosen.status, 303);
    assert.equal(chosen.headers.get("location"), "/settings/");
    const [cookie] = chosen.headers.getSetCookie();
    const now = await api("GET", "/settings/api/session", { cookie: cookie.split(";")[0] });
    assert.equal(now.json.user_id, theirs.body.user_id);
    secrets.push(cookie.split(";")[0].split("=")[1], now.json.csrf_token);
    expectError(assert, await asResult(await navigate(theirs.url, mine.switchCookie)), 410, "link_expired");
  });

  it("opens at once: without a live session here, or with the same user's", async () => {
    const first = await createSession();
    assert.equal((await navigate(first.url)).status, 303, "no session yet: the contract's flow");
    const mine = await openSession();
    const again = await createSession({ user_id: mine.body.user_id });
    const r = await navigate(again.url, mine.switchCookie);
    assert.equal(r.status, 303, "the same user's link");
    secrets.push(...r.headers.getSetCookie().map((c) => c.split(";")[0].split("=")[1]));
    // A session that ended (signed out) asks nothing either.
    const ended = await openSession();
    assert.equal((await write(ended, "POST", "/settings/api/session/end")).status, 200);
    const other = await createSession();
    const opened = await navigate(other.url, ended.switchCookie);
    assert.equal(opened.status, 303);
    secrets.push(...opened.headers.getSetCookie().map((c) => c.split(";")[0].split("=")[1]));
  });
});

describe("expiry and secrets", () => {
  it("a session past its TTL is 401 session_expired, and a link past it 410 (the 60 s session opened at start)", async () => {
    const wait = Date.parse(early.expires_at) - Date.now() + 1500;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    expectError(assert, await api("GET", "/settings/api/session", { cookie: early.cookie }), 401, "session_expired");
    expectError(assert, await api("POST", "/settings/api/keys", { cookie: early.cookie, csrf: early.csrf, body: {} }), 401, "session_expired");
    const link = await openLink(earlyLink.url);
    assert.equal(link.status, 410);
    assert.equal(link.headers.get("set-cookie"), null);
  });

  it("no link token, cookie secret or CSRF token in the worker's log", async () => {
    assert.ok(secrets.length > 10);
    const log = gw.log();
    for (const s of secrets) assert.ok(!log.includes(s), "a session secret is in the log");
    for (const s of secrets) assert.ok(!log.includes(s.split(".").at(-1)), "a cookie secret is in the log");
  });
});
