//! GitHub secret scanning's partner alerts (docs/CONTRACT.md section 14): the public keys,
//! the signature check, the report body and the answer GitHub expects. Pure; the route is
//! `edge::leaks`.
//!
//! GitHub POSTs a JSON array `[{token, type, url, source}]`, signs the raw body with ECDSA
//! P-256 over SHA-256 (DER, base64) in `Github-Public-Key-Signature`, and names the key in
//! `Github-Public-Key-Identifier`; its keys are published as
//! `{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}`. The answer labels each
//! token `true_positive` or `false_positive`.

use base64ct::{Base64, Encoding};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
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

#[derive(Deserialize)]
struct KeyFile {
    public_keys: Vec<PublicKey>,
}

#[derive(Deserialize)]
struct PublicKey {
    key_identifier: String,
    key: String,
}

/// GitHub's public keys from `SECRET_SCANNING_KEYS`: those that parse (a key GitHub added in a
/// form this build cannot read is skipped, not fatal to the others). Unset or unreadable: none,
/// so every report is refused.
pub fn parse_keys(json: Option<&str>) -> Vec<(String, VerifyingKey)> {
    let Some(file) = json.and_then(|j| serde_json::from_str::<KeyFile>(j).ok()) else {
        return Vec::new();
    };
    file.public_keys
        .into_iter()
        .filter_map(|k| {
            let key = VerifyingKey::from_public_key_pem(k.key.trim()).ok()?;
            Some((k.key_identifier, key))
        })
        .collect()
}

/// Whether `body` is signed by the key named `identifier`. Any missing or malformed part is
/// 401 `invalid_signature`, with nothing said about which.
pub fn verify(
    keys: &[(String, VerifyingKey)],
    identifier: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), Error> {
    let (identifier, signature) = identifier.zip(signature).ok_or(Error::InvalidSignature)?;
    let key = keys
        .iter()
        .find(|(id, _)| id == identifier)
        .map(|(_, k)| k)
        .ok_or(Error::InvalidSignature)?;
    let signature = signature.trim();
    if signature.len() > MAX_SIGNATURE_B64 {
        return Err(Error::InvalidSignature);
    }
    let der = Base64::decode_vec(signature).map_err(|_| Error::InvalidSignature)?;
    let sig = Signature::from_der(&der).map_err(|_| Error::InvalidSignature)?;
    key.verify(body, &sig).map_err(|_| Error::InvalidSignature)
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
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

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
        let many = format!("[{}]", vec![r#"{"token":"t"}"#; MAX_TOKENS + 1].join(","));
        assert!(matches!(
            parse_report(many.as_bytes()),
            Err(Error::Validation(_))
        ));
        assert!(parse_report(b"{}").is_err());
    }
}
