//! The one JSON log line per request (docs/CONTRACT.md section 10). Its fields are chosen so that no key,
//! hash, token or signature can ever be part of it.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct LogLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    pub key_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub duration_ms: u64,
    /// A short, fixed name of an internal failure (e.g. `kv_read`), for operators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    /// How a key's request was decided (section 8): `local` from the isolate's lease (or, for
    /// an idempotent job trigger, refused from what the isolate already knows, before its body
    /// is read), `local_renewing` (and a background renewal started), `asked` (it waited on the
    /// key's object), `exact` (`LEASE_MS = 0`, or a key managing keys: one object call). Counts
    /// the object calls per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<&'static str>,
    /// Calls to pools' objects this request made or started (section 17): present once a pool
    /// applied; 0 when every pool decided from its lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_calls: Option<u32>,
}

impl LogLine<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object() {
        let line = LogLine {
            request_id: "r1",
            method: "GET",
            path: "/v1/me",
            status: 401,
            code: Some("invalid_api_key"),
            key_id: None,
            user_id: None,
            duration_ms: 3,
            cause: None,
            lease: None,
            pool_calls: None,
        }
        .to_json();
        assert!(!line.contains("pool_calls"), "absent when no pool applied");
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 401);
        assert_eq!(v["code"], "invalid_api_key");
        assert!(v["key_id"].is_null());
    }
}
