// A bounded soak: 60 s of wrk at 64 connections through keygate (workerd via Miniflare) to a
// local nginx origin, loopback only. Reports 5xx, wrong answers, throughput, and workerd's
// memory (RSS) sampled every 10 s, which should stay flat.
//
//   node bench/soak.mjs [--seconds 60] [--connections 64]

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

import { createKey, startKeygate, startNginx, wrk } from "./lib.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("seconds", 60);
const CONNECTIONS = arg("connections", 64);
const SAMPLE_MS = 10_000;
/** What nginx answers on the jobs path (bench/nginx.conf.template). */
const EXPECTED_BODY = '{"results":[{"id":"daily_etl"}]}';

function workerdRssMiB() {
  try {
    const out = execFileSync("ps", ["-C", "workerd", "-o", "rss="], { encoding: "utf8" });
    return out.split("\n").filter(Boolean).reduce((a, b) => a + Number(b), 0) / 1024;
  } catch {
    return NaN;
  }
}

const adminToken = `soak-${randomBytes(16).toString("hex")}`;
const origin = await startNginx();
const kg = await startKeygate(origin.url, adminToken, `soak-${randomBytes(16).toString("hex")}`);
try {
  const key = await createKey(kg.url, adminToken);
  const samples = [workerdRssMiB()];
  const timer = setInterval(() => samples.push(workerdRssMiB()), SAMPLE_MS);
  const res = await wrk(`${kg.url}/developers/workspaces/ws1/jobs/`, "soak.lua", { KEY: key, EXPECTED_BODY }, { seconds: SECONDS, connections: CONNECTIONS });
  clearInterval(timer);
  samples.push(workerdRssMiB());
  const soak = /SOAK wrong=(\d+) server_errors=(\d+)/.exec(res.raw ?? "") ?? [];
  console.log(`soak: ${SECONDS} s, ${CONNECTIONS} connections, ${res.total} requests, ${res.rps.toFixed(0)} req/s, p50 ${res.p50.toFixed(1)} ms, p99 ${res.p99.toFixed(1)} ms`);
  console.log(`5xx: ${soak[2] ?? "?"}, wrong answers: ${soak[1] ?? "?"}, non-2xx: ${res.non2xx}, socket errors: ${res.errors || "none"}`);
  console.log(`workerd RSS (MiB) every ${SAMPLE_MS / 1000} s: ${samples.map((m) => m.toFixed(0)).join(", ")}`);
  const ok = soak[1] === "0" && soak[2] === "0" && res.non2xx === 0;
  console.log(ok ? "soak: PASS" : "soak: FAIL");
  process.exitCode = ok ? 0 : 1;
} finally {
  await kg.stop();
  origin.stop();
}
