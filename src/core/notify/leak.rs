//! GitHub secret scanning's partner alerts (docs/CONTRACT.md section 14): the public keys,
//! the signature check, the report body and the answer GitHub expects. Pure; the route is
//! `edge::leaks`.
//!
//! GitHub POSTs a JSON array `[{token, type, url, source}]`, signs the raw body with ECDSA
//! P-256 over SHA-256 (DER, base64) in `Github-Public-Key-Signature`, and names the key in
//! `Github-Public-Key-Identifier`; its keys are published as
//! `{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}`. The answer labels each
//! token `true_positive` or `false_positive`.
//!
//! The signature itself is checked by the runtime's WebCrypto (`edge/leak.rs`): this file reads
//! the key (PEM to SubjectPublicKeyInfo) and the signature (DER to the `r || s` WebCrypto takes),
//! strictly, so the Worker carries no elliptic-curve code of its own.

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};

use crate::core::error::Error;

/// Largest report accepted: GitHub batches matches, each well under 1 KiB.
pub const MAX_REPORT_BYTES: u64 = 256 * 1024;
/// Most tokens per report: each costs a KV read, and a revocation up to five more subrequests,
/// so 100 stay well inside a Worker's subrequest budget. GitHub retries a report that fails.
pub const MAX_TOKENS: usize = 100;
/// A DER ECDSA P-256 signature is at most 72 bytes; its base64 at most 96 characters.
const MAX_SIGNATURE_B64: usize = 128;

pub const LABEL_TRUE: &str = "true_positive";
pub const LABEL_FALSE: &str = "false_positive";

/// The DER of a P-256 public key's SubjectPublicKeyInfo up to its point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (no unused bits) of 66 bytes }, then the
/// uncompressed point (`04 || x || y`), as GitHub publishes its keys.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The prefix, the uncompressed point's tag and its two 32-byte coordinates.
const P256_SPKI_LEN: usize = P256_SPKI_PREFIX.len() + 1 + 64;
/// A P-256 scalar (each of a signature's `r` and `s`).
const SCALAR_BYTES: usize = 32;
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

#[derive(Deserialize)]
struct KeyFile {
    public_keys: Vec<ListedKey>,
}

#[derive(Deserialize)]
struct ListedKey {
    key_identifier: String,
    key: String,
}

/// GitHub's public keys from `SECRET_SCANNING_KEYS`, as (identifier, SubjectPublicKeyInfo DER):
/// those that read as P-256 keys (a key GitHub added in a form this build cannot read is
/// skipped, not fatal to the others). Unset or unreadable: none, so every report is refused.
pub fn parse_keys(json: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let Some(file) = json.and_then(|j| serde_json::from_str::<KeyFile>(j).ok()) else {
        return Vec::new();
    };
    file.public_keys
        .into_iter()
        .filter_map(|k| Some((k.key_identifier, p256_spki_of_pem(&k.key)?)))
        .collect()
}

/// The DER of a PEM `PUBLIC KEY` that holds an uncompressed P-256 point; whether the point is
/// on the curve is WebCrypto's import's check.
fn p256_spki_of_pem(pem: &str) -> Option<Vec<u8>> {
    let body = pem.trim().strip_prefix(PEM_BEGIN)?.strip_suffix(PEM_END)?;
    let base64: String = body.split_ascii_whitespace().collect();
    let der = Base64::decode_vec(&base64).ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (der.len() == P256_SPKI_LEN && point[0] == 0x04).then_some(der)
}

/// What the glue hands WebCrypto to verify a report: the named key and the signature as
/// `r || s`.
#[derive(Debug, PartialEq, Eq)]
pub struct Check<'a> {
    pub spki: &'a [u8],
    pub signature: [u8; 2 * SCALAR_BYTES],
}

