//! Keys the platform issued before keygate (docs/CONTRACT.md section 15): the shape of
//! djangorestframework-api-key's `<prefix>.<secret>`, the hashes it and Django store, and how a
//! presented key is checked against them. Pure: PBKDF2's derived bytes come in from the glue
//! (WebCrypto or this module's wasm PBKDF2, chosen by [`pbkdf2_engine`]).

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

pub use crate::core::config::DRF_API_KEY;
/// Length bounds of a legacy key's prefix and secret (the package: 8 and 32), `[A-Za-z0-9]`.
pub const PREFIX_LEN: std::ops::RangeInclusive<usize> = 4..=16;
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=128;
/// Django 5.2 uses 1,000,000; more than this is refused at import (a verification's CPU).
pub const MAX_PBKDF2_ITERATIONS: u32 = 1_500_000;
/// Cloudflare's WebCrypto refuses PBKDF2 above this count in production (local workerd does not):
/// counts above it are computed in wasm.
pub const WEBCRYPTO_MAX_ITERATIONS: u32 = 100_000;
/// Django's PBKDF2 hasher derives 32 bytes (SHA-256's size).
const PBKDF2_LEN: usize = 32;
/// Where an imported key's record lives in KV: `key:drf.<prefix>` (a native key's hash is hex,
/// so the two never meet).
const HANDLE_PREFIX: &str = "drf.";

/// A stored hash, as the platform's database holds it (`hashed_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredHash {
    /// `sha512$$<hex>`: SHA-512 of the whole key (the package's 3.x hasher).
    Sha512([u8; 64]),
    /// `plain_sha512$$<hex>`: SHA-512 of the key followed by its prefix.
    PlainSha512([u8; 64]),
    /// `plain_sha256$$<hex>`: SHA-256 of the key followed by its prefix.
    PlainSha256([u8; 32]),
    /// `pbkdf2_sha256$<iterations>$<salt>$<base64>`: Django's default hasher (the package's 2.x).
    Pbkdf2 {
        iterations: u32,
        salt: String,
        derived: [u8; PBKDF2_LEN],
    },
}

/// Why a `hashed_key` cannot be imported: the `code` of the row's error, and its sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashProblem {
    /// Another Django hasher (argon2, bcrypt, scrypt, md5, ...): not verifiable at the edge.
    UnsupportedHasher,
    /// PBKDF2 with more than [`MAX_PBKDF2_ITERATIONS`].
    TooManyIterations,
    /// A known scheme, badly written (wrong length, not hex, bad base64).
    MalformedHash,
}

impl HashProblem {
    pub fn code(self) -> &'static str {
        match self {
            HashProblem::UnsupportedHasher => "unsupported_hasher",
            HashProblem::TooManyIterations => "too_many_iterations",
            HashProblem::MalformedHash => "malformed_hash",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            HashProblem::UnsupportedHasher => {
                "hashed_key must be sha512$$, plain_sha512$$, plain_sha256$$ or pbkdf2_sha256$"
            }
            HashProblem::TooManyIterations => {
                "PBKDF2 with more than 1500000 iterations is not accepted"
            }
            HashProblem::MalformedHash => "hashed_key is not a well-formed hash of its scheme",
        }
    }
}

fn hex_array<const N: usize>(s: &str) -> Result<[u8; N], HashProblem> {
    let mut out = [0u8; N];
    // Lowercase only, as Python's hexdigest writes it: one spelling per hash.
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(HashProblem::MalformedHash);
    }
    hex::decode_to_slice(s, &mut out).map_err(|_| HashProblem::MalformedHash)?;
    Ok(out)
}

impl StoredHash {
    pub fn parse(s: &str) -> Result<StoredHash, HashProblem> {
        if let Some(h) = s.strip_prefix("sha512$$") {
            return hex_array(h).map(StoredHash::Sha512);
        }
        if let Some(h) = s.strip_prefix("plain_sha512$$") {
            return hex_array(h).map(StoredHash::PlainSha512);
        }
        if let Some(h) = s.strip_prefix("plain_sha256$$") {
            return hex_array(h).map(StoredHash::PlainSha256);
        }
        if let Some(rest) = s.strip_prefix("pbkdf2_sha256$") {
            let mut parts = rest.split('$');
            let (Some(iterations), Some(salt), Some(b64), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(HashProblem::MalformedHash);
            };
            // Digits only (no sign, no spaces); leading zeros would give one hash two spellings.
            if iterations.is_empty()
                || iterations.len() > 10
                || iterations.starts_with('0')
                || !iterations.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(HashProblem::MalformedHash);
            }
            let iterations: u64 = iterations.parse().map_err(|_| HashProblem::MalformedHash)?;
            if iterations > u64::from(MAX_PBKDF2_ITERATIONS) {
                return Err(HashProblem::TooManyIterations);
            }
            // Django's salts are [A-Za-z0-9]; anything printable without `$` is accepted.
            if salt.is_empty() || salt.len() > 128 || !salt.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(HashProblem::MalformedHash);
            }
            let mut derived = [0u8; PBKDF2_LEN];
            match Base64::decode(b64, &mut derived) {
                Ok(d) if d.len() == PBKDF2_LEN => {}
                _ => return Err(HashProblem::MalformedHash),
            }
            return Ok(StoredHash::Pbkdf2 {
                iterations: iterations as u32,
                salt: salt.to_owned(),
                derived,
            });
        }
        Err(HashProblem::UnsupportedHasher)
    }
}

