#!/usr/bin/env node
// Imports the platform's djangorestframework-api-key keys into keygate (docs/CONTRACT.md
// section 15; README, "Putting keygate in front of an existing API").
//
//   ADMIN_TOKEN=... node scripts/import-drf-keys.mjs --gateway https://keygate.example.com \
//     --dump keys.json --map mapping.json [--dry-run] [--batch 100]
//
// --dump: the JSON of `python manage.py dumpdata <app>.<Model>` for the package's APIKey model,
//   or a model derived from it (AbstractAPIKey): its `prefix`, `hashed_key`, `name`, `created`,
//   `expiry_date` and `revoked` fields, and whatever fields of the platform's own it has.
// --map: what keygate needs that the base model does not have, per keygate field: a constant
//   (`{"value": ...}`) or one of the row's fields (`{"field": "user"}`), optionally formatted
//   (`{"field": "user", "format": "user-{}"}`; a number is written as its digits either way).
//   Fields: `user_id`, `workspaces` and `permissions` (required), `email`, `external_id`,
//   `rate_limit`. (The package's own primary key is `<prefix>.<hashed_key>`: never map it to
//   `external_id`, which is shown in summaries.)
//   For example: {"user_id": {"field": "user", "format": "u{}"}, "workspaces": {"value": ["*"]},
//                 "permissions": {"value": ["jobs:read", "jobs:write"]}}
// Dates: Django writes `2026-12-03T15:00:00.123Z` with USE_TZ = True; without a zone (USE_TZ =
//   False) they are read as UTC. Seconds are kept, fractions dropped.
// --dry-run: reads and maps every row, checks what can be checked here (the prefix, the hash
//   scheme, the mapped fields), prints the summary, and sends nothing.
// The admin token comes from the environment only (never an argument: process lists show those).
// Prints a summary: rows per status (imported, exists, skipped, invalid), then each invalid row
// with its prefix and code. Never prints a hash. Exit status 1 when a row is invalid.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const SCHEMES = /^(sha512\$\$[0-9a-f]{128}|plain_sha512\$\$[0-9a-f]{128}|plain_sha256\$\$[0-9a-f]{64}|pbkdf2_sha256\$[1-9][0-9]*\$[^$]+\$[A-Za-z0-9+/=]+)$/;
const PREFIX = /^[A-Za-z0-9]{4,16}$/;
const MAX_BATCH = 100;

export function usage(message) {
  if (message) console.error(message);
  console.error("usage: ADMIN_TOKEN=... node scripts/import-drf-keys.mjs --gateway URL --dump FILE --map FILE [--dry-run] [--batch N]");
  process.exit(2);
}

/** A mapped value of `fields` (the dump's row, with `pk`), per the mapping entry `spec`. */
function mapped(spec, row) {
  if (spec === undefined || spec === null) return undefined;
  if ("value" in spec) return spec.value;
  const v = spec.field === "pk" ? row.pk : row.fields[spec.field];
  if (v === undefined || v === null) return undefined;
  if (spec.format) return spec.format.replace("{}", String(v));
  // A foreign key (the platform's user id) comes as a number: keygate's ids are strings.
  return typeof v === "number" ? String(v) : v;
}

/** Django's JSON datetime (`2026-12-03T15:00:00.123Z`, or naive: read as UTC) in RFC 3339 seconds. */
export function rfc3339(value) {
  if (value === undefined || value === null) return undefined;
  const t = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`);
  if (Number.isNaN(t.getTime())) throw new Error(`not a date-time: ${value}`);
  return t.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** One import row per dumped key, or the reason it cannot be one (checked before sending). */
export function toRows(dump, mapping) {
  for (const f of ["user_id", "workspaces", "permissions"]) {
    if (!mapping[f]) throw new Error(`the mapping has no "${f}"`);
  }
  return dump.map((entry) => {
    const f = entry.fields ?? {};
    const row = {
      prefix: f.prefix,
      hashed_key: f.hashed_key,
      name: f.name,
      user_id: mapped(mapping.user_id, entry),
      workspaces: mapped(mapping.workspaces, entry),
      permissions: mapped(mapping.permissions, entry),
      created_at: rfc3339(f.created),
      expires_at: rfc3339(f.expiry_date),
      revoked: Boolean(f.revoked),
    };
    for (const extra of ["email", "external_id", "rate_limit"]) {
      const v = mapped(mapping[extra], entry);
      if (v !== undefined) row[extra] = v;
    }
    let problem = null;
    if (typeof row.prefix !== "string" || !PREFIX.test(row.prefix)) problem = "invalid_row";
    else if (typeof row.hashed_key !== "string" || !SCHEMES.test(row.hashed_key)) problem = "unsupported_hasher";
    else if (row.user_id === undefined || row.workspaces === undefined || row.permissions === undefined) problem = "invalid_row";
    return { row, problem };
  });
}

async function send(gateway, token, rows) {
  const r = await fetch(new URL("/v1/api-keys/import", gateway), {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ format: "drf-api-key", keys: rows }),
  });
  const body = await r.json().catch(() => null);
  if (r.status !== 200 || !Array.isArray(body?.results)) {
    throw new Error(`the gateway answered ${r.status} ${body?.code ?? ""}: ${body?.detail ?? ""}`);
  }
  return body.results;
}

export async function main(argv = process.argv.slice(2), env = process.env) {
  const { values } = parseArgs({
    args: argv,
    options: {
      gateway: { type: "string" },
      dump: { type: "string" },
      map: { type: "string" },
      "dry-run": { type: "boolean", default: false },
      batch: { type: "string", default: String(MAX_BATCH) },
    },
  });
  if (!values.dump || !values.map) usage("--dump and --map are required");
  const dryRun = values["dry-run"];
  if (!dryRun && (!values.gateway || !env.ADMIN_TOKEN)) usage("--gateway and ADMIN_TOKEN are required (or --dry-run)");
  const batch = Number(values.batch);
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) usage(`--batch must be 1-${MAX_BATCH}`);

  const dump = JSON.parse(readFileSync(values.dump, "utf8"));
  const mapping = JSON.parse(readFileSync(values.map, "utf8"));
  if (!Array.isArray(dump)) throw new Error("--dump: not the JSON array dumpdata writes");
  const checked = toRows(dump, mapping);

  const counts = { imported: 0, exists: 0, skipped: 0, invalid: 0 };
  const invalid = [];
  if (dryRun) {
    for (const { row, problem } of checked) {
      if (problem) {
        counts.invalid += 1;
        invalid.push({ prefix: row.prefix, code: problem });
      } else counts[row.revoked ? "skipped" : "imported"] += 1;
    }
  } else {
    for (let i = 0; i < checked.length; i += batch) {
      const results = await send(values.gateway, env.ADMIN_TOKEN, checked.slice(i, i + batch).map((c) => c.row));
      for (const r of results) {
        counts[r.status] = (counts[r.status] ?? 0) + 1;
        if (r.status === "invalid") invalid.push({ prefix: r.prefix, code: r.error?.code });
      }
    }
  }
  const verb = dryRun ? "would be" : "were";
  console.log(`${checked.length} keys read; ${verb}: ` + Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ") + (dryRun ? " (dry run: nothing sent)" : ""));
  for (const { prefix, code } of invalid) console.log(`invalid: ${prefix ?? "(no prefix)"} ${code}`);
  return { counts, invalid };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main()
    .then(({ invalid }) => process.exit(invalid.length ? 1 : 0))
    .catch((e) => {
      console.error(`import failed: ${e.message}`);
      process.exit(1);
    });
}
