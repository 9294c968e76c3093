//! What happened to a key, said once: every change (created, rolled, revoked, updated,
//! disabled, enabled, reported leaked), every settings session opened and every lifecycle
//! notice (expiring, expired, a quota's threshold and exhaustion, a rate limit exceeded) is one
//! [`Change`]. The audit trail (docs/CONTRACT.md section 12) and the webhook events (section
//! 14) are both rendered from it, so they cannot disagree. A change never holds a key or a key
//! hash.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::core::time::format_time;

/// The kinds of change, with the event type each is published as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    /// A key of the platform's, imported (section 15): published as `key.created` with
    /// `data.imported: true`, so a receiver of new keys sees it as one.
    Imported,
    Rolled,
    Revoked,
    Updated,
    Disabled,
    Enabled,
    Leaked,
    /// The key expires in this many days (7 or 1): a warning from the Cron Trigger.
    Expiring {
        days: u32,
    },
    Expired,
    /// A run used [`crate::core::quota::THRESHOLD_PERCENT`] of a period's runs ([`crate::core::notices`]).
    QuotaThreshold,
    QuotaExhausted,
    /// A request was refused by its rate limit: at most once per hour ([`crate::core::notices`]).
    RateLimitExceeded,
    /// The admin issued a settings link for a user (section 11).
    SessionCreated,
    /// A settings link was used: the session's cookie was set.
    SessionOpened,
    /// A shared limit was created, replaced or deleted (section 17).
    PoolCreated,
    PoolUpdated,
    PoolDeleted,
}

impl ChangeKind {
    /// The audit action (`key.created`, ...); also the event type but for [`Self::event_type`]'s
    /// exceptions.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Created => "key.created",
            ChangeKind::Imported => "key.imported",
            ChangeKind::Rolled => "key.rolled",
            ChangeKind::Revoked => "key.revoked",
            ChangeKind::Updated => "key.updated",
            ChangeKind::Disabled => "key.disabled",
            ChangeKind::Enabled => "key.enabled",
            ChangeKind::Leaked => "key.leaked",
            ChangeKind::Expiring { .. } => "key.expiring",
            ChangeKind::Expired => "key.expired",
            ChangeKind::QuotaThreshold => "quota.threshold",
            ChangeKind::QuotaExhausted => "quota.exhausted",
            ChangeKind::RateLimitExceeded => "rate_limit.exceeded",
            ChangeKind::SessionCreated => "settings_session.created",
            ChangeKind::SessionOpened => "settings_session.opened",
            ChangeKind::PoolCreated => "pool.created",
            ChangeKind::PoolUpdated => "pool.updated",
            ChangeKind::PoolDeleted => "pool.deleted",
        }
    }

    /// The change of a key's suspension to `disabled` (a PATCH or a roll's new key).
    pub fn suspension(disabled: bool) -> Self {
        if disabled {
            ChangeKind::Disabled
        } else {
            ChangeKind::Enabled
        }
    }

    /// The webhook event type. A suspension or resumption is a change of one field of the key,
    /// so it is published as `key.updated` (with `disabled` in its data): a receiver that
    /// follows a key's changes through `key.updated` sees it. The audit trail keeps the more
    /// specific `key.disabled` / `key.enabled`.
    pub fn event_type(self) -> &'static str {
        match self {
            ChangeKind::Disabled | ChangeKind::Enabled => ChangeKind::Updated.name(),
            ChangeKind::Imported => ChangeKind::Created.name(),
            kind => kind.name(),
        }
    }
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The admin token.
    Admin,
    /// An API key (its id) acting on its user's keys.
    Key(String),
    /// A settings session of this user.
    Session(String),
    /// A GitHub secret scanning report, with the URL where the key was found.
    LeakReport(String),
    /// keygate itself (the Cron Trigger, a key's object).
    System,
}

