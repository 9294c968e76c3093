// Attacks on what reaches the origin, through `wrangler dev` against the example origin
// (contract sections 5, 7 and 8): path segments an origin would read differently, headers that
// reroute or re-identify a request, the workspace listing of a scoped key, and failed-attempt
// throttling of an IPv6 client that rotates addresses inside its /64.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { call, createKey, expectError, inOneFailureWindow, randomClientIp, rawCall, unissuedKey, noInternals, useGateway } from "./harness.mjs";

// Stopped after the tests, which also checks its whole log for keys, hashes, tokens and
// signatures.
const gw = useGateway();

const originCount = () => gw.origin.requests.length;
const lastOrigin = () => gw.origin.requests[gw.origin.requests.length - 1];

describe("contract section 5: segments an origin could read differently", () => {
  const paths = [
    // Tomcat/Jetty drop `;` path parameters: `..;` is `..` there, so this is ws2's secrets.
    "/developers/workspaces/ws1/jobs/..;/..;/ws2/secrets/s1",
    "/developers/workspaces/ws1/jobs;jsessionid=1/",
    "/developers/workspaces/ws1/jobs/..%3B/..%3b/ws2/secrets/s1",
    // Decoded twice, `%252e%252e` is `..`.
    "/developers/workspaces/ws1/jobs/%252e%252e/%252e%252e/ws2/secrets/s1",
    "/developers/workspaces/ws1/jobs/%252F/",
    // Fullwidth full stops: `..` after Unicode normalisation.
    "/developers/workspaces/ws1/jobs/%ef%bc%8e%ef%bc%8e/%ef%bc%8e%ef%bc%8e/ws2/secrets/s1",
    // Overlong UTF-8 for `.`, and any other byte outside printable ASCII.
    "/developers/workspaces/ws1/jobs/%c0%ae%c0%ae/",
    "/developers/workspaces/ws1/jobs/caf%C3%A9/",
    "/developers/workspaces/ws1/jobs/%80/",
  ];

  it("400 invalid_path for each, and the origin sees nothing", async () => {
    const { key } = await createKey(gw, { workspaces: ["ws1"], permissions: ["jobs:read", "jobs:write"] });
    const before = originCount();
    for (const path of paths) {
      for (const method of ["GET", "POST"]) {
        const r = await call(gw, method, path, { key });
        expectError(assert, r, 400, "invalid_path");
        noInternals(assert, r);
      }
    }
    assert.equal(originCount(), before, "nothing was forwarded");
  });

  it("a ';' in the query string stays legal and is forwarded as sent", async () => {
    const { key } = await createKey(gw, { workspaces: ["ws1"], permissions: ["jobs:read"] });
    const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/?a=1;b=2", { key });
    assert.equal(r.status, 200, r.text);
    assert.equal(lastOrigin().url, "/developers/workspaces/ws1/jobs/?a=1;b=2");
    assert.equal(lastOrigin().identity.signature_valid, true);
  });
});

describe("contract section 5: every spelling of a run needs jobs:run", () => {
  it("RUN, Run, run.json and run/... are runs: a jobs:write key is refused, nothing reaches the origin", async () => {
    const { key } = await createKey(gw, { workspaces: ["ws1"], permissions: ["jobs:read", "jobs:write"] });
    const before = originCount();
    for (const action of ["RUN", "Run/", "run.json", "run/now"]) {
      const r = await call(gw, "POST", `/developers/workspaces/ws1/jobs/daily_etl/${action}`, { key, body: {} });
      expectError(assert, r, 403, "permission_denied");
    }
    // An encoded unreserved character (`%72` is `r`) is refused before routing.
    expectError(assert, await call(gw, "POST", "/developers/workspaces/ws1/jobs/daily_etl/%72un", { key, body: {} }), 400, "invalid_path");
    assert.equal(originCount(), before, "nothing was forwarded");
    // The same key may still write other job paths.
    const ok = await call(gw, "POST", "/developers/workspaces/ws1/jobs/daily_etl/runs", { key, body: {} });
    assert.equal(ok.status, 200, ok.text);
  });
});

