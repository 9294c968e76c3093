//! The state each key's Durable Object keeps, and every decision it makes, as plain Rust.
//!
//! One object per key id is the single owner of that key's rate-limit state, its revocation and
//! last use, and its idempotency records, so each is exact across isolates and locations: the
//! runtime delivers one event at a time to an object (input gates), and the glue applies these
//! functions between reading and writing its storage.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::Error;
use super::ratelimit::RateLimit;
use super::ratelimit::{gcra_take, Decision};

/// How long an idempotent answer is replayed (docs/CONTRACT.md section 6).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// An in-flight record older than the origin timeout plus this margin was abandoned (its
/// isolate died mid-request); a retry may then proceed instead of getting 409 forever.
pub const IN_FLIGHT_MARGIN_MS: u64 = 10_000;

/// Rate limit, revocation, expiry override and last use of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// GCRA theoretical arrival time, in `ms * requests` (see [`super::ratelimit`]). Kept as a
    /// decimal string: it exceeds the integers JavaScript storage holds exactly.
    #[serde(with = "u128_string")]
    pub tat: u128,
    /// The limit `tat` was computed under; a different limit starts afresh.
    pub limit: Option<RateLimit>,
    pub last_used_ms: Option<u64>,
    pub revoked_at: Option<String>,
    /// A shortened expiry (roll with grace), seen everywhere at once.
    pub expires_at: Option<i64>,
}

/// What the object answers for one authenticated request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Hit {
    Revoked,
    Expired,
    Counted {
        decision: Decision,
        /// The expiry this object knows (a roll with grace shortens it here first): what a key
        /// minting keys is held to (docs/CONTRACT.md section 4).
        #[serde(default)]
        expires_at: Option<i64>,
        /// Tokens taken from the allowance by this call (a lease's batch; 0 when refused).
        #[serde(default = "one")]
        granted: u32,
    },
}

fn one() -> u32 {
    1
}

impl KeyState {
    /// Checks the revocation and expiry this object knows, then counts the request.
    pub fn hit(&mut self, limit: RateLimit, now_ms: u64) -> Hit {
        self.grant(limit, 1, now_ms)
    }

    /// Checks the revocation and expiry this object knows, then takes up to `want` tokens from
    /// the allowance at once (a lease, docs/CONTRACT.md section 8). The last use is recorded at
    /// each grant.
    pub fn grant(&mut self, limit: RateLimit, want: u32, now_ms: u64) -> Hit {
        if self.revoked_at.is_some() {
            return Hit::Revoked;
        }
        if let Some(t) = self.expires_at {
            if (now_ms / 1000) as i64 >= t {
                return Hit::Expired;
            }
        }
        if self.limit != Some(limit) {
            self.tat = 0;
            self.limit = Some(limit);
        }
        let (tat, granted, decision) = gcra_take(self.tat, now_ms, limit, want);
        self.tat = tat;
        if decision.allowed {
            self.last_used_ms = Some(now_ms);
        }
        Hit::Counted {
            decision,
            expires_at: self.expires_at,
            granted,
        }
    }

    pub fn revoke(&mut self, at: &str) {
        if self.revoked_at.is_none() {
            self.revoked_at = Some(at.to_owned());
        }
    }

    /// Records an expiry; never extends one already known.
    pub fn expire_at(&mut self, t: i64) {
        self.expires_at = Some(self.expires_at.map_or(t, |old| old.min(t)));
    }
}

mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `Idempotency-Key`: 1–255 printable ASCII characters.
pub fn check_idempotency_key(v: &str) -> Result<(), Error> {
    if (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&v.len())
        && v.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        Ok(())
    } else {
        Err(Error::field(
            "Idempotency-Key",
            "must be 1-255 printable ASCII characters",
        ))
    }
}

/// Storage key of an idempotency record: hashed, so any printable key is a safe name.
pub fn idempotency_slot(idempotency_key: &str) -> String {
    format!(
        "idem:{}",
        hex::encode(Sha256::digest(idempotency_key.as_bytes()))
    )
}

/// What identifies "the same request": method, path and query, and body.
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path_and_query.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// A remembered origin answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Hex, so any body survives JSON storage.
    pub body_hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdemRecord {
    InFlight {
        fingerprint: String,
        started_ms: u64,
    },
    Done {
        fingerprint: String,
        stored_ms: u64,
        response: StoredResponse,
    },
}

/// What to do with a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Begin {
    /// First of its kind (or the earlier one failed or was abandoned): call the origin.
    Proceed,
    InProgress,
    Mismatch,
    Replay {
        response: StoredResponse,
    },
}

/// Decides a new attempt against the record found (if any). Returns the decision and the
/// record to store (`Some` when it changes).
pub fn begin(
    found: Option<&IdemRecord>,
    fingerprint: &str,
    now_ms: u64,
    in_flight_lease_ms: u64,
) -> (Begin, Option<IdemRecord>) {
    let fresh = || IdemRecord::InFlight {
        fingerprint: fingerprint.to_owned(),
        started_ms: now_ms,
    };
    match found {
        Some(IdemRecord::Done {
            fingerprint: fp,
            stored_ms,
            response,
        }) if now_ms < stored_ms.saturating_add(IDEMPOTENCY_TTL_MS) => {
            if fp == fingerprint {
                (
                    Begin::Replay {
                        response: response.clone(),
                    },
                    None,
                )
            } else {
                (Begin::Mismatch, None)
            }
        }
        Some(IdemRecord::InFlight {
            fingerprint: fp,
            started_ms,
        }) if now_ms < started_ms.saturating_add(in_flight_lease_ms) => {
            if fp == fingerprint {
                (Begin::InProgress, None)
            } else {
                (Begin::Mismatch, None)
            }
        }
        // Nothing, expired, or abandoned: this attempt goes ahead.
        _ => (Begin::Proceed, Some(fresh())),
    }
}

