//! Every decision keygate makes, in plain Rust with no `worker` types, tested natively.
//! Section numbers in comments refer to the contract, `docs/CONTRACT.md`.
//!
//! - [`access`]: who may do what, in the contract's order; the key-management rules.
//! - [`assertion`]: the signed `Keygate-Assertion` (ES256 JWT): keys, key set, claims.
//! - [`auditlog`]: the per-user audit log's keys, cursors, retention and messages.
//! - [`auth`]: the `Authorization` header and the admin token comparison.
//! - [`cidr`]: IP allowlists: CIDR blocks parsed, canonicalised, matched.
//! - [`cache`]: the in-isolate cache of key records.
//! - [`caller`]: who is calling: the actor, who may widen, the ceiling of what it makes.
//! - [`cause`]: the fixed names of internal failures that the logs print as `cause`.
//! - [`cap`]: the cap on live keys per user: a new key, a roll, an imported key's roll.
//! - [`config`]: vars and their defaults.
//! - [`error`]: the one error type and its JSON body.
//! - [`events`]: one change to a key, rendered as an audit entry and a webhook event.
//! - [`expiry`]: the Cron Trigger's expiry windows and notice dedup.
//! - [`fields`]: what every body parser shares: per-field problems, a JSON object, a key's name.
//! - [`forward`]: headers to and from the origin, the identity signature, request ids.
//! - [`idempotency`]: the job trigger's idempotency records: decisions, bounds, clean-up.
//! - [`imports`]: `POST /v1/api-keys/import`: its rows, and what becomes of each.
//! - [`key`]: key format, CRC-32 checksum, SHA-256 hash, hint and id.
//! - [`keyop`]: the operations of the key's Durable Object, typed, shared by object and client.
//! - [`keystate`]: the per-key Durable Object's state: allowance, revocation, expiry, last use.
//! - [`leak`]: GitHub secret scanning's leak reports: public keys, signature, body, answer.
//! - [`legacy`]: keys issued before keygate (djangorestframework-api-key): shape, hashes, checks.
//! - [`lease`]: leased allowances: an isolate's batches of a key's tokens.
//! - [`log`]: the per-request log line.
//! - [`objectop`]: one recipe for every Durable Object: typed operations, their class and path.
//! - [`names`]: header, binding and secret names.
//! - [`notices`]: the system's notices of a key's use: quota threshold and exhaustion, rate limit.
//! - [`permission`]: the permission vocabulary.
//! - [`plan`]: the order of a key's request: which object call counts it, then its pools.
//! - [`policy`]: key policies (section 13): their fields, `PATCH`, and never widening.
//! - [`pool`]: shared limits per user and per workspace (section 17): names, body, directory.
//! - [`quota`]: job-trigger quotas: UTC calendar periods and the exact count.
//! - [`ratelimit`]: `rate_limit` values and GCRA arithmetic.
//! - [`record`]: the stored key model and its summary.
//! - [`request`]: validation of key-management bodies and queries.
//! - [`route`]: path checks, routes, and the path-to-permission map.
//! - [`session`]: settings sessions: the request, single use of the link, cookie, CSRF.
//! - [`sessionop`]: the settings session object's operations, typed.
//! - [`settings`]: the settings paths (page, link, JSON API) and their security headers.
//! - [`throttle`]: failed-authentication throttling per client IP.
//! - [`time`]: RFC 3339 times.
//! - [`usage`]: usage per key per hour and day, kept by the key's object.
//! - [`webhook`]: Standard Webhooks signatures and redelivery delays.

pub mod access;
pub mod assertion;
pub mod auditlog;
pub mod auth;
pub mod cache;
pub mod caller;
pub mod cap;
pub mod cause;
pub mod cidr;
pub mod config;
pub mod error;
pub mod events;
pub mod expiry;
pub mod fields;
pub mod forward;
pub mod idempotency;
pub mod imports;
pub mod key;
pub mod keyop;
pub mod keystate;
pub mod leak;
pub mod lease;
pub mod legacy;
pub mod log;
pub mod names;
pub mod notices;
pub mod objectop;
pub mod permission;
pub mod plan;
pub mod policy;
pub mod pool;
pub mod quota;
pub mod ratelimit;
pub mod record;
pub mod request;
pub mod route;
pub mod session;
pub mod sessionop;
pub mod settings;
pub mod switch;
pub mod throttle;
pub mod time;
pub mod usage;
pub mod webhook;

pub use cause::Cause;
pub use error::Error;
