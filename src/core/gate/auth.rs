//! Parsing the `Authorization` header (docs/CONTRACT.md section 2) and checking the admin token.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::error::Error;

/// The scheme for API keys, matched case-insensitively (RFC 9110 section 11.1).
pub const API_KEY_SCHEME: &str = "Api-Key";
/// The scheme for the admin token on `/v1/api-keys` routes.
pub const ADMIN_SCHEME: &str = "Bearer";

/// What the caller presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Api-Key <key>`; the key is not yet checked for shape.
    ApiKey(&'a str),
    /// `Bearer <token>`: an admin token candidate.
    Admin(&'a str),
}

/// Splits `Authorization` into a credential. `None` (no header) is `missing_api_key`; any other
/// scheme, an empty credential or several credentials (whitespace or a comma inside, as when two
/// headers are joined) is `malformed_api_key`.
pub fn parse_authorization(header: Option<&str>) -> Result<Credential<'_>, Error> {
    let header = header.ok_or(Error::MissingApiKey)?;
    let trimmed = header.trim_matches(is_space);
    let split = trimmed.find(is_space).ok_or(Error::MalformedApiKey)?;
    let (scheme, rest) = trimmed.split_at(split);
    let credential = rest.trim_matches(is_space);
    if credential.is_empty() || credential.contains(|c: char| is_space(c) || c == ',') {
        return Err(Error::MalformedApiKey);
    }
    if scheme.eq_ignore_ascii_case(API_KEY_SCHEME) {
        Ok(Credential::ApiKey(credential))
    } else if scheme.eq_ignore_ascii_case(ADMIN_SCHEME) {
        Ok(Credential::Admin(credential))
    } else {
        Err(Error::MalformedApiKey)
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Compares a presented admin token with the configured one in constant time. Both sides are
/// hashed first so that neither the content nor the length of the secret shows in timing.
pub fn admin_token_matches(presented: &str, configured: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(configured.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_header_is_missing() {
        assert_eq!(parse_authorization(None), Err(Error::MissingApiKey));
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_ignored() {
        for h in [
            "Api-Key abc",
            "api-key abc",
            "API-KEY   abc  ",
            "  Api-Key\tabc",
        ] {
            assert_eq!(
                parse_authorization(Some(h)),
                Ok(Credential::ApiKey("abc")),
                "{h:?}"
            );
        }
        assert_eq!(
            parse_authorization(Some("bearer tok")),
            Ok(Credential::Admin("tok"))
        );
    }

    #[test]
    fn other_schemes_empty_or_several_keys_are_malformed() {
        for h in [
            "",
            "   ",
            "Api-Key",
            "Api-Key   ",
            "Basic abc",
            "Token abc",
            "Api-Keyabc",
            "Api-Key abc def",
            "Api-Key abc, Api-Key def",
            "Api-Key abc,def",
            "ApiKey abc",
        ] {
            assert_eq!(
                parse_authorization(Some(h)),
                Err(Error::MalformedApiKey),
                "{h:?}"
            );
        }
    }

    #[test]
    fn admin_token_comparison() {
        assert!(admin_token_matches("s3cret-token", "s3cret-token"));
        assert!(!admin_token_matches("s3cret-tokeN", "s3cret-token"));
        assert!(!admin_token_matches("s3cret", "s3cret-token"));
        assert!(!admin_token_matches("", "s3cret-token"));
    }
}
