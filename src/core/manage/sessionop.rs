//! The operations of a settings session's Durable Object (`SettingsSessionObject`, docs/CONTRACT.md
//! section 11): one table of paths and a typed question and answer per operation, declared as
//! the key's and the log's are ([`crate::core::objectop`]). Every decision is [`crate::core::session`]'s.

use serde::{Deserialize, Serialize};

use crate::core::objectop::{operation, Ack, Message, OpTable};
use crate::core::session::{Answer, Session, StoredSession};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOp {
    /// Store a new session (refused if the name is taken).
    Create,
    /// Mark the link used and store the cookie's hash (once).
    Open,
    /// Verify a cookie.
    Check,
    /// Verify a cookie and end the session (sign-out).
    End,
    /// Which account an unused link would open (no state changes).
    Peek,
}

impl SessionOp {
    pub const fn path(self) -> &'static str {
        match self {
            SessionOp::Create => "/create",
            SessionOp::Open => "/open",
            SessionOp::Check => "/check",
            SessionOp::End => "/end",
            SessionOp::Peek => "/peek",
        }
    }
}

impl OpTable for SessionOp {
    const ALL: &'static [SessionOp] = &[
        SessionOp::Create,
        SessionOp::Open,
        SessionOp::Check,
        SessionOp::End,
        SessionOp::Peek,
    ];

    fn path(self) -> &'static str {
        self.path()
    }
}

/// The session to store, sent as the session itself (the format objects of earlier versions
/// read). A name already taken is answered 409 and stores nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreateSession {
    pub stored: StoredSession,
}

/// `open`, `check` and `end` ask with the SHA-256 of the cookie secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenSession {
    pub cookie_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckSession {
    pub cookie_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndSession {
    pub cookie_hash: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeekSession {}

/// The account an unused link would open, if it can still be opened; sent as the bare
/// `Option<Session>` (the format of earlier versions). The question carries nothing and is not
/// read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Peeked {
    pub session: Option<Session>,
}

operation!(SettingsSession: CreateSession => SessionOp::Create.path(), Ack);
operation!(SettingsSession: OpenSession => SessionOp::Open.path(), Answer);
operation!(SettingsSession: CheckSession => SessionOp::Check.path(), Answer);
operation!(SettingsSession: EndSession => SessionOp::End.path(), Answer);
operation!(SettingsSession: PeekSession => SessionOp::Peek.path(), Peeked);
impl Message for Answer {}
impl Message for Peeked {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_operation_has_its_own_path() {
        crate::core::objectop::assert_distinct_paths::<SessionOp>();
    }
}