/// Whether a finished origin answer is remembered: every status below 500.
pub fn remember(status: u16) -> bool {
    status < 500
}

/// Whether an idempotency record is past its 24 h (for clean-up).
pub fn is_expired(record: &IdemRecord, now_ms: u64, in_flight_lease_ms: u64) -> bool {
    match record {
        IdemRecord::Done { stored_ms, .. } => {
            now_ms >= stored_ms.saturating_add(IDEMPOTENCY_TTL_MS)
        }
        IdemRecord::InFlight { started_ms, .. } => {
            now_ms >= started_ms.saturating_add(in_flight_lease_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RL: RateLimit = RateLimit {
        requests: 2,
        window_seconds: 10,
    };

    #[test]
    fn revocation_and_expiry_win_over_counting() {
        let mut s = KeyState::default();
        assert!(matches!(s.hit(RL, 1_000), Hit::Counted { decision, .. } if decision.allowed));
        assert_eq!(s.last_used_ms, Some(1_000));
        s.expire_at(100);
        s.expire_at(200);
        assert_eq!(s.expires_at, Some(100), "an expiry is never extended");
        assert_eq!(s.hit(RL, 100_000), Hit::Expired);
        assert!(matches!(s.hit(RL, 99_999), Hit::Counted { .. }));
        s.revoke("2026-01-01T00:00:00Z");
        s.revoke("2027-01-01T00:00:00Z");
        assert_eq!(s.revoked_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(s.hit(RL, 1_000), Hit::Revoked);
    }

    #[test]
    fn refused_requests_do_not_update_last_use() {
        let mut s = KeyState::default();
        s.hit(RL, 1);
        s.hit(RL, 2);
        assert!(matches!(s.hit(RL, 3), Hit::Counted { decision, .. } if !decision.allowed));
        assert_eq!(s.last_used_ms, Some(2));
    }

    #[test]
    fn state_round_trips_through_json_with_a_huge_tat() {
        let s = KeyState {
            tat: u128::from(u64::MAX) * 1_000_000,
            limit: Some(RL),
            ..KeyState::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"tat\":\""));
        assert_eq!(serde_json::from_str::<KeyState>(&json).unwrap(), s);
    }

    #[test]
    fn idempotency_keys() {
        assert!(check_idempotency_key("abc-123 XYZ~").is_ok());
        assert!(check_idempotency_key(&"a".repeat(255)).is_ok());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key(&"a".repeat(256)).is_err());
        assert!(check_idempotency_key("tab\there").is_err());
        assert!(check_idempotency_key("caf\u{e9}").is_err());
        assert_ne!(idempotency_slot("a"), idempotency_slot("b"));
    }

    #[test]
    fn fingerprints_separate_fields() {
        assert_ne!(
            fingerprint("POST", "/a", b"b"),
            fingerprint("POST", "/ab", b"")
        );
        assert_eq!(
            fingerprint("POST", "/a", b"x"),
            fingerprint("POST", "/a", b"x")
        );
        assert_ne!(
            fingerprint("POST", "/a", b"x"),
            fingerprint("POST", "/a", b"y")
        );
    }

    fn done(fp: &str, at: u64) -> IdemRecord {
        IdemRecord::Done {
            fingerprint: fp.into(),
            stored_ms: at,
            response: StoredResponse {
                status: 201,
                headers: vec![],
                body_hex: "7b7d".into(),
            },
        }
    }

    #[test]
    fn idempotency_decisions() {
        let lease = 40_000;
        let (b, rec) = begin(None, "f", 0, lease);
        assert_eq!(b, Begin::Proceed);
        let rec = rec.unwrap();
        assert_eq!(begin(Some(&rec), "f", 1, lease).0, Begin::InProgress);
        assert_eq!(begin(Some(&rec), "g", 1, lease).0, Begin::Mismatch);
        assert_eq!(
            begin(Some(&rec), "f", lease, lease).0,
            Begin::Proceed,
            "abandoned"
        );
        let d = done("f", 0);
        assert!(matches!(
            begin(Some(&d), "f", 5, lease).0,
            Begin::Replay { .. }
        ));
        assert_eq!(begin(Some(&d), "g", 5, lease).0, Begin::Mismatch);
        assert_eq!(
            begin(Some(&d), "g", IDEMPOTENCY_TTL_MS, lease).0,
            Begin::Proceed
        );
        assert!(is_expired(&d, IDEMPOTENCY_TTL_MS, lease));
        assert!(!is_expired(&d, IDEMPOTENCY_TTL_MS - 1, lease));
        assert!(remember(201) && remember(422) && !remember(500) && !remember(503));
    }
}
