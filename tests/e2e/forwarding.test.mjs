// End to end through `wrangler dev` (workerd) with local KV and a real origin on 127.0.0.1:
// routing and forwarding (docs/CONTRACT.md sections 5 and 7): path checks, the path-to-permission
// map, headers stripped and added, the signature (checked by the test, by the origin, and refused
// by an origin holding another secret), streamed bodies, 413, 504, relayed redirects, and the
// log lines (section 10).

import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { startOrigin } from "../../examples/origin.mjs";
import {
  call,
  createKey,
  expectError,
  rawCall,
  replayTo,
  secret,
  secretsInLog,
  sha256hex,
  signedWith,
  startGateway,
  unissuedKey,
  useGateway,
  waitForLog,
} from "./harness.mjs";

const TIMEOUT_MS = 1500;
const MAX_BODY = 65536;
const gw = useGateway({
  vars: { ORIGIN_TIMEOUT_MS: String(TIMEOUT_MS), MAX_BODY_BYTES: String(MAX_BODY) },
  handle: async ({ req, res }) => {
    if (req.url.includes("/hang/")) return true; // never answers: the gateway must time out
    if (req.url.includes("/redirect/")) {
      res.writeHead(302, { location: "/elsewhere", "x-origin": "yes" });
      res.end();
      return true;
    }
    return false;
  },
});

const originCount = () => gw.origin.requests.length;
const lastOrigin = () => gw.origin.requests[gw.origin.requests.length - 1];

describe("section 5: path to permission", () => {
  const cases = [
    ["GET", "/developers/workspaces/", "workspaces:read"],
    ["GET", "/developers/workspaces/ws1/", "workspaces:read"],
    ["GET", "/developers/workspaces/ws1/jobs/", "jobs:read"],
    ["HEAD", "/developers/workspaces/ws1/jobs/", "jobs:read"],
    ["POST", "/developers/workspaces/ws1/jobs/", "jobs:write"],
    ["DELETE", "/developers/workspaces/ws1/jobs/j1/", "jobs:write"],
    ["POST", "/developers/workspaces/ws1/jobs/j1/run/", "jobs:run"],
    ["POST", "/developers/workspaces/ws1/jobs/j1/run", "jobs:run"],
    ["GET", "/developers/workspaces/ws1/orchestration/hooks/", "orchestration:read"],
    ["PUT", "/developers/workspaces/ws1/orchestration/hooks/h1/", "orchestration:write"],
    ["GET", "/developers/workspaces/ws1/secrets/", "secrets:read"],
    ["PATCH", "/developers/workspaces/ws1/secrets/s1/", "secrets:write"],
    ["GET", "/developers/workspaces/ws1/variables/", "variables:read"],
    ["POST", "/developers/workspaces/ws1/variables/", "variables:write"],
  ];
  for (const [method, path, permission] of cases) {
    it(`${method} ${path} needs ${permission}`, async () => {
      const ok = await createKey(gw, { permissions: [permission] });
      const r = await call(gw, method, path, { key: ok.key });
      assert.ok(r.status < 300, `${r.status} ${r.text}`);
      assert.equal(lastOrigin().method, method);
      const others = ["workspaces:read", "jobs:read", "jobs:write", "jobs:run", "secrets:read", "variables:write"]
        .filter((p) => p !== permission);
      const denied = await createKey(gw, { permissions: others });
      const r2 = await call(gw, method, path, { key: denied.key });
      if (method === "HEAD") assert.equal(r2.status, 403); // no body on HEAD
      else expectError(assert, r2, 403, "permission_denied");
    });
  }

  it("other resources are 404 and other methods 405, without contacting the origin", async () => {
    const { key } = await createKey(gw);
    const before = originCount();
    expectError(assert, await call(gw, "GET", "/developers/workspaces/ws1/billing/", { key }), 404, "not_found");
    expectError(assert, await call(gw, "GET", "/developers/other/", { key }), 404, "not_found");
    const opt = await call(gw, "OPTIONS", "/developers/workspaces/ws1/jobs/", { key });
    expectError(assert, opt, 405, "method_not_allowed");
    assert.equal(opt.headers.get("allow"), "GET, HEAD, POST, PUT, PATCH, DELETE");
    expectError(assert, await call(gw, "POST", "/developers/workspaces/", { key }), 405, "method_not_allowed");
    assert.equal(originCount(), before);
  });
});

