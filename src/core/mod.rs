//! Every decision keygate makes, in plain Rust with no `worker` types, tested natively.
//! Section numbers in comments refer to the contract, `docs/CONTRACT.md`.
//!
//! In four parts over a common ground:
//! - [`gate`]: what a request is and who may make it: route, credential, key, access, the plan
//!   of a key's request, the caller, forwarding, imported keys, the signed assertion.
//! - [`allowance`]: rate limits and leases, quotas, pools, idempotency, usage, and the key
//!   object's state and operations.
//! - [`manage`]: key-management requests and policies, settings sessions, imports, the cap.
//! - [`notify`]: changes as audit entries and events, the audit log, expiry, leaks, notices.
//!
//! The ground every part stands on:
//! - [`cause`]: the fixed names of internal failures that the logs print as `cause`.
//! - [`config`]: vars and their defaults.
//! - [`error`]: the one error type and its JSON body.
//! - [`limits`]: the shapes of a limit: a rate limit and a run quota, their bounds and periods.
//! - [`fields`]: what every body parser shares: per-field problems, a JSON object, a key's name.
//! - [`log`]: the per-request log line.
//! - [`names`]: header, binding and secret names.
//! - [`objectop`]: one recipe for every Durable Object: typed operations, their class and path.
//! - [`permission`]: the permission vocabulary.
//! - [`record`]: the stored key model and its summary.
//! - [`time`]: RFC 3339 times.
//!
//! Each part's modules are also re-exported here (`core::access`, `core::pool`, ...), so a
//! path names what a thing is rather than which part holds it.

pub mod allowance;
pub mod gate;
pub mod manage;
pub mod notify;

pub mod cause;
pub mod config;
pub mod error;
pub mod fields;
pub mod limits;
pub mod log;
pub mod names;
pub mod objectop;
pub mod permission;
pub mod record;
pub mod time;

pub use allowance::{idempotency, keyop, keystate, lease, pool, quota, ratelimit, usage};
pub use gate::{
    access, assertion, auth, cache, caller, cidr, forward, key, legacy, plan, route, throttle,
};
pub use manage::{cap, imports, policy, request, session, sessionop, settings, switch};
pub use notify::{auditlog, details, events, expiry, leak, notices, webhook};

pub use cause::Cause;
pub use error::Error;