/// The package's shape: `<prefix>.<secret>`, both `[A-Za-z0-9]` within the bounds above. The
/// prefix is returned for the lookup; `None` for anything else (no storage read).
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let (prefix, secret) = key.split_once('.')?;
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    (PREFIX_LEN.contains(&prefix.len())
        && SECRET_LEN.contains(&secret.len())
        && alnum(prefix)
        && alnum(secret))
    .then_some((prefix, secret))
}

/// Whether `prefix` may name an imported key (the import checks rows with it).
pub fn is_prefix(prefix: &str) -> bool {
    PREFIX_LEN.contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The KV handle of the record of an imported key (what a native key's SHA-256 hex is for it).
pub fn handle(prefix: &str) -> String {
    format!("{HANDLE_PREFIX}{prefix}")
}

/// Whether a stored handle is an imported key's (not a native key's hash).
pub fn is_handle(handle: &str) -> bool {
    handle.starts_with(HANDLE_PREFIX)
}

/// What checking a presented key against a stored hash comes to, before any PBKDF2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Match,
    Mismatch,
    /// A PBKDF2 hash: derive with these (the glue), then [`pbkdf2_matches`] against `expected`.
    Pbkdf2 {
        iterations: u32,
        salt: String,
        expected: [u8; PBKDF2_LEN],
    },
}

fn verdict(ok: bool) -> Check {
    if ok {
        Check::Match
    } else {
        Check::Mismatch
    }
}

/// `key` against the record's stored hash.
pub fn check(stored: &StoredHash, key: &str, prefix: &str) -> Check {
    match stored {
        StoredHash::Sha512(h) => verdict(bool::from(Sha512::digest(key).as_slice().ct_eq(h))),
        StoredHash::PlainSha512(h) => verdict(bool::from(salted::<Sha512>(key, prefix).ct_eq(h))),
        StoredHash::PlainSha256(h) => verdict(bool::from(salted::<Sha256>(key, prefix).ct_eq(h))),
        StoredHash::Pbkdf2 {
            iterations,
            salt,
            derived,
        } => Check::Pbkdf2 {
            iterations: *iterations,
            salt: salt.clone(),
            expected: *derived,
        },
    }
}

/// `key` against the SHA-256 (hex) stored after its first successful PBKDF2 check: once there,
/// it alone decides and PBKDF2 never runs again.
pub fn check_upgraded(sha256: &str, key: &str) -> Check {
    let mine = hex::encode(Sha256::digest(key.as_bytes()));
    verdict(bool::from(mine.as_bytes().ct_eq(sha256.as_bytes())))
}

/// Whether a stored hash is PBKDF2 (the only scheme that is ever upgraded).
pub fn is_pbkdf2(hashed_key: &str) -> bool {
    hashed_key.starts_with("pbkdf2_sha256$")
}

/// [`check`] from the stored text: an upgraded key is decided by its SHA-256 alone, before (and
/// without) parsing the stored hash, so it costs what a native key costs.
pub fn check_stored(
    hashed_key: &str,
    upgraded: Option<&str>,
    key: &str,
    prefix: &str,
) -> Result<Check, HashProblem> {
    match upgraded {
        Some(sha256) => Ok(check_upgraded(sha256, key)),
        None => Ok(check(&StoredHash::parse(hashed_key)?, key, prefix)),
    }
}

/// The salted variants' digest: the key followed by its prefix.
fn salted<D: Digest>(key: &str, prefix: &str) -> Vec<u8> {
    D::new()
        .chain_update(key)
        .chain_update(prefix)
        .finalize()
        .to_vec()
}

/// The derived bytes of a presented key against the stored ones, in constant time.
pub fn pbkdf2_matches(expected: &[u8; PBKDF2_LEN], derived: &[u8]) -> bool {
    bool::from(expected.as_slice().ct_eq(derived))
}

/// The SHA-256 (hex) stored with a key once its PBKDF2 check has succeeded.
pub fn upgrade_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Which PBKDF2 computes a count: the runtime's WebCrypto (native speed) where production
/// accepts the count, this module's wasm PBKDF2 above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    WebCrypto,
    Wasm,
}

