// An example origin: a small jobs API that stands behind keygate.
//
// It lists workspaces and jobs, runs a job (answering an `execution_id`), verifies the
// gateway's `X-Keygate-Signature` and its `Keygate-Assertion` (an ES256 JWT checked against the
// gateway's /.well-known/jwks.json), and echoes the identity headers it received, so a newcomer
// sees exactly what the origin learns about the caller. It shows a caller only the workspaces
// its key covers (`X-Keygate-Workspaces`), in the listing and for workspace-scoped calls. The end-to-end tests start this same
// server (with extra behaviours through `options.handle`).
//
//   node examples/origin.mjs [--port 8788] [--jwks http://127.0.0.1:8787/.well-known/jwks.json]
//   (reads ORIGIN_SIGNING_SECRET from env or .dev.vars)

import { createHmac, createPublicKey, randomBytes, timingSafeEqual, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

/** Signatures older or newer than this are refused (replay window). */
export const SIGNATURE_MAX_SKEW_SECONDS = 300;

const WORKSPACES = [
  { id: "demo", name: "Demo workspace" },
  { id: "analytics", name: "Analytics" },
  { id: "ws1", name: "Workspace ws1" },
];

const JOBS = [
  { id: "daily_etl", name: "Daily ETL" },
  { id: "dbt_build", name: "dbt build" },
];

/** Verifies `t=<unix>,v1=<hex>` over the string of docs/CONTRACT.md section 7. */
export function verifySignature(secret, header, { method, pathAndQuery, keyId, userId, workspaceId }) {
  if (!secret || !header) return false;
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(Date.now() / 1000 - t) > SIGNATURE_MAX_SKEW_SECONDS) return false;
  const payload = `${m[1]}\n${method}\n${pathAndQuery}\n${keyId ?? ""}\n${userId ?? ""}\n${workspaceId ?? ""}`;
  const expected = createHmac("sha256", secret).update(payload).digest();
  const given = Buffer.from(m[2], "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Seconds of clock difference allowed on the assertion's `iat` and `exp`. */
export const ASSERTION_LEEWAY_SECONDS = 5;

/**
 * The claims of a `Keygate-Assertion` (docs/CONTRACT.md section 16) if it verifies: ES256 by a
 * key of `jwks` (the gateway's published set), `typ` keygate-assertion+jwt, `iss` the gateway,
 * `aud` this origin, `htm` and `htu` the request being handled, within `iat` and `exp`. `null`
 * otherwise, for anything malformed too (never a throw).
 */
export function verifyAssertion(token, jwks, { issuer, audience, method, url, now = Date.now() / 1000 }) {
  try {
    return check(token, jwks, { issuer, audience, method, url, now });
  } catch {
    return null;
  }
}

function check(token, jwks, { issuer, audience, method, url, now }) {
  if (typeof token !== "string" || !jwks) return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const header = JSON.parse(Buffer.from(parts[0], "base64url"));
  const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
  if (!header || typeof header !== "object" || !claims || typeof claims !== "object") return null;
  if (header.alg !== "ES256" || header.typ !== "keygate-assertion+jwt") return null;
  const jwk = (jwks.keys ?? []).find((k) => k.kid === header.kid);
  if (!jwk) return null;
  const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, format: "jwk" });
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  if (!verify("sha256", signed, { key, dsaEncoding: "ieee-p1363" }, Buffer.from(parts[2], "base64url"))) return null;
  if (claims.iss !== issuer || claims.aud !== audience || claims.htm !== method || claims.htu !== url) return null;
  const leeway = ASSERTION_LEEWAY_SECONDS;
  if (typeof claims.exp !== "number" || typeof claims.iat !== "number") return null;
  if (claims.exp + leeway < now || claims.iat - leeway > now) return null;
  return claims;
}

/** The gateway's key set from `url`, fetched at most every 300 s (its Cache-Control); the
 * gateway's own origin (the assertion's `iss`, when its PUBLIC_URL is not set) is the URL's. */
function jwksSource() {
  let url = null;
  let cached = null;
  let fetchedAt = 0;
  return {
    setUrl: (u) => {
      url = u;
      cached = null;
    },
    issuer: () => (url ? new URL(url).origin : null),
    get: async () => {
      if (!url) return null;
      if (cached && Date.now() - fetchedAt < 300_000) return cached;
      try {
        const r = await fetch(url);
        if (r.status === 200) [cached, fetchedAt] = [await r.json(), Date.now()];
      } catch {
        /* unreachable: keep what we had */
      }
      return cached;
    },
  };
}

/**
 * The workspaces the calling key covers, from `X-Keygate-Workspaces` (`*`, or ids separated by
 * commas), as a predicate. The gateway always sends it and strips any copy a client sends (any
 * spelling); it is not part of the signature, so it is trusted as far as the gateway-to-origin
 * connection is (like `X-Keygate-User-Email`). Absent: no workspace at all (fail closed).
 */
export function workspaceFilter(header) {
  if (header === "*") return () => true;
  const allowed = new Set((header ?? "").split(",").map((s) => s.trim()).filter(Boolean));
  return (ws) => allowed.has(ws);
}