/// The key named `identifier` and the signature, read. Any missing or malformed part is 401
/// `invalid_signature`, with nothing said about which; so is a signature WebCrypto then finds
/// false.
pub fn check<'a>(
    keys: &'a [(String, Vec<u8>)],
    identifier: Option<&str>,
    signature: Option<&str>,
) -> Result<Check<'a>, Error> {
    let (identifier, signature) = identifier.zip(signature).ok_or(Error::InvalidSignature)?;
    let spki = keys
        .iter()
        .find(|(id, _)| id == identifier)
        .map(|(_, k)| k.as_slice())
        .ok_or(Error::InvalidSignature)?;
    let signature = signature.trim();
    if signature.len() > MAX_SIGNATURE_B64 {
        return Err(Error::InvalidSignature);
    }
    let der = Base64::decode_vec(signature).map_err(|_| Error::InvalidSignature)?;
    let signature = raw_of_der(&der).ok_or(Error::InvalidSignature)?;
    Ok(Check { spki, signature })
}

/// An ECDSA P-256 signature in DER (SEQUENCE { INTEGER r, INTEGER s }) as the `r || s` WebCrypto
/// verifies. Strict DER: short lengths, positive minimal integers of at most 32 bytes of value,
/// nothing left over; anything else is `None`.
fn raw_of_der(der: &[u8]) -> Option<[u8; 2 * SCALAR_BYTES]> {
    let [0x30, len, rest @ ..] = der else {
        return None;
    };
    if usize::from(*len) != rest.len() || *len >= 0x80 {
        return None;
    }
    let (r, rest) = der_integer(rest)?;
    let (s, rest) = der_integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut raw = [0u8; 2 * SCALAR_BYTES];
    raw[SCALAR_BYTES - r.len()..SCALAR_BYTES].copy_from_slice(r);
    raw[2 * SCALAR_BYTES - s.len()..].copy_from_slice(s);
    Some(raw)
}

/// One DER INTEGER at the start of `der`: its value's bytes without the sign byte (at most
/// [`SCALAR_BYTES`]), and what follows it.
fn der_integer(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let [0x02, len, rest @ ..] = der else {
        return None;
    };
    let len = usize::from(*len);
    if len == 0 || len > SCALAR_BYTES + 1 || rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    let negative = value[0] & 0x80 != 0;
    // A leading zero only where the next byte's high bit would otherwise read as a sign.
    let padded = len > 1 && value[0] == 0 && value[1] & 0x80 == 0;
    if negative || padded {
        return None;
    }
    let value = if value[0] == 0 && len > 1 {
        &value[1..]
    } else {
        value
    };
    (value.len() <= SCALAR_BYTES).then_some((value, rest))
}

/// One reported match.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Reported {
    pub token: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub source: String,
}

/// The report, once its signature holds. At most [`MAX_TOKENS`] tokens.
pub fn parse_report(body: &[u8]) -> Result<Vec<Reported>, Error> {
    let report: Vec<Reported> = serde_json::from_slice(body)
        .map_err(|_| Error::field("body", "must be a JSON array of {token, type, url, source}"))?;
    if report.len() > MAX_TOKENS {
        return Err(Error::field(
            "body",
            format!("holds more than {MAX_TOKENS} tokens; send them in several reports"),
        ));
    }
    Ok(report)
}

/// The answer for one token, as GitHub's partner program expects it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Label<'a> {
    pub token_raw: &'a str,
    pub token_type: &'a str,
    pub label: &'static str,
}

