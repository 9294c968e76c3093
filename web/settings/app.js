// The key settings page (docs/CONTRACT.md section 11). Plain JS, no framework and no build
// step, so what runs is what is reviewed. The strict Content-Security-Policy forbids inline
// script and style: everything is built with DOM calls and styled by classes, and no data ever
// goes through innerHTML. A new key lives only in `shownKey` and in the dialog's text while
// the dialog is open; it never reaches a URL, storage or the console.
"use strict";

(() => {
  const API = "/settings/api";
  const CSRF_HEADER = "X-CSRF-Token";
  const DAY_S = 86400;
  /** Expiry presets offered, in days; those beyond the session's max_expiry_days are not. */
  const EXPIRY_PRESETS = [7, 30, 90];
  const DEFAULT_PRESET = 30;
  /** The contract's permission vocabulary (section 5), to expand a `*` ceiling. */
  const PERMISSIONS = [
    "workspaces:read", "jobs:read", "jobs:write", "jobs:run",
    "orchestration:read", "orchestration:write", "secrets:read", "secrets:write",
    "variables:read", "variables:write", "api_keys:read", "api_keys:write",
  ];
  const WORKSPACE_ID = /^[A-Za-z0-9_-]{1,64}$/;
  const HOURS_SHOWN = 48;
  /** A window in the largest unit that divides it, so that 60 s reads "per minute". */
  const DURATION_UNITS = [["day", DAY_S], ["hour", 3600], ["minute", 60]];
  /** Below this share of a shared limit left, its meter shows as low (the text says the number). */
  const POOL_LOW = 0.2;
  const CHART = { width: 192, height: 32, gap: 1 };
  /** Keys listed live first, then expired, then revoked; newest first within each. */
  const STATE_ORDER = { active: 0, disabled: 1, expired: 2, revoked: 3 };
  const ACTIONS = {
    "key.created": "Key created",
    "key.imported": "Key imported",
    "key.rolled": "Key rolled",
    "key.revoked": "Key revoked",
    "key.updated": "Key updated",
    "key.disabled": "Key disabled",
    "key.enabled": "Key enabled",
    "key.leaked": "Key reported leaked",
    "key.expiring": "Key expiring soon",
    "key.expired": "Key expired",
    "quota.threshold": "Quota 80% used",
    "quota.exhausted": "Quota used up",
    "rate_limit.exceeded": "Rate limit exceeded",
    "settings_session.created": "Settings link issued",
    "settings_session.opened": "Settings opened",
    "pool.created": "Shared limit set",
    "pool.updated": "Shared limit changed",
    "pool.deleted": "Shared limit removed",
  };

  const $ = (id) => document.getElementById(id);
  let session = null;
  /** Server time minus local time, from the Date header, so presets respect the server's max. */
  let skewMs = 0;
  let keys = [];
  let keysCursor = null;
  let auditCursor = null;
  /** Settles when the first list of keys has been loaded (or failed). */
  let keysReady = Promise.resolve();
  let shownKey = null;
  let target = null;
  let ended = false;

  // ---------- small helpers ----------

  /** Creates an element: `h("a", {href: x, class: "y"}, "text", child)`. */
  function h(tag, attrs, ...children) {
    const svg = tag.startsWith("svg:");
    const el = svg
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const now = () => Date.now() + skewMs;
  /** RFC 3339 to the second, as the gateway stores times. */
  const rfc3339 = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const numFmt = new Intl.NumberFormat();

  function relative(ms) {
    const s = Math.round((ms - now()) / 1000);
    const abs = Math.abs(s);
    if (abs < 45) return "just now";
    if (abs < 3600) return relFmt.format(Math.round(s / 60), "minute");
    if (abs < DAY_S) return relFmt.format(Math.round(s / 3600), "hour");
    if (abs < 45 * DAY_S) return relFmt.format(Math.round(s / DAY_S), "day");
    if (abs < 365 * DAY_S) return relFmt.format(Math.round(s / (30 * DAY_S)), "month");
    return relFmt.format(Math.round(s / (365 * DAY_S)), "year");
  }

  /** A `<time>` element: `style` "date", "rel" (relative) or "datetime". */
  function timeEl(iso, style) {
    if (!iso) return null;
    const ms = Date.parse(iso);
    const text = style === "rel" ? relative(ms) : style === "date" ? dateFmt.format(ms) : dateTimeFmt.format(ms);
    return h("time", { datetime: iso, title: dateTimeFmt.format(ms) }, text);
  }

  function say(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = "status" + (kind ? " " + kind : "");
  }

  /** Glob match for ceilings such as `ws_*` (only `*` is special). */
  function globMatch(pattern, value) {
    const parts = pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
    return new RegExp("^" + parts.join(".*") + "$").test(value);
  }

  // ---------- the API ----------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.detail || (body.error && body.error.message))) || `Request failed (${status})`);
      this.status = status;
      this.code = (body && (body.code || (body.error && body.error.code))) || "";
      this.fields = (body && (body.fields || (body.error && body.error.fields))) || null;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      if (session) headers[CSRF_HEADER] = session.csrf_token;
    }
    let r;
    try {
      r = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, { detail: "The settings service could not be reached. Check your connection and try again." });
    }
    let data = null;
    try {
      data = await r.json();
    } catch {
      data = null;
    }
    if (!r.ok) {
      const err = new ApiError(r.status, data);
      if (r.status === 401) endSession("Your settings session has expired or was closed.");
      throw err;
    }
    return { data, date: r.headers.get("Date") };
  }

  // ---------- session ----------

  function safeReturnUrl(u) {
    if (!u) return null;
    try {
      const url = new URL(u, location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch {
      return null;
    }
  }

  function endSession(why, signedOut) {
    if (ended) return;
    ended = true;
    forgetKey();
    for (const d of document.querySelectorAll("dialog[open]")) d.close();
    $("app").hidden = true;
    $("loading").hidden = true;
    $("ended").hidden = false;
    $("signout").hidden = true;
    if (why) $("ended-why").textContent = why + " For your security, settings sessions are short and each link works once.";
    const back = session && safeReturnUrl(session.return_url);
    if (back) {
      $("ended-back").href = back;
      $("ended-back").hidden = false;
    }
    if (signedOut) say("You signed out.", "ok");
    else say("Your settings session has ended.", "error");
    $("ended-h").focus();
  }

  async function start() {
    let res;
    try {
      res = await api("GET", "/session");
    } catch (e) {
      if (!ended) {
        $("loading").textContent = e.message;
        say(e.message, "error");
      }
      return;
    }
    session = res.data;
    const serverDate = Date.parse(res.date || "");
    if (!Number.isNaN(serverDate)) skewMs = serverDate - Date.now();

    // Whose keys these are, always in view: e-mail and user id (a link opened by mistake, or
    // someone else's, shows at once in whose settings it landed).
    $("who").textContent = session.email ? `${session.email} (${session.user_id})` : session.user_id;
    const back = safeReturnUrl(session.return_url);
    if (back) {
      $("back").href = back;
      $("back").textContent = "Back to " + new URL(back).host;
      $("back").hidden = false;
    }
    $("signout").hidden = false;
    if (session.expires_at) {
      const end = Date.parse(session.expires_at);
      $("session-end").textContent = "This settings session ends at " + dateTimeFmt.format(end) + ".";
      // Browsers cap timers at about 24.8 days; sessions last at most an hour.
      setTimeout(() => endSession("Your settings session has expired."), Math.max(0, end - now()));
    }
    buildForm();
    showPool(session.pool);
    $("loading").hidden = true;
    $("app").hidden = false;
    keysReady = loadKeys();
    await Promise.all([keysReady, loadAudit()]);
  }

  /** Sign-out: the gateway ends the session and clears the cookie, so a reload shows the
   *  ended state too. A failure other than 401 leaves the session as it was, and says so. */
  async function signOut() {
    $("signout").disabled = true;
    try {
      await api("POST", "/session/end");
      endSession("You signed out.", true);
    } catch (e) {
      if (!ended) say("You were not signed out: " + e.message, "error");
    } finally {
      $("signout").disabled = false;
    }
  }

  // ---------- shared limit ----------

  /** "minute", "5 minutes", "90 seconds": a window or period in words, for reading aloud. */
  function duration(s) {
    for (const [unit, n] of DURATION_UNITS) {
      if (s % n === 0) return s === n ? unit : `${numFmt.format(s / n)} ${unit}s`;
    }
    return s === 1 ? "second" : `${numFmt.format(s)} seconds`;
  }

  /** One figure of the pool: what is left in words, and a meter that only repeats it for the eye. */
  function poolFigure(left, of, ...words) {
    return h("li", { class: "pool-figure" },
      h("meter", { min: 0, max: of, value: left, low: Math.ceil(of * POOL_LOW), optimum: of, "aria-hidden": "true" }),
      h("span", {}, `${numFmt.format(left)} of ${numFmt.format(of)} `, ...words));
  }

  /**
   * The session's user's pool (docs/CONTRACT.md section 17), as of this page's load: its limits
   * and what is left of them. Without one the section stays hidden, and so does the key list's
   * note that the pool applies to every key.
   */
  function showPool(pool) {
    const usage = pool && pool.usage;
    $("pool").hidden = !usage;
    $("keys-pool").hidden = !usage;
    if (!usage) return;
    const items = [];
    const rl = usage.rate_limit;
    if (rl) {
      const per = pool.rate_limit ? ` per ${duration(pool.rate_limit.window_seconds)}` : "";
      items.push(poolFigure(rl.remaining, rl.limit, `requests left${per}`));
    }
    const q = usage.quota;
    if (q) {
      const when = q.period === "month" ? "this month" : "today";
      items.push(poolFigure(q.remaining, q.runs, `job run${q.runs === 1 ? "" : "s"} left ${when} (until `,
        timeEl(q.period_end, "datetime"), ")"));
    }
    $("pool-figures").replaceChildren(...items);
    $("pool-asof").textContent = `As of ${dateTimeFmt.format(now())}; reload the page to see what is left now.`;
  }

  // ---------- create form ----------

  /** A box of the create form; its id is prefixed apart from the page's own ids ("opt-"). */
  function checkbox(name, value, label) {
    const id = `opt-${name}-${value}`; // HTML ids may hold any character but spaces
    return h("label", { class: "check", for: id },
      h("input", { type: "checkbox", id, name, value }),
      h("span", {}, label));
  }

  function buildForm() {
    const wsBoxes = $("ws-boxes");
    wsBoxes.replaceChildren();
    const wsCeiling = session.workspaces || [];
    const patterns = wsCeiling.filter((w) => w.includes("*") && w !== "*");
    if (wsCeiling.includes("*")) wsBoxes.append(checkbox("workspaces", "*", "All workspaces"));
    for (const w of wsCeiling.filter((w) => !w.includes("*"))) wsBoxes.append(checkbox("workspaces", w, w));
    if (patterns.length || wsCeiling.includes("*")) {
      $("ws-free").hidden = false;
      $("ws-text-label").textContent = wsBoxes.childElementCount ? "Other workspace ids" : "Workspace ids";
      $("ws-text-help").textContent = patterns.length
        ? `Separate with commas. Each must match ${patterns.join(" or ")}.`
        : "Separate with commas.";
    }

    const permBoxes = $("perm-boxes");
    permBoxes.replaceChildren();
    const pc = session.permissions || [];
    if (pc.includes("*")) permBoxes.append(checkbox("permissions", "*", "All permissions, including future ones"));
    for (const p of PERMISSIONS.filter((p) => pc.some((c) => globMatch(c, p)))) {
      permBoxes.append(checkbox("permissions", p, p));
    }

    const radios = $("exp-radios");
    radios.replaceChildren();
    const max = session.max_expiry_days;
    const presets = EXPIRY_PRESETS.filter((d) => !max || d <= max);
    if (max && !presets.includes(max)) presets.push(max);
    const preferred = presets.includes(DEFAULT_PRESET) ? DEFAULT_PRESET : presets[presets.length - 1];
    const radio = (value, label) =>
      h("label", { class: "check", for: `expiry-${value}` },
        h("input", { type: "radio", id: `expiry-${value}`, name: "expiry", value, checked: value === String(preferred) }),
        h("span", {}, label));
    for (const d of presets) radios.append(radio(String(d), `${d} days`));
    radios.append(radio("custom", "A date"));
    if (!max) radios.append(radio("never", "Never"));
    const date = $("exp-date");
    date.min = new Date(now() + DAY_S * 1000).toISOString().slice(0, 10);
    if (max) date.max = new Date(now() + max * DAY_S * 1000).toISOString().slice(0, 10);
    $("exp-date-help").textContent = max
      ? `At most ${max} days from today. The key stops working at the end of that day (UTC).`
      : "The key stops working at the end of that day (UTC).";
  }

  function clearErrors() {
    for (const el of document.querySelectorAll("#create .err")) {
      el.textContent = "";
      el.hidden = true;
    }
    for (const el of document.querySelectorAll("#create [aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function fieldError(field, text) {
    const el = $(`${field}-err`);
    if (!el) return false;
    el.textContent = text;
    el.hidden = false;
    const input = field === "name" ? $("name") : field === "workspaces" ? $("ws-text") : field === "expires_at" ? $("exp-date") : null;
    if (input) input.setAttribute("aria-invalid", "true");
    return true;
  }

  /** Reads the form; returns the request body, or null after showing what is wrong. */
  function readForm() {
    clearErrors();
    const errors = {};
    const name = $("name").value.trim();
    if (!name) errors.name = "Give the key a name.";

    const ws = [...document.querySelectorAll("#ws-boxes input:checked")].map((i) => i.value);
    const free = $("ws-text").value.split(",").map((s) => s.trim()).filter(Boolean);
    const ceiling = session.workspaces || [];
    for (const w of free) {
      if (!WORKSPACE_ID.test(w)) errors.workspaces = `“${w}” is not a workspace id (letters, digits, - and _).`;
      else if (!ceiling.some((c) => globMatch(c, w))) errors.workspaces = `“${w}” is outside the workspaces you may grant.`;
      else if (!ws.includes(w)) ws.push(w);
    }
    if (ws.includes("*")) ws.splice(0, ws.length, "*");
    if (!ws.length && !errors.workspaces) errors.workspaces = "Choose at least one workspace.";

    let perms = [...document.querySelectorAll("#perm-boxes input:checked")].map((i) => i.value);
    if (perms.includes("*")) perms = ["*"];
    if (!perms.length) errors.permissions = "Choose at least one permission.";

    const body = { name, workspaces: ws, permissions: perms };
    const choice = document.querySelector("#exp-radios input:checked").value;
    const max = session.max_expiry_days;
    if (choice === "custom") {
      const d = $("exp-date").value;
      if (!d) errors.expires_at = "Pick a date.";
      else {
        let ms = Date.parse(d + "T23:59:59Z");
        const limit = max ? now() + max * DAY_S * 1000 : Infinity;
        if (ms <= now() + 60_000) errors.expires_at = "Pick a date after today.";
        else if (ms > limit + DAY_S * 1000) errors.expires_at = `Pick a date at most ${max} days from today.`;
        else body.expires_at = rfc3339(Math.min(ms, limit));
      }
    } else if (choice !== "never") {
      body.expires_at = rfc3339(now() + Number(choice) * DAY_S * 1000);
    }

    const entries = Object.entries(errors);
    if (!entries.length) return body;
    for (const [f, t] of entries) fieldError(f, t);
    say("The key was not created: " + entries.map(([, t]) => t).join(" "), "error");
    focusFirstError();
    return null;
  }

  function focusFirstError() {
    const first = document.querySelector("#create .err:not([hidden])");
    const set = first && first.closest(".field");
    const input = set && (set.querySelector("[aria-invalid]") || set.querySelector("input"));
    if (input) input.focus();
  }

  async function onCreate(ev) {
    ev.preventDefault();
    if (!session) return;
    const body = readForm();
    if (!body) return;
    const btn = $("create-btn");
    btn.disabled = true;
    say("Creating the key…");
    try {
      const { data } = await api("POST", "/keys", body);
      $("create").reset();
      $("exp-custom").hidden = true;
      clearErrors();
      buildForm();
      reveal(data.key, `Your new key “${data.name}”`);
      say(`Key “${data.name}” created.`, "ok");
      await Promise.all([loadKeys(), loadAudit()]);
    } catch (e) {
      if (e.fields) {
        let shown = false;
        for (const [f, problems] of Object.entries(e.fields)) shown = fieldError(f, problems.join(" ")) || shown;
        if (shown) focusFirstError();
      }
      if (!ended) say("The key was not created: " + e.message, "error");
    } finally {
      btn.disabled = false;
    }
  }

  // ---------- the key, shown once ----------

  function reveal(key, title) {
    shownKey = key;
    $("reveal-h").textContent = title;
    $("reveal-key").textContent = key;
    $("reveal-copied").textContent = "";
    $("reveal").showModal();
  }

  /** Drops the key from the page: the dialog's text and the only variable that held it. */
  function forgetKey() {
    shownKey = null;
    $("reveal-key").textContent = "";
  }

  async function copyKey() {
    if (!shownKey) return;
    try {
      await navigator.clipboard.writeText(shownKey);
      $("reveal-copied").textContent = "Copied to the clipboard.";
    } catch {
      // No clipboard access (an old browser, a denied permission): select the text instead.
      const range = document.createRange();
      range.selectNodeContents($("reveal-key"));
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      $("reveal-copied").textContent = "Copying is not allowed here: the key is selected, press Ctrl+C (⌘C on a Mac).";
    }
  }

  // ---------- keys ----------

  function statusOf(k) {
    if (k.revoked_at) return ["revoked", "Revoked"];
    if (k.disabled) return ["disabled", "Disabled"];
    if (k.expires_at && Date.parse(k.expires_at) <= now()) return ["expired", "Expired"];
    return ["active", "Active"];
  }

  /** A list (of workspaces or permissions) within a ceiling, where `*` is "any". */
  function within(list, ceiling) {
    if (ceiling.includes("*")) return true;
    return !list.includes("*") && list.every((x) => ceiling.some((c) => globMatch(c, x)));
  }

  /**
   * Whether the session may roll `k`: the new key copies its access, so that must be within the
   * ceiling, and a copied expiry beyond max_expiry_days is refused (docs/CONTRACT.md section 11).
   * The gateway decides; this only spares the user a button that cannot work.
   */
  function canRoll(k) {
    const max = session.max_expiry_days;
    const tooLate = max && k.expires_at && Date.parse(k.expires_at) > now() + max * DAY_S * 1000;
    return within(k.workspaces || [], session.workspaces || []) && within(k.permissions || [], session.permissions || []) && !tooLate;
  }

  function chips(list, all) {
    if (list.includes("*")) return [h("span", { class: "chip all" }, all)];
    return list.map((x) => h("span", { class: "chip" }, x));
  }

  function keyRow(k) {
    const [state, label] = statusOf(k);
    const live = state === "active" || state === "disabled";
    const expires = k.expires_at
      ? [timeEl(k.expires_at, "date"), state === "active" ? h("span", { class: "muted small block" }, relative(Date.parse(k.expires_at))) : null]
      : h("span", { class: "muted" }, "Never");
    const usage = h("div", { class: "usage", id: `usage-${k.id}` }, h("span", { class: "muted small" }, "Loading…"));
    const actions = live
      ? h("div", { class: "row-actions" },
        canRoll(k) ? h("button", { class: "button small", type: "button", "data-act": "roll", "data-id": k.id, "aria-label": `Roll ${k.name}` }, "Roll") : null,
        h("button", { class: "button small danger-ghost", type: "button", "data-act": "revoke", "data-id": k.id, "aria-label": `Revoke ${k.name}` }, "Revoke"))
      : null;
    // Each cell holds one wrapper, so that the phone layout (label | value grid) keeps it whole.
    const td = (label, ...content) => h("td", { "data-label": label }, h("div", { class: "cell" }, ...content));
    return h("tr", { class: `key ${state}`, "data-key-id": k.id },
      td("Key",
        h("span", { class: "key-name" }, k.name),
        h("code", { class: "hint", title: "The start of the key, to recognise it" }, k.hint + "…")),
      td("Access",
        h("div", { class: "chips", "aria-label": "Workspaces" }, chips(k.workspaces || [], "All workspaces")),
        h("div", { class: "chips perms", "aria-label": "Permissions" }, chips(k.permissions || [], "All permissions"))),
      td("Created", timeEl(k.created_at, "date")),
      td("Expires", expires),
      td("Last used", k.last_used_at ? timeEl(k.last_used_at, "rel") : h("span", { class: "muted" }, "Never")),
      td("Status", h("span", { class: `badge ${state}` }, label),
        live && session.pool ? h("span", { class: "pool-note" }, "Also limited by your shared limit") : null),
      td("Last 48 hours", usage),
      h("td", { class: "actions-cell" }, actions));
  }

  function renderKeys() {
    keys.sort((a, b) => STATE_ORDER[statusOf(a)[0]] - STATE_ORDER[statusOf(b)[0]] || Date.parse(b.created_at) - Date.parse(a.created_at));
    const body = $("keys-body");
    body.replaceChildren(...keys.map(keyRow));
    $("keys").hidden = keys.length === 0;
    $("keys-empty").hidden = keys.length !== 0;
    const live = keys.filter((k) => statusOf(k)[0] === "active").length;
    $("keys-count").textContent = keys.length ? `${live} active of ${keys.length}` : "";
    $("keys-more").hidden = !keysCursor;
    for (const k of keys) loadUsage(k);
  }

  async function loadKeys(more) {
    try {
      const q = more && keysCursor ? `?cursor=${encodeURIComponent(keysCursor)}` : "";
      const { data } = await api("GET", "/keys" + q);
      keys = more ? keys.concat(data.results) : data.results;
      keysCursor = data.next_cursor || null;
      renderKeys();
    } catch (e) {
      if (!ended) say("Your keys could not be loaded: " + e.message, "error");
    }
  }

  async function loadUsage(k) {
    const slot = () => $(`usage-${k.id}`);
    try {
      const { data } = await api("GET", `/keys/${encodeURIComponent(k.id)}/usage`);
      if (slot()) slot().replaceChildren(...chart(data.hourly || []));
    } catch {
      if (slot() && !ended) slot().replaceChildren(h("span", { class: "muted small" }, "Not available"));
    }
  }

  /** Requests let through in an hour: the gateway counts job triggers apart from the rest. */
  const passed = (b) => (b.allowed || 0) + (b.triggers || 0);

  /** The last 48 hours as an SVG bar chart (allowed stacked under refused) and a text total. */
  function chart(hourly) {
    const hours = hourly.slice(-HOURS_SHOWN);
    let allowed = 0;
    let refused = 0;
    let triggers = 0;
    for (const b of hours) {
      allowed += passed(b);
      refused += b.refused || 0;
      triggers += b.triggers || 0;
    }
    const peak = Math.max(1, ...hours.map((b) => passed(b) + (b.refused || 0)));
    const bw = (CHART.width - CHART.gap * (HOURS_SHOWN - 1)) / HOURS_SHOWN;
    const runs = triggers ? ` (${numFmt.format(triggers)} job trigger${triggers === 1 ? "" : "s"})` : "";
    const label = `Last 48 hours: ${numFmt.format(allowed)} allowed${runs}, ${numFmt.format(refused)} refused by the rate limit`;
    const svg = h("svg:svg", {
      role: "img", "aria-label": label, class: "chart",
      viewBox: `0 0 ${CHART.width} ${CHART.height}`, width: CHART.width, height: CHART.height,
    });
    svg.append(h("svg:line", { class: "base", x1: 0, x2: CHART.width, y1: CHART.height - 0.5, y2: CHART.height - 0.5 }));
    const offset = HOURS_SHOWN - hours.length;
    hours.forEach((b, i) => {
      const x = (offset + i) * (bw + CHART.gap);
      const ha = (passed(b) / peak) * (CHART.height - 1);
      const hr = ((b.refused || 0) / peak) * (CHART.height - 1);
      if (ha > 0) svg.append(h("svg:rect", { class: "ok", x: x.toFixed(2), width: bw.toFixed(2), y: (CHART.height - 1 - ha).toFixed(2), height: Math.max(1, ha).toFixed(2) }));
      if (hr > 0) svg.append(h("svg:rect", { class: "no", x: x.toFixed(2), width: bw.toFixed(2), y: (CHART.height - 1 - ha - hr).toFixed(2), height: Math.max(1, hr).toFixed(2) }));
    });
    const total = allowed + refused;
    const text = h("span", { class: "usage-total", "aria-hidden": "true" },
      total ? `${numFmt.format(total)} request${total === 1 ? "" : "s"}` : "No requests",
      refused ? h("span", { class: "refused" }, ` · ${numFmt.format(refused)} refused`) : null);
    return [svg, text];
  }

  // ---------- revoke and roll ----------

  function openAction(act, id) {
    target = keys.find((k) => k.id === id) || null;
    if (!target) return;
    if (act === "revoke") {
      $("revoke-what").textContent =
        `“${target.name}” (${target.hint}…) will stop working at once, everywhere. Anything still using it will be refused. This cannot be undone.`;
      $("revoke").returnValue = "";
      $("revoke").showModal();
    } else {
      $("roll-what").textContent =
        `A new key replaces “${target.name}” (${target.hint}…) with the same access. Choose how long the old key keeps working, to give you time to switch.`;
      for (const r of document.querySelectorAll("#roll input[name=grace]")) r.checked = r.value === "0";
      $("roll").returnValue = "";
      $("roll").showModal();
    }
  }

  async function revoke(k) {
    say(`Revoking “${k.name}”…`);
    try {
      await api("POST", `/keys/${encodeURIComponent(k.id)}/revoke`);
      say(`Key “${k.name}” revoked. It no longer works.`, "ok");
      await Promise.all([loadKeys(), loadAudit()]);
      landFocus();
    } catch (e) {
      if (!ended) say(`“${k.name}” was not revoked: ${e.message}`, "error");
    }
  }

  async function roll(k, grace) {
    say(`Rolling “${k.name}”…`);
    try {
      const { data } = await api("POST", `/keys/${encodeURIComponent(k.id)}/roll`, { grace_seconds: grace });
      reveal(data.key, `The new key for “${data.name}”`);
      say(grace > 0 ? `Key “${k.name}” rolled; the old key keeps working for a while.` : `Key “${k.name}” rolled; the old key no longer works.`, "ok");
      await Promise.all([loadKeys(), loadAudit()]);
    } catch (e) {
      if (!ended) say(`“${k.name}” was not rolled: ${e.message}`, "error");
    }
  }

  // ---------- audit trail ----------

  function actorText(a, userId) {
    if (!a) return "";
    switch (a.type) {
      case "admin": return "by the platform";
      case "settings_session": return a.user_id === userId ? "by you, in settings" : `in settings of ${a.user_id}`;
      case "api_key": return `by the key ${a.key_id}`;
      case "leak_report": return "by a leak report";
      case "system": return "by keygate";
      default: return "";
    }
  }

  function auditItem(e) {
    const k = keys.find((x) => x.id === e.key_id);
    const what = ACTIONS[e.action] || e.action;
    const d = e.details || {};
    const name = k ? k.name : d.name;
    const hint = k ? k.hint : d.hint;
    // A notice of the user's pool (quota, rate limit) names the pool, not a key.
    const ofPool = d.pool && !(e.action || "").startsWith("pool.");
    const subject = name ? `“${name}”${hint ? ` (${hint}…)` : ""}` : ofPool ? "(shared limit)" : e.key_id || "";
    const meta = [actorText(e.actor, session.user_id), e.client_ip ? `from ${e.client_ip}` : ""].filter(Boolean).join(" ");
    return h("li", { class: "event" },
      h("span", { class: `dot ${(e.action || "").replace(/[^a-z]/g, "-")}`, "aria-hidden": "true" }),
      h("div", { class: "event-body" },
        h("p", { class: "event-title" }, h("strong", {}, what), subject ? " " : "", subject ? h("span", {}, subject) : null),
        h("p", { class: "muted small" }, timeEl(e.at, "datetime"), meta ? ` · ${meta}` : "")));
  }

  async function loadAudit(more) {
    try {
      const q = more && auditCursor ? `?cursor=${encodeURIComponent(auditCursor)}` : "";
      const { data } = await api("GET", "/audit-events" + q);
      // Entries name their key by id; the list (fetched in parallel) has the names.
      await keysReady;
      const items = data.results.map(auditItem);
      if (more) $("audit").append(...items);
      else $("audit").replaceChildren(...items);
      auditCursor = data.next_cursor || null;
      $("audit-more").hidden = !auditCursor;
      $("audit-empty").hidden = $("audit").childElementCount !== 0;
    } catch (e) {
      if (!ended) say("The activity could not be loaded: " + e.message, "error");
    }
  }

  /** After a dialog closes over a re-rendered list, its opener may be gone: focus the list. */
  function landFocus() {
    setTimeout(() => {
      if (!document.activeElement || document.activeElement === document.body) $("keys-h").focus();
    });
  }

  // ---------- wiring ----------

  function wire() {
    $("create").addEventListener("submit", onCreate);
    $("signout").addEventListener("click", signOut);
    $("exp-radios").addEventListener("change", () => {
      $("exp-custom").hidden = $("exp-radios").querySelector("input:checked").value !== "custom";
    });
    $("reveal-copy").addEventListener("click", copyKey);
    $("reveal").addEventListener("close", () => {
      forgetKey();
      landFocus();
    });
    $("keys-body").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-act]");
      if (b) openAction(b.dataset.act, b.dataset.id);
    });
    $("revoke").addEventListener("close", () => {
      if ($("revoke").returnValue === "revoke" && target) revoke(target);
    });
    $("roll").addEventListener("close", () => {
      const grace = Number((document.querySelector("#roll input[name=grace]:checked") || {}).value || 0);
      if ($("roll").returnValue === "roll" && target) roll(target, grace);
    });
    $("keys-more").addEventListener("click", () => loadKeys(true));
    $("audit-more").addEventListener("click", () => loadAudit(true));
    $("ended-h").tabIndex = -1;
    $("keys-h").tabIndex = -1;
    // The key list's link to the shared limit moves the focus there, not only the view.
    $("pool-h").tabIndex = -1;
  }

  wire();
  start();
})();
