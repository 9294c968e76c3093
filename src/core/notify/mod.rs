//! What keygate tells: changes as audit entries and webhook events, the audit log, expiry, leak reports and notices (sections 12, 14).
//!
//! - [`details`]: what each change's audit entry and event say, built in one place.
//! - [`events`]: one change to a key, rendered as an audit entry and a webhook event.
//! - [`auditlog`]: the per-user audit log's keys, cursors, retention and messages.
//! - [`webhook`]: Standard Webhooks signatures and redelivery delays.
//! - [`expiry`]: the Cron Trigger's expiry windows and notice dedup.
//! - [`leak`]: GitHub secret scanning's leak reports: public keys, signature, body, answer.
//! - [`notices`]: the system's notices of a key's use: quota threshold and exhaustion, rate limit.

pub mod auditlog;
pub mod details;
pub mod events;
pub mod expiry;
pub mod leak;
pub mod notices;
pub mod webhook;
