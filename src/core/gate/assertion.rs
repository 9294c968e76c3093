//! The signed assertion the gateway adds to every forwarded request (docs/CONTRACT.md section 16):
//! a compact JWS (ES256) whose claims say who is calling and which request it is for, verifiable
//! with any JWT library against the gateway's published key set. Pure: the glue signs the
//! [`signing_input`] with WebCrypto (ECDSA P-256, SHA-256: the raw `r || s` a JWS wants).

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The request header that carries the assertion.
pub const ASSERTION_HEADER: &str = "keygate-assertion";
/// The JWS header's `typ`.
pub const JWT_TYPE: &str = "keygate-assertion+jwt";
/// `exp` - `iat`: long enough for a slow origin, short enough that a copied assertion is soon
/// worthless.
pub const ASSERTION_TTL_SECS: i64 = 60;
/// `Cache-Control` of `/.well-known/jwks.json`.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";
/// The only algorithm.
const ALG: &str = "ES256";
/// Longest `kid` accepted.
const MAX_KID: usize = 64;
/// Keys in `ASSERTION_PUBLIC_KEYS` (the next and the previous key, with room to spare).
const MAX_PUBLIC_KEYS: usize = 4;

/// A public P-256 key as a JWK, with its `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: String,
    x: String,
    y: String,
}

impl PublicJwk {
    /// The JWK as published: public members only.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "alg": ALG, "use": "sig",
        })
    }
}

/// The signing key: its public half, and the private JWK as WebCrypto imports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningJwk {
    pub public: PublicJwk,
    /// `{"kty","crv","x","y","d"}` only (WebCrypto refuses some members, e.g. `key_ops` that
    /// do not fit the usage asked for).
    pub private_json: String,
}

fn member<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    m.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the JWK has no string \"{name}\""))
}

fn coordinate(m: &Map<String, Value>, name: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    match Base64UrlUnpadded::decode(member(m, name)?, &mut out) {
        Ok(b) if b.len() == 32 => Ok(out),
        _ => Err(format!(
            "the JWK's \"{name}\" is not 32 bytes of unpadded base64url"
        )),
    }
}

/// The public part of an EC P-256 JWK object, checked: `kty`, `crv`, `kid`, `alg` (if present),
/// and 32-byte coordinates. Whether the point is on the curve is WebCrypto's check, when the glue
/// imports the key (`edge/assertion.rs`): the runtime has the curve's arithmetic already, and
/// the Worker's upload stays smaller without a copy of it.
fn public_of(m: &Map<String, Value>) -> Result<PublicJwk, String> {
    if member(m, "kty")? != "EC" || member(m, "crv")? != "P-256" {
        return Err("the JWK must be kty EC, crv P-256".into());
    }
    if let Some(alg) = m.get("alg") {
        if alg != ALG {
            return Err("the JWK's alg, when present, must be ES256".into());
        }
    }
    let kid = member(m, "kid")?;
    if kid.is_empty() || kid.len() > MAX_KID || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the JWK's kid must be 1-{MAX_KID} printable characters"
        ));
    }
    let (x, y) = (coordinate(m, "x")?, coordinate(m, "y")?);
    Ok(PublicJwk {
        kid: kid.to_owned(),
        x: Base64UrlUnpadded::encode_string(&x),
        y: Base64UrlUnpadded::encode_string(&y),
    })
}

/// `ASSERTION_SIGNING_KEY`: a private EC P-256 JWK, its members checked. Whether `d` belongs to
/// `x`, `y` (and the point is on the curve) is checked by WebCrypto's import of
/// [`SigningJwk::private_json`], once per isolate, before anything is signed.
pub fn parse_signing_key(s: &str) -> Result<SigningJwk, String> {
    let v: Value = serde_json::from_str(s).map_err(|_| "ASSERTION_SIGNING_KEY is not JSON")?;
    let m = v
        .as_object()
        .ok_or("ASSERTION_SIGNING_KEY is not a JWK object")?;
    let public = public_of(m).map_err(|e| format!("ASSERTION_SIGNING_KEY: {e}"))?;
    let d = coordinate(m, "d").map_err(|e| format!("ASSERTION_SIGNING_KEY: {e}"))?;
    let private_json = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": public.x, "y": public.y,
        "d": Base64UrlUnpadded::encode_string(&d),
    })
    .to_string();
    Ok(SigningJwk {
        public,
        private_json,
    })
}

/// `ASSERTION_PUBLIC_KEYS`: a JWK set of public P-256 keys (the next or the previous signing
/// key); empty: none. A private member (`d`) anywhere is refused: it would be published.
pub fn parse_public_keys(s: &str) -> Result<Vec<PublicJwk>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value =
        serde_json::from_str(s).map_err(|_| "ASSERTION_PUBLIC_KEYS is not JSON".to_owned())?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("ASSERTION_PUBLIC_KEYS must be a JWK set: {\"keys\": [...]}")?;
    if keys.len() > MAX_PUBLIC_KEYS {
        return Err(format!(
            "ASSERTION_PUBLIC_KEYS holds more than {MAX_PUBLIC_KEYS} keys"
        ));
    }
    keys.iter()
        .map(|k| {
            let m = k
                .as_object()
                .ok_or("ASSERTION_PUBLIC_KEYS: a key is not an object")?;
            if m.contains_key("d") {
                return Err(
                    "ASSERTION_PUBLIC_KEYS holds a private key (d): never publish one".into(),
                );
            }
            public_of(m).map_err(|e| format!("ASSERTION_PUBLIC_KEYS: {e}"))
        })
        .collect()
}