impl<'a> Label<'a> {
    pub fn of(reported: &'a Reported, found: bool) -> Self {
        Label {
            token_raw: &reported.token,
            token_type: &reported.kind,
            label: if found { LABEL_TRUE } else { LABEL_FALSE },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
    use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};

    /// What the glue does with a [`Check`], done here by the reference implementation: the
    /// key read and the signature converted must verify exactly what the DER form does.
    fn verify(
        keys: &[(String, Vec<u8>)],
        identifier: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Error> {
        let c = check(keys, identifier, signature)?;
        let key = VerifyingKey::from_public_key_der(c.spki).unwrap();
        let sig = Signature::from_slice(&c.signature).map_err(|_| Error::InvalidSignature)?;
        key.verify(body, &sig).map_err(|_| Error::InvalidSignature)
    }

    fn key_pair(seed: u8) -> (SigningKey, String) {
        let signing = SigningKey::from_slice(&[seed; 32]).unwrap();
        let pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (signing, pem)
    }

    fn keys_json(entries: &[(&str, &str)]) -> String {
        let list: Vec<_> = entries
            .iter()
            .map(|(id, pem)| serde_json::json!({"key_identifier": id, "key": pem, "is_current": true}))
            .collect();
        serde_json::json!({ "public_keys": list }).to_string()
    }

    fn sign(key: &SigningKey, body: &[u8]) -> String {
        let sig: Signature = key.sign(body);
        Base64::encode_string(sig.to_der().as_bytes())
    }

    #[test]
    fn a_report_signed_by_a_listed_key_verifies() {
        let (k1, pem1) = key_pair(1);
        let (_, pem2) = key_pair(2);
        let keys = parse_keys(Some(&keys_json(&[("old", &pem2), ("cur", &pem1)])));
        assert_eq!(keys.len(), 2);
        let body = br#"[{"token":"kg_x","type":"keygate","url":"https://github.com/a/b","source":"content"}]"#;
        assert_eq!(
            verify(&keys, Some("cur"), Some(&sign(&k1, body)), body),
            Ok(())
        );
    }

    #[test]
    fn tampering_and_unknown_keys_are_refused() {
        let (k1, pem1) = key_pair(1);
        let (k2, _) = key_pair(2);
        let keys = parse_keys(Some(&keys_json(&[("cur", &pem1)])));
        let body = br#"[{"token":"a"}]"#;
        let good = sign(&k1, body);
        let refused = Err(Error::InvalidSignature);
        assert_eq!(
            verify(&keys, Some("cur"), Some(&good), br#"[{"token":"b"}]"#),
            refused
        );
        assert_eq!(verify(&keys, Some("other"), Some(&good), body), refused);
        assert_eq!(
            verify(&keys, Some("cur"), Some(&sign(&k2, body)), body),
            refused
        );
        assert_eq!(verify(&keys, None, Some(&good), body), refused);
        assert_eq!(verify(&keys, Some("cur"), None, body), refused);
        assert_eq!(
            verify(&keys, Some("cur"), Some("not base64!"), body),
            refused
        );
        assert_eq!(
            verify(&keys, Some("cur"), Some(&"A".repeat(200)), body),
            refused
        );
        assert_eq!(verify(&[], Some("cur"), Some(&good), body), refused);
    }

    /// DER of SEQUENCE { INTEGER r, INTEGER s } from the integers' encoded bytes.
    fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut out = vec![0x30, (4 + r.len() + s.len()) as u8, 0x02, r.len() as u8];
        out.extend_from_slice(r);
        out.extend_from_slice(&[0x02, s.len() as u8]);
        out.extend_from_slice(s);
        out
    }

    #[test]
    fn signatures_are_strict_der_of_two_scalars() {
        // Short values are padded on the left; a sign byte before a high bit is dropped.
        let mut high = vec![0u8];
        high.extend_from_slice(&[0x80; 32]);
        let raw = raw_of_der(&der(&[0x01], &high)).unwrap();
        assert_eq!(raw[..31], [0u8; 31]);
        assert_eq!(raw[31], 0x01);
        assert_eq!(raw[32..], [0x80; 32]);
        let full = raw_of_der(&der(&[0x7f; 32], &[0x7f; 32])).unwrap();
        assert_eq!(full, [0x7f; 64]);
        // Refused: negative, a needless leading zero, over 32 bytes of value, empty, trailing
        // bytes, a wrong outer length or tag, a long-form length.
        assert_eq!(raw_of_der(&der(&[0x80], &[1])), None);
        assert_eq!(raw_of_der(&der(&[0x00, 0x01], &[1])), None);
        assert_eq!(raw_of_der(&der(&[0x01; 33], &[1])), None);
        assert_eq!(raw_of_der(&der(&[], &[1])), None);
        let mut trailing = der(&[1], &[1]);
        trailing[1] += 1;
        trailing.push(0);
        assert_eq!(raw_of_der(&trailing), None);
        let mut short = der(&[1], &[1]);
        short[1] -= 1;
        assert_eq!(raw_of_der(&short), None);
        let mut tag = der(&[1], &[1]);
        tag[0] = 0x31;
        assert_eq!(raw_of_der(&tag), None);
        assert_eq!(raw_of_der(&[0x30, 0x81, 0x06, 2, 1, 1, 2, 1, 1]), None);
        assert_eq!(raw_of_der(&[0x30, 0x06, 2, 1, 1, 3, 1, 1]), None);
        assert_eq!(raw_of_der(&[0x30, 0x03, 2, 1, 1]), None);
        // An integer longer than what is left; the integer zero (one byte, no sign byte).
        assert_eq!(raw_of_der(&[0x30, 0x04, 0x02, 0x05, 0x01, 0x02]), None);
        let zero = raw_of_der(&der(&[0x00], &[0x01])).unwrap();
        assert_eq!(zero[..32], [0u8; 32]);
        assert_eq!(zero[63], 1);
        assert_eq!(raw_of_der(&[]), None);
    }

    #[test]
    fn keys_are_p256_points_in_pem() {
        let (_, pem) = key_pair(3);
        let der = p256_spki_of_pem(&pem).unwrap();
        assert_eq!(der.len(), P256_SPKI_LEN);
        assert_eq!(der[..26], P256_SPKI_PREFIX);
        // CRLF lines and surrounding space read the same.
        assert_eq!(
            p256_spki_of_pem(&format!("  {}\n", pem.replace('\n', "\r\n"))),
            Some(der.clone())
        );
        // Another label, a compressed point, a truncated body: not a key.
        assert_eq!(
            p256_spki_of_pem(&pem.replace("PUBLIC KEY", "PRIVATE KEY")),
            None
        );
        let mut compressed = der.clone();
        compressed[26] = 0x02;
        let pem_of = |d: &[u8]| format!("{PEM_BEGIN}\n{}\n{PEM_END}", Base64::encode_string(d));
        assert_eq!(p256_spki_of_pem(&pem_of(&compressed)), None);
        assert_eq!(p256_spki_of_pem(&pem_of(&der[..90])), None);
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(p256_spki_of_pem(&pem_of(&longer)), None);
        assert_eq!(p256_spki_of_pem(&pem_of(&der)), Some(der));
    }

    #[test]
    fn unreadable_key_files_give_no_keys() {
        assert!(parse_keys(None).is_empty());
        assert!(parse_keys(Some("")).is_empty());
        assert!(parse_keys(Some(
            r#"{"public_keys":[{"key_identifier":"x","key":"junk"}]}"#
        ))
        .is_empty());
    }

    #[test]
    fn reports_are_bounded_and_labelled() {
        let r = parse_report(br#"[{"token":"t","type":"keygate","url":"u","source":"content"}]"#)
            .unwrap();
        assert_eq!(r[0].kind, "keygate");
        let label = serde_json::to_value(Label::of(&r[0], true)).unwrap();
        assert_eq!(
            label,
            serde_json::json!({"token_raw": "t", "token_type": "keygate", "label": "true_positive"})
        );
        assert_eq!(Label::of(&r[0], false).label, LABEL_FALSE);
        assert_eq!(MAX_REPORT_BYTES, 262_144, "256 KiB");
        let most = format!("[{}]", vec![r#"{"token":"t"}"#; MAX_TOKENS].join(","));
        assert_eq!(parse_report(most.as_bytes()).unwrap().len(), MAX_TOKENS);
        let many = format!("[{}]", vec![r#"{"token":"t"}"#; MAX_TOKENS + 1].join(","));
        assert!(matches!(
            parse_report(many.as_bytes()),
            Err(Error::Validation(_))
        ));
        assert!(parse_report(b"{}").is_err());
    }
}
