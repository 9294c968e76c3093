// The settings page in a real browser (Debian's Chromium through playwright-core), through the
// real gateway under `wrangler dev` with the example origin (tests/e2e/harness.mjs): the
// platform opens a session as admin, the browser follows the link, and everything the page
// does is checked against the gateway itself (the key works, is refused once revoked, the
// session link works once, calls without the CSRF token change nothing) — docs/CONTRACT.md
// section 11.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { call, createKey, expectError, startGateway } from "../e2e/harness.mjs";
import {
  DEMO_SESSION,
  axeSource,
  createInPage,
  keyRow,
  launchBrowser,
  newPage,
  openSession,
  usageLoaded,
} from "./browser.mjs";

/** The shortest session the contract allows; the expiry test waits this out. */
const SHORT_TTL_S = 60;
/** Budgets for the page (measured figures are reported as test diagnostics). */
const MAX_PAGE_GZIP_BYTES = 20 * 1024;
const MAX_FIRST_PAINT_MS = 3000;
const KEY_SHAPE = /^kg_[0-9a-f]{72}$/;
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

let gw;
let browser;
let context;
let page;
let shortSession;
let shortContext;
let shortPage;
/** Keys shown by the page, with the name they were created under. */
const shown = {};

before(async () => {
  gw = await startGateway();
  browser = await launchBrowser();
  // Opened first, so that the other tests' time counts towards its expiry (see the last test).
  shortSession = await openSession(gw, { ttl_seconds: SHORT_TTL_S });
  shortContext = await browser.newContext();
  shortPage = await newPage(shortContext);
  await shortPage.goto(shortSession.url);
  await shortPage.waitForSelector("#app:not([hidden])");

  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: gw.url });
  page = await newPage(context);
});

after(async () => {
  await browser?.close();
  // The keys the page showed join those the harness saw, so that its check of the gateway's
  // whole log (in stop) covers them too.
  gw?.issuedKeys.push(...Object.values(shown));
  await gw?.stop();
});

/** Every page the tests opened: no script error, no CSP violation, and never a key. */
function assertCleanConsole(p) {
  assert.deepEqual(p.problems(), [], "the browser reported errors or CSP violations");
  for (const key of Object.values(shown)) assert.ok(!p.consoleText().includes(key), "a key reached the console");
}

/** What the browser keeps that could leak a key: URL, history, storage, the DOM. */
async function traces(p) {
  return p.evaluate(() => ({
    url: location.href,
    local: JSON.stringify({ ...localStorage }),
    session: JSON.stringify({ ...sessionStorage }),
    html: document.documentElement.outerHTML,
  }));
}

/** Waits until the key dialog is closed and has forgotten its key (its close event ran). */
async function dismissed(p) {
  await p.waitForSelector("#reveal", { state: "hidden" });
  await p.waitForFunction(() => document.querySelector("#reveal-key").textContent === "");
}

async function keysOfUser(userId = DEMO_SESSION.user_id) {
  const r = await call(gw, "GET", `/v1/api-keys?user_id=${encodeURIComponent(userId)}&limit=100`, { admin: true });
  assert.equal(r.status, 200, r.text);
  return r.json.results;
}

