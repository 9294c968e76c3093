// docs/CONTRACT.md section 15: the platform's existing djangorestframework-api-key keys, made by
// the real package (tests/django/make_keys.py: Django, DRF and the package from PyPI, installed
// by scripts/setup.sh), dumped with `dumpdata`, imported with scripts/import-drf-keys.mjs, then
// used through wrangler dev with LEGACY_KEYS = "drf-api-key".
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, pbkdf2Sync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { ROOT, call, expectError, waitForLog, useGateway } from "./harness.mjs";
import { main as importer, toRows } from "../../scripts/import-drf-keys.mjs";

const PYTHON = join(ROOT, ".venv", "bin", "python");
const USER = "platform-user-1";
const JOBS = "/developers/workspaces/ws1/jobs";
// A small cap: the import is never refused by it, but counts toward it afterwards.
const gw = useGateway({ vars: { LEGACY_KEYS: "drf-api-key", MAX_KEYS_PER_USER: "3" } });
const off = useGateway();
let dir;
let keys;
let dump;
let mapFile;

const alnum = (n) => {
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(n)].map((b) => chars[b % chars.length]).join("");
};
/** A key of the package's shape, made here (for the synthesized salted variants). */
const freshKey = () => `${alnum(8)}.${alnum(32)}`;
const row = (over) => ({ user_id: USER, name: "row", workspaces: ["ws1"], permissions: ["*"], ...over });
const importRows = (rows) => call(gw, "POST", "/v1/api-keys/import", { admin: true, body: { format: "drf-api-key", keys: rows } });
const byNameOf = (name) => dump.find((d) => d.fields.name === name).fields;
const checksRun = (prefix) => (gw.log().match(new RegExp(`"key_check":"pbkdf2[^"]*","prefix":"${prefix}"`, "g")) ?? []).length;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "keygate-drf-"));
  execFileSync(PYTHON, [join(ROOT, "tests", "django", "make_keys.py"), dir], { stdio: ["ignore", "ignore", "inherit"] });
  keys = JSON.parse(readFileSync(join(dir, "keys.json"), "utf8"));
  dump = JSON.parse(readFileSync(join(dir, "dump.json"), "utf8"));
  mapFile = join(dir, "map.json");
  writeFileSync(
    mapFile,
    JSON.stringify({ user_id: { value: USER }, email: { value: "ops@example.com" }, workspaces: { value: ["ws1"] }, permissions: { value: ["*"] } }),
  );
  // The plaintext keys are secrets of this test: the gateways' logs are checked for them.
  await Promise.all([gw.ready, off.ready]); // root-level hooks run side by side
  for (const k of Object.values(keys)) gw.issuedKeys.push(k), off.issuedKeys.push(k);
});

after(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the real package's dump: both hashers are what section 15 reads", () => {
  const byName = Object.fromEntries(dump.map((d) => [d.fields.name, d.fields]));
  assert.match(byName["v3-a"].hashed_key, /^sha512\$\$[0-9a-f]{128}$/);
  assert.match(byName["v2-pbkdf2"].hashed_key, /^pbkdf2_sha256\$1000000\$/);
  assert.match(byName["v2-pbkdf2-low"].hashed_key, /^pbkdf2_sha256\$50000\$/);
  for (const [name, key] of Object.entries(keys)) assert.equal(key.split(".")[0], byName[name].prefix, name);
});

test("importer: a numeric user foreign key, zoned and naive dates, hashers checked before sending", () => {
  const entry = (fields) => ({ model: "app.apikey", pk: "x", fields: { prefix: "Ab12Cd34", name: "n", revoked: false, ...fields } });
  const sha = `sha512$$${"a".repeat(128)}`;
  const map = { user_id: { field: "user" }, workspaces: { value: ["*"] }, permissions: { value: ["jobs:read"] }, external_id: { field: "ext" } };
  const [a, b, c] = toRows(
    [
      entry({ hashed_key: sha, user: 42, ext: 7, created: "2024-05-06T07:08:09.123456Z", expiry_date: null }),
      entry({ hashed_key: sha, user: 43, created: "2024-05-06T07:08:09.5", expiry_date: "2030-01-01T00:00:00+00:00" }),
      entry({ hashed_key: "bcrypt_sha256$$2b$12$abc", user: 44 }),
    ],
    map,
  );
  assert.equal(a.problem, null);
  assert.deepEqual(
    [a.row.user_id, a.row.external_id, a.row.created_at, a.row.expires_at],
    ["42", "7", "2024-05-06T07:08:09Z", undefined],
  );
  assert.deepEqual([b.row.created_at, b.row.expires_at], ["2024-05-06T07:08:09Z", "2030-01-01T00:00:00Z"]);
  assert.equal(c.problem, "unsupported_hasher");
  assert.throws(() => toRows([], { user_id: { value: "u" } }), /workspaces/);
});

