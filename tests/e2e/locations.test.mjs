// Two locations: two `wrangler dev` gateways (two isolates, each with its own record cache)
// sharing one KV namespace and one set of Durable Objects. Gateway A defines the objects;
// gateway B binds them from A through wrangler's dev registry, as every location binds the one
// object of a key on Cloudflare's network. This makes observable what one gateway cannot show:
// limits exact across isolates, and a revocation refused by the key's object at a location
// whose cached record (KV_CACHE_TTL) still says the key is valid.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { call, createKey, expectError, ROOT, startGateway } from "./harness.mjs";

const dir = mkdtempSync(join(tmpdir(), "keygate-locations-"));
const suffix = randomBytes(4).toString("hex");
const nameA = `keygate-loc-a-${suffix}`;
const nameB = `keygate-loc-b-${suffix}`;
let a;
let b;

/** wrangler.toml with another name, an absolute `main`, no build step, and (for B) the object
 * bound from A instead of defined here. */
function config(name, objectsFrom) {
  let text = readFileSync(join(ROOT, "wrangler.toml"), "utf8");
  text = text.slice(0, text.indexOf("[env.production]"));
  text = text.replace(/^name = "keygate"$/m, `name = "${name}"`);
  text = text.replace(/^main = .*$/m, `main = "${join(ROOT, "build", "worker", "shim.mjs")}"`);
  text = text.replace(/^\[build\]\n(#.*\n)*command = .*\n/m, "");
  text = text.replace(/^KV_CACHE_TTL = .*$/m, 'KV_CACHE_TTL = "300"');
  if (objectsFrom) {
    text = text.replace(/^class_name = "KeyStateObject"$/m, `class_name = "KeyStateObject"\nscript_name = "${objectsFrom}"`);
    text = text.replace(/^\[\[migrations\]\]\n(.*\n)*?new_sqlite_classes = .*\n/m, "");
  }
  const file = join(dir, `${name}.toml`);
  writeFileSync(file, text);
  return file;
}

before(async () => {
  const persist = join(dir, "state");
  // A private dev registry: no other session's workers, and none of ours left behind.
  const env = { WRANGLER_REGISTRY_PATH: join(dir, "registry") };
  a = await startGateway({ config: config(nameA), persist, env });
  b = await startGateway({
    config: config(nameB, nameA),
    persist,
    env,
    secrets: { ADMIN_TOKEN: a.adminToken, ORIGIN_SIGNING_SECRET: a.signingSecret },
  });
  assert.match(b.log(), /defined in keygate-loc-a-[0-9a-f]+.*\[connected\]/, "B reaches A's objects");
});

after(async () => {
  // B only ever sees keys A issued: its log is checked for those too when it stops.
  if (a && b) b.issuedKeys.push(...a.issuedKeys);
  await b?.stop();
  await a?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("SPEC sections 1 and 8 across two locations", () => {
  it("a key's limit is exact across locations: 5/60 s alternating A and B gives 4,3,2,1,0, then 429 at either", async () => {
    const { key } = await createKey(a, { rate_limit: { requests: 5, window_seconds: 60 } });
    const remaining = [];
    for (const gw of [a, b, a, b, a]) {
      const r = await call(gw, "GET", "/v1/me", { key });
      assert.equal(r.status, 200, r.text);
      remaining.push(r.headers.get("ratelimit-remaining"));
    }
    assert.deepEqual(remaining, ["4", "3", "2", "1", "0"]);
    expectError(assert, await call(b, "GET", "/v1/me", { key }), 429, "rate_limited");
    expectError(assert, await call(a, "GET", "/v1/me", { key }), 429, "rate_limited");
  });

  it("a key revoked at A is refused at once at B, whose cached record still says valid", async () => {
    const { key, summary } = await createKey(a, { workspaces: ["ws1"], permissions: ["jobs:read"] });
    const path = "/developers/workspaces/ws1/jobs/";
    // B reads the record from KV and caches it (KV_CACHE_TTL = 300 s here).
    assert.equal((await call(b, "GET", path, { key })).status, 200);
    const revoked = await call(a, "DELETE", `/v1/api-keys/${summary.id}`, { admin: true });
    assert.equal(revoked.status, 200, revoked.text);
    const before = b.origin.requests.length;
    expectError(assert, await call(b, "GET", path, { key }), 401, "revoked_api_key");
    expectError(assert, await call(b, "GET", "/v1/me", { key }), 401, "revoked_api_key");
    assert.equal(b.origin.requests.length, before, "nothing reached B's origin after the revocation");
  });

  it("a key rolled at A with a grace period stops at B when the grace ends, though B cached it as valid", async () => {
    const { key, summary } = await createKey(a, { permissions: ["jobs:read"] });
    assert.equal((await call(b, "GET", "/v1/me", { key })).status, 200);
    const rolled = await call(a, "POST", `/v1/api-keys/${summary.id}/roll`, { admin: true, body: { grace_seconds: 2 } });
    assert.equal(rolled.status, 201, rolled.text);
    assert.equal((await call(b, "GET", "/v1/me", { key })).status, 200, "within the grace period");
    await new Promise((r) => setTimeout(r, 3200));
    expectError(assert, await call(b, "GET", "/v1/me", { key }), 401, "expired_api_key");
    assert.equal((await call(b, "GET", "/v1/me", { key: rolled.json.key })).status, 200);
  });
});