test("the link opens the page once: a cookie, a redirect without the secret, a strict CSP", async () => {
  const session = await openSession(gw);
  const token = new URL(session.url).searchParams.get("token");
  const response = await page.goto(session.url);
  assert.equal(new URL(page.url()).pathname, "/settings/");
  assert.equal(new URL(page.url()).search, "", "the page's URL carries no secret");
  assert.ok(!page.url().includes(token ?? "\u0000"));
  assert.equal(response.headers()["content-security-policy"], CSP);
  assert.match(response.headers()["x-frame-options"] ?? "", /deny/i);

  const cookies = await context.cookies(`${gw.url}/settings/`);
  assert.equal(cookies.length, 1, JSON.stringify(cookies.map((c) => c.name)));
  assert.equal(cookies[0].httpOnly, true);
  assert.equal(cookies[0].sameSite, "Strict");
  assert.ok(cookies[0].path.startsWith("/settings"), cookies[0].path);
  assert.equal(await page.evaluate(() => document.cookie), "", "the session cookie is not readable by script");

  await page.waitForSelector("#app:not([hidden])");
  assert.equal(await page.textContent("#who"), `${DEMO_SESSION.email} (${DEMO_SESSION.user_id})`);
  assert.equal(await page.getAttribute("#back", "href"), DEMO_SESSION.return_url);
  // The page shows itself, then lists the keys: wait for the list's answer, not the frame.
  await page.waitForSelector("#keys-empty", { state: "visible" });
  assert.equal(await page.locator("#keys-body tr").count(), 0, "a new user has no keys yet");

  // The ceiling decides the choices: its permissions and workspaces only, no free text; no
  // preset beyond max_expiry_days and no "never".
  const perms = await page.$$eval("#perm-boxes input", (xs) => xs.map((x) => x.value));
  assert.deepEqual(perms.sort(), [...DEMO_SESSION.permissions].sort());
  const ws = await page.$$eval("#ws-boxes input", (xs) => xs.map((x) => x.value));
  assert.deepEqual(ws, ["demo", "analytics"]);
  assert.equal(await page.isVisible("#ws-text"), false);
  const presets = await page.$$eval("#exp-radios input", (xs) => xs.map((x) => x.value));
  assert.deepEqual(presets, ["7", "30", "90", "custom"]);

  // The link works once: a second browser gets no session from it.
  const other = await browser.newContext();
  const second = await newPage(other);
  const again = await second.goto(session.url);
  assert.equal(again.status(), 410, "a used link is refused (link_expired)");
  assert.deepEqual(await other.cookies(`${gw.url}/settings/`), []);
  const api = await second.evaluate(async () => (await fetch("/settings/api/session")).status);
  assert.equal(api, 401);
  await other.close();
  assertCleanConsole(page);
});

test("a key created in the page is shown once, works at the gateway, and is gone after a reload", async () => {
  const key = await createInPage(page, {
    name: "airflow prod",
    workspaces: ["demo"],
    permissions: ["jobs:read", "jobs:run"],
    expiry: "30",
  });
  assert.match(key, KEY_SHAPE);
  shown.created = key;
  assert.match(await page.textContent("#reveal"), /This key will not be shown again/);

  await page.click("#reveal-copy");
  await page.waitForFunction(() => document.querySelector("#reveal-copied").textContent.length > 0);
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key, "Copy puts the key on the clipboard");

  // Nowhere but the open dialog: not in the URL, storage or console.
  let t = await traces(page);
  assert.ok(!t.url.includes(key) && !t.local.includes(key) && !t.session.includes(key));

  await page.click("#reveal-done");
  await dismissed(page);
  t = await traces(page);
  assert.ok(!t.html.includes(key), "dismissing the dialog removes the key from the page");
  await page.evaluate(() => navigator.clipboard.writeText(""));

  // The key belongs to the session's user and e-mail, with what was chosen.
  const [summary] = (await keysOfUser()).filter((k) => k.name === "airflow prod");
  assert.equal(summary.email, DEMO_SESSION.email);
  assert.deepEqual(summary.workspaces, ["demo"]);
  assert.deepEqual(summary.permissions.sort(), ["jobs:read", "jobs:run"]);
  const days = (Date.parse(summary.expires_at) - Date.now()) / 86_400_000;
  assert.ok(days > 29.9 && days <= 30, `expires in ${days} days`);

  const r = await call(gw, "GET", "/developers/workspaces/demo/jobs/", { key });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.identity.user_email, DEMO_SESSION.email);

  await page.reload();
  await page.waitForSelector("#keys-body tr");
  t = await traces(page);
  assert.ok(!t.html.includes(key), "the key is never shown again");
  const row = keyRow(page, "airflow prod");
  assert.match(await row.textContent(), new RegExp(summary.hint));
  assert.match(await row.locator(".badge").textContent(), /Active/);
  assertCleanConsole(page);
});

test("the call appears in the key's usage chart, with its numbers in words", async () => {
  await page.reload();
  await usageLoaded(page);
  const chart = keyRow(page, "airflow prod").locator("svg[role=img]");
  const label = await chart.getAttribute("aria-label");
  const allowed = Number(/([\d,]+) allowed/.exec(label)?.[1].replace(/,/g, ""));
  assert.ok(allowed >= 1, `the chart counts the call: ${label}`);
  assert.ok((await chart.locator("rect.ok").count()) >= 1, "and draws it");
  assert.match(await keyRow(page, "airflow prod").locator(".usage-total").textContent(), /\d+ requests?/);
});

