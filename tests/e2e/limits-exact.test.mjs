// limits.test.mjs again with LEASE_MS = 0 (docs/CONTRACT.md section 8: one object call per
// request, the exact mode): the same cases, the other lease mode. A file of its own so that it
// runs beside the others (`make test` runs end-to-end files side by side).

process.env.KEYGATE_TEST_LEASE_MS = "0";
await import("./limits.test.mjs");
