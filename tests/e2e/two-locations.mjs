// Two locations for end-to-end tests: two `wrangler dev` gateways (two isolates, each with its
// own record cache and leases) sharing one KV namespace and one set of Durable Objects. Gateway
// A defines the objects; gateway B binds them from A through wrangler's dev registry, as every
// location binds the one object of a key on Cloudflare's network.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { ROOT, startGateway } from "./harness.mjs";

/** wrangler.toml with another name, an absolute `main`, no build step, KV_CACHE_TTL 300 s (so
 * a location's cached record outlives the tests), and (for B) the object bound from A. */
function config(dir, name, objectsFrom) {
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

/** Starts A and B (`vars` for both); returns `{ a, b, stop }`. */
export async function startTwoLocations({ label = "loc", vars = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), `keygate-${label}-`));
  const suffix = randomBytes(4).toString("hex");
  const nameA = `keygate-${label}-a-${suffix}`;
  const nameB = `keygate-${label}-b-${suffix}`;
  const persist = join(dir, "state");
  // A private dev registry: no other run's workers, and none of ours left behind.
  const env = { WRANGLER_REGISTRY_PATH: join(dir, "registry") };
  const a = await startGateway({ config: config(dir, nameA), persist, env, vars });
  const b = await startGateway({
    config: config(dir, nameB, nameA),
    persist,
    env,
    vars,
    secrets: { ADMIN_TOKEN: a.adminToken, ORIGIN_SIGNING_SECRET: a.signingSecret },
  });
  assert.match(b.log(), new RegExp(`defined in ${nameA}.*\\[connected\\]`), "B reaches A's objects");
  const stop = async () => {
    // B only ever sees keys A issued: its log is checked for those too when it stops.
    b.issuedKeys.push(...a.issuedKeys);
    await b.stop();
    await a.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { a, b, stop };
}
