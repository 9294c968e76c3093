//! Idempotency of the job trigger (docs/CONTRACT.md section 6): one record per (key id,
//! Idempotency-Key), kept by the key's Durable Object, and every decision about those records.
//!
//! Bounds, so that no client can grow a key's storage without limit (and so that the key's
//! rate-limit state, kept in the same object, always has room):
//! - at most [`MAX_IDEMPOTENCY_RECORDS`] live records per key; past it a new Idempotency-Key is
//!   refused with 429 `too_many_idempotency_keys` until records expire, while known
//!   Idempotency-Keys and requests without one keep working;
//! - an answer body is kept up to [`MAX_STORED_BODY_BYTES`]; a larger one is remembered by its
//!   status and headers only, and replayed so with `Idempotent-Body-Omitted: true`;
//! - expired records are swept [`SWEEP_PAGE_SIZE`] at a time, the next page soon after.
//!
//! Length: the decisions are about 300 lines; the rest is their unit tests.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::error::Error;

/// How long an idempotent answer is replayed.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Beyond the origin timeout (which bounds the whole exchange, headers and body), the time an
/// attempt may still take to record its answer. An in-flight record older than its lease was
/// abandoned (its isolate died mid-request); a retry may then proceed instead of getting 409
/// forever.
pub const IN_FLIGHT_MARGIN_MS: u64 = 10_000;
/// Live records one key may hold. At about 64 KiB each at most, a key's object stays far below
/// its storage limit (about 70 MB for a full key).
pub const MAX_IDEMPOTENCY_RECORDS: u32 = 1_000;
/// Largest answer body kept for replay; past it only the status and headers are kept.
pub const MAX_STORED_BODY_BYTES: usize = 64 * 1024;
/// Records the clean-up reads per alarm: at most this many bodies in memory at once.
pub const SWEEP_PAGE_SIZE: usize = 100;
/// When a page was full, the next one runs this soon after (more records may be expired).
pub const SWEEP_NEXT_PAGE_MS: u64 = 1_000;
/// Cadence of clean-up passes while records exist.
pub const RECORD_SWEEP_INTERVAL_MS: u64 = 3600 * 1000;
/// Storage names of idempotency records start with this (the rest is a hash).
pub const SLOT_PREFIX: &str = "idem:";

/// How long an attempt holds its in-flight record: the origin timeout plus the margin.
pub fn in_flight_lease_ms(origin_timeout_ms: u64) -> u64 {
    origin_timeout_ms.saturating_add(IN_FLIGHT_MARGIN_MS)
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
            format!("must be 1-{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"),
        ))
    }
}

/// Storage key of an idempotency record: hashed, so any printable key is a safe name.
pub fn idempotency_slot(idempotency_key: &str) -> String {
    format!(
        "{SLOT_PREFIX}{}",
        hex::encode(Sha256::digest(idempotency_key.as_bytes()))
    )
}

/// What identifies "the same request": method, path and query, and body.
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> String {
    fingerprint_chunks(method, path_and_query, [body])
}

/// [`fingerprint`] of a body held as its chunks (the same value as of their concatenation).
pub fn fingerprint_chunks<'a>(
    method: &str,
    path_and_query: &str,
    body: impl IntoIterator<Item = &'a [u8]>,
) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path_and_query.as_bytes());
    h.update([0]);
    for chunk in body {
        h.update(chunk);
    }
    hex::encode(h.finalize())
}

