//! What only exists in wasm: the CSPRNG behind keys (getrandom's `js` backend, i.e.
//! `crypto.getRandomValues`), and hashing/HMAC as compiled to wasm32. Run by
//! `wasm-bindgen-test-runner` under Node (see scripts/test.sh).
#![cfg(target_arch = "wasm32")]

use hmac::{Hmac, Mac};
use keygate::core::key::{
    check_key, format_key, format_key_id, hash_key, is_key_id, KEY_BODY_BYTES, KEY_ID_BYTES,
};
use keygate::random_bytes;
use sha2::Sha256;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn random_keys_are_well_formed_and_never_repeat() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let key = format_key("kg", &random_bytes::<KEY_BODY_BYTES>().unwrap());
        assert_eq!(check_key("kg", &key), Ok(()));
        assert!(seen.insert(key), "a random key repeated");
    }
}

#[wasm_bindgen_test]
fn random_bytes_are_not_constant() {
    // 32 zero bytes (or any constant) would mean the CSPRNG is not wired in.
    let a = random_bytes::<32>().unwrap();
    let b = random_bytes::<32>().unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
    // Each of the 256 byte values shows up with roughly equal frequency over 64 KiB.
    let mut counts = [0u32; 256];
    for _ in 0..2048 {
        for byte in random_bytes::<32>().unwrap() {
            counts[byte as usize] += 1;
        }
    }
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(*min > 150 && *max < 370, "skewed: min {min} max {max}");
}

#[wasm_bindgen_test]
fn random_key_ids() {
    let id = format_key_id(&random_bytes::<KEY_ID_BYTES>().unwrap());
    assert!(is_key_id(&id));
}

#[wasm_bindgen_test]
fn sha256_in_wasm_matches_the_reference() {
    assert_eq!(
        hash_key("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let long = "a".repeat(1000);
    assert_eq!(
        hash_key(&long),
        "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );
}

#[wasm_bindgen_test]
fn hmac_in_wasm_matches_rfc_4231() {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
    mac.update(b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac.finalize().into_bytes()),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
