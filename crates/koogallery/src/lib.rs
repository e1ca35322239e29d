//! KooGallery as PROTOCOL.md describes it: the only crate that knows the marketplace's wire
//! formats and signatures. It does no License logic and stores nothing; time comes from an
//! injected `tessera_types::Clock`.
//!
//! - [`wire`]: typed request/response structs for every interface of PROTOCOL.md §2.1–2.3, both
//!   directions, lenient in what they read and with `validate` for the documented limits;
//! - [`apig`]: the APIG `SDK-HMAC-SHA256` signer and verifier (§5.1), canonicalising exactly as
//!   Huawei's official Python SDK does;
//! - [`callback_sig`]: the production-interface body signature (§5.2) with a nonce replay cache;
//! - [`client`]: [`client::MarketClient`], the HTTPS client with host fallback and typed errors;
//! - [`backoff`]: full-jitter exponential backoff honouring `Retry-After`.
//!
//! The choices made where PROTOCOL.md is silent are listed in the crate README.

pub mod apig;
pub mod backoff;
pub mod callback_sig;
pub mod client;
pub mod wire;
