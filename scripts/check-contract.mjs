// Checks that docs/CONTRACT.md and api/openapi.json name the same routes and the same error
// codes, in both directions. Node only, no dependencies.
//
// Convention (docs/CONTRACT.md):
// - The route table sits between `<!-- routes:begin -->` and `<!-- routes:end -->`. In each
//   table row, the first cell is one code span `METHOD[, METHOD...] /path`, with OpenAPI's
//   path-template spelling (`/v1/api-keys/{id}`), no query string.
// - The error-code table sits between `<!-- error-codes:begin -->` and `<!-- error-codes:end -->`.
//   In each table row, the first cell is the code as a code span and the second its HTTP status.
//
// From api/openapi.json:
// - routes: every (method, path) under `paths` (get, put, post, delete, patch, head, options);
// - error codes: the `enum` of `components.schemas.Error.properties.code` if there is one, plus
//   every code named in the description of an error response (status 4xx/5xx) in
//   `components.responses` or inline under a path. A description names its codes as a comma
//   separated list, optionally after a label ending in ": " ("Bad request: invalid_path,
//   validation_error (with `fields`)"); parenthesised remarks are ignored. The status of a code
//   is every status under which its response is used; a response used nowhere gives no status,
//   and then only the code's presence is compared.
//
//   node scripts/check-contract.mjs      exit 0 when they agree, 1 with every difference listed

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CONTRACT = "docs/CONTRACT.md";
const OPENAPI = "api/openapi.json";
const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];
const CODE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;

/** Table rows (arrays of trimmed cells) between two HTML-comment markers. */
function tableRows(markdown, name) {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const a = markdown.indexOf(begin);
  const b = markdown.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${CONTRACT} has no "${begin}" ... "${end}" block`);
  const rows = [];
  const lines = markdown.slice(a + begin.length, b).split("\n");
  for (const line of lines) {
    const t = line.trim();
    if (!t.startsWith("|")) continue;
    const cells = t.replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue; // the separator row
    rows.push(cells);
  }
  // The header row is the first one.
  return rows.slice(1);
}

function contractRoutes(md) {
  const routes = new Set();
  const bad = [];
  for (const cells of tableRows(md, "routes")) {
    const m = /^`([A-Z]+(?:,\s*[A-Z]+)*)\s+(\/[^`\s?]*)`$/.exec(cells[0]);
    if (!m) {
      bad.push(`route row's first cell is not \`METHOD[, METHOD] /path\`: ${cells[0]}`);
      continue;
    }
    for (const method of m[1].split(",")) routes.add(`${method.trim()} ${m[2]}`);
  }
  return { routes, bad };
}

function contractCodes(md) {
  const codes = new Map();
  const bad = [];
  for (const cells of tableRows(md, "error-codes")) {
    const code = /^`([^`]+)`$/.exec(cells[0])?.[1];
    const status = Number(cells[1]);
    if (!code || !CODE.test(code) || !(status >= 400 && status <= 599)) {
      bad.push(`error-code row is not | \`code\` | status | ...: | ${cells.join(" | ")} |`);
      continue;
    }
    if (codes.has(code)) bad.push(`error code ${code} is listed twice`);
    codes.set(code, status);
  }
  return { codes, bad };
}

function codesInDescription(description = "") {
  let text = description;
  // Drop parenthesised remarks (repeatedly, for nesting).
  for (let prev = ""; prev !== text; ) [prev, text] = [text, text.replace(/\([^()]*\)/g, "")];
  const colon = text.lastIndexOf(": ");
  if (colon >= 0) text = text.slice(colon + 2);
  return text
    .split(/,|\bor\b|\band\b/)
    .map((s) => s.trim().replace(/^`|`$/g, "").replace(/[.;]$/, ""))
    .filter((s) => CODE.test(s));
}

function openapiFacts(spec) {
  const routes = new Set();
  const codes = new Map(); // code -> Set of statuses
  const add = (code, status) => {
    if (!codes.has(code)) codes.set(code, new Set());
    if (status) codes.get(code).add(status);
  };
  for (const code of spec.components?.schemas?.Error?.properties?.code?.enum ?? []) add(code);
  const named = spec.components?.responses ?? {};
  for (const r of Object.values(named)) for (const c of codesInDescription(r.description)) add(c);
  for (const [path, item] of Object.entries(spec.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      routes.add(`${method.toUpperCase()} ${path}`);
      for (const [status, resp] of Object.entries(op.responses ?? {})) {
        const n = Number(status);
        if (!(n >= 400 && n <= 599)) continue;
        const ref = resp.$ref?.replace("#/components/responses/", "");
        const target = ref ? named[ref] : resp;
        for (const c of codesInDescription(target?.description)) add(c, n);
      }
    }
  }
  return { routes, codes };
}

const md = readFileSync(join(ROOT, CONTRACT), "utf8");
const spec = JSON.parse(readFileSync(join(ROOT, OPENAPI), "utf8"));
const { routes: cRoutes, bad: badRoutes } = contractRoutes(md);
const { codes: cCodes, bad: badCodes } = contractCodes(md);
const o = openapiFacts(spec);

const problems = [...badRoutes, ...badCodes];
const sorted = (s) => [...s].sort();
for (const r of sorted(o.routes)) if (!cRoutes.has(r)) problems.push(`route ${r} is in ${OPENAPI} but not in the route table of ${CONTRACT}`);
for (const r of sorted(cRoutes)) if (!o.routes.has(r)) problems.push(`route ${r} is in the route table of ${CONTRACT} but not in ${OPENAPI}`);
for (const c of sorted(o.codes.keys())) if (!cCodes.has(c)) problems.push(`error code ${c} is in ${OPENAPI} but not in the error-code table of ${CONTRACT}`);
for (const [c, status] of [...cCodes].sort()) {
  const statuses = o.codes.get(c);
  if (!statuses) problems.push(`error code ${c} (${status}) is in the error-code table of ${CONTRACT} but not in ${OPENAPI}`);
  else if (statuses.size && !statuses.has(status)) {
    problems.push(`error code ${c} is ${status} in ${CONTRACT} but ${sorted(statuses).join(", ")} in ${OPENAPI}`);
  }
}

if (problems.length) {
  console.error(`check-contract: ${CONTRACT} and ${OPENAPI} disagree (${problems.length}):`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
console.log(`check-contract: ok (${cRoutes.size} routes, ${cCodes.size} error codes agree with ${OPENAPI})`);
