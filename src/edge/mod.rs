//! The `worker` glue: the fetch entry point, and the I/O each decision of [`crate::core`] needs.
//! Policy lives in [`crate::core::access`] and the order of a key's request in
//! [`crate::core::plan`]; this fetches facts and carries out answers.
//!
//! - [`fetch`]: the entry point, at the top: route, caller, the plan of a key's request, the
//!   log line; [`ctx`]: what every stage shares, at the bottom (`Ctx`, `Reply`, `Incoming`,
//!   the configuration read once per isolate).
//! - [`objects`]: the one client of every Durable Object and what the objects share.
//! - Each file is named after its twin in the core (`_object` for a Durable Object):
//!   [`pool`] (pools at the edge: which apply, their leases and runs) and [`pool_admin`]
//!   (`/v1/pools...`) beside `core::pool`.
//! - [`store`]: Workers KV (records by hash, id and user indexes).
//! - [`keystate_object`]: the per-key Durable Object (allowance, revocation, last use, idempotency);
//!   [`key_client`]: the Worker's typed calls to it.
//! - [`throttle`]: failed-authentication throttling per client IP.
//! - [`lease`]: the isolate's leases of keys' allowances (no round trip on the hot path).
//! - [`keys`]: `/v1/me` and `/v1/api-keys...`; [`roll`]: the roll of a key.
//! - [`imports`]: `POST /v1/api-keys/import`; [`legacy`]: imported keys checked when presented.
//! - [`leak`]: `POST /v1/leaks`, GitHub secret scanning's signed leak reports.
//! - [`forward`]: `/developers/...` forwarding to the origin; [`trigger`]: the job triggers the
//!   key's object counts (idempotent, and with a quota).
//! - [`settings`]: the settings page, its sessions and JSON API; [`session_object`]: the
//!   session's Durable Object and its client.
//! - [`auditlog`]: the one place a change is recorded (audit trail and webhook events);
//!   [`auditlog_object`]: the per-user Durable Object that stores it; [`webhook`]: the queue
//!   consumer that delivers its events.
//! - [`expiry`]: the Cron Trigger's expiry notices; [`notices`]: a key's quota and rate-limit ones.
//! - [`assertion`]: the signed `Keygate-Assertion` and `/.well-known/jwks.json`; [`subtle`]:
//!   WebCrypto calls.
//! - [`http`]: responses, randomness, the clock; [`fail`]: platform failures as 503 with a
//!   [`crate::core::Cause`].

mod assertion;
mod assets;
mod auditlog;
mod auditlog_object;
mod ctx;
mod expiry;
mod fail;
mod fetch;
mod forward;
mod http;
mod imports;
mod key_client;
mod keys;
mod keystate_object;
mod leak;
mod lease;
mod legacy;
mod notices;
mod objects;
mod pool;
mod pool_admin;
mod roll;
mod session_object;
mod settings;
mod store;
mod subtle;
mod throttle;
mod trigger;
mod webhook;

pub(crate) use ctx::{config_error, load_config, Ctx, Incoming, Reply};