describe("contract section 7: a method override in the query is refused", () => {
  it("_method in the query (any case, encoded or not, or as PHP normalises names): 400 on _method, nothing forwarded", async () => {
    const { key } = await createKey(gw, { workspaces: ["ws1"], permissions: ["jobs:run", "jobs:write"] });
    const before = originCount();
    // The last six are `_method` to PHP (Laravel, Symfony): `.` and space read as `_`, leading
    // spaces dropped, the name cut at NUL and at `[` (finding 3 of the security review).
    for (const q of [
      "_method=DELETE",
      "a=1&_METHOD=put",
      "%5Fmethod=PATCH",
      ".method=DELETE",
      "%2Emethod=DELETE",
      "_method%00=DELETE",
      "+_method=PUT",
      "_method[]=DELETE",
      "a=1;_method=DELETE",
    ]) {
      const r = await call(gw, "POST", `/developers/workspaces/ws1/jobs/daily_etl/run/?${q}`, { key, body: {} });
      const body = expectError(assert, r, 400, "validation_error");
      assert.ok(body.fields._method, q);
    }
    assert.equal(originCount(), before);
    // Names that only look alike are forwarded untouched.
    const q = "x.method=DELETE&_methods=1&a%5B_method%5D=2";
    const ok = await call(gw, "GET", `/developers/workspaces/ws1/jobs/?${q}`, { key: (await createKey(gw, { permissions: ["jobs:read"] })).key });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(originCount(), before + 1);
    assert.ok(gw.origin.requests.at(-1).url.endsWith(`?${q}`));
  });
});

