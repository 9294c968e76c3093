//! Names the gateway shares with the outside world: HTTP headers it reads or writes, the
//! bindings and secrets it expects in `wrangler.toml` (docs/CONTRACT.md sections 7 and 9).
//! One place, so that a name is spelled once and a reader finds every one here.
//!
//! Header names are lowercase (HTTP header names are case-insensitive; the runtime lowercases).

// Headers of the contract.
pub const AUTHORIZATION: &str = "authorization";
pub const WWW_AUTHENTICATE: &str = "www-authenticate";
pub const RETRY_AFTER: &str = "retry-after";
pub const ALLOW: &str = "allow";
pub const RATELIMIT_LIMIT: &str = "ratelimit-limit";
pub const RATELIMIT_REMAINING: &str = "ratelimit-remaining";
pub const RATELIMIT_RESET: &str = "ratelimit-reset";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// On a replay whose remembered answer kept no body (too large, or not received in time).
pub const IDEMPOTENT_BODY_OMITTED: &str = "idempotent-body-omitted";
/// The client's address as Cloudflare reports it (the only one the gateway trusts).
pub const CLIENT_IP: &str = "cf-connecting-ip";

// Headers the gateway adds for the origin (section 7); a client's own `X-Keygate-*` are dropped.
pub const HEADER_REQUEST_ID: &str = "x-request-id";
pub const HEADER_KEY_ID: &str = "x-keygate-key-id";
pub const HEADER_USER_ID: &str = "x-keygate-user-id";
pub const HEADER_USER_EMAIL: &str = "x-keygate-user-email";
pub const HEADER_WORKSPACE_ID: &str = "x-keygate-workspace-id";
pub const HEADER_SIGNATURE: &str = "x-keygate-signature";
/// The key's workspaces, comma-separated, or `*`: lets the origin scope what it lists (for
/// example `GET /developers/workspaces/`) to what the key may see. Not covered by the
/// signature, like the e-mail (see `forward::workspaces_header`).
pub const HEADER_WORKSPACES: &str = "x-keygate-workspaces";

// Plain HTTP headers the gateway reads or sets.
pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_LENGTH: &str = "content-length";
pub const CACHE_CONTROL: &str = "cache-control";
pub const CONNECTION: &str = "connection";
pub const HOST: &str = "host";
pub const COOKIE: &str = "cookie";
pub const SET_COOKIE: &str = "set-cookie";
pub const LOCATION: &str = "location";
pub const ORIGIN: &str = "origin";

// The settings page (section 11).
/// The settings session's cookie: `<object name>.<secret>`, `HttpOnly`, `Path=/settings`.
pub const SETTINGS_COOKIE: &str = "kg_settings";
/// The settings session's cookie again, sent only to `/settings/open` and also on a navigation
/// from another site (`SameSite=Lax`): how opening a link learns that this browser already holds
/// another user's session (docs/CONTRACT.md section 11, [`crate::core::switch`]).
pub const SWITCH_COOKIE: &str = "kg_settings_open";
/// The CSRF token a state-changing settings call must carry.
pub const HEADER_CSRF: &str = "x-csrf-token";
/// The media type of every JSON body the gateway writes.
pub const JSON_TYPE: &str = "application/json";

// Bindings (wrangler.toml).
/// The KV namespace of key records.
pub const KV_BINDING: &str = "KEYS";
/// The Durable Object namespace of the per-key objects (`KeyStateObject`).
pub const KEY_STATE_BINDING: &str = "KEY_STATE";
/// The Durable Object namespace of settings sessions (`SettingsSessionObject`).
pub const SETTINGS_SESSIONS_BINDING: &str = "SETTINGS_SESSIONS";
/// The Rate Limiting binding that counts failed authentications per client IP.
pub const AUTH_FAILURES_BINDING: &str = "AUTH_FAILURES";
/// The Durable Object namespace of the per-user audit logs (`UserLogObject`).
pub const USER_LOG_BINDING: &str = "USER_LOG";
/// The Queue producer the user logs hand webhook events to (and whose consumer delivers them).
pub const EVENTS_QUEUE_BINDING: &str = "EVENTS";

// Vars of the events (section 14).
/// Where webhook events are POSTed; unset or empty: no webhooks.
pub const WEBHOOK_URL_VAR: &str = "WEBHOOK_URL";
/// Seconds before the first redelivery of a webhook that failed; later ones double.
pub const WEBHOOK_RETRY_BASE_VAR: &str = "WEBHOOK_RETRY_BASE_SECONDS";
/// GitHub secret scanning's public keys, as its public-keys endpoint returns them.
pub const SECRET_SCANNING_KEYS_VAR: &str = "SECRET_SCANNING_KEYS";

// Headers of GitHub secret scanning's partner alerts (section 14).
pub const GITHUB_KEY_IDENTIFIER: &str = "github-public-key-identifier";
pub const GITHUB_KEY_SIGNATURE: &str = "github-public-key-signature";

// Secrets (`wrangler secret put`, `.dev.vars` locally).
pub const ADMIN_TOKEN_SECRET: &str = "ADMIN_TOKEN";
pub const SIGNING_SECRET: &str = "ORIGIN_SIGNING_SECRET";
/// The Standard Webhooks signing secret, `whsec_<base64>`.
pub const WEBHOOK_SECRET: &str = "WEBHOOK_SECRET";
/// The assertion's private signing key, a JWK (docs/CONTRACT.md section 16).
pub const ASSERTION_SIGNING_KEY_SECRET: &str = "ASSERTION_SIGNING_KEY";
/// The var with the next or previous assertion keys (a public JWK set), published beside it.
pub const ASSERTION_PUBLIC_KEYS_VAR: &str = "ASSERTION_PUBLIC_KEYS";
