// Where keygate's CPU goes under load: a V8 CPU profile of the Worker's isolate (through
// workerd's inspector; the Durable Object runs in the same isolate) while wrk drives valid-key
// proxied GETs, summed by function (self time) and by group. Loopback only. Function names of
// the Rust code appear only in a build without `strip` (see BENCHMARKS.md for the command).
//
//   node bench/profile.mjs [--seconds 8] [--top 30] [--path /developers/workspaces/ws1/jobs/]

import { randomBytes } from "node:crypto";

import WebSocket from "ws";

import { freePort } from "../tests/e2e/harness.mjs";
import { createKey, startKeygate, startNginx, wrk } from "./lib.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const SECONDS = Number(arg("seconds", 8));
const TOP = Number(arg("top", 30));
const PATH = arg("path", "/developers/workspaces/ws1/jobs/");

const adminToken = `bench-${randomBytes(16).toString("hex")}`;
const origin = await startNginx();
const inspectorPort = await freePort();
const kg = await startKeygate(origin.url, adminToken, `bench-${randomBytes(16).toString("hex")}`, { inspectorPort });
try {
  const key = await createKey(kg.url, adminToken);
  await wrk(kg.url + PATH, "key.lua", { KEY: key }, { seconds: 2, connections: 32 });
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const target = targets.find((t) => /keygate/.test(t.id ?? t.title ?? "")) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  let next = 0;
  const pending = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(data);
    if (msg.id && pending.has(msg.id)) pending.get(msg.id)(msg);
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = ++next;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 100 });
  await send("Profiler.start");
  const load = await wrk(kg.url + PATH, "key.lua", { KEY: key }, { seconds: SECONDS, connections: 32 });
  const { result } = await send("Profiler.stop");
  ws.close();

  const { nodes, samples, timeDeltas } = result.profile;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < samples.length; i++) {
    const f = byId.get(samples[i]).callFrame;
    const name = `${f.functionName || "(anonymous)"} ${f.url ? f.url.split("/").pop() : ""}`.trim();
    self.set(name, (self.get(name) ?? 0) + (timeDeltas[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const busy = [...self.entries()].filter(([n]) => n !== "(idle)").reduce((a, [, v]) => a + v, 0);
  const requests = load.total;
  console.log(`${requests} requests in ${SECONDS} s (${load.rps.toFixed(0)} req/s); profiled ${(total / 1000).toFixed(0)} ms, busy ${(busy / 1000).toFixed(0)} ms = ${(busy / requests).toFixed(0)} µs per request`);
  // Grouped: the Rust code (wasm functions), the wasm-bindgen/workers-rs JavaScript glue
  // (index.js), the runtime's own APIs and native code, the garbage collector.
  const group = (name) =>
    name === "(idle)" ? "idle"
      : name === "(garbage collector)" ? "garbage collector"
      : /^wasm-function|^js-to-wasm|^wasm-to-js|\.wasm-[0-9a-f]+$/.test(name) ? "Rust (wasm) and its boundary"
      : / index\.js$/.test(name) ? "JS glue (wasm-bindgen imports: includes the runtime APIs they call)"
      : "runtime (native code, fetch, Request/Response, timers, microtasks)";
  const groups = new Map();
  for (const [name, us] of self) groups.set(group(name), (groups.get(group(name)) ?? 0) + us);
  console.log("self time by group:");
  for (const [name, us] of [...groups.entries()].sort((a, b) => b[1] - a[1])) {
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / requests).toFixed(1).padStart(7)} µs/req  ${name}`);
  }
  console.log("self time, top functions:");
  for (const [name, us] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / requests).toFixed(1).padStart(7)} µs/req  ${name}`);
  }
} finally {
  await kg.stop();
  origin.stop();
}