describe("section 5: path checks", () => {
  it("encoded slash, NUL, control characters, backslash and empty segments: 400 invalid_path", async () => {
    const { key } = await createKey(gw);
    const before = originCount();
    for (const p of [
      "/developers/workspaces/ws1%2Fws2/jobs/",
      "/developers/workspaces/ws1/jobs/a%2fb/",
      "/developers/workspaces/ws1/jobs/%00/",
      "/developers/workspaces/ws1/jobs/%0A/",
      "/developers/workspaces/ws1/jobs/%5C/",
      "/developers//workspaces/ws1/jobs/",
      "/developers/workspaces/ws1//jobs/",
    ]) {
      const r = await rawCall(gw, "GET", p, { authorization: `Api-Key ${key}` });
      assert.equal(r.status, 400, `${p}: ${r.text}`);
      assert.equal(r.json.code, "invalid_path");
    }
    assert.equal(originCount(), before);
  });

  it("dot segments never reach the origin outside the authorized workspace", async () => {
    // The runtime resolves `..` (also `%2e%2e`) before the Worker runs; whatever it hands over is
    // what is checked and what is forwarded.
    const { key } = await createKey(gw, { workspaces: ["ws1"], permissions: ["jobs:read"] });
    const before = originCount();
    for (const p of [
      "/developers/workspaces/ws1/../ws2/jobs/",
      "/developers/workspaces/ws1/%2e%2e/ws2/jobs/",
      "/developers/workspaces/ws1/jobs/../../ws2/jobs/",
    ]) {
      const r = await rawCall(gw, "GET", p, { authorization: `Api-Key ${key}` });
      assert.ok([400, 403].includes(r.status), `${p}: ${r.status} ${r.text}`);
    }
    assert.equal(originCount(), before);
  });
});

describe("table 4: anything else", () => {
  it("anything else: 404 not_found without contacting the origin", async () => {
    const { key } = await createKey(gw);
    const before = originCount();
    for (const p of ["/", "/v2/me", "/developers", "/api/v1/jobs", "/v1/api-keys/key_0000000000000000/unroll"]) {
      expectError(assert, await call(gw, "GET", p, { key }), 404, "not_found");
    }
    assert.equal(originCount(), before);
  });
});

