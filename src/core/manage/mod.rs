//! Management: key requests and policies, settings sessions, imports, the per-user cap (sections 4, 11, 13, 15).
//!
//! - [`request`]: validation of key-management bodies and queries.
//! - [`policy`]: key policies (section 13): their fields, `PATCH`, and never widening.
//! - [`settings`]: the settings paths (page, link, JSON API) and their security headers.
//! - [`session`]: settings sessions: the request, single use of the link, cookie, CSRF.
//! - [`sessionop`]: the settings session object's operations, typed.
//! - [`switch`]:
//! - [`imports`]: `POST /v1/api-keys/import`: its rows, and what becomes of each.
//! - [`cap`]: the cap on live keys per user: a new key, a roll, an imported key's roll.

pub mod cap;
pub mod imports;
pub mod policy;
pub mod request;
pub mod session;
pub mod sessionop;
pub mod settings;
pub mod switch;
