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

    #[test]
    fn a_name_is_1_to_100_characters_without_control_characters_and_not_blank() {
        let name = |s: &str| {
            let mut errors = FieldErrors::default();
            let parsed = parse_name(Some(&Value::from(s)), &mut errors);
            assert_eq!(parsed.is_some(), errors.is_empty(), "{s:?}");
            parsed
        };
        assert_eq!(name("nightly dbt").as_deref(), Some("nightly dbt"));
        assert!(
            name(&"é".repeat(MAX_NAME_CHARS)).is_some(),
            "characters, not bytes"
        );
        // Each rule alone refuses a name the others accept.
        assert_eq!(name(&"a".repeat(MAX_NAME_CHARS + 1)), None, "too long");
        assert_eq!(name(""), None, "empty");
        assert_eq!(name("nightly\u{7}dbt"), None, "a control character");
        assert_eq!(name("   "), None, "blank");
        let mut errors = FieldErrors::default();
        assert_eq!(parse_name(None, &mut errors), None);
        assert_eq!(parse_name(Some(&Value::from(3)), &mut errors), None);
        assert_eq!(errors["name"].len(), 2);
    }
}
