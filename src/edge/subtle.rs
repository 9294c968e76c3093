//! The runtime's WebCrypto (`crypto.subtle`), called by name: PBKDF2 of imported keys
//! ([`super::legacy`]), the ES256 signature of the assertion ([`super::assertion`]) and the
//! ECDSA check of GitHub's leak reports ([`super::leak`]). Through `Reflect`, so no `web-sys`
//! features are added to the build for a few calls.

use worker::js_sys::{self, Array, Object, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

use super::fail::OrUnavailable;
use crate::core::{Cause, Error};

/// One method of `crypto.subtle`, looked up once (a signer keeps its `sign` for every request).
#[derive(Clone)]
pub struct Method {
    subtle: JsValue,
    f: js_sys::Function,
}

impl Method {
    pub fn new(name: &str) -> Result<Method, Error> {
        let subtle = Reflect::get(&js_sys::global(), &"crypto".into())
            .and_then(|c| Reflect::get(&c, &"subtle".into()))
            .or_unavailable(Cause::Webcrypto)?;
        let f = Reflect::get(&subtle, &name.into())
            .or_unavailable(Cause::Webcrypto)?
            .dyn_into()
            .or_unavailable(Cause::Webcrypto)?;
        Ok(Method { subtle, f })
    }

    /// `await crypto.subtle[name](...args)`.
    pub async fn call(&self, args: &Array) -> Result<JsValue, Error> {
        let promise: Promise = Reflect::apply(&self.f, &self.subtle, args)
            .or_unavailable(Cause::Webcrypto)?
            .dyn_into()
            .or_unavailable(Cause::Webcrypto)?;
        JsFuture::from(promise)
            .await
            .or_unavailable(Cause::Webcrypto)
    }
}

/// `await crypto.subtle[name](...args)`, looked up for this call.
pub async fn call(name: &str, args: Array) -> Result<JsValue, Error> {
    Method::new(name)?.call(&args).await
}

/// A plain object of string-keyed members (WebCrypto's algorithm parameters).
pub fn object(members: &[(&str, JsValue)]) -> Result<JsValue, Error> {
    let o = Object::new();
    for (name, value) in members {
        Reflect::set(&o, &(*name).into(), value).or_unavailable(Cause::Webcrypto)?;
    }
    Ok(o.into())
}

/// Whether `signature` (`r || s`) is an ECDSA P-256 / SHA-256 signature of `data` by the key
/// whose SubjectPublicKeyInfo is `spki`. A key WebCrypto refuses to import (a point off the
/// curve) vouches for nothing: `false`.
pub async fn verify_p256(spki: &[u8], signature: &[u8], data: &[u8]) -> Result<bool, Error> {
    let spki: JsValue = js_sys::Uint8Array::from(spki).into();
    let Ok(key) = import_p256("spki", &spki, "verify").await else {
        return Ok(false);
    };
    let algorithm = ecdsa_sha256()?;
    let signature: JsValue = js_sys::Uint8Array::from(signature).into();
    let data: JsValue = js_sys::Uint8Array::from(data).into();
    let verified = call("verify", Array::of4(&algorithm, &key, &signature, &data)).await?;
    Ok(verified.as_bool() == Some(true))
}

/// An ECDSA P-256 key imported (not extractable) from `data` in `format` ("jwk", "spki") for
/// `usage` ("sign" or "verify"). WebCrypto checks the point is on the curve, and for a private
/// JWK that `d` belongs to it.
pub async fn import_p256(format: &str, data: &JsValue, usage: &str) -> Result<JsValue, Error> {
    let curve = object(&[
        ("name", JsValue::from("ECDSA")),
        ("namedCurve", JsValue::from("P-256")),
    ])?;
    let usages: JsValue = Array::of1(&usage.into()).into();
    let args = Array::of5(&format.into(), data, &curve, &JsValue::FALSE, &usages);
    call("importKey", args).await
}

/// The parameters of ECDSA over SHA-256 (ES256), for `sign` and `verify`.
pub fn ecdsa_sha256() -> Result<JsValue, Error> {
    object(&[
        ("name", JsValue::from("ECDSA")),
        ("hash", JsValue::from("SHA-256")),
    ])
}
