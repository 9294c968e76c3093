// docs/CONTRACT.md section 16, at a Django origin: the example origin written with Django and
// DRF (examples/django_origin.py, the keygate_drf package of clients/django) behind the gateway.
// A small recorder between the two keeps the assertions the gateway sent, so that the test can
// replay them to Django tampered with, to another path, or minted expired with the same key.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { createServer, request as httpRequest } from "node:http";
import { join } from "node:path";

import { ROOT, call, createKey, freePort, useGateway } from "./harness.mjs";

const PYTHON = join(ROOT, ".venv", "bin", "python");
const ISSUER = "https://keygate.test";
const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "django-test" };
const { d, ...publicJwk } = jwk;

let django;
let recorder;
let recorded = [];
let recorderUrl;

/** Starts examples/django_origin.py; resolves once it listens. */
function startDjango(port, audience) {
  const p = spawn(PYTHON, [join(ROOT, "examples", "django_origin.py"), "--port", String(port), "--jwks", JSON.stringify({ keys: [publicJwk] }), "--issuer", ISSUER, "--audience", audience], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  p.stderr.on("data", (c) => (err += c));
  return new Promise((resolve, reject) => {
    p.stdout.on("data", (c) => String(c).includes("listening") && resolve(p));
    p.once("exit", (code) => reject(new Error(`django origin exited ${code}: ${err.slice(-2000)}`)));
  });
}

/** Forwards to Django unchanged (Host included), keeping each request's headers. */
function startRecorder(port, target) {
  const server = createServer((req, res) => {
    recorded.push({ method: req.method, url: req.url, headers: req.headers });
    const up = httpRequest({ host: "127.0.0.1", port: target, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

/** A request straight to Django through the recorder (no gateway), with this assertion. */
function direct(method, path, token) {
  return fetch(recorderUrl + path, { method, headers: token ? { "keygate-assertion": token } : {} }).then(async (r) => ({ status: r.status, json: await r.json().catch(() => null) }));
}

// Django and the recorder in front of it first: the gateway's origin is the recorder.
const gw = useGateway(async () => {
  const [djangoPort, recorderPort] = [await freePort(), await freePort()];
  recorderUrl = `http://127.0.0.1:${recorderPort}`;
  django = await startDjango(djangoPort, recorderUrl);
  recorder = await startRecorder(recorderPort, djangoPort);
  return {
    originUrl: recorderUrl,
    secrets: { ASSERTION_SIGNING_KEY: JSON.stringify(jwk) },
    vars: { PUBLIC_URL: ISSUER },
  };
});

after(async () => {
  recorder?.closeAllConnections?.();
  recorder?.close();
  django?.kill();
});

test("Django serves a key's calls with the identity the assertion carries, and only its workspaces", async () => {
  const { key, summary } = await createKey(gw, { workspaces: ["ws1", "demo"], permissions: ["workspaces:read", "jobs:read", "jobs:run"] });
  const list = await call(gw, "GET", "/developers/workspaces/", { key });
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(list.json.results.map((w) => w.id).sort(), ["demo", "ws1"]);
  assert.deepEqual(
    [list.json.identity.user_id, list.json.identity.email, list.json.identity.key_id],
    [summary.user_id, summary.email, summary.id],
  );
  assert.equal(list.json.identity.request_id, list.headers.get("x-request-id"));
  const run = await call(gw, "POST", "/developers/workspaces/ws1/jobs/daily_etl/run/", { key, body: "{}", headers: { "content-type": "application/json", "idempotency-key": randomBytes(8).toString("hex") } });
  assert.equal(run.status, 201, run.text);
  assert.equal(run.json.triggered_by, summary.email);
  assert.equal(run.json.workspace_id, "ws1");
});

test("Django refuses an assertion tampered with, replayed to another path, expired, or absent", async () => {
  const { key } = await createKey(gw, { workspaces: ["ws1"], permissions: ["jobs:read"] });
  recorded = [];
  const path = "/developers/workspaces/ws1/jobs/";
  assert.equal((await call(gw, "GET", path, { key })).status, 200);
  const token = recorded.at(-1).headers["keygate-assertion"];
  assert.ok(token);
  // The same assertion for the same request, within its minute: accepted (a jti store would
  // refuse it; the package documents that this is the origin's choice).
  assert.equal((await direct("GET", path, token)).status, 200);
  const [h, c, s] = token.split(".");
  const claims = JSON.parse(Buffer.from(c, "base64url"));
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, workspaces: ["*"] })).toString("base64url")}.${s}`;
  assert.equal((await direct("GET", path, tampered)).status, 401);
  assert.equal((await direct("GET", "/developers/workspaces/", token)).status, 401, "replayed to another path");
  assert.equal((await direct("POST", "/developers/workspaces/ws1/jobs/daily_etl/run/", token)).status, 401, "replayed to a run");
  // Signed with the gateway's own key, but two minutes old.
  const old = { ...claims, iat: claims.iat - 180, exp: claims.exp - 180 };
  const input = `${h}.${Buffer.from(JSON.stringify(old)).toString("base64url")}`;
  const sig = sign("sha256", Buffer.from(input), { key: createPrivateKey({ key: jwk, format: "jwk" }), dsaEncoding: "ieee-p1363" });
  assert.equal((await direct("GET", path, `${input}.${sig.toString("base64url")}`)).status, 401, "expired");
  assert.equal((await direct("GET", path, null)).status, 401, "no assertion at all");
});

test("keygate_drf.views opens a settings session at the gateway for the platform's signed-in user", async () => {
  const script = [
    "import os, sys",
    `sys.path.insert(0, ${JSON.stringify(join(ROOT, "clients", "django"))})`,
    "from keygate_drf.views import open_settings_session",
    "print(open_settings_session(gateway_url=os.environ['GATEWAY'], admin_token=os.environ['ADMIN_TOKEN'],",
    "      user_id='platform-user', email='pu@example.com', workspaces=['ws1'], permissions=['jobs:read'], ttl_seconds=600))",
  ].join("\n");
  const url = execFileSync(PYTHON, ["-c", script], { env: { ...process.env, GATEWAY: gw.url, ADMIN_TOKEN: gw.adminToken }, encoding: "utf8" }).trim();
  assert.ok(url.startsWith(`${gw.url}/settings/open?`), "a single-use link at the gateway");
  // The link works once: it opens the page (303 to /settings/ with the session cookie).
  const r = await fetch(url, { redirect: "manual" });
  assert.equal(r.status, 303);
  assert.match(r.headers.get("set-cookie") ?? "", /kg_settings=/);
});
