// A real browser for the settings page: Debian's Chromium driven by playwright-core (whose own
// browser downloads cannot be fetched on these machines; docs/TOOLCHAIN.md). Shared by the
// browser tests and scripts/screenshots.mjs.

import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { chromium } from "playwright-core";

import { call } from "../e2e/harness.mjs";

const PAGE_TIMEOUT_MS = 10_000;

/** Where Debian installs Chromium; KEYGATE_CHROMIUM overrides it. */
export const CHROMIUM = process.env.KEYGATE_CHROMIUM || "/usr/bin/chromium";

/** Launches headless Chromium (`--no-sandbox`: the machines run as root). */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: run scripts/setup.sh (it installs Debian's chromium)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}

/** axe-core's source, to evaluate in a page (docs: tests/browser/settings.test.mjs, axe). */
export function axeSource() {
  return readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
}

/** The ceiling and user the tests and screenshots open sessions for, unless told otherwise. */
export const DEMO_SESSION = {
  user_id: "ada",
  email: "ada@example.com",
  workspaces: ["demo", "analytics"],
  permissions: ["workspaces:read", "jobs:read", "jobs:run", "secrets:read"],
  max_expiry_days: 90,
  return_url: "https://platform.example.com/account/api",
};

/**
 * Opens a settings session as the platform's backend does (admin `POST /v1/settings-sessions`);
 * returns `{ url, expires_at }` with `url` absolute.
 */
export async function openSession(gw, fields = {}) {
  const r = await call(gw, "POST", "/v1/settings-sessions", { admin: true, body: { ...DEMO_SESSION, ...fields } });
  if (r.status !== 201) throw new Error(`settings session not opened: ${r.status} ${r.text}`);
  return { ...r.json, url: new URL(r.json.url, gw.url).href };
}

/**
 * A page that records what the browser reports: console messages (CSP violations are reported
 * there) and page errors. `page.problems()` lists the errors and warnings seen so far, except
 * Chromium's note on every 4xx answer ("Failed to load resource"), which the tests cause on
 * purpose; `page.consoleText()` is everything, for checking that no key was logged.
 */
export async function newPage(context) {
  const page = await context.newPage();
  // Every step here takes well under a second; a missing element should fail fast.
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  const seen = [];
  const all = [];
  page.on("console", (m) => {
    all.push(m.text());
    const problem = m.type() === "error" || m.type() === "warning";
    if (problem && !m.text().startsWith("Failed to load resource")) seen.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => seen.push(`page error: ${e.message}`));
  page.problems = () => seen.slice();
  page.consoleText = () => all.join("\n");
  return page;
}

/**
 * Fills and submits the create form. `workspaces` and `permissions` name the boxes to tick;
 * `otherWorkspaces` goes into the free-text field; `expiry` is a preset value ("7", "30",
 * "never", ...). Returns the key shown in the dialog, still open.
 */
export async function createInPage(page, { name, workspaces = [], otherWorkspaces, permissions = [], expiry }) {
  await page.fill("#name", name);
  for (const w of workspaces) await page.check(`#ws-boxes input[value="${w}"]`);
  if (otherWorkspaces !== undefined) await page.fill("#ws-text", otherWorkspaces);
  for (const p of permissions) await page.check(`#perm-boxes input[value="${p}"]`);
  if (expiry) await page.check(`#exp-radios input[value="${expiry}"]`);
  await page.click("#create-btn");
  await page.waitForSelector("#reveal[open]");
  return (await page.textContent("#reveal-key")).trim();
}

/** The row of the key named `name` in the keys table. */
export function keyRow(page, name) {
  return page.locator("#keys-body tr", { has: page.locator(".key-name", { hasText: name }) });
}

/** Waits until the keys are listed and every usage chart has loaded (or said it is not available). */
export async function usageLoaded(page) {
  await page.waitForFunction(() => {
    const slots = [...document.querySelectorAll("#keys-body .usage")];
    return slots.length > 0 && slots.every((u) => !u.textContent.includes("Loading"));
  });
}