describe("section 7: forwarding to the origin", () => {
  it("strips Authorization and client X-Keygate-* headers, adds the signed identity", async () => {
    const { key, summary } = await createKey(gw, { email: "ops@example.com" });
    const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/?page=2&q=a%2Fb", {
      key,
      headers: {
        "x-keygate-user-id": "mallory",
        "x-keygate-key-id": "key_ffffffffffffffff",
        "x-keygate-signature": "t=1,v1=00",
        "x-keygate-whatever": "spoof",
        // A client's own assertion (section 16), in both spellings, on a gateway that signs none.
        "keygate-assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.",
        "Keygate_Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.",
        "x-custom": "kept",
      },
    });
    assert.equal(r.status, 200, r.text);
    const seen = lastOrigin();
    assert.equal(seen.url, "/developers/workspaces/ws1/jobs/?page=2&q=a%2Fb");
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(seen.headers["x-keygate-user-id"], summary.user_id);
    assert.equal(seen.headers["x-keygate-key-id"], summary.id);
    assert.equal(seen.headers["x-keygate-user-email"], "ops@example.com");
    assert.equal(seen.headers["x-keygate-workspace-id"], "ws1");
    assert.equal(seen.headers["x-keygate-whatever"], undefined);
    assert.equal(seen.headers["keygate-assertion"], undefined);
    assert.equal(seen.headers["keygate_assertion"], undefined);
    assert.equal(seen.headers["x-custom"], "kept");
    assert.ok(!JSON.stringify(seen.headers).includes(key));

    // Verify the signature independently of the example origin's own check.
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(seen.headers["x-keygate-signature"]);
    assert.ok(m, seen.headers["x-keygate-signature"]);
    assert.ok(Math.abs(Number(m[1]) - Date.now() / 1000) < 60);
    const payload = `${m[1]}\nGET\n/developers/workspaces/ws1/jobs/?page=2&q=a%2Fb\n${summary.id}\n${summary.user_id}\nws1`;
    assert.equal(m[2], createHmac("sha256", gw.signingSecret).update(payload).digest("hex"));
    assert.equal(seen.identity.signature_valid, true);
  });

  it("an origin holding another secret refuses the gateway's call; the right secret accepts the same call", async () => {
    // A second gateway, pointed at an origin whose secret is not the gateway's (as after a
    // botched rotation). The harness also started that gateway's correctly configured origin
    // (`other.origin`, holding `other.signingSecret`), which then judges the very same call.
    const wrongSecret = secret("wrong");
    const wrong = await startOrigin({ signingSecret: wrongSecret });
    let other;
    try {
      other = await startGateway({ originUrl: wrong.url });
      // Compared without printing either secret on failure.
      assert.ok(other.signingSecret !== wrongSecret, "the gateway's secret differs from the wrong origin's");
      const { key, summary } = await createKey(other, { workspaces: ["ws1"], permissions: ["jobs:read"] });
      const path = "/developers/workspaces/ws1/jobs/?page=1";

      // Through the gateway to the wrong origin: forwarded, signed, and refused by that origin.
      const refused = await call(other, "GET", path, { key });
      assert.equal(refused.status, 401, refused.text);
      assert.equal(refused.json.error, "missing or invalid X-Keygate-Signature and Keygate-Assertion");
      assert.equal(refused.json.identity.assertion_valid, false, "no assertion key configured: none sent");
      assert.equal(refused.json.identity.signature_valid, false);
      assert.equal(refused.json.identity.key_id, summary.id, "the refused call did come from the gateway");
      assert.equal(wrong.requests.length, 1);
      const sent = wrong.requests[0];
      assert.equal(sent.url, path);
      assert.match(sent.headers["x-keygate-signature"], /^t=\d+,v1=[0-9a-f]{64}$/);

      // The test's own HMAC check: the gateway's secret verifies it, the origin's does not.
      assert.equal(signedWith(other.signingSecret, sent), true);
      assert.equal(signedWith(wrongSecret, sent), false);
      // And a forged signature (its last hex digit changed) fails under the right secret too.
      const sig = sent.headers["x-keygate-signature"];
      const forgedSig = sig.slice(0, -1) + (sig.endsWith("0") ? "1" : "0");
      const forged = { ...sent, headers: { ...sent.headers, "x-keygate-signature": forgedSig } };
      assert.equal(signedWith(other.signingSecret, forged), false);

      // The same signed call, as the wrong origin received it, is accepted by the origin that
      // holds the gateway's secret...
      const accepted = await replayTo(other.origin.url, sent);
      assert.equal(accepted.status, 200, accepted.text);
      assert.equal(accepted.json.identity.signature_valid, true);
      assert.equal(accepted.json.identity.key_id, summary.id);
      // ...and refused by it once the signature is tampered with.
      const tampered = await replayTo(other.origin.url, forged);
      assert.equal(tampered.status, 401, tampered.text);
      assert.equal(tampered.json.identity.signature_valid, false);

      // Through the gateway, now pointed at the correctly configured origin: same key, same call.
      other.vars.ORIGIN_URL = other.origin.url;
      await other.restart();
      const ok = await call(other, "GET", path, { key });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.identity.signature_valid, true);
      assert.equal(ok.json.identity.key_id, summary.id);
      assert.equal(wrong.requests.length, 1, "the wrong origin saw nothing more");
    } finally {
      await other?.stop();
      await wrong.close();
    }
  });

  it("workspace list carries no workspace header and signs an empty workspace", async () => {
    const { key, summary } = await createKey(gw, { permissions: ["workspaces:read"] });
    const r = await call(gw, "GET", "/developers/workspaces/", { key });
    assert.equal(r.status, 200);
    const seen = lastOrigin();
    assert.equal(seen.headers["x-keygate-workspace-id"], undefined);
    assert.equal(seen.identity.signature_valid, true);
    assert.equal(seen.identity.user_id, summary.user_id);
  });

  it("hop-by-hop headers are not forwarded", async () => {
    const { key } = await createKey(gw);
    const r = await rawCall(gw, "GET", "/developers/workspaces/ws1/jobs/", {
      authorization: `Api-Key ${key}`,
      // Headers named in `Connection` are removed by the runtime's HTTP server before the Worker
      // runs (the Worker never sees the Connection header); the core strips them regardless.
      connection: "keep-alive",
      "keep-alive": "timeout=5",
      "proxy-authorization": "Basic Zm9vOmJhcg==",
      te: "trailers",
    });
    assert.equal(r.status, 200, r.text);
    const seen = lastOrigin().headers;
    for (const h of ["keep-alive", "proxy-authorization", "te", "authorization"]) {
      assert.equal(seen[h], undefined, h);
    }
  });

  it("the job-trigger route relays the origin's answer", async () => {
    const { key, summary } = await createKey(gw, { permissions: ["jobs:run"], email: "etl@example.com" });
    const r = await call(gw, "POST", "/developers/workspaces/ws1/jobs/daily_etl/run/", { key, body: { params: { day: "2026-11-27" } } });
    assert.equal(r.status, 201, r.text);
    assert.match(r.json.execution_id, /^exec_[0-9a-f]{16}$/);
    assert.equal(r.json.triggered_by, "etl@example.com");
    assert.equal(lastOrigin().body, JSON.stringify({ params: { day: "2026-11-27" } }));
    assert.equal(lastOrigin().identity.key_id, summary.id);
  });

  it("request bodies arrive byte for byte, and large ones are streamed", async () => {
    const { key } = await createKey(gw);
    const big = randomBytes(MAX_BODY / 2).toString("hex"); // exactly MAX_BODY bytes
    const r = await call(gw, "PUT", "/developers/workspaces/ws1/variables/v1/", { key, body: big, headers: { "content-type": "text/plain" } });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.equal(createHash("sha256").update(lastOrigin().body).digest("hex"), sha256hex(big));
  });

  it("a declared Content-Length over MAX_BODY_BYTES: 413 payload_too_large", async () => {
    const { key } = await createKey(gw);
    const before = originCount();
    const r = await call(gw, "POST", "/developers/workspaces/ws1/variables/", { key, body: "x".repeat(MAX_BODY + 1), headers: { "content-type": "text/plain" } });
    expectError(assert, r, 413, "payload_too_large");
    assert.equal(originCount(), before);
  });

  it("the origin's status, headers and redirects are relayed, not followed", async () => {
    const { key } = await createKey(gw);
    const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/redirect/", { key });
    assert.equal(r.status, 302);
    assert.equal(r.headers.get("location"), "/elsewhere");
    assert.equal(r.headers.get("x-origin"), "yes");
    assert.ok(r.headers.get("x-request-id"));
    const nf = await call(gw, "GET", "/developers/workspaces/ws1/jobs/unknown-thing/", { key });
    assert.equal(nf.status, 200);
  });

  it("no answer within ORIGIN_TIMEOUT_MS: 504 origin_timeout", async () => {
    const { key } = await createKey(gw);
    const t0 = Date.now();
    const r = await call(gw, "GET", "/developers/workspaces/ws1/jobs/hang/", { key });
    expectError(assert, r, 504, "origin_timeout");
    const took = Date.now() - t0;
    assert.ok(took >= TIMEOUT_MS - 100 && took < TIMEOUT_MS + 10_000, `${took} ms`);
  });
});