/// An audit entry (as [`Change::audit_entry`] wrote it) as its user sees it: on the settings
/// page, or through a key with `api_keys:read`. An admin action's `request_id` and `client_ip`
/// are the platform backend's, none of the user's business: they read `null` there (the admin
/// still sees them).
pub fn for_user(mut entry: Value) -> Value {
    if entry["actor"]["type"] == "admin" {
        if let Value::Object(m) = &mut entry {
            m.insert("request_id".into(), Value::Null);
            m.insert("client_ip".into(), Value::Null);
        }
    }
    entry
}

impl Actor {
    fn to_json(&self) -> Value {
        let (kind, field) = match self {
            Actor::Admin => ("admin", None),
            Actor::Key(id) => ("api_key", Some(("key_id", id))),
            Actor::Session(user) => ("settings_session", Some(("user_id", user))),
            Actor::LeakReport(url) => ("leak_report", Some(("url", url))),
            Actor::System => ("system", None),
        };
        let mut m = Map::new();
        m.insert("type".into(), Value::from(kind));
        if let Some((k, v)) = field {
            m.insert(k.into(), Value::from(v.as_str()));
        }
        Value::Object(m)
    }
}

/// One change, with everything the audit trail and the event need.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub actor: Actor,
    /// The user whose trail this belongs to.
    pub user_id: String,
    /// The key changed, if any (not for a settings session).
    pub key_id: Option<String>,
    /// Unix seconds.
    pub at: i64,
    pub request_id: String,
    /// A server-drawn value unique to the request that made the change. The id is drawn from
    /// it, not from `request_id` alone: that is the client's `X-Request-Id` when it sent one,
    /// and a client reusing it on a second change (a second roll of a key in grace) must not
    /// make that change a duplicate of the first, dropped from the trail and the webhooks.
    pub nonce: String,
    pub client_ip: Option<String>,
    /// What changed, for people (a key's summary fields, a roll's new key id, ...). Never a
    /// key, a hash or a session secret.
    pub details: Value,
    /// A workspace pool's change (section 17): the workspace's trail, not a user's (`user_id`
    /// is then empty and shown as `null`).
    pub workspace_id: Option<String>,
    /// Set when the change must be published once however often it is noticed (an expiry
    /// warning seen by every Cron run); otherwise the id is drawn from the request's nonce.
    pub dedup: Option<String>,
}

impl Change {
    pub fn new(kind: ChangeKind, actor: Actor, user_id: &str, key_id: Option<&str>) -> Self {
        Change {
            kind,
            actor,
            user_id: user_id.to_owned(),
            key_id: key_id.map(str::to_owned),
            at: 0,
            request_id: String::new(),
            nonce: String::new(),
            client_ip: None,
            details: Value::Object(Map::new()),
            dedup: None,
            workspace_id: None,
        }
    }

    /// A change in a workspace's trail (a workspace pool's, section 17).
    pub fn for_workspace(kind: ChangeKind, actor: Actor, workspace_id: &str) -> Self {
        Change {
            workspace_id: Some(workspace_id.to_owned()),
            ..Change::new(kind, actor, "", None)
        }
    }

    /// `user_id` as shown: `null` for a workspace's change.
    fn shown_user(&self) -> Value {
        match self.workspace_id {
            Some(_) => Value::Null,
            None => Value::from(self.user_id.as_str()),
        }
    }

    /// For a change that can happen to a key only once (its revocation, by a client or a leak
    /// report): one entry however many requests race or retry to make it, whatever their
    /// request ids, and whichever of the two revoked it first.
    pub fn once_per_key(mut self) -> Self {
        let key = self.key_id.as_deref().unwrap_or("");
        self.dedup = Some(format!("revocation:{key}"));
        self
    }