test("a `*` ceiling: all workspaces or ids typed in, checked in the page; never expiring only without a maximum", async () => {
  const user = "grace";
  const session = await openSession(gw, { user_id: user, email: "grace@example.com", workspaces: ["*"], permissions: ["*"], max_expiry_days: undefined });
  const ctx = await browser.newContext();
  const p = await newPage(ctx);
  await p.goto(session.url);
  await p.waitForSelector("#app:not([hidden])");
  const perms = await p.$$eval("#perm-boxes input", (xs) => xs.map((x) => x.value));
  assert.equal(perms[0], "*");
  assert.equal(perms.length, 13, "all, then the twelve permissions of the vocabulary");
  assert.deepEqual(await p.$$eval("#ws-boxes input", (xs) => xs.map((x) => x.value)), ["*"]);
  const presets = await p.$$eval("#exp-radios input", (xs) => xs.map((x) => x.value));
  assert.deepEqual(presets, ["7", "30", "90", "custom", "never"]);

  await p.fill("#name", "typed ids");
  await p.fill("#ws-text", "eu-1, not an id!");
  await p.check('#perm-boxes input[value="jobs:read"]');
  await p.click("#create-btn");
  assert.match(await p.textContent("#workspaces-err"), /is not a workspace id/);
  assert.equal(await p.getAttribute("#ws-text", "aria-invalid"), "true");
  assert.equal(await p.evaluate(() => document.activeElement.id), "ws-text", "the focus goes to the problem");
  assert.match(await p.textContent("#status"), /not created/);
  assert.deepEqual(await keysOfUser(user), []);

  await p.fill("#ws-text", "eu-1, us_2");
  await p.check('#exp-radios input[value="never"]');
  await p.click("#create-btn");
  await p.waitForSelector("#reveal[open]");
  shown.typed = (await p.textContent("#reveal-key")).trim();
  await p.keyboard.press("Escape");
  await dismissed(p); // Escape also forgets the key
  const [made] = await keysOfUser(user);
  assert.deepEqual(made.workspaces, ["eu-1", "us_2"]);
  assert.equal(made.expires_at, null);
  assertCleanConsole(p);
  await ctx.close();
});

test("more keys and more activity than one page: Show more keys and Load more follow the cursors", async () => {
  const user = "grace";
  const PAGE = 20; // the API's default page size (docs/CONTRACT.md section 4)
  for (let i = 0; i < PAGE; i++) {
    await createKey(gw, { user_id: user, email: "grace@example.com", name: `bulk ${i}`, workspaces: ["demo"], permissions: ["jobs:read"] });
  }
  const total = (await keysOfUser(user)).length;
  assert.equal(total, PAGE + 1);
  const session = await openSession(gw, { user_id: user, email: "grace@example.com", workspaces: ["*"], permissions: ["*"] });
  const ctx = await browser.newContext();
  const p = await newPage(ctx);
  await p.goto(session.url);
  await p.waitForSelector("#keys-body tr");
  assert.equal(await p.locator("#keys-body tr").count(), PAGE);
  await p.click("#keys-more");
  await p.waitForFunction((n) => document.querySelectorAll("#keys-body tr").length === n, total);
  assert.equal(await p.isVisible("#keys-more"), false, "no more keys to show");

  // 21 creations, and 2 sessions each issued and opened: one page of activity, then the rest.
  await p.waitForSelector("#audit li");
  assert.equal(await p.locator("#audit li").count(), PAGE);
  await p.click("#audit-more");
  await p.waitForFunction((n) => document.querySelectorAll("#audit li").length === n, total + 4);
  assert.equal(await p.isVisible("#audit-more"), false);
  const last = await p.locator("#audit li").last().textContent();
  assert.match(last, /Settings link issued/, "the oldest entry is the first session's issue");
  assertCleanConsole(p);
  await ctx.close();
});

test("what the page does not offer, the gateway refuses: a workspace or a permission outside the ceiling", async () => {
  const before = await keysOfUser();
  const answers = await page.evaluate(async () => {
    const { csrf_token } = await (await fetch("/settings/api/session")).json();
    const send = (body) =>
      fetch("/settings/api/keys", {
        method: "POST",
        headers: { "content-type": "application/json", "X-CSRF-Token": csrf_token },
        body: JSON.stringify({ name: "wider", ...body }),
      }).then((r) => r.status);
    return [
      await send({ workspaces: ["prod"], permissions: ["jobs:read"] }),
      await send({ workspaces: ["demo"], permissions: ["secrets:write"] }),
    ];
  });
  for (const status of answers) assert.ok(status >= 400 && status < 500, `refused: ${answers}`);
  assert.deepEqual(await keysOfUser(), before);
});

