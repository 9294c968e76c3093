//! One recipe for every Durable Object (docs/CONTRACT.md sections 8, 11 and 12): each
//! operation is a typed question with its object's class, its path and its answer's type, so
//! the one generic client (`edge::objects`) and each object's router share them and neither
//! spells a path or a message shape of its own. The operation tables are the objects' own:
//! [`crate::core::keyop`] (a key's or a pool's state), [`crate::core::auditlog`] (a user's or a
//! workspace's log) and [`crate::core::session`] (a settings session).
//!
//! Transport: a POST whose question and answer are [`encode`]d: JSON plus, where there is one,
//! a raw body beside it (an origin answer, [`frame`]), never hex or a JSON array of numbers.
//! The key object's hot `Hit` is the one exception (a body-less GET, see [`crate::core::keyop`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::core::cause::Cause;
use crate::core::error::Error;
use crate::core::names::{KEY_STATE_BINDING, SETTINGS_SESSIONS_BINDING, USER_LOG_BINDING};

/// The Durable Object classes, by the binding the Worker reaches each through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectClass {
    /// `KeyStateObject`: a key's state (one per key id), or a pool's (one per pool name).
    KeyState,
    /// `UserLogObject`: a user's (or a workspace's) audit trail and event outbox.
    UserLog,
    /// `SettingsSessionObject`: one settings session.
    SettingsSession,
}

impl ObjectClass {
    pub const fn binding(self) -> &'static str {
        match self {
            ObjectClass::KeyState => KEY_STATE_BINDING,
            ObjectClass::UserLog => USER_LOG_BINDING,
            ObjectClass::SettingsSession => SETTINGS_SESSIONS_BINDING,
        }
    }

    /// The log line's `cause` when an object of this class cannot be reached or answers what
    /// cannot be read (503, fail closed).
    pub const fn cause(self) -> Cause {
        match self {
            ObjectClass::KeyState => Cause::DurableObject,
            ObjectClass::UserLog => Cause::AuditLog,
            ObjectClass::SettingsSession => Cause::SettingsSessionObject,
        }
    }

    /// Whether its messages are framed (JSON beside a raw payload, [`encode`]): the key
    /// object's, which carry origin answers' bodies. The log's and the session's are plain
    /// JSON, the format they had before this recipe: during a deployment a new Worker may
    /// reach an object still running the previous version (and the reverse) for a while, so a
    /// class's wire format never changes in place.
    pub const fn framed(self) -> bool {
        matches!(self, ObjectClass::KeyState)
    }

    /// Base URL of calls to the object; only the path matters.
    pub const fn base_url(self) -> &'static str {
        match self {
            ObjectClass::KeyState => "https://key-state",
            ObjectClass::UserLog => "https://user-log",
            ObjectClass::SettingsSession => "https://settings-session",
        }
    }
}

/// A question or an answer. One with a raw byte payload (an origin answer's body) exposes it,
/// so that [`encode`] carries it beside the JSON.
pub trait Message: Serialize + DeserializeOwned {
    fn payload(&mut self) -> Option<&mut Vec<u8>> {
        None
    }

    /// The message an answer that is not JSON stands for, if any: only an answer that carries
    /// nothing but success ([`Ack`]) reads any body so (an older object's plain-text answer).
    fn from_other_body() -> Option<Self> {
        None
    }
}

/// A question to an object of class `OBJECT`, sent to `PATH`, with the type of its answer.
pub trait Operation: Message {
    const OBJECT: ObjectClass;
    const PATH: &'static str;
    type Answer: Message;
}

/// A question without a raw payload to an object of `$class`, at `$path`, answered by
/// `$answer`: the two impls every such operation needs, written once.
macro_rules! operation {
    ($class:ident: $question:ty => $path:expr, $answer:ty) => {
        impl $crate::core::objectop::Message for $question {}
        impl $crate::core::objectop::Operation for $question {
            const OBJECT: $crate::core::objectop::ObjectClass =
                $crate::core::objectop::ObjectClass::$class;
            const PATH: &'static str = $path;
            type Answer = $answer;
        }
    };
}
pub(crate) use operation;

/// A JSON header and a raw payload in one byte string: `u32` big-endian length of the JSON,
/// the JSON, the payload. Bodies travel and rest as bytes, not as hex or numbers in JSON.
pub fn frame(json: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + json.len() + payload.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(payload);
    out
}

/// The inverse of [`frame`]; `None` for anything malformed.
pub fn unframe(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let json = bytes.get(4..4usize.checked_add(len)?)?;
    Some((json, &bytes[4 + len..]))
}

