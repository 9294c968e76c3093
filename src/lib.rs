//! keygate: an API-key gateway that runs at the edge as a Cloudflare Worker.
//!
//! The crate is split in two, and the split is the design:
//! - [`core`]: every decision (key format, header parsing, routing, permissions, validation,
//!   signatures, configuration), plain Rust, no `worker` types, unit-tested natively.
//! - `edge` (wasm32 only): thin glue that does the I/O with the `worker` crate: KV reads and
//!   writes, fetches to the origin, randomness, the clock and logging.

pub mod core;

/// Bench scaffolding, not product: one proxied request's decisions without I/O, for the CPU
/// benchmarks (`make cpu`).
pub mod hotpath;

#[cfg(target_arch = "wasm32")]
mod edge;

/// `N` bytes from the platform CSPRNG: `crypto.getRandomValues` in a Worker (getrandom's `js`
/// backend), the OS elsewhere. Every key, key id and request id starts here.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf)?;
    Ok(buf)
}
