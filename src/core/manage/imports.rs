//! `POST /v1/api-keys/import` (docs/CONTRACT.md section 15): the platform's existing keys as
//! rows, each checked on its own, and what becomes of each given what is stored already.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::core::error::Error;
use crate::core::fields::parse_object;
use crate::core::legacy::{handle, is_prefix, HashProblem, StoredHash, DRF_API_KEY};
use crate::core::ratelimit::RateLimit;
use crate::core::record::{Imported, KeyRecord, NewKey};
use crate::core::request::parse_create;
use crate::core::time::{format_time, parse_time};

/// Rows per call: a batch the Worker stores within one request's limits.
pub const MAX_ROWS: usize = 100;
/// Largest import body (100 rows with policies and metadata fit).
pub const MAX_IMPORT_BODY_BYTES: u64 = 256 * 1024;
/// Longest `external_id`.
pub const MAX_EXTERNAL_ID: usize = 64;

/// The fields a row has beyond those of `POST /v1/api-keys`.
const IMPORT_FIELDS: [&str; 6] = [
    "prefix",
    "hashed_key",
    "revoked",
    "external_id",
    "created_at",
    "expires_at",
];

/// One valid row: the key to store, and what the import keeps of the platform's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub prefix: String,
    pub hashed_key: String,
    pub revoked: bool,
    pub external_id: Option<String>,
    /// The platform's `created`, kept as the key's `created_at`; `None`: now.
    pub created_at: Option<i64>,
    /// The rest, as `POST /v1/api-keys` reads it; `expires_at` may be in the past here (the
    /// key is then imported as expired).
    pub new: NewKey,
}

/// A row's problem: the `code` and `detail` of its `invalid` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub code: &'static str,
    pub detail: String,
}

impl RowError {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        RowError {
            code,
            detail: detail.into(),
        }
    }
}

impl From<HashProblem> for RowError {
    fn from(p: HashProblem) -> Self {
        RowError::new(p.code(), p.detail())
    }
}

/// A row as read: valid, or invalid with its prefix as given (for the answer).
pub type Parsed = (String, Result<Row, RowError>);

/// The body: `{"format": "drf-api-key", "keys": [row, ...]}` with 1-100 rows. A body that is not
/// that is a 400 for the whole call; a bad row only makes that row `invalid`.
pub fn parse_import(body: &[u8], now: i64, default_rate: RateLimit) -> Result<Vec<Parsed>, Error> {
    let map = parse_object(body)?;
    for k in map.keys() {
        if k != "format" && k != "keys" {
            return Err(Error::field(k, "unknown field"));
        }
    }
    match map.get("format") {
        Some(Value::String(f)) if f == DRF_API_KEY => {}
        _ => return Err(Error::field("format", format!("must be \"{DRF_API_KEY}\""))),
    }
    let rows = match map.get("keys") {
        Some(Value::Array(rows)) if (1..=MAX_ROWS).contains(&rows.len()) => rows,
        _ => {
            return Err(Error::field(
                "keys",
                format!("must be an array of 1-{MAX_ROWS} rows"),
            ))
        }
    };
    Ok(rows
        .iter()
        .map(|row| {
            let prefix = row
                .get("prefix")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let parsed = match row {
                Value::Object(m) => parse_row(m.clone(), now, default_rate),
                _ => Err(RowError::new("invalid_row", "a row must be a JSON object")),
            };
            (prefix, parsed)
        })
        .collect())
}

fn time_field(v: Option<&Value>, name: &str) -> Result<Option<i64>, RowError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s).map(Some).ok_or_else(|| {
            RowError::new(
                "invalid_row",
                format!("{name}: must be an RFC 3339 date-time"),
            )
        }),
        Some(_) => Err(RowError::new(
            "invalid_row",
            format!("{name}: must be an RFC 3339 date-time"),
        )),
    }
}