/// A remembered origin answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body was larger than [`MAX_STORED_BODY_BYTES`] (or did not arrive in time): it is
    /// replayed empty, with `Idempotent-Body-Omitted: true`.
    #[serde(default)]
    pub body_omitted: bool,
    /// Raw bytes, carried beside the JSON rather than inside it (see [`crate::core::objectop::frame`]).
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// The answer to remember: with its body when there is one that fits, else without.
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Option<Vec<u8>>) -> Self {
        match body {
            Some(body) if body.len() <= MAX_STORED_BODY_BYTES => Self {
                status,
                headers,
                body_omitted: false,
                body,
            },
            _ => Self {
                status,
                headers,
                body_omitted: true,
                body: Vec::new(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdemRecord {
    InFlight {
        fingerprint: String,
        /// Also the attempt's identity: only the attempt that opened the record finishes it.
        started_ms: u64,
        /// How long this attempt holds the record (see [`in_flight_lease_ms`]); kept in the
        /// record so that the clean-up needs no configuration.
        lease_ms: u64,
    },
    Done {
        fingerprint: String,
        stored_ms: u64,
        response: StoredResponse,
    },
}

/// What the object found under a slot.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    Empty,
    /// Something it cannot read (a format from before): taken over like an expired record.
    Unreadable,
    Record(&'a IdemRecord),
}

/// What to do with a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Begin {
    /// First of its kind (or the earlier one failed or was abandoned): call the origin, then
    /// finish the record with this attempt's identity.
    Proceed {
        attempt: u64,
    },
    InProgress,
    Mismatch,
    Replay {
        response: StoredResponse,
    },
    /// A new Idempotency-Key, but the key already holds [`MAX_IDEMPOTENCY_RECORDS`] live ones.
    Full,
}

/// [`begin`]'s decision and what the object stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub decision: Begin,
    /// The record to write (`Some` when it changes).
    pub store: Option<IdemRecord>,
    /// Whether that write fills an empty slot (one more live record).
    pub adds_record: bool,
}

/// Decides a new attempt against what was found under its slot, given how many live records
/// the key holds.
pub fn begin(
    found: Found<'_>,
    fingerprint: &str,
    now_ms: u64,
    lease_ms: u64,
    live_records: u32,
) -> Opening {
    let refuse = |decision| Opening {
        decision,
        store: None,
        adds_record: false,
    };
    match found {
        Found::Record(IdemRecord::Done {
            fingerprint: fp,
            stored_ms,
            response,
        }) if now_ms < stored_ms.saturating_add(IDEMPOTENCY_TTL_MS) => {
            if fp == fingerprint {
                refuse(Begin::Replay {
                    response: response.clone(),
                })
            } else {
                refuse(Begin::Mismatch)
            }
        }
        Found::Record(IdemRecord::InFlight {
            fingerprint: fp,
            started_ms,
            lease_ms: held,
        }) if now_ms < started_ms.saturating_add(*held) => {
            if fp == fingerprint {
                refuse(Begin::InProgress)
            } else {
                refuse(Begin::Mismatch)
            }
        }
        Found::Empty if live_records >= MAX_IDEMPOTENCY_RECORDS => refuse(Begin::Full),
        // Nothing, expired, or abandoned: this attempt goes ahead.
        _ => Opening {
            decision: Begin::Proceed { attempt: now_ms },
            store: Some(IdemRecord::InFlight {
                fingerprint: fingerprint.to_owned(),
                started_ms: now_ms,
                lease_ms,
            }),
            adds_record: matches!(found, Found::Empty),
        },
    }
}

/// What finishing an attempt does to its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Store this record in place of the in-flight one.
    Keep(IdemRecord),
    /// Delete the record (a 5xx or no answer: a retry may run the job).
    Forget,
    /// The record is not this attempt's (another attempt took over a lapsed lease, or it is
    /// gone): leave it alone.
    NotHeld,
}

/// Only the attempt that holds the in-flight record (same request, same attempt) may finish
/// it: with the answer to remember, or `None` to forget it.
pub fn complete(
    found: Option<&IdemRecord>,
    fingerprint: &str,
    attempt: u64,
    answer: Option<StoredResponse>,
    now_ms: u64,
) -> Completion {
    let holds = matches!(
        found,
        Some(IdemRecord::InFlight { fingerprint: fp, started_ms, .. })
            if fp == fingerprint && *started_ms == attempt
    );
    match (holds, answer) {
        (false, _) => Completion::NotHeld,
        (true, Some(response)) => Completion::Keep(IdemRecord::Done {
            fingerprint: fingerprint.to_owned(),
            stored_ms: now_ms,
            response,
        }),
        (true, None) => Completion::Forget,
    }
}

/// Whether a finished origin answer is remembered: every status below 500.
pub fn remember(status: u16) -> bool {
    status < 500
}

/// Whether a record may be swept: a done one after 24 h, an in-flight one after its lease.
pub fn is_expired(record: &IdemRecord, now_ms: u64) -> bool {
    match record {
        IdemRecord::Done { stored_ms, .. } => {
            now_ms >= stored_ms.saturating_add(IDEMPOTENCY_TTL_MS)
        }
        IdemRecord::InFlight {
            started_ms,
            lease_ms,
            ..
        } => now_ms >= started_ms.saturating_add(*lease_ms),
    }
}

/// When the clean-up runs next: soon when its page was full (more may follow), on the hourly
/// cadence while records remain, not at all when none do.
pub fn next_sweep(now_ms: u64, page_was_full: bool, live_records: u32) -> Option<u64> {
    if page_was_full {
        Some(now_ms + SWEEP_NEXT_PAGE_MS)
    } else if live_records > 0 {
        Some(now_ms + RECORD_SWEEP_INTERVAL_MS)
    } else {
        None
    }
}

/// Seconds a refused new Idempotency-Key should wait: until the next clean-up, at least 1.
pub fn full_retry_after_secs(now_ms: u64, next_sweep_ms: Option<u64>) -> u64 {
    let at = next_sweep_ms.unwrap_or(now_ms + RECORD_SWEEP_INTERVAL_MS);
    at.saturating_sub(now_ms).div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_the_contract_states() {
        assert_eq!(IDEMPOTENCY_TTL_MS, 86_400_000, "24 h");
        assert_eq!(MAX_STORED_BODY_BYTES, 65_536, "64 KiB");
        assert_eq!(
            in_flight_lease_ms(30_000),
            40_000,
            "the origin timeout plus 10 s"
        );
    }

    #[test]
    fn a_body_in_chunks_has_the_fingerprint_of_the_whole() {
        let whole = fingerprint("POST", "/p?q", b"hello world");
        let parts: [&[u8]; 3] = [b"hel", b"lo wo", b"rld"];
        assert_eq!(fingerprint_chunks("POST", "/p?q", parts), whole);
        assert_ne!(
            fingerprint_chunks("POST", "/p?q", [b"hello".as_slice()]),
            whole
        );
    }

    const LEASE: u64 = 40_000;

    fn answer(body: &[u8]) -> StoredResponse {
        StoredResponse::new(201, vec![], Some(body.to_vec()))
    }

    fn done(fp: &str, at: u64) -> IdemRecord {
        IdemRecord::Done {
            fingerprint: fp.into(),
            stored_ms: at,
            response: answer(b"{}"),
        }
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
        assert!(idempotency_slot("a").starts_with(SLOT_PREFIX));
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

    #[test]
    fn first_attempt_proceeds_and_fills_a_slot() {
        let o = begin(Found::Empty, "f", 7, LEASE, 0);
        assert_eq!(o.decision, Begin::Proceed { attempt: 7 });
        assert!(o.adds_record);
        assert_eq!(
            o.store,
            Some(IdemRecord::InFlight {
                fingerprint: "f".into(),
                started_ms: 7,
                lease_ms: LEASE
            })
        );
    }

    #[test]
    fn retries_while_in_flight_wait_until_the_lease_lapses() {
        let rec = begin(Found::Empty, "f", 0, LEASE, 0).store.unwrap();
        let at = |now, fp| begin(Found::Record(&rec), fp, now, LEASE, 0).decision;
        assert_eq!(at(1, "f"), Begin::InProgress);
        assert_eq!(at(LEASE - 1, "f"), Begin::InProgress);
        assert_eq!(at(1, "g"), Begin::Mismatch);
        let taken = begin(Found::Record(&rec), "f", LEASE, LEASE, 0);
        assert_eq!(
            taken.decision,
            Begin::Proceed { attempt: LEASE },
            "abandoned"
        );
        assert!(!taken.adds_record, "taking over a slot adds no record");
    }

    #[test]
    fn the_lease_is_the_records_own() {
        // A record opened with a long lease is honoured whatever the caller's lease now is.
        let rec = begin(Found::Empty, "f", 0, 100_000, 0).store.unwrap();
        assert_eq!(
            begin(Found::Record(&rec), "f", 50_000, LEASE, 0).decision,
            Begin::InProgress
        );
        assert!(!is_expired(&rec, 99_999));
        assert!(is_expired(&rec, 100_000));
    }

    #[test]
    fn done_records_replay_for_24_hours() {
        let d = done("f", 0);
        assert!(matches!(
            begin(Found::Record(&d), "f", 5, LEASE, 0).decision,
            Begin::Replay { .. }
        ));
        assert_eq!(
            begin(Found::Record(&d), "g", 5, LEASE, 0).decision,
            Begin::Mismatch
        );
        assert_eq!(
            begin(Found::Record(&d), "g", IDEMPOTENCY_TTL_MS, LEASE, 0).decision,
            Begin::Proceed {
                attempt: IDEMPOTENCY_TTL_MS
            }
        );
        assert!(is_expired(&d, IDEMPOTENCY_TTL_MS));
        assert!(!is_expired(&d, IDEMPOTENCY_TTL_MS - 1));
        assert!(remember(201) && remember(422) && !remember(500) && !remember(503));
    }

    #[test]
    fn a_full_key_refuses_only_new_idempotency_keys() {
        let full = MAX_IDEMPOTENCY_RECORDS;
        assert_eq!(
            begin(Found::Empty, "f", 0, LEASE, full).decision,
            Begin::Full
        );
        assert_eq!(
            begin(Found::Empty, "f", 0, LEASE, full - 1).decision,
            Begin::Proceed { attempt: 0 }
        );
        // Known Idempotency-Keys keep working: replayed, or retaken when expired.
        let d = done("f", 0);
        assert!(matches!(
            begin(Found::Record(&d), "f", 1, LEASE, full).decision,
            Begin::Replay { .. }
        ));
        let o = begin(Found::Record(&d), "f", IDEMPOTENCY_TTL_MS, LEASE, full);
        assert!(matches!(o.decision, Begin::Proceed { .. }) && !o.adds_record);
        assert!(matches!(
            begin(Found::Unreadable, "f", 0, LEASE, full).decision,
            Begin::Proceed { .. }
        ));
    }

    #[test]
    fn only_the_holding_attempt_completes() {
        let rec = begin(Found::Empty, "f", 10, LEASE, 0).store.unwrap();
        assert_eq!(
            complete(Some(&rec), "f", 10, Some(answer(b"x")), 20),
            Completion::Keep(IdemRecord::Done {
                fingerprint: "f".into(),
                stored_ms: 20,
                response: answer(b"x")
            })
        );
        assert_eq!(complete(Some(&rec), "f", 10, None, 20), Completion::Forget);
        // Another request, another attempt (a retry that took over a lapsed lease), or no
        // record: nothing changes.
        assert_eq!(complete(Some(&rec), "g", 10, None, 20), Completion::NotHeld);
        assert_eq!(complete(Some(&rec), "f", 11, None, 20), Completion::NotHeld);
        assert_eq!(complete(None, "f", 10, None, 20), Completion::NotHeld);
        let d = done("f", 10);
        assert_eq!(
            complete(Some(&d), "f", 10, Some(answer(b"y")), 20),
            Completion::NotHeld,
            "a done record is never overwritten"
        );
    }

    #[test]
    fn large_answers_keep_status_and_headers_only() {
        let h = vec![("content-type".to_owned(), "application/json".to_owned())];
        let small = StoredResponse::new(201, h.clone(), Some(vec![b'a'; MAX_STORED_BODY_BYTES]));
        assert!(!small.body_omitted);
        assert_eq!(small.body.len(), MAX_STORED_BODY_BYTES);
        let big = StoredResponse::new(201, h.clone(), Some(vec![b'a'; MAX_STORED_BODY_BYTES + 1]));
        assert!(big.body_omitted && big.body.is_empty());
        assert_eq!((big.status, big.headers), (201, h.clone()));
        let late = StoredResponse::new(202, h, None);
        assert!(late.body_omitted && late.body.is_empty());
    }

    #[test]
    fn sweeps_page_then_settle_into_the_cadence() {
        assert_eq!(next_sweep(0, true, 5), Some(SWEEP_NEXT_PAGE_MS));
        assert_eq!(next_sweep(0, false, 5), Some(RECORD_SWEEP_INTERVAL_MS));
        assert_eq!(next_sweep(0, false, 0), None);
        assert_eq!(full_retry_after_secs(0, Some(1)), 1);
        assert_eq!(full_retry_after_secs(1_000, Some(62_500)), 62);
        assert_eq!(full_retry_after_secs(5_000, Some(1_000)), 1, "overdue");
        assert_eq!(
            full_retry_after_secs(0, None),
            RECORD_SWEEP_INTERVAL_MS / 1000
        );
    }
}
