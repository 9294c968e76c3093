//! A presented key of djangorestframework-api-key's shape, checked against the imported key
//! under its prefix (docs/CONTRACT.md section 15; every rule is [`crate::core::legacy`]'s).
//! A PBKDF2 hash is checked once: the key's SHA-256 is then stored (`up:<handle>`, apart from
//! the record) and decides alone.

use worker::js_sys::{Array, Uint8Array};
use worker::wasm_bindgen::JsValue;
use worker::{console_log, Date};

use super::{key_client, store, subtle, Ctx};
use crate::core::legacy::{
    check_stored, handle, is_pbkdf2, pbkdf2_engine, pbkdf2_matches, pbkdf2_sha256, upgrade_hash,
    Check, Engine,
};
use crate::core::record::KeyRecord;
use crate::core::Error;

/// The record of the imported key `key` (prefix `prefix`), if the secret is its own.
pub async fn lookup(ctx: &Ctx, key: &str, prefix: &str) -> Result<KeyRecord, Error> {
    let handle = handle(prefix);
    let record = store::record_by_hash(ctx, &handle, true)
        .await?
        .ok_or(Error::InvalidApiKey)?;
    match verdict(ctx, &handle, &record, key, prefix).await? {
        Check::Match => Ok(record),
        Check::Mismatch => Err(Error::InvalidApiKey),
        // A key that could not be used anyway is not worth a PBKDF2 check: refused as unknown
        // (its owner learns it is revoked or expired once it has been checked, never before).
        Check::Pbkdf2 { .. } if record.check_usable(ctx.now).is_err() => Err(Error::InvalidApiKey),
        Check::Pbkdf2 { .. } => slow_check(ctx, &handle, &record, key, prefix).await,
    }
}

/// The check of `key` against the record's hash, or against its upgrade once there is one.
async fn verdict(
    ctx: &Ctx,
    handle: &str,
    record: &KeyRecord,
    key: &str,
    prefix: &str,
) -> Result<Check, Error> {
    // A record under a prefix handle is always an import; anything else is nobody's key.
    let imported = record.imported.as_ref().ok_or(Error::InvalidApiKey)?;
    let upgraded = if is_pbkdf2(&imported.hashed_key) {
        store::upgrade(ctx, handle).await?
    } else {
        None
    };
    check_stored(&imported.hashed_key, upgraded.as_deref(), key, prefix)
        .map_err(|_| Error::InvalidApiKey)
}

/// A PBKDF2 hash not yet upgraded: take the key's slot in its object (one check at a time),
/// look for the upgrade again (a check that held the slot before may have stored it), derive,
/// compare, and on success store the upgrade; only then free the slot, so a try that waited
/// for it finds the upgrade instead of running PBKDF2 again. A failed check keeps the slot a
/// little longer (`FAILED_CHECK_PAUSE_MS`).
async fn slow_check(
    ctx: &Ctx,
    handle: &str,
    record: &KeyRecord,
    key: &str,
    prefix: &str,
) -> Result<KeyRecord, Error> {
    key_client::take_check_slot(ctx, &record.id).await?;
    let result = checked(ctx, handle, record, key, prefix).await;
    let failed = matches!(result, Err(Error::InvalidApiKey));
    key_client::free_check_slot(ctx, &record.id, failed).await;
    result.map(|()| record.clone())
}

async fn checked(
    ctx: &Ctx,
    handle: &str,
    record: &KeyRecord,
    key: &str,
    prefix: &str,
) -> Result<(), Error> {
    let (iterations, salt, expected) = match verdict(ctx, handle, record, key, prefix).await? {
        Check::Match => return Ok(()),
        Check::Mismatch => return Err(Error::InvalidApiKey),
        Check::Pbkdf2 {
            iterations,
            salt,
            expected,
        } => (iterations, salt, expected),
    };
    let started = Date::now().as_millis();
    let engine = pbkdf2_engine(iterations);
    let derived = match engine {
        Engine::WebCrypto => webcrypto_pbkdf2(key, &salt, iterations).await?,
        Engine::Wasm => pbkdf2_sha256(key, &salt, iterations).to_vec(),
    };
    // One line per check (never the key or its hash): how often PBKDF2 runs, and its cost
    // (wall time; in production the clock does not move during synchronous work, so `ms` of a
    // wasm check reads 0 there).
    console_log!(
        "{{\"level\":\"info\",\"key_check\":\"{}\",\"prefix\":\"{prefix}\",\"iterations\":{iterations},\"ms\":{},\"request_id\":{}}}",
        engine.log_name(),
        Date::now().as_millis().saturating_sub(started),
        serde_json::Value::from(ctx.request_id.as_str()),
    );
    if !pbkdf2_matches(&expected, &derived) {
        return Err(Error::InvalidApiKey);
    }
    // Best effort: unstored, the next call runs the check again.
    let _ = store::put_upgrade(ctx, handle, &upgrade_hash(key)).await;
    Ok(())
}

/// PBKDF2-HMAC-SHA256 through the runtime's WebCrypto (`crypto.subtle`), 32 bytes. Only for
/// counts Cloudflare accepts in production ([`pbkdf2_engine`] decides).
async fn webcrypto_pbkdf2(key: &str, salt: &str, iterations: u32) -> Result<Vec<u8>, Error> {
    let raw: JsValue = Uint8Array::from(key.as_bytes()).into();
    let usages: JsValue = Array::of1(&"deriveBits".into()).into();
    let import = Array::of5(
        &"raw".into(),
        &raw,
        &"PBKDF2".into(),
        &JsValue::FALSE,
        &usages,
    );
    let crypto_key = subtle::call("importKey", import).await?;
    let params = subtle::object(&[
        ("name", JsValue::from("PBKDF2")),
        ("hash", JsValue::from("SHA-256")),
        ("salt", Uint8Array::from(salt.as_bytes()).into()),
        ("iterations", JsValue::from(iterations)),
    ])?;
    let derive = Array::of3(&params, &crypto_key, &JsValue::from(256u32));
    let bits = subtle::call("deriveBits", derive).await?;
    Ok(Uint8Array::new(&bits).to_vec())
}