    /// For a suspension or resumption: the key object's flip number `seq` names it, so the
    /// same flip recorded twice (a retried `PATCH`, or one that read a lagging record) is one
    /// entry, whoever records it first.
    pub fn once_per_flip(mut self, seq: u64) -> Self {
        let key = self.key_id.as_deref().unwrap_or("");
        self.dedup = Some(format!("suspension:{key}:{seq}"));
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The stable id of this change (`evt_` + 32 hex): the audit entry's and the webhook's
    /// `webhook-id`, so a receiver can deduplicate redeliveries.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        let seed = match &self.dedup {
            Some(d) => d.clone(),
            None => format!(
                "{}|{}|{}|{}|{}",
                self.nonce,
                self.request_id,
                self.kind.name(),
                self.key_id.as_deref().unwrap_or(""),
                self.user_id
            ),
        };
        h.update(seed.as_bytes());
        format!("evt_{}", hex::encode(&h.finalize()[..16]))
    }

    /// The audit trail entry (section 12).
    pub fn audit_entry(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::from(self.id()));
        m.insert("action".into(), Value::from(self.kind.name()));
        m.insert("at".into(), Value::from(format_time(self.at)));
        m.insert("actor".into(), self.actor.to_json());
        m.insert("user_id".into(), self.shown_user());
        if self.workspace_id.is_some() {
            m.insert("workspace_id".into(), opt(&self.workspace_id));
        }
        m.insert("key_id".into(), opt(&self.key_id));
        m.insert("request_id".into(), Value::from(self.request_id.as_str()));
        m.insert("client_ip".into(), opt(&self.client_ip));
        m.insert("details".into(), self.details.clone());
        Value::Object(m)
    }

    /// The webhook event body (section 14): `{id, type, created_at, data}`.
    pub fn event(&self) -> Event {
        let mut data = Map::new();
        data.insert("user_id".into(), self.shown_user());
        if self.workspace_id.is_some() {
            data.insert("workspace_id".into(), opt(&self.workspace_id));
        }
        data.insert("key_id".into(), opt(&self.key_id));
        data.insert("actor".into(), self.actor.to_json());
        match self.kind {
            ChangeKind::Expiring { days } => {
                data.insert("days".into(), Value::from(days));
            }
            ChangeKind::Disabled | ChangeKind::Enabled => {
                let disabled = self.kind == ChangeKind::Disabled;
                data.insert("disabled".into(), Value::from(disabled));
            }
            ChangeKind::Imported => {
                data.insert("imported".into(), Value::Bool(true));
            }
            _ => {}
        }
        if let Value::Object(d) = &self.details {
            for (k, v) in d {
                data.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Event {
            id: self.id(),
            kind: self.kind.event_type(),
            created_at: format_time(self.at),
            data: Value::Object(data),
        }
    }
}

fn opt(s: &Option<String>) -> Value {
    s.as_deref().map(Value::from).unwrap_or(Value::Null)
}

/// A webhook event as published.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub created_at: String,
    pub data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Change {
        let mut c = Change::new(ChangeKind::Revoked, Actor::Admin, "u1", Some("key_1"));
        c.at = 1_800_000_000;
        c.request_id = "req-1".into();
        c
    }

    #[test]
    fn an_events_data_carries_what_its_kind_adds() {
        let expiring = Change::new(
            ChangeKind::Expiring { days: 7 },
            Actor::System,
            "u1",
            Some("key_1"),
        );
        let data = expiring.event().data;
        assert_eq!(data["days"], 7);
        assert_eq!(data["user_id"], "u1");
        assert!(data.get("workspace_id").is_none());
        let pool = Change::for_workspace(ChangeKind::PoolDeleted, Actor::Admin, "ws_1");
        let data = pool.event().data;
        assert_eq!(data["workspace_id"], "ws_1");
        assert_eq!(
            data["user_id"],
            Value::Null,
            "a workspace's change names no user"
        );
    }

    #[test]
    fn a_user_does_not_see_the_admins_request_id_or_address() {
        // Finding 13 of the security review.
        let mut c = change();
        c.request_id = "req_backend".into();
        c.client_ip = Some("198.51.100.7".into());
        let seen = for_user(c.audit_entry());
        assert_eq!(seen["request_id"], Value::Null);
        assert_eq!(seen["client_ip"], Value::Null);
        assert_eq!(seen["action"], "key.revoked");
        // A key's own action keeps them: they are the user's own requests.
        c.actor = Actor::Key("key_2".into());
        let own = for_user(c.audit_entry());
        assert_eq!(own["request_id"], "req_backend");
        assert_eq!(own["client_ip"], "198.51.100.7");
    }

    #[test]
    fn audit_entry_and_event_come_from_one_change() {
        let c = change();
        let a = c.audit_entry();
        let e = c.event();
        assert_eq!(a["id"], Value::from(e.id.clone()));
        assert_eq!(a["action"], "key.revoked");
        assert_eq!(e.kind, "key.revoked");
        assert_eq!(a["actor"]["type"], "admin");
        assert_eq!(e.data["key_id"], "key_1");
    }

    #[test]
    fn a_suspension_is_audited_as_such_and_published_as_an_update() {
        for (kind, disabled) in [(ChangeKind::Disabled, true), (ChangeKind::Enabled, false)] {
            let c = Change::new(kind, Actor::Admin, "u1", Some("key_1"));
            assert_eq!(c.audit_entry()["action"], kind.name());
            assert!(kind.name().ends_with("abled"));
            let e = c.event();
            assert_eq!(e.kind, "key.updated");
            assert_eq!(e.data["disabled"], disabled);
            assert_eq!(e.data["key_id"], "key_1");
        }
        // Every other kind is published under its audit name.
        let created = Change::new(ChangeKind::Created, Actor::Admin, "u1", Some("key_1"));
        assert_eq!(created.event().kind, "key.created");
    }

    #[test]
    fn an_import_is_audited_as_such_and_published_as_a_new_key() {
        let c = Change::new(ChangeKind::Imported, Actor::Admin, "u1", Some("key_1"));
        assert_eq!(c.audit_entry()["action"], "key.imported");
        let e = c.event();
        assert_eq!(e.kind, "key.created");
        assert_eq!(e.data["imported"], true);
        assert_eq!(e.data["key_id"], "key_1");
        // A key created by keygate carries no such mark.
        let created = Change::new(ChangeKind::Created, Actor::Admin, "u1", Some("key_1"));
        assert_eq!(created.event().data.get("imported"), None);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let c = change();
        assert_eq!(c.id(), change().id());
        assert!(c.id().starts_with("evt_") && c.id().len() == 36);
        let mut other = change();
        other.kind = ChangeKind::Created;
        assert_ne!(c.id(), other.id());
        let mut d1 = change();
        d1.dedup = Some("expiring:key_1:7:123".into());
        let mut d2 = change();
        d2.request_id = "another".into();
        d2.dedup = d1.dedup.clone();
        assert_eq!(d1.id(), d2.id());
    }

    #[test]
    fn a_revocation_is_one_change_per_key_whatever_the_request() {
        let mut a = change().once_per_key();
        a.nonce = "n1".into();
        let mut b = change().once_per_key();
        b.nonce = "n2".into();
        b.request_id = "req-2".into();
        assert_eq!(a.id(), b.id());
        let mut other_key = Change::new(ChangeKind::Revoked, Actor::Admin, "u1", Some("key_2"));
        other_key = other_key.once_per_key();
        assert_ne!(a.id(), other_key.id());
        // A leak report of a key already revoked (or the reverse) is the same revocation: the
        // first one recorded stands, so a retry may always record (finding 7).
        let leaked =
            Change::new(ChangeKind::Leaked, Actor::System, "u1", Some("key_1")).once_per_key();
        assert_eq!(a.id(), leaked.id());
    }

    #[test]
    fn one_flip_of_a_suspension_is_one_entry() {
        // Finding 7, and the review's: a PATCH reading a lagging record must not record the
        // same suspension again under another actor.
        let by = |actor: Actor, seq| {
            Change::new(ChangeKind::Disabled, actor, "u1", Some("key_1")).once_per_flip(seq)
        };
        assert_eq!(
            by(Actor::Admin, 3).id(),
            by(Actor::Key("key_2".into()), 3).id()
        );
        assert_ne!(by(Actor::Admin, 3).id(), by(Actor::Admin, 4).id());
    }

    #[test]
    fn a_reused_client_request_id_does_not_merge_two_changes() {
        let mut first = change();
        first.nonce = "n1".into();
        let mut second = change();
        second.nonce = "n2".into();
        assert_eq!(first.request_id, second.request_id);
        assert_ne!(first.id(), second.id());
    }
}
