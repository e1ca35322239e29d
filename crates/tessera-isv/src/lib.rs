//! `tessera-isv`: the ISV's production interface for KooGallery and the License issuer.

pub mod cli;
pub mod config;
pub mod issuer;
pub mod market;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
