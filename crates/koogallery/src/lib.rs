//! KooGallery as PROTOCOL.md describes it.
//!
//! - [`wire`]: typed request/response structs for every interface of PROTOCOL.md §2.1–2.3;
//! - [`apig`]: the APIG `SDK-HMAC-SHA256` signer and verifier (§5.1);
//! - [`callback_sig`]: the production-interface body signature (§5.2) with a nonce replay cache;
//! - [`client`]: [`client::MarketClient`], the HTTPS client with host fallback and typed errors;
//! - [`backoff`]: full-jitter exponential backoff honouring `Retry-After`.

pub mod apig;
pub mod callback_sig;
pub mod wire;
pub mod backoff;
pub mod client;
