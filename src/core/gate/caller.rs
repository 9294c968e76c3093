//! Who is calling, once authenticated (docs/CONTRACT.md sections 2, 4 and 11), and what
//! follows from it in one place: the actor its changes are recorded as, whether it may widen a
//! key, and the ceiling a key it makes is held to.

use crate::core::access::{list_user, restrict_to_creator, restrict_to_session};
use crate::core::error::Error;
use crate::core::events::Actor;
use crate::core::ratelimit::RateLimit;
use crate::core::record::{KeyRecord, NewKey};
use crate::core::session::Session;

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller<'a> {
    /// `Authorization: Bearer <ADMIN_TOKEN>`.
    Admin,
    /// `Authorization: Api-Key <key>`, with the key's stored record.
    Key(&'a KeyRecord),
    /// The settings page: a session cookie of this user (section 11).
    Session(&'a Session),
}

impl<'a> Caller<'a> {
    /// The key's record, for a key caller.
    pub fn key(&self) -> Option<&'a KeyRecord> {
        match self {
            Caller::Key(record) => Some(record),
            Caller::Admin | Caller::Session(_) => None,
        }
    }

    /// The one user whose keys this caller manages; `None` for the admin (any user).
    pub fn own_user(&self) -> Option<&'a str> {
        match self {
            Caller::Admin => None,
            Caller::Key(record) => Some(&record.user_id),
            Caller::Session(session) => Some(&session.user_id),
        }
    }
}

/// An audit trail: a user's, or a workspace's (its pool's changes, section 17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trail {
    User(String),
    Workspace(String),
}

impl Trail {
    /// The name of the object that holds it. User ids may hold `:` but never `/`, so the
    /// prefixes cannot meet: `user:<id>`, `workspace/<id>`.
    pub fn object_name(&self) -> String {
        match self {
            Trail::User(id) => format!("user:{id}"),
            Trail::Workspace(id) => format!("workspace/{id}"),
        }
    }
}

impl Caller<'_> {
    /// The actor its changes are recorded as (section 12).
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Admin => Actor::Admin,
            Caller::Key(record) => Actor::Key(record.id.clone()),
            Caller::Session(session) => Actor::Session(session.user_id.clone()),
        }
    }

    /// Whether it sees an audit entry's request details (request id, client address) of the
    /// admin's changes (section 12): the admin only.
    pub fn sees_admin_details(&self) -> bool {
        matches!(self, Caller::Admin)
    }

    /// The audit trail it asks for with `GET /v1/audit-events` (sections 12, 17): its own
    /// user's (a key or a session), the user it names (the admin), or a workspace's (the admin
    /// only; not both).
    pub fn trail(
        &self,
        user_id: Option<String>,
        workspace_id: Option<String>,
    ) -> Result<Trail, Error> {
        match (workspace_id, self) {
            (Some(_), _) if user_id.is_some() => Err(Error::field(
                "workspace_id",
                "name a user or a workspace, not both",
            )),
            (Some(ws), Caller::Admin) => Ok(Trail::Workspace(ws)),
            (Some(_), _) => Err(Error::PermissionDenied(
                "Only the admin token may read a workspace's audit trail.",
            )),
            (None, _) => Ok(Trail::User(list_user(self, user_id)?)),
        }
    }

    /// Whether it may widen a key (section 13): the admin only; a key or a session narrows.
    pub fn may_widen(&self) -> bool {
        matches!(self, Caller::Admin)
    }

    /// Holds a key it makes to its ceiling: none for the admin; a key's own scope, rate and
    /// expiry (`caller_expiry`: the expiry its object knows) for a key; the session's ceiling
    /// for a settings session (section 11).
    pub fn restrict(
        &self,
        caller_expiry: Option<i64>,
        now: i64,
        default_rate: RateLimit,
        new: &mut NewKey,
    ) -> Result<(), Error> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Key(creator) => restrict_to_creator(creator, caller_expiry, new),
            Caller::Session(session) => restrict_to_session(session, now, default_rate, new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::tests::record;

    #[test]
    fn which_trail_each_caller_reads() {
        let key = record(&["ws1"], &["*"], None);
        let own = Trail::User(key.user_id.clone());
        assert_eq!(Caller::Key(&key).trail(None, None), Ok(own));
        let other = Caller::Key(&key)
            .trail(Some("someone".into()), None)
            .unwrap_err();
        assert_eq!(other.code(), "permission_denied");
        let ws = Caller::Key(&key)
            .trail(None, Some("ws1".into()))
            .unwrap_err();
        assert_eq!(ws.code(), "permission_denied");
        assert_eq!(
            Caller::Admin.trail(None, Some("ws1".into())),
            Ok(Trail::Workspace("ws1".into()))
        );
        let both = Caller::Admin
            .trail(Some("u".into()), Some("ws1".into()))
            .unwrap_err();
        assert_eq!(both.code(), "validation_error");
        assert_eq!(Trail::User("a:b".into()).object_name(), "user:a:b");
        assert_eq!(
            Trail::Workspace("ws1".into()).object_name(),
            "workspace/ws1"
        );
        assert!(Caller::Admin.sees_admin_details() && !Caller::Key(&key).sees_admin_details());
    }

    #[test]
    fn actors_and_who_may_widen() {
        let key = record(&["ws1"], &["*"], None);
        assert_eq!(Caller::Admin.actor(), Actor::Admin);
        assert_eq!(Caller::Key(&key).actor(), Actor::Key(key.id.clone()));
        assert!(Caller::Admin.may_widen());
        assert!(!Caller::Key(&key).may_widen());
        assert_eq!(Caller::Key(&key).own_user(), Some(key.user_id.as_str()));
        assert_eq!(Caller::Admin.own_user(), None);
    }

    #[test]
    fn a_key_caller_is_held_to_its_own_scope_the_admin_is_not() {
        use crate::core::record::tests::new_key;
        let creator = record(&["ws1"], &["jobs:read"], None);
        let rate = RateLimit {
            requests: 600,
            window_seconds: 60,
        };
        let mut wider = new_key(&["ws1", "ws2"], &["jobs:read"], None);
        assert!(Caller::Key(&creator)
            .restrict(None, 0, rate, &mut wider)
            .is_err());
        let mut wider = new_key(&["ws1", "ws2"], &["jobs:read"], None);
        assert_eq!(Caller::Admin.restrict(None, 0, rate, &mut wider), Ok(()));
    }
}
