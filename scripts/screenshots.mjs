// make screenshots: the settings page as a user sees it, through the real gateway under
// `wrangler dev` with the example origin. Opens a session for a demo user with a few keys and
// some use (one key over its rate limit, one revoked), creates one more key in the page, and
// writes docs/screenshots/settings-desktop.png (1280 px wide) and settings-phone.png (390 px).

import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { ROOT, call, createKey, startGateway } from "../tests/e2e/harness.mjs";
import { DEMO_SESSION, createInPage, launchBrowser, newPage, openSession, usageLoaded } from "../tests/browser/browser.mjs";

const OUT = join(ROOT, "docs", "screenshots");
const DAY_MS = 86_400_000;
const inDays = (d) => new Date(Date.now() + d * DAY_MS).toISOString().replace(/\.\d{3}Z$/, "Z");
const user = { user_id: DEMO_SESSION.user_id, email: DEMO_SESSION.email };

const gw = await startGateway();
const browser = await launchBrowser();
try {
  const airflow = await createKey(gw, {
    ...user,
    name: "airflow production",
    workspaces: ["demo", "analytics"],
    permissions: ["jobs:read", "jobs:run"],
    expires_at: inDays(88),
  });
  const exporter = await createKey(gw, {
    ...user,
    name: "nightly export",
    workspaces: ["analytics"],
    permissions: ["workspaces:read", "jobs:read"],
    expires_at: inDays(6),
    rate_limit: { requests: 5, window_seconds: 60 },
  });
  const laptop = await createKey(gw, { ...user, name: "old laptop", workspaces: ["demo"], permissions: ["jobs:read"] });

  for (let i = 0; i < 24; i++) await call(gw, "GET", "/developers/workspaces/demo/jobs/", { key: airflow.key });
  for (let i = 0; i < 3; i++) {
    await call(gw, "POST", "/developers/workspaces/demo/jobs/daily_etl/run/", { key: airflow.key });
  }
  // Over its 5 per minute: the rest are refused, and show in red.
  for (let i = 0; i < 9; i++) await call(gw, "GET", "/developers/workspaces/analytics/jobs/", { key: exporter.key });
  await call(gw, "GET", "/developers/workspaces/demo/jobs/", { key: laptop.key });
  const revoked = await call(gw, "DELETE", `/v1/api-keys/${laptop.summary.id}`, { admin: true });
  if (revoked.status !== 200) throw new Error(`revoke failed: ${revoked.status}`);

  const session = await openSession(gw);
  mkdirSync(OUT, { recursive: true });
  const shots = [
    ["settings-desktop.png", { width: 1280, height: 900 }],
    ["settings-phone.png", { width: 390, height: 844 }],
  ];
  const context = await browser.newContext({ viewport: shots[0][1], colorScheme: "light" });
  const page = await newPage(context);
  await page.goto(session.url);
  await page.waitForSelector("#app:not([hidden])");
  await createInPage(page, { name: "laptop (ada)", workspaces: ["demo"], permissions: ["jobs:read"], expiry: "7" });
  await page.click("#reveal-done");
  for (const [file, viewport] of shots) {
    await page.setViewportSize(viewport);
    await page.reload();
    await usageLoaded(page);
    await page.waitForFunction(() => document.querySelector("#audit li") || !document.querySelector("#audit-empty").hidden);
    await page.screenshot({ path: join(OUT, file), fullPage: true });
    console.log(`wrote docs/screenshots/${file}`);
  }
  if (page.problems().length) throw new Error(`the browser reported: ${page.problems().join("; ")}`);
} finally {
  await browser.close();
  await gw.stop();
}