fn parse_row(
    mut m: Map<String, Value>,
    now: i64,
    default_rate: RateLimit,
) -> Result<Row, RowError> {
    let prefix = match m.get("prefix") {
        Some(Value::String(p)) if is_prefix(p) => p.clone(),
        _ => {
            return Err(RowError::new(
                "invalid_row",
                "prefix: must be 4-16 characters of A-Z a-z 0-9",
            ))
        }
    };
    let hashed_key = match m.get("hashed_key") {
        Some(Value::String(h)) => h.clone(),
        _ => return Err(RowError::new("invalid_row", "hashed_key: is required")),
    };
    StoredHash::parse(&hashed_key)?;
    let revoked = match m.get("revoked") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(RowError::new("invalid_row", "revoked: must be a boolean")),
    };
    let external_id = match m.get("external_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_EXTERNAL_ID
                && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(s.clone())
        }
        Some(_) => {
            return Err(RowError::new(
                "invalid_row",
                format!("external_id: must be 1-{MAX_EXTERNAL_ID} printable ASCII characters"),
            ))
        }
    };
    let created_at = time_field(m.get("created_at"), "created_at")?;
    if created_at.is_some_and(|t| t > now) {
        return Err(RowError::new(
            "invalid_row",
            "created_at: must not be in the future",
        ));
    }
    let expires_at = time_field(m.get("expires_at"), "expires_at")?;
    for f in IMPORT_FIELDS {
        m.remove(f);
    }
    // Everything else is read exactly as `POST /v1/api-keys` reads it.
    let rest = serde_json::to_vec(&Value::Object(m))
        .map_err(|_| RowError::new("invalid_row", "unreadable row"))?;
    let mut new = match parse_create(&rest, now, default_rate) {
        Ok(new) => new,
        Err(Error::Validation(fields)) => {
            let detail = fields
                .iter()
                .map(|(f, problems)| format!("{f}: {}", problems.join("; ")))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(RowError::new("invalid_row", detail));
        }
        Err(_) => return Err(RowError::new("invalid_row", "unreadable row")),
    };
    new.expires_at = expires_at;
    Ok(Row {
        prefix,
        hashed_key,
        revoked,
        external_id,
        created_at,
        new,
    })
}

/// What becomes of a valid row, given the record stored under its prefix (if any). The
/// platform's prefixes are unique, so a stored import with the row's prefix is the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Imported before with the same hash: the same key (whatever became of it since: a key
    /// revoked or rolled since is never revived).
    Exists(String),
    /// Imported before and live here, revoked on the platform since: revoked here too
    /// (answered `skipped`, with its id).
    Revoke(String),
    /// Imported before with another hash: the platform re-hashed it (its package rewrites a
    /// PBKDF2 hash to SHA-512 when a key is used). The stored hash is kept; the key works.
    HashChanged(String),
    /// The prefix holds something that is not an import (never written by keygate).
    PrefixTaken,
    /// A revoked row with nothing stored: nothing is stored.
    Skipped,
    Import,
}

pub fn fate(row: &Row, existing: Option<&KeyRecord>) -> Fate {
    let Some(r) = existing else {
        return if row.revoked {
            Fate::Skipped
        } else {
            Fate::Import
        };
    };
    let Some(imported) = &r.imported else {
        return Fate::PrefixTaken;
    };
    if row.revoked && r.revoked_at.is_none() {
        Fate::Revoke(r.id.clone())
    } else if imported.hashed_key == row.hashed_key || row.revoked {
        Fate::Exists(r.id.clone())
    } else {
        Fate::HashChanged(r.id.clone())
    }
}

impl Row {
    /// The KV handle of the key's record (`drf.<prefix>`).
    pub fn handle(&self) -> String {
        handle(&self.prefix)
    }

    /// The record to store, with the new key id; its hint is the prefix, as its owner knows it.
    pub fn into_record(self, id: String, now: i64) -> KeyRecord {
        let created = self.created_at.unwrap_or(now);
        let mut record = self
            .new
            .into_record(id, format!("{}.", self.prefix), created);
        record.created_at = format_time(created);
        record.imported = Some(Imported {
            hashed_key: self.hashed_key,
            external_id: self.external_id,
        });
        record
    }
}