impl Engine {
    /// The log line's `key_check` of a PBKDF2 check by this engine.
    pub fn log_name(self) -> &'static str {
        match self {
            Engine::WebCrypto => "pbkdf2_webcrypto",
            Engine::Wasm => "pbkdf2_wasm",
        }
    }
}

pub fn pbkdf2_engine(iterations: u32) -> Engine {
    if iterations <= WEBCRYPTO_MAX_ITERATIONS {
        Engine::WebCrypto
    } else {
        Engine::Wasm
    }
}

/// PBKDF2-HMAC-SHA256 of the key with the salt, in Rust (RustCrypto's `pbkdf2`).
pub fn pbkdf2_sha256(key: &str, salt: &str, iterations: u32) -> [u8; PBKDF2_LEN] {
    let mut out = [0u8; PBKDF2_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(key.as_bytes(), salt.as_bytes(), iterations, &mut out);
    out
}

/// How long one PBKDF2 check may hold its key's slot (docs/CONTRACT.md section 15): far above
/// the check itself (about 0.6 s at 1,000,000 iterations in wasm), and the bound on how long a
/// check whose isolate died keeps others waiting.
pub const CHECK_HOLD_MS: u64 = 10_000;
/// After a check that failed (a wrong secret), the slot stays taken this long: wrong guesses
/// at a key not yet upgraded cost at most one check per this period, wherever they come from.
pub const FAILED_CHECK_PAUSE_MS: u64 = 2_000;

/// At most one PBKDF2 check of a key at a time, held by the key's object: concurrent tries are
/// told to come back (429) rather than each costing a second of CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckSlot {
    busy_until_ms: u64,
}