describe("contract section 7: headers that reroute or re-identify a request are removed", () => {
  // Each with a value the origin could act on; names as a client may spell them.
  const hostile = {
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
    "X-Original-URL": "/developers/workspaces/ws2/secrets/",
    "X-Rewrite-URL": "/developers/workspaces/ws2/secrets/",
    Forwarded: "for=198.51.100.7;host=evil.example;proto=http",
    "X-Forwarded-For": "198.51.100.7",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Prefix": "/evil",
    "X-Real-IP": "198.51.100.7",
    "Client-IP": "198.51.100.7",
    "True-Client-IP": "198.51.100.7",
    "X-Client-IP": "198.51.100.7",
    "X-Cluster-Client-IP": "198.51.100.7",
    "X-Originating-IP": "198.51.100.7",
    "X-Remote-IP": "198.51.100.7",
    "X-Remote-Addr": "198.51.100.7",
    "X-Host": "evil.example",
    "X-Original-Host": "evil.example",
    // Underscore spellings: CGI, WSGI, PHP and Rack read these as the dashed names.
    X_Keygate_User_Email: "ceo@corp.example",
    X_Keygate_User_Id: "ceo",
    X_Keygate_Workspaces: "*",
    X_HTTP_Method_Override: "DELETE",
    X_Forwarded_For: "198.51.100.7",
    X_Original_URL: "/developers/workspaces/ws2/secrets/",
    Proxy_Authorization: "Basic Zm9vOmJhcg==",
    X_Request_Id: "spoofed-request-id",
  };

  it("none reaches the origin; the identity is the key's; other headers pass", async () => {
    const { key, summary } = await createKey(gw, { workspaces: ["demo"], permissions: ["jobs:read", "workspaces:read"] });
    const r = await rawCall(gw, "GET", "/developers/workspaces/demo/jobs/", {
      authorization: `Api-Key ${key}`,
      ...hostile,
      "x-kept-header": "kept",
    });
    assert.equal(r.status, 200, r.text);
    const seen = lastOrigin();
    assert.equal(seen.method, "GET");
    for (const [name, value] of Object.entries(hostile)) {
      const got = seen.headers[name.toLowerCase()];
      assert.equal(got, undefined, `${name} reached the origin as ${JSON.stringify(got)}`);
      // Whatever the runtime may add itself, the client's value never arrives under any name.
      for (const [n, v] of Object.entries(seen.headers)) {
        if (n.replaceAll("_", "-") === name.toLowerCase().replaceAll("_", "-")) {
          assert.notEqual(v, value, `${name} arrived as ${n}`);
        }
      }
    }
    assert.equal(seen.headers["x-kept-header"], "kept");
    assert.equal(seen.identity.user_email, summary.email);
    assert.equal(seen.identity.user_id, summary.user_id);
    assert.equal(seen.identity.workspaces, "demo");
    assert.equal(seen.identity.signature_valid, true);
    assert.notEqual(r.headers.get("x-request-id"), "spoofed-request-id");
  });

  it("a client's X-Keygate-Workspaces: * does not widen the workspace listing", async () => {
    const { key } = await createKey(gw, { workspaces: ["demo"], permissions: ["workspaces:read"] });
    const r = await rawCall(gw, "GET", "/developers/workspaces/", {
      authorization: `Api-Key ${key}`,
      "X-Keygate-Workspaces": "*",
      X_Keygate_Workspaces: "*",
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.results.map((w) => w.id), ["demo"]);
  });
});

describe("contract section 7: the workspace listing follows the key's workspaces (X-Keygate-Workspaces)", () => {
  it("a key on [demo] lists only demo; a key on [demo, ws1] both; a * key every workspace", async () => {
    const list = async (workspaces) => {
      const { key } = await createKey(gw, { workspaces, permissions: ["workspaces:read"] });
      const r = await call(gw, "GET", "/developers/workspaces/", { key });
      assert.equal(r.status, 200, r.text);
      const seen = lastOrigin();
      // The signature is unchanged by the new header: the origin still verifies it.
      assert.equal(seen.identity.signature_valid, true);
      return { ids: r.json.results.map((w) => w.id), header: seen.headers["x-keygate-workspaces"] };
    };
    assert.deepEqual(await list(["demo"]), { ids: ["demo"], header: "demo" });
    assert.deepEqual(await list(["demo", "ws1"]), { ids: ["demo", "ws1"], header: "demo,ws1" });
    const all = await list(["*"]);
    assert.equal(all.header, "*");
    assert.ok(all.ids.length >= 3 && all.ids.includes("demo") && all.ids.includes("analytics"), JSON.stringify(all));
    const none = await list(["elsewhere"]);
    assert.deepEqual(none, { ids: [], header: "elsewhere" });
  });

  it("every forwarded call carries the header, the job trigger included", async () => {
    const { key } = await createKey(gw, { workspaces: ["ws1", "demo"], permissions: ["*"] });
    for (const [m, p] of [
      ["GET", "/developers/workspaces/ws1/"],
      ["GET", "/developers/workspaces/ws1/jobs/"],
      ["POST", "/developers/workspaces/ws1/jobs/daily_etl/run/"],
      ["DELETE", "/developers/workspaces/demo/variables/v1"],
    ]) {
      const r = await call(gw, m, p, { key });
      assert.ok(r.status < 300, `${m} ${p}: ${r.status} ${r.text}`);
      assert.equal(lastOrigin().headers["x-keygate-workspaces"], "ws1,demo", `${m} ${p}`);
    }
    const idem = await call(gw, "POST", "/developers/workspaces/ws1/jobs/daily_etl/run/", {
      key,
      headers: { "idempotency-key": `k-${randomBytes(4).toString("hex")}` },
    });
    assert.equal(idem.status, 201, idem.text);
    assert.equal(lastOrigin().headers["x-keygate-workspaces"], "ws1,demo");
  });
});

describe("contract section 8: failed attempts from one IPv6 client are counted per /64", () => {
  it("30 failures spread over a /64, then 429 at another address in it; another /64 is unaffected", async () => {
    await inOneFailureWindow();
    const prefix = `2001:db8:${randomBytes(2).toString("hex")}:${randomBytes(2).toString("hex")}`;
    const { key } = await createKey(gw);
    const used = new Set();
    const inPrefix = () => {
      let ip;
      do ip = randomClientIp(prefix);
      while (used.has(ip));
      used.add(ip);
      return ip;
    };
    for (let i = 0; i < 30; i++) {
      // Alternate malformed keys (no storage read) and well-formed unknown ones.
      const bad = i % 2 ? unissuedKey() : `kg_${randomBytes(8).toString("hex")}`;
      const r = await call(gw, "GET", "/v1/me", { key: bad, headers: { "cf-connecting-ip": inPrefix() } });
      assert.equal(r.status, 401, `failure ${i + 1}: ${r.text}`);
    }
    const over = await call(gw, "GET", "/v1/me", { key: unissuedKey(), headers: { "cf-connecting-ip": inPrefix() } });
    expectError(assert, over, 429, "too_many_failed_attempts");
    // The whole /64 is blocked now, even with a valid key and an address not seen before.
    const blocked = await call(gw, "GET", "/v1/me", { key, headers: { "cf-connecting-ip": inPrefix() } });
    expectError(assert, blocked, 429, "too_many_failed_attempts");
    // Another /64 (same /48 prefix's neighbour, too) still gets its own count.
    const neighbour = prefix.replace(/:([0-9a-f]{4})$/, (_, h) => `:${((parseInt(h, 16) + 1) % 0x10000).toString(16)}`);
    const other = await call(gw, "GET", "/v1/me", { key: unissuedKey(), headers: { "cf-connecting-ip": randomClientIp(neighbour) } });
    expectError(assert, other, 401, "invalid_api_key");
    const valid = await call(gw, "GET", "/v1/me", { key, headers: { "cf-connecting-ip": randomClientIp(neighbour) } });
    assert.equal(valid.status, 200, valid.text);
  });
});
