// Cold start (bench only): a fresh workerd with keygate, three times; how long until it is
// ready, its first answer (a new isolate: the Worker's script and its .wasm instantiated) and a
// second one. nginx as origin, all on 127.0.0.1.   node bench/cold.mjs
import { startKeygate, startNginx } from "./lib.mjs";
const origin = await startNginx();
const out = [];
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const kg = await startKeygate(origin.url, "admin-cold-test", "sign-cold-test");
  const ready = performance.now() - t0;
  const t1 = performance.now();
  const r = await fetch(kg.url + "/healthz");
  const first = performance.now() - t1;
  const t2 = performance.now();
  await fetch(kg.url + "/healthz");
  const second = performance.now() - t2;
  out.push({ ready: Math.round(ready), first: +first.toFixed(1), second: +second.toFixed(1), status: r.status });
  await kg.stop();
}
origin.stop();
console.log(JSON.stringify(out));
