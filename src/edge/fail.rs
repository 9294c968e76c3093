//! Failures of the platform's calls (KV, Durable Objects, bindings, WebCrypto), turned into the
//! client's 503 with a fixed [`Cause`] for the log. The platform's own error is dropped on
//! purpose: it may hold internal detail, and the client never sees more than `unavailable`.

use crate::core::{Cause, Error};

/// `.or_unavailable(Cause::KvRead)?`: any failure (an `Err`, or a `None` where a value was
/// required) becomes 503 `unavailable` with `cause` in the log.
pub(crate) trait OrUnavailable<T> {
    fn or_unavailable(self, cause: Cause) -> Result<T, Error>;
}

impl<T, E> OrUnavailable<T> for Result<T, E> {
    fn or_unavailable(self, cause: Cause) -> Result<T, Error> {
        self.map_err(|_| Error::Unavailable(cause))
    }
}

impl<T> OrUnavailable<T> for Option<T> {
    fn or_unavailable(self, cause: Cause) -> Result<T, Error> {
        self.ok_or(Error::Unavailable(cause))
    }
}