describe("section 10: logs", () => {
  it("one JSON line per request with the fields of contract section 10", async () => {
    const { key, summary } = await createKey(gw);
    const rid = `log-${randomBytes(4).toString("hex")}`;
    await call(gw, "GET", "/developers/workspaces/ws1/jobs/", { key, headers: { "x-request-id": rid } });
    const bad = `log-${randomBytes(4).toString("hex")}`;
    await call(gw, "GET", "/v1/me", { key: unissuedKey(), headers: { "x-request-id": bad } });
    await waitForLog(gw, new RegExp(bad));
    const lines = gw.log().split("\n").filter((l) => l.startsWith("{"));
    const mine = lines.map((l) => JSON.parse(l)).filter((o) => o.request_id === rid);
    assert.equal(mine.length, 1);
    const o = mine[0];
    assert.equal(o.method, "GET");
    assert.equal(o.path, "/developers/workspaces/ws1/jobs/");
    assert.equal(o.status, 200);
    assert.equal(o.key_id, summary.id);
    assert.equal(o.user_id, summary.user_id);
    assert.equal(typeof o.duration_ms, "number");
    const failed = lines.map((l) => JSON.parse(l)).find((x) => x.request_id === bad);
    assert.equal(failed.status, 401);
    assert.equal(failed.code, "invalid_api_key");
  });

  it("no issued key, key hash, admin token or signing secret appears in the worker's log", async () => {
    // Runs last in this file: by now every test above has issued keys and made calls. (Every
    // gateway of every test file is checked the same way when it stops: harness.mjs.)
    assert.ok(gw.issuedKeys.length > 20, `only ${gw.issuedKeys.length} keys issued`);
    assert.deepEqual(secretsInLog(gw), []);
  });
});
