// Bench only: keygate with a simulated distance to its keys' objects. Every answer of the
// KeyStateObject is delayed by BENCH_OBJECT_DELAY_MS, as if the object lived that far away.
// Only bench/lib.mjs loads this module (as the Worker's entry in Miniflare); the deployed
// Worker's entry is build/worker/shim.mjs (wrangler.toml `main`), and nothing under src/ reads
// that var, so no production configuration can turn the delay on.
import worker, { KeyStateObject as Base } from "../build/index.js";

// The Worker's other Durable Object classes, unchanged (wrangler.toml binds them too).
export { SettingsSessionObject, UserLogObject } from "../build/index.js";

export class KeyStateObject extends Base {
  constructor(state, env) {
    super(state, env);
    this.benchDelayMs = Number(env.BENCH_OBJECT_DELAY_MS ?? 0);
  }

  async fetch(request) {
    if (this.benchDelayMs > 0) await new Promise((r) => setTimeout(r, this.benchDelayMs));
    return super.fetch(request);
  }
}

export default worker;