/// A message as bytes: its JSON, and its payload raw (see [`frame`]).
pub fn encode<M: Message>(mut message: M) -> Result<Vec<u8>, Error> {
    let payload = message.payload().map(std::mem::take).unwrap_or_default();
    let json = serde_json::to_vec(&message).map_err(|_| Error::Internal)?;
    Ok(frame(&json, &payload))
}

/// The inverse of [`encode`]; `None` for anything malformed.
pub fn decode<M: Message>(bytes: &[u8]) -> Option<M> {
    let (json, payload) = unframe(bytes)?;
    let mut message: M = serde_json::from_slice(json).ok()?;
    if let Some(slot) = message.payload() {
        *slot = payload.to_vec();
    }
    Some(message)
}

/// A message as `class` sends it on the wire: framed, or plain JSON.
pub fn encode_for<M: Message>(class: ObjectClass, message: M) -> Result<Vec<u8>, Error> {
    if class.framed() {
        encode(message)
    } else {
        serde_json::to_vec(&message).map_err(|_| Error::Internal)
    }
}

/// The inverse of [`encode_for`]; `None` for anything malformed.
pub fn decode_for<M: Message>(class: ObjectClass, bytes: &[u8]) -> Option<M> {
    if class.framed() {
        decode(bytes)
    } else {
        serde_json::from_slice(bytes)
            .ok()
            .or_else(M::from_other_body)
    }
}

/// An answer that carries nothing but success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}
impl Message for Ack {
    fn from_other_body() -> Option<Self> {
        Some(Ack {})
    }
}

/// An object's operation table: the paths it routes, each named once.
pub trait OpTable: Sized + Copy + PartialEq + 'static {
    const ALL: &'static [Self];
    fn path(self) -> &'static str;

    fn from_path(path: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.path() == path)
    }
}

/// Every path of `T` is its own (a test helper for each table).
#[cfg(test)]
pub fn assert_distinct_paths<T: OpTable + std::fmt::Debug>() {
    for op in T::ALL {
        assert_eq!(T::from_path(op.path()), Some(*op), "{op:?}");
        assert!(op.path().starts_with('/'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let f = frame(b"{\"a\":1}", &[0, 255, 7]);
        assert_eq!(unframe(&f), Some((&b"{\"a\":1}"[..], &[0u8, 255, 7][..])));
        assert_eq!(unframe(&frame(b"", b"")), Some((&b""[..], &b""[..])));
        assert_eq!(unframe(&[0, 0]), None);
        assert_eq!(unframe(&[0, 0, 0, 9, b'{']), None);
        assert_eq!(unframe(&[255, 255, 255, 255]), None);
    }

    #[test]
    fn each_class_has_its_binding_address_and_cause() {
        let all = [
            ObjectClass::KeyState,
            ObjectClass::UserLog,
            ObjectClass::SettingsSession,
        ];
        assert_eq!(
            all.map(ObjectClass::binding),
            [
                KEY_STATE_BINDING,
                USER_LOG_BINDING,
                SETTINGS_SESSIONS_BINDING
            ]
        );
        for (i, a) in all.iter().enumerate() {
            assert!(a.base_url().starts_with("https://"));
            for b in &all[i + 1..] {
                assert_ne!(a.base_url(), b.base_url());
                assert_ne!(a.cause(), b.cause());
            }
        }
    }

    #[test]
    fn the_log_and_the_session_keep_plain_json_the_key_object_frames() {
        assert!(ObjectClass::KeyState.framed());
        assert!(!ObjectClass::UserLog.framed() && !ObjectClass::SettingsSession.framed());
        assert_eq!(encode_for(ObjectClass::UserLog, Ack {}).unwrap(), b"{}");
        assert_eq!(
            encode_for(ObjectClass::KeyState, Ack {}).unwrap(),
            frame(b"{}", b"")
        );
        assert_eq!(
            decode_for::<Ack>(ObjectClass::SettingsSession, b"created"),
            Some(Ack {})
        );
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Q {
            n: u32,
        }
        impl Message for Q {}
        assert_eq!(
            decode_for::<Q>(ObjectClass::UserLog, br#"{"n":1}"#),
            Some(Q { n: 1 })
        );
        assert_eq!(decode_for::<Q>(ObjectClass::UserLog, b"created"), None);
    }

    #[test]
    fn a_message_without_a_payload_is_its_json_alone() {
        assert_eq!(encode(Ack {}).unwrap(), frame(b"{}", b""));
        assert_eq!(decode::<Ack>(&frame(b"{}", b"")), Some(Ack {}));
        assert_eq!(decode::<Ack>(b"garbage"), None);
    }
}
