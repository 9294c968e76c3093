//! The runtime's WebCrypto (`crypto.subtle`), called by name: PBKDF2 of imported keys
//! ([`super::legacy`]) and the ES256 signature of the assertion ([`super::assertion`]). Through
//! `Reflect`, so no `web-sys` features are added to the build for two calls.

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