test("roll from the page: a grace choice, the new key shown once, both keys work during the grace", async () => {
  const oldKey = shown.created;
  // A key wider than the ceiling (made by the platform) cannot be rolled here: no Roll button,
  // but it can still be revoked.
  await createKey(gw, { user_id: DEMO_SESSION.user_id, email: DEMO_SESSION.email, name: "made by the platform", workspaces: ["*"] });
  await page.reload();
  await page.waitForSelector("#keys-body tr");
  assert.equal(await keyRow(page, "made by the platform").getByRole("button", { name: /Roll/ }).count(), 0);
  assert.equal(await keyRow(page, "made by the platform").getByRole("button", { name: /Revoke/ }).count(), 1);

  await keyRow(page, "airflow prod").getByRole("button", { name: /Roll/ }).click();
  await page.waitForSelector("#roll[open]");
  await page.check('#roll input[name=grace][value="3600"]');
  await page.click("#roll-go");
  await page.waitForSelector("#reveal[open]");
  const newKey = (await page.textContent("#reveal-key")).trim();
  assert.match(newKey, KEY_SHAPE);
  assert.notEqual(newKey, oldKey);
  shown.rolled = newKey;
  assert.match(await page.textContent("#reveal"), /This key will not be shown again/);
  await page.click("#reveal-done");
  await dismissed(page);
  assert.ok(!(await traces(page)).html.includes(newKey));

  for (const key of [oldKey, newKey]) {
    const r = await call(gw, "GET", "/developers/workspaces/demo/jobs/", { key });
    assert.equal(r.status, 200, r.text);
  }
  const mine = await keysOfUser();
  const old = mine.find((k) => k.hint === oldKey.slice(0, 9));
  const hoursLeft = (Date.parse(old.expires_at) - Date.now()) / 3_600_000;
  assert.ok(hoursLeft > 0.95 && hoursLeft <= 1, `the old key ends with the grace: ${hoursLeft} h`);
  assertCleanConsole(page);
});

test("revoke from the page asks first; once confirmed the gateway refuses the key", async () => {
  const key = shown.rolled;
  const hint = key.slice(0, 9);
  const row = () => page.locator("#keys-body tr", { has: page.locator(".hint", { hasText: hint }) });

  // Cancel changes nothing.
  await row().getByRole("button", { name: /Revoke/ }).click();
  await page.waitForSelector("#revoke[open]");
  assert.match(await page.textContent("#revoke-what"), /cannot be undone/);
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Cancel", "the safe choice has focus");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#revoke", { state: "hidden" });
  assert.equal((await call(gw, "GET", "/v1/me", { key })).status, 200);

  await row().getByRole("button", { name: /Revoke/ }).click();
  await page.waitForSelector("#revoke[open]");
  await page.click("#revoke-go");
  await page.waitForFunction(() => /no longer works/.test(document.querySelector("#status").textContent));
  await row().locator(".badge.revoked").waitFor();
  assert.equal(await row().getByRole("button", { name: /Revoke/ }).count(), 0, "a revoked key has no actions");

  const r = await call(gw, "GET", "/v1/me", { key });
  expectError(assert, r, 401, "revoked_api_key");
  assertCleanConsole(page);
});

test("the audit trail: creation, roll and revocation, newest first, done in the settings session", async () => {
  await page.reload();
  await page.waitForSelector("#audit li");
  const entries = await page.$$eval("#audit li", (xs) => xs.map((x) => x.textContent.replace(/\s+/g, " ")));
  const [revoked, rolled] = entries;
  assert.match(revoked, /Key revoked.*airflow prod/);
  assert.match(rolled, /Key rolled.*airflow prod/);
  const created = entries.find((e) => /Key created.*airflow prod/.test(e));
  assert.ok(created, entries.join("\n"));
  for (const e of [revoked, rolled, created]) assert.match(e, /by you, in settings/);
  assert.ok(entries.indexOf(created) > entries.indexOf(rolled), "newest first");
});

