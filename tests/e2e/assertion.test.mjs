// docs/CONTRACT.md section 16: the signed assertion. Keys are made here (P-256, node:crypto);
// the assertion is verified by PyJWT (tests/django/verify_assertion.py) against the gateway's
// /.well-known/jwks.json, by the example origin, and by hand below.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, verify } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { ROOT, call, createKey, expectError, startGateway, waitForLog, useGateway } from "./harness.mjs";

const PYTHON = join(ROOT, ".venv", "bin", "python");
const JOBS = "/developers/workspaces/ws1/jobs";

/** A P-256 private JWK made here, with its kid (and the members a JWK tool adds). */
function newJwk(kid) {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { ...privateKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" };
}
const publicOf = ({ d, ...pub }) => pub;
const decode = (part) => JSON.parse(Buffer.from(part, "base64url"));

const current = newJwk("current");
const next = newJwk("next");
// Signing key "current", next key published.
const gw = useGateway({
  secrets: { ASSERTION_SIGNING_KEY: JSON.stringify(current) },
  vars: { ASSERTION_PUBLIC_KEYS: JSON.stringify({ keys: [publicOf(next)] }) },
});
// The assertion only: no ORIGIN_SIGNING_SECRET.
const only = useGateway({ secrets: { ASSERTION_SIGNING_KEY: JSON.stringify(current), ORIGIN_SIGNING_SECRET: null } });
// A signing key that is not one (another key's d), and a published key off the curve (this
// key's x with another's y): both refused by WebCrypto's import, the Worker has no curve code.
const offCurve = { ...publicOf(next), kid: "off", y: current.y };
const bad = useGateway({
  secrets: { ASSERTION_SIGNING_KEY: JSON.stringify({ ...current, d: publicOf(next).x }) },
  vars: { ASSERTION_PUBLIC_KEYS: JSON.stringify({ keys: [offCurve] }) },
});
// ENVIRONMENT = production without PUBLIC_URL.
const prod = useGateway({ secrets: { ASSERTION_SIGNING_KEY: JSON.stringify(current) }, vars: { ENVIRONMENT: "production" } });

/** The assertion the origin received last. */
const lastAssertion = (g) => g.origin.requests.at(-1).headers["keygate-assertion"];

test("GET /.well-known/jwks.json: public, cacheable, the signing key's public half and the next key, never d", async () => {
  const r = await call(gw, "GET", "/.well-known/jwks.json");
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get("cache-control"), "public, max-age=300");
  assert.deepEqual(r.json.keys.map((k) => k.kid), ["current", "next"]);
  for (const k of r.json.keys) {
    assert.equal(k.d, undefined);
    assert.deepEqual([k.kty, k.crv, k.alg, k.use], ["EC", "P-256", "ES256", "sig"]);
  }
  assert.equal(r.json.keys[0].x, current.x);
  assert.equal(r.text.includes(current.d), false);
  assert.equal((await call(gw, "HEAD", "/.well-known/jwks.json")).status, 200);
  expectError(assert, await call(gw, "POST", "/.well-known/jwks.json"), 405, "method_not_allowed");
});

