// The floor of any exact per-key design: the pass-through Worker plus one Durable Object call
// per request that counts the request and makes the count durable (what an exact limiter must
// do at least), using JavaScript RPC, the cheapest way to reach an object.
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  count = 0;
  async hit() {
    this.count += 1;
    this.ctx.storage.put("count", this.count);
    return this.count;
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const stub = env.COUNTER.get(env.COUNTER.idFromName("bench-key"));
    await stub.hit();
    return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
  },
};