test("a POST without the CSRF token, or with a wrong one, changes nothing", async () => {
  const before = await keysOfUser();
  const body = JSON.stringify({ name: "forged", workspaces: ["demo"], permissions: ["jobs:read"] });
  const statuses = await page.evaluate(async (body) => {
    const send = (headers) =>
      fetch("/settings/api/keys", { method: "POST", headers: { "content-type": "application/json", ...headers }, body })
        .then(async (r) => [r.status, (await r.json()).code]);
    return [await send({}), await send({ "X-CSRF-Token": "not-the-token" })];
  }, body);
  assert.deepEqual(statuses, [[403, "csrf_failed"], [403, "csrf_failed"]]);

  // Playwright's own request context carries the page's cookie, without the page's token.
  const target = before.find((k) => !k.revoked_at);
  const r = await page.request.post(`${gw.url}/settings/api/keys/${target.id}/revoke`);
  assert.equal(r.status(), 403);
  assert.deepEqual(await keysOfUser(), before, "nothing was created or revoked");
});

test("keyboard only: Tab, Space and Enter create a key and dismiss it", async () => {
  await page.reload();
  await page.waitForSelector("#app:not([hidden])");
  await page.evaluate(() => document.activeElement?.blur());

  /** Presses Tab until `selector` has focus; fails after `max` presses. */
  async function tabTo(selector, max = 40) {
    for (let i = 0; i < max; i++) {
      await page.keyboard.press("Tab");
      if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
    }
    assert.fail(`Tab never reached ${selector}`);
  }
  await tabTo("#name");
  await page.keyboard.type("typed by keyboard");
  await tabTo('#ws-boxes input[value="analytics"]');
  await page.keyboard.press("Space");
  await tabTo('#perm-boxes input[value="workspaces:read"]');
  await page.keyboard.press("Space");
  await tabTo("#exp-radios input:checked");
  await page.keyboard.press("ArrowLeft"); // 30 days -> 7 days
  await tabTo("#create-btn");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#reveal[open]");
  shown.keyboard = (await page.textContent("#reveal-key")).trim();
  assert.match(shown.keyboard, KEY_SHAPE);
  // The dialog holds the focus: Tab cycles within it.
  assert.ok(await page.evaluate(() => document.querySelector("#reveal").contains(document.activeElement)));
  await tabTo("#reveal-done", 4);
  await page.keyboard.press("Enter");
  await dismissed(page);

  const made = (await keysOfUser()).find((k) => k.name === "typed by keyboard");
  assert.deepEqual(made.workspaces, ["analytics"]);
  assert.deepEqual(made.permissions, ["workspaces:read"]);
  const days = (Date.parse(made.expires_at) - Date.now()) / 86_400_000;
  assert.ok(days > 6.9 && days <= 7, `7 days chosen with the arrow key: ${days}`);
});

test("a date for expiry: the end of that day (UTC), never beyond max_expiry_days", async () => {
  const day = (n) => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10);
  const before = (await keysOfUser()).length;
  await page.fill("#name", "until a date");
  await page.check('#ws-boxes input[value="demo"]');
  await page.check('#perm-boxes input[value="jobs:read"]');
  await page.check('#exp-radios input[value="custom"]');
  assert.equal(await page.isVisible("#exp-date"), true, "choosing a date shows the date field");
  assert.equal(await page.getAttribute("#exp-date", "max"), day(DEMO_SESSION.max_expiry_days));
  await page.fill("#exp-date", day(DEMO_SESSION.max_expiry_days + 10));
  await page.click("#create-btn");
  assert.match(await page.textContent("#expires_at-err"), /at most 90 days/);
  assert.equal((await keysOfUser()).length, before, "nothing was sent");

  const date = day(10);
  await page.fill("#exp-date", date);
  await page.click("#create-btn");
  await page.waitForSelector("#reveal[open]");
  shown.dated = (await page.textContent("#reveal-key")).trim();
  await page.click("#reveal-done");
  await dismissed(page);
  const made = (await keysOfUser()).find((k) => k.name === "until a date");
  assert.equal(made.expires_at, `${date}T23:59:59Z`);
  assert.equal(await page.isVisible("#exp-date"), false, "the form is reset to a preset");
});

