//! `tessera-isv`: the ISV's production interface for KooGallery and the License issuer.

pub mod config;
pub mod store;
