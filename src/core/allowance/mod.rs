//! Allowances: rate limits, leases, quotas, pools, idempotency, usage, and the key object's state and operations (sections 6, 8, 12, 13, 17).
//!
//! - [`ratelimit`]: `rate_limit` values and GCRA arithmetic.
//! - [`lease`]: leased allowances: an isolate's batches of a key's tokens.
//! - [`keystate`]: the per-key Durable Object's state: allowance, revocation, expiry, last use.
//! - [`quota`]: job-trigger quotas: UTC calendar periods and the exact count.
//! - [`usage`]: usage per key per hour and day, kept by the key's object.
//! - [`idempotency`]: the job trigger's idempotency records: decisions, bounds, clean-up.
//! - [`pool`]: shared limits per user and per workspace (section 17): names, body, directory.
//! - [`keyop`]: the operations of the key's Durable Object, typed, shared by object and client.

pub mod idempotency;
pub mod keyop;
pub mod keystate;
pub mod lease;
pub mod pool;
pub mod quota;
pub mod ratelimit;
pub mod usage;