test("axe-core finds no serious or critical problem, on the page and in the dialogs", async () => {
  // axe is evaluated through the DevTools protocol, which the page's CSP does not govern; no
  // CSP bypass is needed, and the page's own scripts stay under the policy.
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.reload();
  await usageLoaded(page);
  await page.evaluate(axeSource());
  const run = () =>
    page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ["violations"] });
      return r.violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    });
  assert.deepEqual(await run(), [], "the page");
  // Labels, error messages and the script find elements by id: each id once.
  const dupes = await page.$$eval("[id]", (xs) => xs.map((x) => x.id).filter((id, i, all) => all.indexOf(id) !== i));
  assert.deepEqual(dupes, [], "duplicate ids");
  await keyRow(page, "typed by keyboard").getByRole("button", { name: /Roll/ }).click();
  await page.waitForSelector("#roll[open]");
  assert.deepEqual(await run(), [], "the roll dialog");
  await page.keyboard.press("Escape");
  await page.setViewportSize({ width: 375, height: 800 });
  assert.deepEqual(await run(), [], "at 375 px");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `nothing wider than a 375 px phone (overflow ${overflow} px)`);
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("another user's link, followed from another site, asks first; by keyboard the person keeps their own or switches", async () => {
  // docs/CONTRACT.md section 11 (login CSRF): a link of another user, opened by a navigation
  // from another site (here `localhost`, another site than the gateway's 127.0.0.1), does not
  // silently replace the person's session.
  const own = await openSession(gw, { user_id: `victim-${Date.now()}`, email: "victim@example.com" });
  const foreign = await openSession(gw, { user_id: `mallory-${Date.now()}`, email: "mallory@example.com" });
  const ctx = await browser.newContext();
  const p = await newPage(ctx);
  await p.goto(own.url);
  await p.waitForSelector("#app:not([hidden])");
  assert.match(await p.textContent("#who"), /victim@example\.com \(victim-/);
  const site = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>prize</title><a id="go" href="${foreign.url}">Claim your prize</a>`);
  });
  await new Promise((r) => site.listen(0, "127.0.0.1", r));
  const elsewhere = `http://localhost:${site.address().port}/`;
  try {
    const viaOtherSite = async () => {
      await p.goto(elsewhere);
      await Promise.all([p.waitForURL(/\/settings\/open/), p.click("#go")]);
      await p.waitForSelector("#switch-h");
    };
    await viaOtherSite();
    assert.match(await p.textContent("#current"), /victim@example\.com/);
    assert.match(await p.textContent("#link"), /mallory@example\.com/);
    await p.screenshot({ path: join(tmpdir(), "keygate-switch.png") });
    await p.evaluate(axeSource());
    const violations = await p.evaluate(async () =>
      (await window.axe.run(document, { resultTypes: ["violations"] })).violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => v.id),
    );
    assert.deepEqual(violations, [], "the choice page");
    // Keyboard: the first stop keeps the person's own keys.
    await p.keyboard.press("Tab");
    assert.equal(await p.evaluate(() => document.activeElement.id), "stay");
    await Promise.all([p.waitForURL(/\/settings\/$/), p.keyboard.press("Enter")]);
    await p.waitForSelector("#app:not([hidden])");
    assert.match(await p.textContent("#who"), /victim@example\.com/, "still the person's own keys");
    // The link was not used: asked again, the second stop switches.
    await viaOtherSite();
    await p.keyboard.press("Tab");
    await p.keyboard.press("Tab");
    assert.equal(await p.evaluate(() => document.activeElement.id), "switch");
    await Promise.all([p.waitForURL(/\/settings\/$/), p.keyboard.press("Enter")]);
    await p.waitForSelector("#app:not([hidden])");
    assert.match(await p.textContent("#who"), /mallory@example\.com \(mallory-/, "the page says whose keys these are");
    assertCleanConsole(p);
  } finally {
    site.close();
    await ctx.close();
  }
});

test("a shared limit (the user's pool): a labelled section with what is left, a note on every live key, reachable by keyboard", async () => {
  const user = `lin-${Date.now()}`;
  const email = "lin@example.com";
  const who = { user_id: user, email };
  const etl = await createKey(gw, { ...who, name: "etl", workspaces: ["demo"], permissions: ["jobs:read", "jobs:run"] });
  const spare = await createKey(gw, { ...who, name: "spare", workspaces: ["demo"], permissions: ["jobs:read"] });
  const gone = await createKey(gw, { ...who, name: "gone", workspaces: ["demo"], permissions: ["jobs:read"] });
  assert.equal((await call(gw, "DELETE", `/v1/api-keys/${gone.summary.id}`, { admin: true })).status, 200);
  const session = await openSession(gw, who);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await newPage(ctx);
  try {
    // No pool: nothing about one.
    await p.goto(session.url);
    await p.waitForSelector("#keys-body tr");
    assert.equal(await p.isVisible("#pool"), false);
    assert.equal(await p.isVisible("#keys-pool"), false);
    assert.equal(await p.locator(".pool-note").count(), 0);

    // The platform gives the user a pool; the user's keys spend some of it (one hour's window:
    // a request comes back every 36 s, slower than this test reads the figures).
    const put = await call(gw, "PUT", `/v1/pools/users/${user}`, {
      admin: true,
      body: { rate_limit: { requests: 100, window_seconds: 3600 }, quota: { runs: 10, period: "day" } },
    });
    assert.equal(put.status, 201, put.text);
    for (const key of [etl.key, spare.key]) {
      assert.equal((await call(gw, "GET", "/developers/workspaces/demo/jobs/", { key })).status, 200);
    }
    const ran = await call(gw, "POST", "/developers/workspaces/demo/jobs/nightly/run/", { key: etl.key, body: {} });
    assert.equal(ran.status, 201, ran.text);

    await p.reload();
    await usageLoaded(p);
    const region = p.getByRole("region", { name: "Shared limit" });
    assert.equal(await region.isVisible(), true, "a region named by its heading");
    const figures = (await p.locator("#pool-figures li").allTextContents()).map((x) => x.replace(/\s+/g, " ").trim());
    assert.equal(figures.length, 2, figures.join(" | "));
    const requests = /^(\d+) of 100 requests left per hour$/.exec(figures[0]);
    assert.ok(requests, figures[0]);
    assert.ok(Number(requests[1]) >= 95 && Number(requests[1]) <= 97, `three requests spent: ${figures[0]}`);
    assert.match(figures[1], /^9 of 10 job runs left today \(until .+\)$/);
    const d = new Date();
    const midnight = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)).toISOString().replace(/\.000Z$/, "Z");
    assert.equal(await p.getAttribute("#pool-figures time", "datetime"), midnight);
    // The meters only repeat the words for the eye: hidden from screen readers, same numbers.
    assert.deepEqual(await p.$$eval("#pool-figures meter", (ms) => ms.map((m) => [m.value, m.max, m.getAttribute("aria-hidden")])), [
      [Number(requests[1]), 100, "true"],
      [9, 10, "true"],
    ]);

    // Every live key says so, the revoked one does not; the list says it applies to all keys.
    for (const name of ["etl", "spare"]) {
      assert.match(await keyRow(p, name).textContent(), /Also limited by your shared limit/, name);
    }
    assert.equal(await keyRow(p, "gone").locator(".pool-note").count(), 0, "a revoked key is limited by nothing");
    assert.match(await p.innerText("#keys-pool"), /^All your keys are also limited by your shared limit\.$/);

    // The pool's definition is in the user's trail, in words.
    await p.waitForSelector("#audit li");
    assert.match((await p.locator("#audit li").first().textContent()).replace(/\s+/g, " "), /Shared limit set.*by the platform/);

    // Keyboard: the list's link reaches the section and moves the focus to its heading.
    await p.focus("#create-btn");
    await p.keyboard.press("Tab");
    assert.equal(await p.evaluate(() => document.activeElement?.closest("#keys-pool") !== null), true, "the next stop after the form");
    await p.keyboard.press("Enter");
    await p.waitForFunction(() => document.activeElement?.id === "pool-h");

    await p.evaluate(axeSource());
    const serious = () =>
      p.evaluate(async () =>
        (await window.axe.run(document, { resultTypes: ["violations"] })).violations
          .filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
      );
    assert.deepEqual(await serious(), [], "the page with a shared limit");
    await p.screenshot({ path: join(tmpdir(), "keygate-pool-desktop.png"), fullPage: true });
    await p.setViewportSize({ width: 375, height: 800 });
    assert.deepEqual(await serious(), [], "at 375 px");
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `nothing wider than a 375 px phone (overflow ${overflow} px)`);
    await p.screenshot({ path: join(tmpdir(), "keygate-pool-phone.png"), fullPage: true });
    assertCleanConsole(p);
  } finally {
    await ctx.close();
  }
});