test("importer: a dry run sends nothing; the import answers per row; a second run is all `exists`", async () => {
  const dry = await importer(["--dump", join(dir, "dump.json"), "--map", mapFile, "--dry-run"], {});
  assert.deepEqual(dry.counts, { imported: 5, exists: 0, skipped: 1, invalid: 0 });
  expectError(assert, await call(gw, "GET", "/v1/me", { key: keys["v3-a"] }), 401, "invalid_api_key");

  const env = { ADMIN_TOKEN: gw.adminToken };
  const first = await importer(["--gateway", gw.url, "--dump", join(dir, "dump.json"), "--map", mapFile, "--batch", "4"], env);
  assert.deepEqual(first.counts, { imported: 5, exists: 0, skipped: 1, invalid: 0 });
  const again = await importer(["--gateway", gw.url, "--dump", join(dir, "dump.json"), "--map", mapFile], env);
  assert.deepEqual(again.counts, { imported: 0, exists: 5, skipped: 1, invalid: 0 });
  // Five imported keys for a cap of three: imported all the same, and counted from now on.
  const more = await call(gw, "POST", "/v1/api-keys", { admin: true, body: row({ name: "native" }) });
  expectError(assert, more, 409, "key_limit_reached");
});

test("imported 3.x (SHA-512) keys authenticate, forward, and show their prefix and created time", async () => {
  for (const name of ["v3-a", "v3-b"]) {
    const key = keys[name];
    const me = await call(gw, "GET", "/v1/me", { key });
    assert.equal(me.status, 200, me.text);
    assert.equal(me.json.key.hint, `${key.split(".")[0]}.`);
    assert.equal(me.json.key.imported, true);
    assert.equal(me.json.user.id, USER);
    const created = dump.find((d) => d.fields.name === name).fields.created;
    assert.equal(me.json.key.created_at, new Date(created).toISOString().replace(/\.\d{3}Z$/, "Z"));
    const r = await call(gw, "GET", JOBS, { key });
    assert.equal(r.status, 200, r.text);
    assert.equal(gw.origin.requests.at(-1).headers["x-keygate-key-id"], me.json.key.id);
  }
  // The expired one is imported as expired; the revoked one was never stored.
  expectError(assert, await call(gw, "GET", "/v1/me", { key: keys.expired }), 401, "expired_api_key");
  expectError(assert, await call(gw, "GET", "/v1/me", { key: keys.revoked }), 401, "invalid_api_key");
});

test("unknown prefix or wrong secret: 401 invalid_api_key; LEGACY_KEYS empty: malformed, no lookup", async () => {
  const [prefix, secret] = keys["v3-a"].split(".");
  const wrong = `${prefix}.${secret.slice(0, -1)}${secret.endsWith("A") ? "B" : "A"}`;
  expectError(assert, await call(gw, "GET", JOBS, { key: wrong }), 401, "invalid_api_key");
  expectError(assert, await call(gw, "GET", JOBS, { key: freshKey() }), 401, "invalid_api_key");
  expectError(assert, await call(off, "GET", JOBS, { key: keys["v3-a"] }), 401, "malformed_api_key");
});

test("PBKDF2 (1,000,000 iterations, in wasm): checked once, then upgraded; concurrent first tries 429, never 401", async () => {
  const key = keys["v2-pbkdf2"];
  const prefix = key.split(".")[0];
  const tries = await Promise.all([0, 1, 2, 3].map(() => call(gw, "GET", JOBS, { key })));
  const ok = tries.filter((r) => r.status === 200);
  assert.ok(ok.length >= 1, tries.map((r) => r.status).join(","));
  for (const r of tries.filter((r) => r.status !== 200)) expectError(assert, r, 429, "key_check_in_progress");
  await waitForLog(gw, new RegExp(`"key_check":"pbkdf2_wasm","prefix":"${prefix}"`));
  assert.equal(checksRun(prefix), 1, "one PBKDF2 check for the four tries");
  // Its cost, as the gateway logged it (wall time of the derivation in this isolate).
  const ms = new RegExp(`"key_check":"pbkdf2_wasm","prefix":"${prefix}","iterations":1000000,"ms":(\\d+)`).exec(gw.log())?.[1];
  console.log(`PBKDF2-SHA256, 1,000,000 iterations, wasm: ${ms} ms`);
  // Upgraded: later calls (and a wrong secret) never run PBKDF2 again.
  for (let i = 0; i < 3; i += 1) assert.equal((await call(gw, "GET", JOBS, { key })).status, 200);
  expectError(assert, await call(gw, "GET", JOBS, { key: `${prefix}.${alnum(32)}` }), 401, "invalid_api_key");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(checksRun(prefix), 1, "no PBKDF2 after the upgrade");
});

