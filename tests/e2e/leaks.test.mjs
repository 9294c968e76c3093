// End to end through `wrangler dev` (workerd): POST /v1/leaks, GitHub secret scanning's partner
// alert (docs/CONTRACT.md section 14), signed with a P-256 key pair made here with node:crypto
// and published to the gateway through SECRET_SCANNING_KEYS, as GitHub's endpoint would.

import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { call, createKey, expectError, noInternals, rawCall, startGateway, unissuedKey, useGateway, configWithout } from "./harness.mjs";

const current = generateKeyPairSync("ec", { namedCurve: "P-256" });
const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
const KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
const pem = (pair) => pair.publicKey.export({ type: "spki", format: "pem" });

// A listed key whose point is off the curve (the last byte of y changed): WebCrypto refuses to
// import it, so nothing it "signs" verifies.
const offCurveDer = other.publicKey.export({ type: "spki", format: "der" });
offCurveDer[offCurveDer.length - 1] ^= 1;
const offCurvePem = `-----BEGIN PUBLIC KEY-----\n${offCurveDer.toString("base64")}\n-----END PUBLIC KEY-----\n`;
const keys = {
  public_keys: [
    { key_identifier: KEY_ID, key: pem(current), is_current: true },
    { key_identifier: "off-curve", key: offCurvePem, is_current: false },
  ],
};
const gw = useGateway({ vars: { SECRET_SCANNING_KEYS: JSON.stringify(keys) } });

/** GitHub's signature: base64 of the DER ECDSA P-256 / SHA-256 signature of the raw body. */
const signature = (body, pair = current) => sign("sha256", Buffer.from(body), pair.privateKey).toString("base64");

function report(body, { id = KEY_ID, sig = signature(body), to = gw } = {}) {
  const headers = { "content-type": "application/json" };
  if (id !== null) headers["github-public-key-identifier"] = id;
  if (sig !== null) headers["github-public-key-signature"] = sig;
  return call(to, "POST", "/v1/leaks", { body, headers });
}

const match = (token, url = "https://github.com/octo/repo/blob/main/config.py") =>
  ({ token, type: "keygate_api_key", url, source: "content" });

async function works(key, to = gw) {
  return (await call(to, "GET", "/v1/me", { key })).status;
}

/** Whether the user's trail holds a `key.leaked` entry. */
async function leakRecorded(to, userId) {
  const trail = await call(to, "GET", `/v1/audit-events?user_id=${userId}`, { admin: true });
  assert.equal(trail.status, 200, trail.text);
  return trail.json.results.some((e) => e.action === "key.leaked");
}