test("page weight and time to first paint under wrangler dev", async (t) => {
  let bytes = 0;
  let gzip = 0;
  for (const file of ["/settings/", "/settings/app.js", "/settings/app.css"]) {
    const r = await fetch(gw.url + file);
    const body = Buffer.from(await r.arrayBuffer());
    bytes += body.length;
    gzip += gzipSync(body, { level: 9 }).length;
  }
  const fresh = await newPage(context);
  await fresh.goto(`${gw.url}/settings/`);
  const fcp = await fresh.evaluate(
    () =>
      new Promise((resolve) => {
        new PerformanceObserver((list) => {
          const e = list.getEntries().find((x) => x.name === "first-contentful-paint");
          if (e) resolve(e.startTime);
        }).observe({ type: "paint", buffered: true });
      }),
  );
  await fresh.waitForSelector("#app:not([hidden])");
  const ready = await fresh.evaluate(() => performance.now());
  await fresh.close();
  t.diagnostic(`page weight: ${bytes} bytes (html+js+css), ${gzip} bytes gzip -9`);
  t.diagnostic(`first contentful paint ${fcp.toFixed(0)} ms; keys listed after ${ready.toFixed(0)} ms`);
  assert.ok(gzip <= MAX_PAGE_GZIP_BYTES, `${gzip} bytes gzip`);
  assert.ok(fcp <= MAX_FIRST_PAINT_MS, `${fcp} ms`);
});