test("PBKDF2 within WebCrypto's production limit (50,000) goes through WebCrypto; a wrong secret is 401, then a pause", async () => {
  const key = keys["v2-pbkdf2-low"];
  const prefix = key.split(".")[0];
  expectError(assert, await call(gw, "GET", JOBS, { key: `${prefix}.${alnum(32)}` }), 401, "invalid_api_key");
  // A failed check holds the key's slot a little (wrong guesses cost one check per pause).
  const paused = await call(gw, "GET", JOBS, { key });
  const body = expectError(assert, paused, 429, "key_check_in_progress");
  assert.ok(body && Number(paused.headers.get("retry-after")) <= 2);
  await new Promise((r) => setTimeout(r, Number(paused.headers.get("retry-after")) * 1000 + 100));
  assert.equal((await call(gw, "GET", JOBS, { key })).status, 200);
  await waitForLog(gw, new RegExp(`"key_check":"pbkdf2_webcrypto","prefix":"${prefix}"`));
  assert.equal(checksRun(prefix), 2, "the wrong secret and the right one, each checked once");
});

test("a PBKDF2 key that could not be used anyway (expired) runs no check; a long-expired row imports", async () => {
  const key = freshKey();
  const prefix = key.split(".")[0];
  const hashed = `pbkdf2_sha256$20000$s4lt$${pbkdf2Sync(key, "s4lt", 20000, 32, "sha256").toString("base64")}`;
  const r = await importRows([row({ prefix, hashed_key: hashed, expires_at: "2025-01-01T00:00:00Z" })]);
  assert.equal(r.json.results[0].status, "imported", r.text);
  expectError(assert, await call(gw, "GET", JOBS, { key }), 401, "invalid_api_key");
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(checksRun(prefix), 0);
});

test("salted SHA-512 and SHA-256 variants (synthesized) verify; import statuses and row errors", async () => {
  const k512 = freshKey();
  const k256 = freshKey();
  const p = (k) => k.split(".")[0];
  const hash = (alg, s) => createHash(alg).update(s).digest("hex");
  const pbkdf2 = `pbkdf2_sha256$1000$salt$${Buffer.alloc(32).toString("base64")}`;
  const byName = Object.fromEntries(dump.map((d) => [d.fields.name, d.fields]));
  const low = byName["v2-pbkdf2-low"];
  const r = await importRows([
    row({ prefix: p(k512), hashed_key: `plain_sha512$$${hash("sha512", k512 + p(k512))}`, external_id: "4242" }),
    row({ prefix: p(k256), hashed_key: `plain_sha256$$${hash("sha256", k256 + p(k256))}` }),
    row({ prefix: p(k256), hashed_key: `plain_sha256$$${hash("sha256", k256 + p(k256))}` }),
    row({ prefix: p(k512), hashed_key: `sha512$$${hash("sha512", "another")}` }),
    row({ prefix: alnum(8), hashed_key: "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA" }),
    row({ prefix: alnum(8), hashed_key: pbkdf2.replace("$1000$", "$1500001$") }),
    row({ prefix: alnum(8), hashed_key: `sha512$$${hash("sha512", "x")}`, revoked: true }),
    row({ prefix: alnum(8), hashed_key: pbkdf2, permissions: ["root"] }),
    // The platform re-hashed a key (its package does so on use): the stored hash is kept.
    row({ prefix: low.prefix, hashed_key: `sha512$$${hash("sha512", keys["v2-pbkdf2-low"])}` }),
  ]);
  assert.equal(r.status, 200, r.text);
  const got = r.json.results.map((x) => [x.status, x.error?.code ?? null]);
  assert.deepEqual(got, [
    ["imported", null],
    ["imported", null],
    ["exists", null],
    ["invalid", "hash_changed"],
    ["invalid", "unsupported_hasher"],
    ["invalid", "too_many_iterations"],
    ["skipped", null],
    ["invalid", "invalid_row"],
    ["invalid", "hash_changed"],
  ]);
  assert.match(r.json.results[8].id, /^key_[0-9a-f]{16}$/);
  assert.equal(r.json.results[2].id, r.json.results[1].id);
  assert.equal(/[0-9a-f]{64}/.test(r.text), false, "no hash in the answer");
  assert.equal(r.text.includes(Buffer.alloc(32).toString("base64")), false, "no PBKDF2 hash either");
  const me = await call(gw, "GET", "/v1/me", { key: k512 });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.key.external_id, "4242");
  assert.equal((await call(gw, "GET", JOBS, { key: k256 })).status, 200);
  expectError(assert, await call(gw, "GET", JOBS, { key: `${p(k512)}.${alnum(32)}` }), 401, "invalid_api_key");

  // The whole body wrong: 400 and nothing stored; only the admin may import.
  expectError(assert, await call(gw, "POST", "/v1/api-keys/import", { admin: true, body: { format: "drf-api-key", keys: [] } }), 400, "validation_error");
  expectError(assert, await call(gw, "POST", "/v1/api-keys/import", { admin: true, body: { format: "other", keys: [row({})] } }), 400, "validation_error");
  expectError(assert, await call(gw, "POST", "/v1/api-keys/import", { key: k512, body: { format: "drf-api-key", keys: [row({})] } }), 403, "permission_denied");
  expectError(assert, await call(gw, "GET", "/v1/api-keys/import", { admin: true }), 405, "method_not_allowed");

  // Audited as key.imported, in the user's trail.
  const audit = await call(gw, "GET", `/v1/audit-events?user_id=${USER}&limit=100`, { admin: true });
  assert.equal(audit.status, 200, audit.text);
  const imported = audit.json.results.filter((e) => e.action === "key.imported");
  assert.ok(imported.some((e) => e.key_id === r.json.results[0].id), audit.text);
});

