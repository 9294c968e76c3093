// Two locations for end-to-end tests: two `wrangler dev` gateways (two isolates, each with its
// own record cache and leases) sharing one KV namespace and one set of Durable Objects. Gateway
// A defines the objects; gateway B binds them from A through wrangler's dev registry, as every
// location binds the one object of a key on Cloudflare's network.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { configWithout, startGateway, useStarted } from "./harness.mjs";

/**
 * Starts A and B (`vars` for both, over KV_CACHE_TTL 300 s: a location's cached record outlives
 * the tests); returns `{ a, b, stop }`.
 */
export async function startTwoLocations({ label = "loc", vars = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), `keygate-${label}-`));
  const suffix = randomBytes(4).toString("hex");
  const nameA = `keygate-${label}-a-${suffix}`;
  const nameB = `keygate-${label}-b-${suffix}`;
  const persist = join(dir, "state");
  // A private dev registry: no other run's workers, and none of ours left behind.
  const env = { WRANGLER_REGISTRY_PATH: join(dir, "registry") };
  const both = { KV_CACHE_TTL: "300", ...vars };
  const a = await startGateway({ config: configWithout({ name: nameA }), persist, env, vars: both });
  // B binds A's key objects, so it has no migration of its own for their class.
  const config = configWithout({ name: nameB, migrations: ["KeyStateObject"], objectsFrom: { KEY_STATE: nameA } });
  const b = await startGateway({
    config,
    persist,
    env,
    vars: both,
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

/**
 * The two locations of a file (or of the `describe` it is called in), started in a `before`
 * hook and stopped in an `after` hook: `const { a, b } = useTwoLocations({...})`, each a
 * stand-in for its gateway (see useGateway).
 */
export function useTwoLocations(options) {
  const through = useStarted(() => startTwoLocations(options), (pair) => pair.stop());
  return { a: through((pair) => pair.a), b: through((pair) => pair.b) };
}