test("Sign out (keyboard): the page shows the ended state, the cookie is gone, and a reload stays ended", async () => {
  const session = await openSession(gw);
  const ctx = await browser.newContext();
  const p = await newPage(ctx);
  await p.goto(session.url);
  await p.waitForSelector("#app:not([hidden])");
  const [cookie] = await ctx.cookies(`${gw.url}/settings/`);
  assert.equal(await p.getAttribute("#signout", "type"), "button");
  assert.equal(await p.textContent("#signout"), "Sign out");

  await p.focus("#signout");
  await p.keyboard.press("Enter");
  await p.waitForSelector("#ended:not([hidden])");
  assert.equal(await p.isVisible("#app"), false);
  assert.equal(await p.isVisible("#signout"), false);
  assert.match(await p.textContent("#ended-why"), /You signed out/);
  assert.match(await p.textContent("#status"), /You signed out/);
  assert.equal(await p.getAttribute("#ended-back", "href"), DEMO_SESSION.return_url);
  assert.equal(await p.evaluate(() => document.activeElement?.id), "ended-h");
  assert.deepEqual(await ctx.cookies(`${gw.url}/settings/`), [], "the cookie is cleared");

  // The old cookie, replayed, is refused by the gateway: the session really ended.
  const replay = await call(gw, "GET", "/settings/api/session", {
    headers: { cookie: `${cookie.name}=${cookie.value}` },
  });
  expectError(assert, replay, 401, "session_expired");

  await p.reload();
  await p.waitForSelector("#ended:not([hidden])");
  assert.equal(await p.isVisible("#app"), false);
  assertCleanConsole(p);
  await ctx.close();
});

test("an expired session is refused, and the open page says so", async () => {
  const wait = Date.parse(shortSession.expires_at) + 1500 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  // The open page noticed by itself (its timer), without a reload.
  await shortPage.waitForSelector("#ended:not([hidden])", { timeout: 5000 });
  assert.match(await shortPage.textContent("#ended"), /session has ended/);

  const before = await keysOfUser();
  const r = await shortPage.evaluate(async () => {
    const res = await fetch("/settings/api/keys", {
      method: "POST",
      headers: { "content-type": "application/json", "X-CSRF-Token": "irrelevant" },
      body: JSON.stringify({ name: "late", workspaces: ["demo"], permissions: ["jobs:read"] }),
    });
    return [res.status, (await fetch("/settings/api/session")).status];
  });
  assert.equal(r[1], 401, "the session call is refused");
  assert.ok([401, 403].includes(r[0]), `a late POST is refused: ${r[0]}`);
  assert.deepEqual(await keysOfUser(), before);

  await shortPage.reload();
  await shortPage.waitForSelector("#ended:not([hidden])");
  assert.equal(await shortPage.isVisible("#app"), false);
  assertCleanConsole(shortPage);
});