test("an imported key is a key: PATCH, roll to a native key with grace, revoke (also once upgraded)", async () => {
  const me = await call(gw, "GET", "/v1/me", { key: keys["v3-b"] });
  const id = me.json.key.id;
  const patched = await call(gw, "PATCH", `/v1/api-keys/${id}`, { admin: true, body: { disabled: true } });
  assert.equal(patched.status, 200, patched.text);
  expectError(assert, await call(gw, "GET", JOBS, { key: keys["v3-b"] }), 401, "disabled_api_key");
  await call(gw, "PATCH", `/v1/api-keys/${id}`, { admin: true, body: { disabled: false } });

  const rolled = await call(gw, "POST", `/v1/api-keys/${id}/roll`, { admin: true, body: { grace_seconds: 3600 } });
  assert.equal(rolled.status, 201, rolled.text);
  assert.match(rolled.json.key, /^kg_[0-9a-f]{72}$/);
  assert.equal(rolled.json.imported, undefined);
  assert.equal((await call(gw, "GET", JOBS, { key: rolled.json.key })).status, 200);
  assert.equal((await call(gw, "GET", JOBS, { key: keys["v3-b"] })).status, 200, "the old key works in its grace");

  // The upgraded PBKDF2 key, revoked: refused whichever way it was checked.
  const pb = await call(gw, "GET", "/v1/me", { key: keys["v2-pbkdf2"] });
  assert.equal(pb.status, 200, pb.text);
  assert.equal((await call(gw, "DELETE", `/v1/api-keys/${pb.json.key.id}`, { admin: true })).status, 200);
  expectError(assert, await call(gw, "GET", JOBS, { key: keys["v2-pbkdf2"] }), 401, "revoked_api_key");
  // Revoked on the platform since the import: the next import revokes it here too.
  const a = byNameOf("v3-a");
  const rev = await importRows([row({ prefix: a.prefix, hashed_key: a.hashed_key, revoked: true })]);
  assert.equal(rev.json.results[0].status, "skipped", rev.text);
  assert.match(rev.json.results[0].id, /^key_/);
  expectError(assert, await call(gw, "GET", JOBS, { key: keys["v3-a"] }), 401, "revoked_api_key");
  // Re-importing it answers `exists` and never revives it.
  const row2 = dump.find((d) => d.fields.name === "v2-pbkdf2").fields;
  const again = await importRows([row({ prefix: row2.prefix, hashed_key: row2.hashed_key })]);
  assert.equal(again.json.results[0].status, "exists");
  expectError(assert, await call(gw, "GET", JOBS, { key: keys["v2-pbkdf2"] }), 401, "revoked_api_key");
});
