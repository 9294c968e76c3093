// The OpenAPI contract (api/openapi.json, served at /v1/openapi.json) checked by schemathesis
// against the real gateway under wrangler dev: every documented operation, generated inputs,
// all of schemathesis' checks (status codes, content types, headers, response schemas, no 5xx
// from the gateway itself).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import { call, createKey, ROOT, useGateway } from "./harness.mjs";

const SCHEMATHESIS = join(ROOT, ".venv", "bin", "schemathesis");
const MAX_EXAMPLES = process.env.CONTRACT_MAX_EXAMPLES ?? "25";
const gw = useGateway();

/** Keys schemathesis itself created appear in its failure reports: never print them. */
const redact = (text) => text.replace(/[a-z0-9]{1,16}_[0-9a-f]{72}/g, "<key>");

function schemathesis(args) {
  return new Promise((resolve) => {
    const p = spawn(SCHEMATHESIS, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", SCHEMATHESIS_TELEMETRY: "false" } });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("exit", (code) => resolve({ code, out }));
  });
}

const common = (extra, exclude = []) => [
  "run", `${gw.url}/v1/openapi.json`, "--url", gw.url,
  "--checks", "all",
  // A gateway relays what the origin says for forwarded routes; and it never promises a
  // specific rejection for a request the schema allows but the contract refuses (e.g. expiry).
  "--exclude-checks", ["positive_data_acceptance", "ignored_auth", ...exclude].join(","),
  "--max-examples", MAX_EXAMPLES, "--seed", "7",
  // One worker: CPython 3.11 can fail ast.parse in threads ("AST constructor recursion depth
  // mismatch"), which schemathesis reports as an internal error.
  "--workers", "1",
  "--header", "CF-Connecting-IP: 2001:db8::c0",
  ...extra,
];

describe("OpenAPI contract", () => {
  it("is served at /v1/openapi.json and is the committed file", async () => {
    const r = await call(gw, "GET", "/v1/openapi.json");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.deepEqual(r.json, JSON.parse(readFileSync(join(ROOT, "api", "openapi.json"), "utf8")));
    assert.equal(r.json.openapi, "3.1.0");
  });

  it("schemathesis finds no failure on the admin routes", async () => {
    assert.ok(existsSync(SCHEMATHESIS), "run scripts/setup.sh first");
    const { code, out } = await schemathesis(common([
      "--include-path-regex", "^/(v1/api-keys|v1/settings-sessions|healthz|v1/openapi)",
      "--header", `Authorization: Bearer ${gw.adminToken}`,
      // DELETE revokes: by contract the key stays readable, with `revoked_at` (a tombstone).
    ], ["use_after_free"]));
    assert.equal(code, 0, redact(out.slice(-6000).replaceAll(gw.adminToken, "<admin>")));
    console.log(`# schemathesis, admin routes: ${/(\d+) generated/.exec(out)?.[0] ?? "?"} test cases`);
  });

  it("schemathesis finds no failure on the key routes", async () => {
    const { key } = await createKey(gw, { workspaces: ["*"], permissions: ["*"], rate_limit: { requests: 1000000, window_seconds: 60 } });
    const { code, out } = await schemathesis(common([
      "--include-path-regex", "^/(v1/me|developers/)",
      "--header", `Authorization: Api-Key ${key}`,
      // Resource life cycles behind /developers are the origin's (here an echo server), not
      // the gateway's: a DELETE there deletes nothing.
    ], ["use_after_free", "ensure_resource_availability"]));
    assert.equal(code, 0, redact(out.slice(-6000)));
    console.log(`# schemathesis, key routes: ${/(\d+) generated/.exec(out)?.[0] ?? "?"} test cases`);
  });
});