test("every forwarded request carries an assertion that PyJWT verifies, with every claim", async () => {
  const { key, summary } = await createKey(gw, { workspaces: ["ws1", "ws2"], permissions: ["jobs:read", "jobs:run"] });
  const r = await call(gw, "GET", `${JOBS}?page=2`, { key, headers: { "x-request-id": "req-assert-1" } });
  assert.equal(r.status, 200, r.text);
  const token = lastAssertion(gw);
  assert.ok(token, "the origin received a Keygate-Assertion");
  assert.equal(r.json.identity.assertion_valid, true, "the example origin verified it too");
  const out = execFileSync(PYTHON, [join(ROOT, "tests", "django", "verify_assertion.py"), `${gw.url}/.well-known/jwks.json`, gw.origin.url, gw.url], { input: token, encoding: "utf8" });
  const { header, claims } = JSON.parse(out);
  assert.deepEqual(header, { alg: "ES256", kid: "current", typ: "keygate-assertion+jwt" });
  assert.equal(claims.iss, gw.url);
  assert.equal(claims.aud, gw.origin.url);
  assert.equal(claims.sub, summary.user_id);
  assert.equal(claims.email, summary.email);
  assert.equal(claims.key, summary.id);
  assert.equal(claims.ws, "ws1");
  assert.deepEqual(claims.workspaces, ["ws1", "ws2"]);
  assert.deepEqual(claims.permissions, ["jobs:read", "jobs:run"]);
  assert.equal(claims.htm, "GET");
  assert.equal(claims.htu, `${gw.origin.url}${JOBS}?page=2`);
  assert.equal(claims.request_id, "req-assert-1");
  assert.match(claims.jti, /^[0-9a-f]{32}$/);
  assert.equal(claims.exp - claims.iat, 60);
  assert.ok(Math.abs(claims.iat - Date.now() / 1000) < 30);
  assert.equal(claims.body_sha256, undefined, "no body held on a plain GET");
  // A second request: another jti, even under the same request id.
  await call(gw, "GET", JOBS, { key, headers: { "x-request-id": "req-assert-1" } });
  assert.notEqual(decode(lastAssertion(gw).split(".")[1]).jti, claims.jti);
  // Tampered: PyJWT refuses it.
  const parts = token.split(".");
  const forged = { ...claims, sub: "mallory" };
  const tampered = `${parts[0]}.${Buffer.from(JSON.stringify(forged)).toString("base64url")}.${parts[2]}`;
  assert.throws(() => execFileSync(PYTHON, [join(ROOT, "tests", "django", "verify_assertion.py"), `${gw.url}/.well-known/jwks.json`, gw.origin.url, gw.url], { input: tampered, stdio: "pipe" }));
});

test("the idempotent trigger's assertion covers the body (body_sha256)", async () => {
  const { key } = await createKey(gw, { permissions: ["jobs:run"] });
  const body = JSON.stringify({ params: { date: "2026-12-03" }, n: randomBytes(4).toString("hex") });
  const r = await call(gw, "POST", `${JOBS}/daily_etl/run/`, { key, body, headers: { "content-type": "application/json", "idempotency-key": randomBytes(8).toString("hex") } });
  assert.equal(r.status, 201, r.text);
  const claims = decode(lastAssertion(gw).split(".")[1]);
  assert.equal(claims.htm, "POST");
  assert.equal(claims.body_sha256, createHash("sha256").update(body).digest("base64url"));
});

test("a client's own Keygate-Assertion (any spelling) never reaches the origin", async () => {
  const { key } = await createKey(gw);
  const fake = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.";
  await call(gw, "GET", JOBS, { key, headers: { "keygate-assertion": fake, "Keygate_Assertion": fake } });
  const seen = gw.origin.requests.at(-1).headers;
  assert.notEqual(seen["keygate-assertion"], fake);
  assert.equal(seen["keygate_assertion"], undefined);
  assert.equal(decode(seen["keygate-assertion"].split(".")[0]).alg, "ES256");
});

