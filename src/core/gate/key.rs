//! API key format (docs/CONTRACT.md section 1): `<prefix>_<body><check>`, its checksum, hash, hint and id.
//!
//! Randomness comes in as bytes from the caller (the glue fills them from getrandom), so every
//! function here is deterministic and testable natively.

use sha2::{Digest, Sha256};

use crate::core::error::Error;

/// Bytes of CSPRNG output in a key body (hex-encoded to 64 chars).
pub const KEY_BODY_BYTES: usize = 32;
const KEY_BODY_HEX: usize = KEY_BODY_BYTES * 2;
/// CRC-32 rendered as 8 lowercase hex chars.
const CHECK_HEX: usize = 8;
/// Body chars shown in a hint after `<prefix>_`.
const HINT_BODY_CHARS: usize = 6;
/// Random bytes in a key id (`key_` + 16 hex).
pub const KEY_ID_BYTES: usize = 8;
const KEY_ID_PREFIX: &str = "key_";

pub use crate::core::config::{is_valid_prefix, MAX_PREFIX_LEN};

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn checksum(prefixed_body: &str) -> String {
    format!("{:08x}", crc32fast::hash(prefixed_body.as_bytes()))
}

/// Builds the full key string from the prefix and 32 random bytes.
pub fn format_key(prefix: &str, random: &[u8; KEY_BODY_BYTES]) -> String {
    let mut key = String::with_capacity(prefix.len() + 1 + KEY_BODY_HEX + CHECK_HEX);
    key.push_str(prefix);
    key.push('_');
    key.push_str(&hex::encode(random));
    let check = checksum(&key);
    key.push_str(&check);
    key
}

/// Checks shape and checksum without touching storage, so garbage keys cost no KV read.
/// Any failure is `malformed_api_key`; the reason is deliberately not told apart.
pub fn check_key(prefix: &str, key: &str) -> Result<(), Error> {
    let expected_len = prefix.len() + 1 + KEY_BODY_HEX + CHECK_HEX;
    if key.len() != expected_len {
        return Err(Error::MalformedApiKey);
    }
    // Work on bytes: the key is attacker input and may hold multi-byte characters.
    let bytes = key.as_bytes();
    let (head, rest) = bytes.split_at(prefix.len());
    if head != prefix.as_bytes() || rest[0] != b'_' {
        return Err(Error::MalformedApiKey);
    }
    if !rest[1..]
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err(Error::MalformedApiKey);
    }
    // All ASCII from here on, so slicing the str is safe.
    let (prefixed_body, check) = key.split_at(expected_len - CHECK_HEX);
    if checksum(prefixed_body) != check {
        return Err(Error::MalformedApiKey);
    }
    Ok(())
}

/// `hex(sha256(key))`: the only form in which a key is stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `<prefix>_` plus the first 6 chars of the body. `key` must have passed [`check_key`].
pub fn hint(prefix: &str, key: &str) -> String {
    let end = (prefix.len() + 1 + HINT_BODY_CHARS).min(key.len());
    key[..end].to_owned()
}

/// `key_` + 16 lowercase hex chars.
pub fn format_key_id(random: &[u8; KEY_ID_BYTES]) -> String {
    format!("{KEY_ID_PREFIX}{}", hex::encode(random))
}

/// Whether `id` has the shape of a key id; anything else is answered 404 without a lookup.
pub fn is_key_id(id: &str) -> bool {
    id.len() == KEY_ID_PREFIX.len() + KEY_ID_BYTES * 2
        && id.starts_with(KEY_ID_PREFIX)
        && is_lower_hex(&id[KEY_ID_PREFIX.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let mut random = [0u8; KEY_BODY_BYTES];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        format_key("kg", &random)
    }

    #[test]
    fn formatted_key_has_the_spec_shape() {
        let key = sample();
        assert_eq!(key.len(), 2 + 1 + 64 + 8);
        assert!(key.starts_with("kg_"));
        let check = &key[key.len() - 8..];
        let expected = format!("{:08x}", crc32fast::hash(&key.as_bytes()[..key.len() - 8]));
        assert_eq!(check, expected);
        assert_eq!(check_key("kg", &key), Ok(()));
    }

    #[test]
    fn crc32_is_ieee() {
        // The IEEE CRC-32 check value of "123456789" is 0xcbf43926.
        assert_eq!(checksum("123456789"), "cbf43926");
    }

    #[test]
    fn a_key_with_any_single_character_changed_is_rejected() {
        let key = sample();
        let alphabet = b"0123456789abcdefgz_G";
        for i in 0..key.len() {
            for &c in alphabet {
                if key.as_bytes()[i] == c {
                    continue;
                }
                let mut bytes = key.clone().into_bytes();
                bytes[i] = c;
                let changed = String::from_utf8(bytes).unwrap();
                assert_eq!(
                    check_key("kg", &changed),
                    Err(Error::MalformedApiKey),
                    "position {i} changed to {}",
                    c as char
                );
            }
        }
    }

    #[test]
    fn wrong_prefix_length_or_case_is_malformed() {
        let key = sample();
        assert!(check_key("kx", &key).is_err());
        assert!(check_key("kg", &key[..key.len() - 1]).is_err());
        assert!(check_key("kg", &format!("{key}0")).is_err());
        assert!(check_key("kg", &key.to_uppercase()).is_err());
        assert!(check_key("kg", "").is_err());
        // Multi-byte characters must not panic on slicing.
        let tricky = format!("k\u{e9}{}", &key[3..]);
        assert!(check_key("kg", &tricky).is_err());
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hint_is_prefix_and_six_body_chars() {
        let key = sample();
        let h = hint("kg", &key);
        assert_eq!(h.len(), 3 + 6);
        assert_eq!(h, key[..9]);
    }

    #[test]
    fn key_ids() {
        let id = format_key_id(&[0xab; KEY_ID_BYTES]);
        assert_eq!(id, "key_abababababababab");
        assert!(is_key_id(&id));
        assert!(!is_key_id("key_ABABABABABABABAB"));
        assert!(!is_key_id("key_abab"));
        assert!(!is_key_id("kex_abababababababab"));
    }

    #[test]
    fn prefixes() {
        assert!(is_valid_prefix("kg"));
        assert!(is_valid_prefix("a1b2c3d4e5f6g7h8"));
        assert!(!is_valid_prefix(""));
        assert!(!is_valid_prefix("a1b2c3d4e5f6g7h8i"));
        assert!(!is_valid_prefix("KG"));
        assert!(!is_valid_prefix("k_g"));
    }
}
