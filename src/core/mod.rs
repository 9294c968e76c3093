//! Every decision keygate makes, in plain Rust with no `worker` types, tested natively.
//!
//! - [`error`]: the one error type and its JSON body.
//! - [`key`]: key format, CRC-32 checksum, SHA-256 hash, hint and id.
//! - [`auth`]: the `Authorization` header and the admin token.
//! - [`route`]: path checks, routes, and the path-to-permission map.
//! - [`record`]: key records, permissions, create/roll validation, no-escalation rule.
//! - [`forward`]: headers to and from the origin, the identity signature, request ids.
//! - [`config`]: vars and their defaults.
//! - [`ratelimit`]: GCRA arithmetic for per-key limits.
//! - [`keystate`]: the per-key Durable Object state: limits, revocation, last use.
//! - [`idempotency`]: the job trigger's idempotency records: decisions, bounds, clean-up.
//! - [`keyop`]: the operations of the key's Durable Object, typed, shared by object and client.
//! - [`log`]: the per-request log line.
//! - [`throttle`]: failed-authentication throttling per client IP.

pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod forward;
pub mod hotpath;
pub mod idempotency;
pub mod key;
pub mod keyop;
pub mod keystate;
pub mod log;
pub mod ratelimit;
pub mod record;
pub mod route;
pub mod throttle;

pub use error::Error;