async function identityOf(req, secret, jwks, selfUrl) {
  const h = req.headers;
  const identity = {
    key_id: h["x-keygate-key-id"] ?? null,
    user_id: h["x-keygate-user-id"] ?? null,
    user_email: h["x-keygate-user-email"] ?? null,
    workspace_id: h["x-keygate-workspace-id"] ?? null,
    workspaces: h["x-keygate-workspaces"] ?? null,
    request_id: h["x-request-id"] ?? null,
  };
  identity.signature_valid = verifySignature(secret, h["x-keygate-signature"], {
    method: req.method,
    pathAndQuery: req.url,
    keyId: identity.key_id,
    userId: identity.user_id,
    workspaceId: identity.workspace_id,
  });
  const token = h["keygate-assertion"];
  identity.assertion = token
    ? verifyAssertion(token, await jwks.get(), { issuer: jwks.issuer(), audience: selfUrl, method: req.method, url: selfUrl + req.url })
    : null;
  identity.assertion_valid = identity.assertion !== null;
  return identity;
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(text);
}

/**
 * Starts the origin. Options: `port` (0 picks a free one), `signingSecret`, `jwksUrl` (the
 * gateway's key set, for `Keygate-Assertion`), `handle(ctx)` (a hook that may answer first:
 * return true when it did). Resolves to `{ url, port, requests, setJwksUrl, close }`;
 * `requests` records every request received.
 */
export function startOrigin({ port = 0, host = "127.0.0.1", signingSecret, jwksUrl, handle } = {}) {
  const requests = [];
  const jwks = jwksSource();
  if (jwksUrl) jwks.setUrl(jwksUrl);
  let selfUrl = "";
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks);
      let identity;
      try {
        identity = await identityOf(req, signingSecret, jwks, selfUrl);
      } catch {
        return send(res, 400, { error: "unreadable identity headers" });
      }
      const record = { method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8"), identity };
      requests.push(record);
      try {
        if (handle && (await handle({ req, res, body, identity, record }))) return;
      } catch (e) {
        if (!res.headersSent) send(res, 500, { error: "test hook failed" });
        return;
      }
      route(req, res, body, identity);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const actual = server.address().port;
      selfUrl = `http://${host}:${actual}`;
      resolve({
        url: selfUrl,
        port: actual,
        requests,
        server,
        setJwksUrl: jwks.setUrl,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

function route(req, res, body, identity) {
  const path = req.url.split("?")[0];
  const parts = path.split("/").filter(Boolean); // developers, workspaces, ws, resource, ...
  if (!identity.signature_valid && !identity.assertion_valid) {
    // A real origin refuses what did not come through the gateway: a valid signature or a valid
    // assertion (whichever the gateway is configured to send; an origin picks the one it trusts).
    return send(res, 401, { error: "missing or invalid X-Keygate-Signature and Keygate-Assertion", identity });
  }
  if (parts[0] !== "developers" || parts[1] !== "workspaces") {
    return send(res, 404, { error: "not found", identity });
  }
  const [, , ws, resource, job, action] = parts;
  const mayUse = workspaceFilter(identity.workspaces);
  if (!ws) {
    // The listing shows only what the key covers: the gateway authorizes the route itself
    // (`workspaces:read`), not which workspaces appear in the answer.
    return send(res, 200, { results: WORKSPACES.filter((w) => mayUse(w.id)), identity });
  }
  if (!mayUse(ws)) {
    // The gateway already refuses this (403 workspace_forbidden); refused here too, in depth.
    return send(res, 403, { error: "workspace not covered by the key", identity });
  }
  if (!resource) return send(res, 200, { id: ws, name: `Workspace ${ws}`, identity });
  if (resource === "jobs" && !job && req.method === "GET") {
    return send(res, 200, { results: JOBS, identity });
  }
  // Exactly `/jobs/{job}/run[/]`: what the gateway authorized as a run (with `jobs:run`).
  if (resource === "jobs" && job && action === "run" && parts.length === 6 && req.method === "POST") {
    const execution_id = `exec_${randomBytes(8).toString("hex")}`;
    return send(res, 201, { execution_id, job_id: job, workspace_id: ws, triggered_by: identity.user_email ?? identity.user_id, identity });
  }
  // Everything else: echo what arrived, so callers can see what the gateway forwarded.
  return send(res, 200, { method: req.method, path: req.url, body: body.toString("utf8"), identity });
}

function secretFromDevVars() {
  try {
    const text = readFileSync(new URL("../.dev.vars", import.meta.url), "utf8");
    const m = /^ORIGIN_SIGNING_SECRET=(.*)$/m.exec(text);
    return m ? m[1].trim().replace(/^"|"$/g, "") : undefined;
  } catch {
    return undefined;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf("--port");
  const port = i > 0 ? Number(process.argv[i + 1]) : 8788;
  const j = process.argv.indexOf("--jwks");
  const jwksUrl = j > 0 ? process.argv[j + 1] : undefined;
  const signingSecret = process.env.ORIGIN_SIGNING_SECRET ?? secretFromDevVars();
  if (!signingSecret && !jwksUrl) {
    console.error("origin: set ORIGIN_SIGNING_SECRET or create .dev.vars (make dev does), or pass --jwks");
    process.exit(1);
  }
  const o = await startOrigin({ port, signingSecret, jwksUrl });
  console.log(`example origin listening on ${o.url}`);
}