/// The published key set: the signing key's public half first, then the others (a `kid` once).
/// Two different keys under one `kid` are a configuration error: a verifier would pick either.
pub fn jwks(signing: Option<&PublicJwk>, others: &[PublicJwk]) -> Result<String, String> {
    let mut keys: Vec<Value> = Vec::new();
    let mut seen: Vec<&PublicJwk> = Vec::new();
    for k in signing.into_iter().chain(others) {
        match seen.iter().find(|s| s.kid == k.kid) {
            Some(s) if *s != k => {
                return Err(format!("two different keys share the kid \"{}\"", k.kid));
            }
            Some(_) => {}
            None => {
                seen.push(k);
                keys.push(k.to_json());
            }
        }
    }
    Ok(serde_json::json!({ "keys": keys }).to_string())
}

/// What the assertion says (docs/CONTRACT.md section 16), in that order.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    pub key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws: Option<&'a str>,
    pub workspaces: &'a [String],
    pub permissions: &'a [String],
    pub htm: &'a str,
    pub htu: &'a str,
    pub jti: &'a str,
    pub request_id: &'a str,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// `base64url(header) "." base64url(claims)`: what is signed.
pub fn signing_input(kid: &str, claims: &Claims) -> String {
    let header = serde_json::json!({ "alg": ALG, "kid": kid, "typ": JWT_TYPE }).to_string();
    let claims = serde_json::to_string(claims).unwrap_or_default();
    format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(header.as_bytes()),
        Base64UrlUnpadded::encode_string(claims.as_bytes())
    )
}

/// The compact JWS: the signing input and the raw 64-byte `r || s` signature.
pub fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!(
        "{signing_input}.{}",
        Base64UrlUnpadded::encode_string(signature)
    )
}

