//! The signed assertion (docs/CONTRACT.md section 16): the signing key imported into WebCrypto
//! once per isolate, each forwarded request's `Keygate-Assertion` signed with it, and
//! `GET /.well-known/jwks.json`. What is signed and published is [`crate::core::assertion`]'s.

use std::cell::RefCell;
use std::rc::Rc;

use worker::js_sys::{Array, Uint8Array};
use worker::wasm_bindgen::JsValue;
use worker::Response;

use super::http::{new_request_id, raw_json};
use super::{config_error, subtle, Ctx};
use crate::core::assertion::{
    compact, jwks, parse_public_keys, parse_signing_key, signing_input, Claims, PublicJwk,
    SigningJwk, ASSERTION_TTL_SECS, JWKS_CACHE_CONTROL,
};
use crate::core::names::CACHE_CONTROL;
use crate::core::Error;

/// The configured signing key, parsed and imported, with what each signature needs made once.
pub struct Signer {
    jwk: SigningJwk,
    key: JsValue,
    sign: subtle::Method,
    algorithm: JsValue,
}

thread_local! {
    /// The signer of this isolate, with the secret's text it was made from (a new deployment of
    /// the secret starts new isolates, but the text is compared anyway).
    static SIGNER: RefCell<Option<(String, Rc<Signer>)>> = const { RefCell::new(None) };
}

/// The secret's text, when set and not empty.
pub fn configured(ctx: &Ctx) -> Option<String> {
    let key = ctx.config.secrets.assertion_signing_key.as_ref()?;
    Some(key.expose().to_owned())
}

/// The signer, imported on first use. A key that does not parse or import, or a production
/// deployment without `PUBLIC_URL`, is a configuration error: 503, logged once.
pub async fn signer(ctx: &Ctx, text: &str) -> Result<Rc<Signer>, Error> {
    let cached = SIGNER.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(t, _)| t == text)
            .map(|(_, s)| s.clone())
    });
    if let Some(s) = cached {
        return Ok(s);
    }
    if ctx.config.production && ctx.config.public_url.is_none() {
        return Err(config_error(
            "PUBLIC_URL must be set in production when ASSERTION_SIGNING_KEY is".into(),
        ));
    }
    let jwk = parse_signing_key(text).map_err(config_error)?;
    // WebCrypto's import checks what the core does not: that the point is on P-256 and `d`
    // belongs to it.
    let key = import(&jwk.private_json, "sign").await.map_err(|_| {
        config_error(
            "ASSERTION_SIGNING_KEY: d does not belong to x, y, or the point is not on P-256 \
             (WebCrypto refused the key)"
                .into(),
        )
    })?;
    let algorithm = subtle::ecdsa_sha256()?;
    let sign = subtle::Method::new("sign")?;
    let signer = Rc::new(Signer {
        jwk,
        key,
        sign,
        algorithm,
    });
    SIGNER.with(|c| *c.borrow_mut() = Some((text.to_owned(), signer.clone())));
    Ok(signer)
}

/// A P-256 JWK imported into WebCrypto for `usage` ("sign" or "verify").
async fn import(jwk_json: &str, usage: &str) -> Result<JsValue, Error> {
    let jwk = worker::js_sys::JSON::parse(jwk_json).map_err(|_| Error::Internal)?;
    subtle::import_p256("jwk", &jwk, usage).await
}

/// What a forwarded request's assertion says besides the key's facts.
pub struct Request<'a> {
    /// The gateway's own origin as the client addressed it (when `PUBLIC_URL` is empty).
    pub addressed_origin: &'a str,
    pub method: &'a str,
    /// `ORIGIN_URL` + path + query: the URL the origin receives.
    pub url: &'a str,
    pub workspace: Option<&'a str>,
    pub body_sha256: Option<String>,
}

/// The `Keygate-Assertion` of one forwarded request of `record`.
pub async fn sign(
    ctx: &Ctx,
    signer: &Signer,
    record: &crate::core::record::KeyRecord,
    request: Request<'_>,
) -> Result<String, Error> {
    let jti = new_request_id();
    let claims = Claims {
        iss: ctx
            .config
            .public_url
            .as_deref()
            .unwrap_or(request.addressed_origin),
        aud: &ctx.config.origin_url,
        sub: &record.user_id,
        email: record.email.as_deref(),
        key: &record.id,
        ws: request.workspace,
        workspaces: &record.workspaces,
        permissions: &record.permissions,
        htm: request.method,
        htu: request.url,
        jti: &jti,
        request_id: &ctx.request_id,
        iat: ctx.now,
        exp: ctx.now + ASSERTION_TTL_SECS,
        body_sha256: request.body_sha256,
    };
    let input = signing_input(&signer.jwk.public.kid, &claims);
    let data: JsValue = Uint8Array::from(input.as_bytes()).into();
    let args = Array::of3(&signer.algorithm, &signer.key, &data);
    let signature = signer.sign.call(&args).await?;
    Ok(compact(&input, &Uint8Array::new(&signature).to_vec()))
}

thread_local! {
    /// The `ASSERTION_PUBLIC_KEYS` text whose keys WebCrypto accepted in this isolate.
    static PUBLIC_KEYS_CHECKED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// `ASSERTION_PUBLIC_KEYS`, parsed, each key's point checked on P-256 by WebCrypto's import
/// once per isolate: a key no verifier could use is a configuration error, not a published key.
async fn public_keys(ctx: &Ctx) -> Result<Vec<PublicJwk>, Error> {
    let text = &ctx.config.assertion_public_keys;
    let keys = parse_public_keys(text).map_err(config_error)?;
    if PUBLIC_KEYS_CHECKED.with(|c| c.borrow().as_deref() == Some(text.as_str())) {
        return Ok(keys);
    }
    for key in &keys {
        if import(&key.to_json().to_string(), "verify").await.is_err() {
            return Err(config_error(format!(
                "ASSERTION_PUBLIC_KEYS: the key \"{}\" is not a point on P-256 (WebCrypto refused to import it)",
                key.kid
            )));
        }
    }
    PUBLIC_KEYS_CHECKED.with(|c| *c.borrow_mut() = Some(text.clone()));
    Ok(keys)
}

/// `GET /.well-known/jwks.json`: the signing key's public half and `ASSERTION_PUBLIC_KEYS`.
pub async fn jwks_response(ctx: &Ctx) -> Result<Response, Error> {
    let others = public_keys(ctx).await?;
    let signing = match configured(ctx) {
        Some(text) => Some(signer(ctx, &text).await?),
        None => None,
    };
    let body = jwks(signing.as_ref().map(|s| &s.jwk.public), &others).map_err(config_error)?;
    let mut resp = raw_json(200, &body)?;
    let _ = resp.headers_mut().set(CACHE_CONTROL, JWKS_CACHE_CONTROL);
    Ok(resp)
}
