//! The gate: what a request is and who may make it, in the contract's order (sections 2-5, 7, 15, 16).
//!
//! - [`route`]: path checks, routes, and the path-to-permission map.
//! - [`auth`]: the `Authorization` header and the admin token comparison.
//! - [`key`]: key format, CRC-32 checksum, SHA-256 hash, hint and id.
//! - [`access`]: who may do what, in the contract's order; the key-management rules.
//! - [`cidr`]: IP allowlists: CIDR blocks parsed, canonicalised, matched.
//! - [`throttle`]: failed-authentication throttling per client IP.
//! - [`forward`]: headers to and from the origin, the identity signature, request ids.
//! - [`cache`]: the in-isolate cache of key records.
//! - [`plan`]: the order of a key's request: which object call counts it, then its pools.
//! - [`caller`]: who is calling: the actor, who may widen, the ceiling of what it makes.
//! - [`legacy`]: keys issued before keygate (djangorestframework-api-key): shape, hashes, checks.
//! - [`assertion`]: the signed `Keygate-Assertion` (ES256 JWT): keys, key set, claims.

pub mod access;
pub mod assertion;
pub mod auth;
pub mod cache;
pub mod caller;
pub mod cidr;
pub mod forward;
pub mod key;
pub mod legacy;
pub mod plan;
pub mod route;
pub mod throttle;
