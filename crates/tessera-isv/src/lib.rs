//! `tessera-isv`: the ISV's production interface for KooGallery and the License issuer.

pub mod config;
pub mod issuer;
pub mod market;
pub mod service;
pub mod store;
pub mod server;
pub mod status;
pub mod cli;
