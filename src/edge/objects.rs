//! The one client of every Durable Object, and what every object shares (docs/CONTRACT.md
//! sections 8, 11 and 12): an operation of [`crate::core::objectop`] names its object's class,
//! its path and its answer, so asking any object anything is [`call`]; the objects route with
//! [`question`] and [`answer`]. Any failure to reach an object, or an answer it cannot read, is
//! 503 with the class's cause (fail closed).

use worker::js_sys::{Date, Uint8Array};
use worker::wasm_bindgen::JsValue;
use worker::{Method, Request, RequestInit, Response, ScheduledTime, Storage, Stub};

use super::fail::OrUnavailable;
use super::Ctx;
use crate::core::objectop::{decode_for, encode_for, Message, ObjectClass, Operation};
use crate::core::Error;

/// The object of `class` named `name`.
pub fn stub(ctx: &Ctx, class: ObjectClass, name: &str) -> Result<Stub, Error> {
    let cause = class.cause();
    ctx.env
        .durable_object(class.binding())
        .or_unavailable(cause)?
        .id_from_name(name)
        .or_unavailable(cause)?
        .get_stub()
        .or_unavailable(cause)
}

/// Asks the object named `name` one question; its answer comes back typed.
pub async fn call<O: Operation>(ctx: &Ctx, name: &str, question: O) -> Result<O::Answer, Error> {
    let asked = encode_for(O::OBJECT, question)?;
    let answer = exchange(ctx, O::OBJECT, name, O::PATH, asked).await?;
    decode_for(O::OBJECT, &answer).or_unavailable(O::OBJECT.cause())
}

/// The untyped exchange behind [`call`]: one copy of the async machinery for every operation
/// (a generic one per operation weighed on the upload's size).
async fn exchange(
    ctx: &Ctx,
    class: ObjectClass,
    name: &str,
    path: &str,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let cause = class.cause();
    let stub = stub(ctx, class, name)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(Uint8Array::from(bytes.as_slice()).into()));
    let url = format!("{}{}", class.base_url(), path);
    let req = Request::new_with_init(&url, &init).or_unavailable(cause)?;
    let mut resp = stub.fetch_with_request(req).await.or_unavailable(cause)?;
    if resp.status_code() != 200 {
        return Err(Error::Unavailable(cause));
    }
    resp.bytes().await.or_unavailable(cause)
}

// What the objects share.

/// Unix milliseconds, the object's clock.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// An error inside an object: it answers 500 and the Worker maps that to 503; the detail
/// stays inside the object.
pub fn fail(what: &str) -> worker::Error {
    worker::Error::RustError(what.into())
}

/// An object's side of its class's wire format ([`ObjectClass::framed`]).
pub struct Wire(pub ObjectClass);

impl Wire {
    /// A question as the object received it.
    pub fn question<M: Message>(&self, bytes: &[u8]) -> worker::Result<M> {
        decode_for(self.0, bytes).ok_or_else(|| fail("question"))
    }

    /// An answer as the object sends it.
    pub fn answer<M: Message>(&self, message: M) -> worker::Result<Response> {
        Response::from_bytes(encode_for(self.0, message).map_err(|_| fail("answer"))?)
    }
}

/// Arms the object's alarm at a moment (unix ms). An `i64` given to `set_alarm` is read as an
/// offset from now, not a moment, so the moment goes as a `Date`.
pub async fn set_alarm_at(storage: &Storage, at_ms: u64) -> worker::Result<()> {
    let at = Date::new(&JsValue::from_f64(at_ms as f64));
    storage.set_alarm(ScheduledTime::new(at)).await
}
