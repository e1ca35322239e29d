//! KooGallery as PROTOCOL.md describes it.
//!
//! - [`wire`]: typed request/response structs for every interface of PROTOCOL.md §2.1–2.3;
//! - [`apig`]: the APIG `SDK-HMAC-SHA256` signer and verifier (§5.1);
//! - [`callback_sig`]: the production-interface body signature (§5.2) with a nonce replay cache;
//! - `client`: `MarketClient`, the HTTPS client with host fallback, typed errors and backoff.

pub mod wire;
pub mod apig;
pub mod callback_sig;