test("with the assertion key only (no ORIGIN_SIGNING_SECRET): forwarded, signed, no X-Keygate-Signature", async () => {
  const { key } = await createKey(only);
  const r = await call(only, "GET", JOBS, { key });
  assert.equal(r.status, 200, r.text);
  const seen = only.origin.requests.at(-1);
  assert.equal(seen.headers["x-keygate-signature"], undefined);
  assert.equal(seen.identity.assertion_valid, true);
  // Verified by hand too: the published key, IEEE P1363 r || s.
  const [h, c, s] = seen.headers["keygate-assertion"].split(".");
  const jwks = (await call(only, "GET", "/.well-known/jwks.json")).json;
  const pub = createPublicKey({ key: jwks.keys.find((k) => k.kid === decode(h).kid), format: "jwk" });
  assert.ok(verify("sha256", Buffer.from(`${h}.${c}`), { key: pub, dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url")));
});

test("a signing key that is not one, a published key off the curve: 503 unavailable, each logged once as config_error, never its value", async () => {
  const { key } = await createKey(bad);
  for (let i = 0; i < 2; i += 1) expectError(assert, await call(bad, "GET", JOBS, { key }), 503, "unavailable");
  for (let i = 0; i < 2; i += 1) expectError(assert, await call(bad, "GET", "/.well-known/jwks.json"), 503, "unavailable");
  await waitForLog(bad, /ASSERTION_PUBLIC_KEYS: the key/);
  assert.equal((bad.log().match(/ASSERTION_SIGNING_KEY: d does not belong/g) ?? []).length, 1);
  assert.equal((bad.log().match(/ASSERTION_PUBLIC_KEYS: the key \\"off\\" is not a point on P-256/g) ?? []).length, 1);
  assert.ok(!bad.log().includes(current.d), "the private key never appears in the log");
  assert.equal(bad.origin.requests.length, 0, "nothing reached the origin");
});

test("production without PUBLIC_URL and a signing key: 503, logged once, even with the HMAC secret set", async () => {
  const { key } = await createKey(prod);
  expectError(assert, await call(prod, "GET", JOBS, { key }), 503, "unavailable");
  await waitForLog(prod, /config_error/);
  assert.equal((prod.log().match(/PUBLIC_URL must be set in production/g) ?? []).length, 1);
  assert.equal(prod.origin.requests.length, 0);
});

test("rotation without downtime: before, across and after the switch, old and new assertions verify", async () => {
  const oldKey = newJwk("2026-11");
  const newKey = newJwk("2026-12");
  const rot = await startGateway({
    secrets: { ASSERTION_SIGNING_KEY: JSON.stringify(oldKey) },
    // Step 1: the next key published beside the signing one.
    vars: { ASSERTION_PUBLIC_KEYS: JSON.stringify({ keys: [publicOf(newKey)] }) },
  });
  try {
    const { key } = await createKey(rot);
    const verifies = (token, jwks) => {
      const [h, c, s] = token.split(".");
      const jwk = jwks.keys.find((k) => k.kid === decode(h).kid);
      if (!jwk) return false;
      const pub = createPublicKey({ key: jwk, format: "jwk" });
      return verify("sha256", Buffer.from(`${h}.${c}`), { key: pub, dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url"));
    };
    const jwksBefore = (await call(rot, "GET", "/.well-known/jwks.json")).json;
    assert.deepEqual(jwksBefore.keys.map((k) => k.kid), ["2026-11", "2026-12"]);
    await call(rot, "GET", JOBS, { key });
    const signedOld = lastAssertion(rot);
    assert.equal(decode(signedOld.split(".")[0]).kid, "2026-11");

    // Step 2: both public halves in ASSERTION_PUBLIC_KEYS, then the new private key as the secret.
    rot.vars.ASSERTION_PUBLIC_KEYS = JSON.stringify({ keys: [publicOf(newKey), publicOf(oldKey)] });
    const env = readFileSync(rot.envFile, "utf8").replace(/^ASSERTION_SIGNING_KEY=.*$/m, `ASSERTION_SIGNING_KEY=${JSON.stringify(newKey)}`);
    writeFileSync(rot.envFile, env);
    rot.extraSecrets.push(JSON.stringify(newKey));
    await rot.restart();
    await call(rot, "GET", JOBS, { key });
    const signedNew = lastAssertion(rot);
    assert.equal(decode(signedNew.split(".")[0]).kid, "2026-12");
    const jwksAfter = (await call(rot, "GET", "/.well-known/jwks.json")).json;
    assert.deepEqual(jwksAfter.keys.map((k) => k.kid), ["2026-12", "2026-11"]);
    // An origin with the key set cached before the switch, and one that fetched it after: both
    // accept both assertions.
    for (const jwks of [jwksBefore, jwksAfter]) {
      assert.ok(verifies(signedOld, jwks));
      assert.ok(verifies(signedNew, jwks));
    }
    assert.equal(rot.origin.requests.at(-1).identity.assertion_valid, true);

    // Step 3: the old key retired; its assertions no longer verify, the new ones still do.
    rot.vars.ASSERTION_PUBLIC_KEYS = "";
    await rot.restart();
    const jwksLast = (await call(rot, "GET", "/.well-known/jwks.json")).json;
    assert.deepEqual(jwksLast.keys.map((k) => k.kid), ["2026-12"]);
    assert.equal(verifies(signedOld, jwksLast), false);
    assert.ok(verifies(signedNew, jwksLast));
  } finally {
    await rot.stop();
  }
});