impl CheckSlot {
    /// Takes the slot, or says in how many seconds (at least 1) it frees at the latest.
    pub fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        if self.busy_until_ms > now_ms {
            return Err((self.busy_until_ms - now_ms).div_ceil(1000).max(1));
        }
        self.busy_until_ms = now_ms + CHECK_HOLD_MS;
        Ok(())
    }

    /// Frees the slot: at once after a check that succeeded, after [`FAILED_CHECK_PAUSE_MS`]
    /// after one that failed.
    pub fn release(&mut self, failed: bool, now_ms: u64) {
        self.busy_until_ms = if failed {
            now_ms + FAILED_CHECK_PAUSE_MS
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_iterations_and_salts_at_their_bounds() {
        let b64 = Base64::encode_string(&[7u8; 32]);
        let hash = |iterations: &str, salt: &str| {
            StoredHash::parse(&format!("pbkdf2_sha256${iterations}${salt}${b64}"))
        };
        assert!(hash("1000", "s").is_ok());
        for bad in ["", "01000", "+1000", "10000000000"] {
            assert_eq!(
                hash(bad, "s").err(),
                Some(HashProblem::MalformedHash),
                "{bad:?}"
            );
        }
        assert_eq!(
            hash("1500001", "s").err(),
            Some(HashProblem::TooManyIterations)
        );
        assert_eq!(
            hash("1000000000", "s").err(),
            Some(HashProblem::TooManyIterations),
            "ten digits are read, then bounded"
        );
        assert!(
            hash("1000", &"s".repeat(128)).is_ok(),
            "a salt of 128 characters"
        );
        for bad in [String::new(), "s".repeat(129), "a b".to_owned()] {
            assert_eq!(
                hash("1000", &bad).err(),
                Some(HashProblem::MalformedHash),
                "{bad:?}"
            );
        }
        assert!(is_pbkdf2(&format!("pbkdf2_sha256$1000$s${b64}")));
        assert!(!is_pbkdf2("sha512$$abc"));
    }

    #[test]
    fn problems_and_engines_have_their_names() {
        assert!(HashProblem::TooManyIterations.detail().contains("1500000"));
        assert!(HashProblem::MalformedHash.detail().contains("well-formed"));
        assert_eq!(Engine::WebCrypto.log_name(), "pbkdf2_webcrypto");
        assert_eq!(Engine::Wasm.log_name(), "pbkdf2_wasm");
    }

    // Made here, never real: a prefix and secret of the package's shape.
    const PREFIX: &str = "Ab12Cd34";
    const KEY: &str = "Ab12Cd34.q1w2e3r4t5y6u7i8o9p0AaSsDdFfGgHh";

    #[test]
    fn the_packages_shape_is_recognised_and_nothing_else() {
        assert_eq!(
            split_key(KEY),
            Some((PREFIX, "q1w2e3r4t5y6u7i8o9p0AaSsDdFfGgHh"))
        );
        for bad in [
            "",
            ".",
            "Ab1.q1w2e3r4t5y6u7i8o9p0",               // prefix too short
            "Ab12Cd34.short",                         // secret too short
            "Ab12Cd34.q1w2e3r4t5y6u7i8o9p0AaSsDd.Ff", // two dots
            "Ab12-d34.q1w2e3r4t5y6u7i8o9p0AaSsDdFf",  // not alphanumeric
            "Ab12Cd34.q1w2e3r4t5y6u7i8o9p0AaSsDdFé",  // not ASCII
            "Ab12Cd34Ab12Cd34X.q1w2e3r4t5y6u7i8o9p0", // prefix too long
        ] {
            assert_eq!(split_key(bad), None, "{bad}");
        }
        assert!(split_key(&format!("Ab12.{}", "a".repeat(128))).is_some());
        assert!(split_key(&format!("Ab12.{}", "a".repeat(129))).is_none());
    }

    #[test]
    fn each_scheme_parses_and_others_are_named() {
        let sha512 = format!("sha512$${}", hex::encode(Sha512::digest(KEY)));
        assert!(matches!(
            StoredHash::parse(&sha512),
            Ok(StoredHash::Sha512(_))
        ));
        let upper = sha512.to_uppercase().replace("SHA512$$", "sha512$$");
        assert_eq!(StoredHash::parse(&upper), Err(HashProblem::MalformedHash));
        assert_eq!(
            StoredHash::parse("sha512$$abcd"),
            Err(HashProblem::MalformedHash)
        );
        for other in [
            "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA",
            "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuu",
            "scrypt$16384$salt$8$1$aGFzaA==",
            "md5$salt$0123",
            "",
        ] {
            assert_eq!(
                StoredHash::parse(other),
                Err(HashProblem::UnsupportedHasher),
                "{other}"
            );
        }
        let b64 = Base64::encode_string(&[7u8; 32]);
        assert!(matches!(
            StoredHash::parse(&format!("pbkdf2_sha256$1000000$salt$${b64}")),
            Err(HashProblem::MalformedHash)
        ));
        assert!(matches!(
            StoredHash::parse(&format!("pbkdf2_sha256$1500000$salt${b64}")),
            Ok(StoredHash::Pbkdf2 {
                iterations: 1_500_000,
                ..
            })
        ));
        assert_eq!(
            StoredHash::parse(&format!("pbkdf2_sha256$1500001$salt${b64}")),
            Err(HashProblem::TooManyIterations)
        );
        for bad_count in ["0", "01000", "-5", "+5", "", "1e6"] {
            assert_eq!(
                StoredHash::parse(&format!("pbkdf2_sha256${bad_count}$salt${b64}")),
                Err(HashProblem::MalformedHash),
                "{bad_count}"
            );
        }
        let short = Base64::encode_string(&[7u8; 31]);
        assert_eq!(
            StoredHash::parse(&format!("pbkdf2_sha256$1000$salt${short}")),
            Err(HashProblem::MalformedHash)
        );
    }

    #[test]
    fn sha512_and_the_salted_variants_match_only_their_key() {
        let other = "Ab12Cd34.q1w2e3r4t5y6u7i8o9p0AaSsDdFfGgHj";
        let salted512 = Sha512::new()
            .chain_update(KEY)
            .chain_update(PREFIX)
            .finalize();
        let salted256 = Sha256::new()
            .chain_update(KEY)
            .chain_update(PREFIX)
            .finalize();
        for stored in [
            format!("sha512$${}", hex::encode(Sha512::digest(KEY))),
            format!("plain_sha512$${}", hex::encode(salted512)),
            format!("plain_sha256$${}", hex::encode(salted256)),
        ] {
            let h = StoredHash::parse(&stored).unwrap();
            assert_eq!(check(&h, KEY, PREFIX), Check::Match, "{stored}");
            assert_eq!(check(&h, other, PREFIX), Check::Mismatch, "{stored}");
        }
        // The salted variants hash key then prefix: the unsalted digest does not match them.
        let unsalted = format!("plain_sha512$${}", hex::encode(Sha512::digest(KEY)));
        let h = StoredHash::parse(&unsalted).unwrap();
        assert_eq!(check(&h, KEY, PREFIX), Check::Mismatch);
    }

    #[test]
    fn pbkdf2_is_rfc_correct_and_djangos_encoding_verifies() {
        // RFC 7914 section 11, PBKDF2-HMAC-SHA256 ("passwd", "salt", 1), first 32 bytes.
        assert_eq!(
            hex::encode(pbkdf2_sha256("passwd", "salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        let derived = pbkdf2_sha256(KEY, "s4lt", 1000);
        let stored = format!(
            "pbkdf2_sha256$1000$s4lt${}",
            Base64::encode_string(&derived)
        );
        let h = StoredHash::parse(&stored).unwrap();
        assert_eq!(
            check(&h, KEY, PREFIX),
            Check::Pbkdf2 {
                iterations: 1000,
                salt: "s4lt".into(),
                expected: derived,
            }
        );
        assert!(pbkdf2_matches(&derived, &pbkdf2_sha256(KEY, "s4lt", 1000)));
        assert!(!pbkdf2_matches(&derived, &pbkdf2_sha256(KEY, "s4lt", 999)));
        assert!(!pbkdf2_matches(
            &derived,
            &pbkdf2_sha256("Ab12Cd34.x", "s4lt", 1000)
        ));
    }

    #[test]
    fn an_upgraded_key_is_decided_by_its_sha256_and_never_by_pbkdf2() {
        let stored = format!(
            "pbkdf2_sha256$1000000$s4lt${}",
            Base64::encode_string(&[1u8; 32])
        );
        let up = upgrade_hash(KEY);
        assert_eq!(
            check_stored(&stored, Some(&up), KEY, PREFIX),
            Ok(Check::Match)
        );
        let other = "Ab12Cd34.q1w2e3r4t5y6u7i8o9p0AaSsDdFfGgHj";
        assert_eq!(
            check_stored(&stored, Some(&up), other, PREFIX),
            Ok(Check::Mismatch)
        );
        // Not yet upgraded, the same key would need its PBKDF2 check.
        assert!(matches!(
            check_stored(&stored, None, KEY, PREFIX),
            Ok(Check::Pbkdf2 { .. })
        ));
    }

    #[test]
    fn the_stored_text_is_not_even_parsed_once_upgraded() {
        let up = upgrade_hash(KEY);
        assert_eq!(
            check_stored("garbage", Some(&up), KEY, PREFIX),
            Ok(Check::Match)
        );
        assert_eq!(
            check_stored("garbage", None, KEY, PREFIX),
            Err(HashProblem::UnsupportedHasher)
        );
        let sha512 = format!("sha512$${}", hex::encode(Sha512::digest(KEY)));
        assert_eq!(check_stored(&sha512, None, KEY, PREFIX), Ok(Check::Match));
    }

    #[test]
    fn a_count_over_the_webcrypto_cap_never_goes_to_webcrypto() {
        assert_eq!(pbkdf2_engine(1), Engine::WebCrypto);
        assert_eq!(pbkdf2_engine(WEBCRYPTO_MAX_ITERATIONS), Engine::WebCrypto);
        assert_eq!(pbkdf2_engine(WEBCRYPTO_MAX_ITERATIONS + 1), Engine::Wasm);
        assert_eq!(pbkdf2_engine(1_000_000), Engine::Wasm);
        assert_eq!(pbkdf2_engine(MAX_PBKDF2_ITERATIONS), Engine::Wasm);
    }

    #[test]
    fn one_check_at_a_time_and_a_dead_check_frees_the_slot() {
        let mut slot = CheckSlot::default();
        assert_eq!(slot.take(1_000), Ok(()));
        assert_eq!(slot.take(1_001), Err(10));
        assert_eq!(slot.take(1_000 + CHECK_HOLD_MS - 1), Err(1));
        slot.release(false, 1_500);
        assert_eq!(slot.take(2_000), Ok(()));
        // A failed check keeps the slot a while: the next guess waits.
        slot.release(true, 2_100);
        assert_eq!(slot.take(2_100 + FAILED_CHECK_PAUSE_MS - 1), Err(1));
        assert_eq!(slot.take(2_100 + FAILED_CHECK_PAUSE_MS), Ok(()));
        slot.release(false, 5_000);
        assert_eq!(slot.take(5_000), Ok(()));
        // Never released (its isolate died): free once the hold is over.
        assert_eq!(slot.take(5_000 + CHECK_HOLD_MS), Ok(()));
    }

    #[test]
    fn handles_never_collide_with_native_hashes() {
        assert_eq!(handle(PREFIX), "drf.Ab12Cd34");
        assert!(is_handle(&handle(PREFIX)));
        assert!(!is_handle(&upgrade_hash(KEY)));
    }
}