describe("section 14: leak reports", () => {
  it("a live key reported by a signed report is revoked, labelled true_positive, and audited", async () => {
    const { key, summary } = await createKey(gw);
    assert.equal(await works(key), 200);
    const unknown = unissuedKey();
    const body = JSON.stringify([match(key), match(unknown), match("not-a-key-at-all")]);
    const r = await report(body);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, [
      { token_raw: key, token_type: "keygate_api_key", label: "true_positive" },
      { token_raw: unknown, token_type: "keygate_api_key", label: "false_positive" },
      { token_raw: "not-a-key-at-all", token_type: "keygate_api_key", label: "false_positive" },
    ]);
    expectError(assert, await call(gw, "GET", "/v1/me", { key }), 401, "revoked_api_key");
    const got = await call(gw, "GET", `/v1/api-keys/${summary.id}`, { admin: true });
    assert.ok(got.json.revoked_at, got.text);
    const trail = await call(gw, "GET", `/v1/audit-events?user_id=${summary.user_id}`, { admin: true });
    assert.equal(trail.status, 200, trail.text);
    const leaked = trail.json.results[0];
    assert.equal(leaked.action, "key.leaked");
    assert.equal(leaked.key_id, summary.id);
    assert.deepEqual(leaked.actor, { type: "leak_report", url: "https://github.com/octo/repo/blob/main/config.py" });
    assert.ok(!trail.text.includes(key), "no key in the trail");
    // The answer names the token (GitHub's format); the log never does.
    assert.ok(!gw.log().includes(key));

    // Reported again: still a true positive, nothing recorded twice.
    const again = await report(JSON.stringify([match(key)]));
    assert.equal(again.json[0].label, "true_positive");
    const trail2 = await call(gw, "GET", `/v1/audit-events?user_id=${summary.user_id}`, { admin: true });
    assert.equal(trail2.json.results.filter((e) => e.action === "key.leaked").length, 1);
  });

  it("a token reported several times in one report is revoked once: every copy labelled, one entry", async () => {
    const { key, summary } = await createKey(gw);
    const body = JSON.stringify([
      match(key, "https://github.com/octo/repo/blob/main/a.py"),
      match(unissuedKey()),
      match(key, "https://github.com/octo/repo/blob/main/b.py"),
      match(key, "https://github.com/octo/repo/blob/main/c.py"),
    ]);
    const r = await report(body);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(
      r.json.map((l) => l.label),
      ["true_positive", "false_positive", "true_positive", "true_positive"],
    );
    assert.equal(await works(key), 401);
    const trail = await call(gw, "GET", `/v1/audit-events?user_id=${summary.user_id}`, { admin: true });
    assert.equal(trail.json.results.filter((e) => e.action === "key.leaked").length, 1);
  });

  it("tampered body, tampered or foreign signature, unknown or missing identifier: 401, nothing revoked", async () => {
    const { key } = await createKey(gw);
    const body = JSON.stringify([match(key)]);
    const good = signature(body);
    const tamperedBody = JSON.stringify([match(key, "https://github.com/elsewhere")]);
    const flipped = Buffer.from(good, "base64");
    flipped[flipped.length - 1] ^= 1;
    const cases = [
      ["tampered body", () => report(tamperedBody, { sig: good })],
      ["tampered signature", () => report(body, { sig: flipped.toString("base64") })],
      ["signed by another key", () => report(body, { sig: signature(body, other) })],
      ["unknown identifier", () => report(body, { id: "deadbeef" })],
      ["no identifier", () => report(body, { id: null })],
      ["no signature", () => report(body, { sig: null })],
      ["signature not base64", () => report(body, { sig: "%%%" })],
      ["signature as r || s, not DER", () => report(body, { sig: sign("sha256", Buffer.from(body), { key: current.privateKey, dsaEncoding: "ieee-p1363" }).toString("base64") })],
      ["a listed key off the curve", () => report(body, { id: "off-curve", sig: signature(body, other) })],
    ];
    for (const [name, send] of cases) {
      const r = await send();
      expectError(assert, r, 401, "invalid_signature");
      noInternals(assert, r);
      assert.equal(await works(key), 200, `${name}: the key still works`);
    }
  });

  it("a signed body that is not a report is 400; too many tokens is 400; GET is 405", async () => {
    const notArray = JSON.stringify({ token: "x" });
    expectError(assert, await report(notArray), 400, "validation_error");
    const many = JSON.stringify(Array.from({ length: 101 }, () => match(unissuedKey())));
    expectError(assert, await report(many), 400, "validation_error");
    expectError(assert, await call(gw, "GET", "/v1/leaks"), 405, "method_not_allowed");
  });

  it("a signed report over 256 KiB is 413 payload_too_large, declared or streamed, nothing revoked; 256 KiB exactly is read", async () => {
    const LIMIT = 256 * 1024;
    const { key, summary } = await createKey(gw);
    const base = JSON.stringify([match(key)]);
    // JSON allows trailing whitespace: the same report padded to a given size, validly signed.
    const padded = (size) => base + " ".repeat(size - Buffer.byteLength(base));
    const over = padded(LIMIT + 1);
    const headers = {
      "content-type": "application/json",
      "github-public-key-identifier": KEY_ID,
      "github-public-key-signature": signature(over),
    };
    // Declared by Content-Length, and streamed (chunked, no length) so that only reading counts.
    const declared = await report(over);
    expectError(assert, declared, 413, "payload_too_large");
    noInternals(assert, declared);
    const streamed = await rawCall(gw, "POST", "/v1/leaks", headers, over);
    assert.equal(streamed.status, 413, streamed.text);
    assert.equal(streamed.json?.code, "payload_too_large", streamed.text);
    assert.equal(await works(key), 200, "the key still works");
    assert.equal(await leakRecorded(gw, summary.user_id), false);
    // The limit itself is inside: the same report at exactly 256 KiB revokes the key.
    const at = await report(padded(LIMIT));
    assert.equal(at.status, 200, at.text);
    assert.equal(at.json[0].label, "true_positive");
    assert.equal(await works(key), 401);
  });
});

describe("section 14: leak reports without GitHub's keys", () => {
  it("SECRET_SCANNING_KEYS empty, absent or unreadable: a validly signed report is 401 invalid_signature, nothing revoked", async () => {
    // Signed by the very key pair the gateway above trusts: if any of these configurations
    // failed open, the key would be revoked.
    const persist = mkdtempSync(join(tmpdir(), "keygate-leaks-nokeys-"));
    const config = configWithout({ vars: ["SECRET_SCANNING_KEYS"] });
    let g;
    try {
      g = await startGateway({ persist }); // wrangler.toml's own value: ""
      const { key, summary } = await createKey(g);
      const body = JSON.stringify([match(key)]);
      const unreadable = { public_keys: [{ key_identifier: KEY_ID, key: "not a PEM", is_current: true }] };
      const configurations = [
        ["empty", async () => {}],
        ["not JSON", async () => {
          g.vars.SECRET_SCANNING_KEYS = "{not json";
          await g.restart();
        }],
        ["a key that does not parse", async () => {
          g.vars.SECRET_SCANNING_KEYS = JSON.stringify(unreadable);
          await g.restart();
        }],
        ["absent", async () => {
          await g.stop();
          g = await startGateway({ persist, config });
        }],
      ];
      for (const [name, configure] of configurations) {
        await configure();
        const r = await report(body, { to: g });
        expectError(assert, r, 401, "invalid_signature");
        noInternals(assert, r);
        assert.equal(await works(key, g), 200, `${name}: the key still works`);
      }
      assert.equal(await leakRecorded(g, summary.user_id), false);
      g.issuedKeys.push(key); // checked absent from this gateway's log too
    } finally {
      await g?.stop();
      rmSync(persist, { recursive: true, force: true });
    }
  });
});
