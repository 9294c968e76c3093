//! The pieces every body parser shares: collecting problems per field, reading a JSON object,
//! a key's `name`, and the least lead time of a new expiry. Apart from [`crate::core::request`] so
//! that [`crate::core::policy`] can use them without the two modules depending on each other.

use serde_json::{Map, Value};

use crate::core::error::{Error, FieldErrors};

/// Largest body of a management request (a key, a roll, a change, a pool, a settings
/// session): far above any valid one, small enough to read whole.
pub const MAX_MANAGEMENT_BODY_BYTES: u64 = 64 * 1024;
/// Largest form of `POST /settings/open` (a token field: about 50 bytes).
pub const MAX_FORM_BYTES: u64 = 4 * 1024;

/// `expires_at` must be at least this far in the future when a key is created.
pub const MIN_EXPIRY_LEAD_SECS: i64 = 60;
pub const MAX_NAME_CHARS: usize = 100;

pub fn push(errors: &mut FieldErrors, field: &str, problem: &str) {
    errors
        .entry(field.to_owned())
        .or_default()
        .push(problem.to_owned());
}

pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let trimmed = body.iter().all(u8::is_ascii_whitespace);
    if trimmed {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::field("body", "must be a JSON object")),
    }
}

/// A key's `name`: required, 1-100 characters, no control characters, not blank.
pub fn parse_name(v: Option<&Value>, errors: &mut FieldErrors) -> Option<String> {
    match v {
        None | Some(Value::Null) => {
            push(errors, "name", "is required");
            None
        }
        Some(Value::String(s))
            if (1..=MAX_NAME_CHARS).contains(&s.chars().count())
                && !s.chars().any(char::is_control)
                && !s.trim().is_empty() =>
        {
            Some(s.clone())
        }
        Some(_) => {
            push(
                errors,
                "name",
                &format!("must be 1-{MAX_NAME_CHARS} characters, without control characters"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_limits_the_contract_states() {
        assert_eq!(MAX_MANAGEMENT_BODY_BYTES, 65_536, "64 KiB");
        assert_eq!(MAX_FORM_BYTES, 4_096);
    }
}