/// One row's result in the answer.
#[derive(Debug, Serialize)]
pub struct RowResult<'a> {
    pub prefix: &'a str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RowError>,
}

impl<'a> RowResult<'a> {
    pub fn imported(prefix: &'a str, id: String) -> Self {
        Self::with(prefix, "imported", Some(id), None)
    }
    pub fn exists(prefix: &'a str, id: String) -> Self {
        Self::with(prefix, "exists", Some(id), None)
    }
    pub fn skipped(prefix: &'a str, id: Option<String>) -> Self {
        Self::with(prefix, "skipped", id, None)
    }
    pub fn invalid(prefix: &'a str, error: RowError) -> Self {
        Self::with(prefix, "invalid", None, Some(error))
    }
    pub fn hash_changed(prefix: &'a str, id: String) -> Self {
        Self::with(
            prefix,
            "invalid",
            Some(id),
            Some(RowError::new(
                "hash_changed",
                "this key was imported with another hash, which is kept (the key works)",
            )),
        )
    }
    pub fn prefix_taken(prefix: &'a str) -> Self {
        Self::invalid(
            prefix,
            RowError::new(
                "prefix_taken",
                "another key with this prefix is stored already",
            ),
        )
    }
    fn with(
        prefix: &'a str,
        status: &'static str,
        id: Option<String>,
        error: Option<RowError>,
    ) -> Self {
        RowResult {
            prefix,
            status,
            id,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::tests::{record, DEFAULT as RATE, NOW};
    use sha2::{Digest, Sha512};

    fn sha512_of(key: &str) -> String {
        format!("sha512$${}", hex::encode(Sha512::digest(key)))
    }

    fn row_json(extra: &str) -> String {
        format!(
            r#"{{"prefix":"Ab12Cd34","hashed_key":"{}","user_id":"u_1","name":"ci","workspaces":["ws_1"],"permissions":["jobs:read"]{extra}}}"#,
            sha512_of("Ab12Cd34.x")
        )
    }

    fn parse_one(extra: &str) -> Result<Row, RowError> {
        let body = format!(r#"{{"format":"drf-api-key","keys":[{}]}}"#, row_json(extra));
        let mut rows = parse_import(body.as_bytes(), NOW, RATE).unwrap();
        assert_eq!(rows.len(), 1);
        rows.remove(0).1
    }

    #[test]
    fn a_row_created_now_is_accepted_and_stored_under_its_prefix() {
        assert_eq!(MAX_IMPORT_BODY_BYTES, 262_144, "256 KiB");
        let now = format!(r#","created_at":"{}""#, format_time(NOW));
        let row = parse_one(&now).expect("created now is not in the future");
        assert_eq!(row.created_at, Some(NOW));
        assert_eq!(row.handle(), "drf.Ab12Cd34");
    }

    #[test]
    fn the_body_must_name_the_format_and_hold_1_to_100_rows() {
        for bad in [
            r#"{"keys":[]}"#.to_owned(),
            r#"{"format":"drf-api-key","keys":[]}"#.to_owned(),
            r#"{"format":"other","keys":[{}]}"#.to_owned(),
            r#"{"format":"drf-api-key","keys":{}}"#.to_owned(),
            r#"{"format":"drf-api-key","keys":[{}],"x":1}"#.to_owned(),
            format!(
                r#"{{"format":"drf-api-key","keys":[{}]}}"#,
                vec!["{}"; 101].join(",")
            ),
            "[]".to_owned(),
        ] {
            assert!(
                matches!(
                    parse_import(bad.as_bytes(), NOW, RATE),
                    Err(Error::Validation(_))
                ),
                "{bad}"
            );
        }
        let hundred = format!(
            r#"{{"format":"drf-api-key","keys":[{}]}}"#,
            vec!["{}"; 100].join(",")
        );
        assert_eq!(
            parse_import(hundred.as_bytes(), NOW, RATE).unwrap().len(),
            100
        );
    }

    #[test]
    fn a_valid_row_keeps_the_platforms_fields() {
        let row = parse_one(r#","external_id":"42","created_at":"2024-01-02T03:04:05Z","expires_at":"2020-01-01T00:00:00Z","revoked":false"#).unwrap();
        assert_eq!(row.prefix, "Ab12Cd34");
        assert_eq!(row.external_id.as_deref(), Some("42"));
        assert_eq!(row.created_at, parse_time("2024-01-02T03:04:05Z"));
        // Already expired: imported as expired, not refused.
        assert_eq!(row.new.expires_at, parse_time("2020-01-01T00:00:00Z"));
        let record = row.into_record("key_0000000000000001".into(), NOW);
        assert_eq!(record.hint, "Ab12Cd34.");
        assert_eq!(record.created_at, "2024-01-02T03:04:05Z");
        let imported = record.imported.unwrap();
        assert_eq!(imported.hashed_key, sha512_of("Ab12Cd34.x"));
        assert_eq!(imported.external_id.as_deref(), Some("42"));
    }

    #[test]
    fn bad_rows_are_invalid_with_a_named_code() {
        let cases = [
            (r#","prefix":"ab""#, "invalid_row"),
            (
                r#","hashed_key":"argon2$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA""#,
                "unsupported_hasher",
            ),
            (r#","hashed_key":"bcrypt$$2b$12$x""#, "unsupported_hasher"),
            (
                r#","hashed_key":"pbkdf2_sha256$2000000$salt$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=""#,
                "too_many_iterations",
            ),
            (r#","hashed_key":"sha512$$00""#, "malformed_hash"),
            (r#","revoked":"yes""#, "invalid_row"),
            (r#","external_id":"""#, "invalid_row"),
            (r#","created_at":"2099-01-01T00:00:00Z""#, "invalid_row"),
            (r#","expires_at":"tomorrow""#, "invalid_row"),
            (r#","permissions":["root"]"#, "invalid_row"),
            (r#","unknown":1"#, "invalid_row"),
        ];
        for (extra, code) in cases {
            // Later duplicates of a JSON member win, so `extra` overrides the valid row's field.
            let err = parse_one(extra).unwrap_err();
            assert_eq!(err.code, code, "{extra}: {err:?}");
            assert!(!err.detail.is_empty());
        }
        let body = br#"{"format":"drf-api-key","keys":[1]}"#;
        let rows = parse_import(body, NOW, RATE).unwrap();
        assert_eq!(rows[0].1.as_ref().unwrap_err().code, "invalid_row");
    }

    #[test]
    fn what_becomes_of_a_row() {
        let row = parse_one("").unwrap();
        assert_eq!(fate(&row, None), Fate::Import);
        let mut revoked = row.clone();
        revoked.revoked = true;
        assert_eq!(fate(&revoked, None), Fate::Skipped);
        let id = || "key_0000000000000002".to_owned();
        let stored = row.clone().into_record(id(), NOW);
        assert_eq!(fate(&row, Some(&stored)), Fate::Exists(id()));
        // Revoked on the platform since the first import: revoked here too.
        assert_eq!(fate(&revoked, Some(&stored)), Fate::Revoke(id()));
        // Stored and then revoked: still the same key; no row revives it.
        let mut dead = stored.clone();
        dead.revoked_at = Some(format_time(NOW));
        assert_eq!(fate(&revoked, Some(&dead)), Fate::Exists(id()));
        assert_eq!(fate(&row, Some(&dead)), Fate::Exists(id()));
        let mut other = row.clone();
        other.hashed_key = sha512_of("Ab12Cd34.y");
        assert_eq!(fate(&other, Some(&stored)), Fate::HashChanged(id()));
        other.revoked = true;
        assert_eq!(fate(&other, Some(&stored)), Fate::Revoke(id()));
        // An imported record never leaves KV by itself (its end is no KV expiration).
        let mut expired = stored.clone();
        expired.expires_at = Some(format_time(NOW - 400 * 86_400));
        assert_eq!(expired.kv_expiration(), None);
        // A native key's record never sits under a prefix handle, but if one did it is not ours.
        assert_eq!(
            fate(&row, Some(&record(&["*"], &["*"], None))),
            Fate::PrefixTaken
        );
    }
}
