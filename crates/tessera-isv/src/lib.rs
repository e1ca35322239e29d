//! `tessera-isv`: the ISV's production interface for KooGallery and the License issuer.
//!
//! KooGallery calls one URL for every scenario (PROTOCOL.md §2.3); this crate verifies each call
//! (signature over the raw body, timestamp window, nonce replay through the database), applies it
//! idempotently to durable state, and for getLicenseAsync signs a License bound to the device
//! fingerprint and uploads it with market-event through a database-backed job queue.
//!
//! - [`config`]: the TOML configuration, secrets redacted;
//! - [`store`]: SQLite or PostgreSQL through `sqlx::Any`, forward-only migrations per backend;
//! - [`service`]: callback checks, dispatch, idempotency, the job runner;
//! - [`server`]: HTTPS (or plain HTTP) listener, loopback admin listener, background tasks;
//! - [`market`]: the marketplace calls behind a trait, over `koogallery`'s client;
//! - [`issuer`]: building and signing one License (shared with the CLI and the bench);
//! - [`status`]: what the ISV reports about instances, Licenses and jobs;
//! - [`cli`]: `serve`, `keygen`, `issue`, `verify`, `status`, `retry-job`.
//!
//! README.md beside this crate documents the choices made where KooGallery is silent.

pub mod cli;
pub mod config;
pub mod issuer;
pub mod market;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