/// `scheme://authority` of an absolute URL (the origin a request was addressed to: the
/// assertion's `iss` when `PUBLIC_URL` is empty); the URL itself if it has no path.
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find(['/', '?', '#']) {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// `body_sha256`: unpadded base64url of the SHA-256 of the body the origin receives, given as
/// the chunks it is held in.
pub fn body_sha256<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c);
    }
    Base64UrlUnpadded::encode_string(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

    /// A key made here from a fixed scalar (test only, never a real key).
    fn key(seed: u8, kid: &str) -> (SigningKey, String) {
        let mut d = [seed; 32];
        d[0] = 1;
        let sk = SigningKey::from_slice(&d).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "key_ops": ["sign"],
            "x": Base64UrlUnpadded::encode_string(point.x().unwrap()),
            "y": Base64UrlUnpadded::encode_string(point.y().unwrap()),
            "d": Base64UrlUnpadded::encode_string(&d),
        });
        (sk, jwk.to_string())
    }

    fn claims<'a>(ws: &'a [String]) -> Claims<'a> {
        Claims {
            iss: "https://keygate.example.com",
            aud: "https://api.example.com",
            sub: "alice",
            email: Some("alice@example.com"),
            key: "key_0123456789abcdef",
            ws: Some("ws1"),
            workspaces: ws,
            permissions: ws,
            htm: "POST",
            htu: "https://api.example.com/developers/workspaces/ws1/jobs/x/run/",
            jti: "0123456789abcdef0123456789abcdef",
            request_id: "req-1",
            iat: 1_800_000_000,
            exp: 1_800_000_000 + ASSERTION_TTL_SECS,
            body_sha256: Some(body_sha256([b"{".as_slice(), b"}"])),
        }
    }

    #[test]
    fn a_signing_jwk_at_its_bounds() {
        let (_, ok) = key(3, &"k".repeat(MAX_KID));
        assert!(
            parse_signing_key(&ok).is_ok(),
            "a kid of {MAX_KID} characters"
        );
        let (_, long) = key(3, &"k".repeat(MAX_KID + 1));
        assert!(parse_signing_key(&long).is_err());
        // (x of another key, y of this one: WebCrypto's import refuses it, end to end.)
        let (_, a) = key(3, "a");
        // A coordinate of 31 bytes.
        let mut short: Value = serde_json::from_str(&a).unwrap();
        short["y"] = Value::from(Base64UrlUnpadded::encode_string(&[7u8; 31]));
        assert!(parse_signing_key(&short.to_string()).is_err());
    }

    #[test]
    fn at_most_four_public_keys() {
        let public = |seed: u8| {
            let (_, jwk) = key(seed, &format!("p{seed}"));
            let mut v: Value = serde_json::from_str(&jwk).unwrap();
            v.as_object_mut().unwrap().remove("d");
            v["key_ops"] = serde_json::json!(["verify"]);
            v
        };
        let set = |n: u8| {
            serde_json::json!({"keys": (1..=n).map(public).collect::<Vec<_>>()}).to_string()
        };
        assert_eq!(
            parse_public_keys(&set(MAX_PUBLIC_KEYS as u8))
                .unwrap()
                .len(),
            MAX_PUBLIC_KEYS
        );
        assert!(parse_public_keys(&set(MAX_PUBLIC_KEYS as u8 + 1)).is_err());
    }

    #[test]
    fn the_addressed_origin_is_scheme_and_authority() {
        assert_eq!(
            origin_of("https://k.example.com/developers/x?y=1"),
            "https://k.example.com"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8787/v1/me"),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8787?x"),
            "http://127.0.0.1:8787"
        );
        assert_eq!(origin_of("http://h"), "http://h");
    }

    #[test]
    fn a_signing_jwk_is_checked_and_its_private_half_never_published() {
        let (_, jwk) = key(7, "k1");
        let parsed = parse_signing_key(&jwk).unwrap();
        assert_eq!(parsed.public.kid, "k1");
        let published = jwks(Some(&parsed.public), &[]).unwrap();
        assert!(!published.contains("\"d\""), "{published}");
        assert!(published.contains("\"kid\":\"k1\""));
        // WebCrypto gets the key members only.
        let private: Value = serde_json::from_str(&parsed.private_json).unwrap();
        assert_eq!(private.as_object().unwrap().len(), 5);
        assert_eq!(
            private["d"],
            serde_json::from_str::<Value>(&jwk).unwrap()["d"]
        );
        // A wrong alg or curve, a missing kid, short coordinates, garbage: refused, named.
        // (Another key's d, or a point off the curve: refused by WebCrypto's import, tested
        // end to end in tests/e2e/assertion.test.mjs.)
        for (field, value) in [
            ("alg", "RS256"),
            ("crv", "P-384"),
            ("kty", "RSA"),
            ("kid", ""),
        ] {
            let mut v: Value = serde_json::from_str(&jwk).unwrap();
            v[field] = Value::from(value);
            assert!(parse_signing_key(&v.to_string()).is_err(), "{field}");
        }
        let mut short: Value = serde_json::from_str(&jwk).unwrap();
        short["y"] = Value::from(Base64UrlUnpadded::encode_string(&[1u8; 31]));
        assert!(parse_signing_key(&short.to_string())
            .unwrap_err()
            .contains("\"y\" is not 32 bytes"));
        assert!(parse_signing_key("not json").is_err());
    }

    #[test]
    fn public_keys_are_a_jwk_set_without_private_members() {
        let (_, jwk) = key(7, "next");
        let mut public: Value = serde_json::from_str(&jwk).unwrap();
        assert!(parse_public_keys(&format!("{{\"keys\":[{public}]}}"))
            .unwrap_err()
            .contains("private"));
        public.as_object_mut().unwrap().remove("d");
        let keys = parse_public_keys(&format!("{{\"keys\":[{public}]}}")).unwrap();
        assert_eq!(keys[0].kid, "next");
        assert_eq!(parse_public_keys("").unwrap(), vec![]);
        assert!(parse_public_keys("[]").is_err());
        let (_, current) = key(8, "current");
        let current = parse_signing_key(&current).unwrap().public;
        let set: Value = serde_json::from_str(&jwks(Some(&current), &keys).unwrap()).unwrap();
        let kids: Vec<_> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert_eq!(kids, vec!["current", "next"]);
        // The same key twice is published once; two keys under one kid are refused.
        let twice = jwks(Some(&current), std::slice::from_ref(&current)).unwrap();
        assert_eq!(twice.matches("\"kid\"").count(), 1);
        let mut clash = keys[0].clone();
        clash.kid = "current".into();
        assert!(jwks(Some(&current), &[clash]).unwrap_err().contains("kid"));
    }

    #[test]
    fn the_compact_jws_verifies_with_the_published_key_and_carries_every_claim() {
        let (sk, jwk) = key(7, "k1");
        let parsed = parse_signing_key(&jwk).unwrap();
        let ws = vec!["ws1".to_owned()];
        let input = signing_input(&parsed.public.kid, &claims(&ws));
        let sig: Signature = sk.sign(input.as_bytes());
        let token = compact(&input, &sig.to_bytes());
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "kid": "k1", "typ": JWT_TYPE})
        );
        let body: Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(parts[1]).unwrap()).unwrap();
        for claim in [
            "iss",
            "aud",
            "sub",
            "email",
            "key",
            "ws",
            "workspaces",
            "permissions",
            "htm",
            "htu",
            "jti",
            "request_id",
            "iat",
            "exp",
            "body_sha256",
        ] {
            assert!(body.get(claim).is_some(), "{claim}");
        }
        assert_eq!(
            body["exp"].as_i64().unwrap() - body["iat"].as_i64().unwrap(),
            60
        );
        // body_sha256 of "{}" (RFC 4648 base64url, no padding).
        assert_eq!(
            body["body_sha256"],
            "RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o"
        );
        let vk = VerifyingKey::from(&sk);
        let raw = Base64UrlUnpadded::decode_vec(parts[2]).unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        assert!(vk
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .is_ok());
    }
}
