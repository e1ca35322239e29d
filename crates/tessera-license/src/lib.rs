//! Tessera's signed License format.
//!
//! This crate owns what a License is and how it is trusted:
//! - [`License`]: the content (product, instance, order, features, device binding, validity);
//! - the **file form** ([`file`]): a text envelope around a canonical JSON payload ([`canonical`])
//!   with an algorithm-tagged signature and key id;
//! - the **string form** ([`string_form`]): at most 1024 characters for KooGallery's
//!   `CHARACTERS` upload, binding the fingerprint by its SHA-256;
//! - [`Verifier`]: trusted public keys by [`KeyId`] (so keys rotate), signature check, then
//!   product, device binding (through `tessera-fingerprint`'s tolerant matcher) and validity
//!   window, each failure a typed [`VerifyError`]; a [`VerificationCache`] by file hash; and
//!   [`Verifier::verify_detached`] for the ISV's other signed documents;
//! - with feature `issuer`: `SigningKey` (key generation, PKCS#8 PEM, signing both forms).
//!   Verify-only builds link no signing code and no random number generator.
//!
//! Signatures are RSASSA-PSS with SHA-256 (3072-bit keys by default). README.md beside this
//! crate specifies the format byte by byte.
//!
//! ```
//! use tessera_license::{Verifier, VerifyError};
//! let verifier = Verifier::new();
//! // No key is trusted, and the input is no License anyway.
//! assert!(matches!(verifier.open(b"hello"), Err(VerifyError::Malformed { .. })));
//! ```

pub mod canonical;
mod error;
pub mod file;
#[cfg(feature = "issuer")]
mod issuer;
mod keys;
mod model;
pub mod payload;
pub mod string_form;
mod verify;

pub use error::{Location, SignatureError, VerifyError};
#[cfg(feature = "issuer")]
pub use issuer::{IssueError, SigningKey};
pub use keys::{
    Algorithm, DEFAULT_RSA_BITS, KeyError, KeyId, MAX_RSA_BITS, MIN_RSA_BITS, PublicKey,
};
pub use model::{
    Binding, FORMAT_VERSION, Feature, FieldError, FingerprintHash, License, MAX_FEATURE_NAME_LEN,
    MAX_FEATURES, MAX_FINGERPRINT_LEN, MAX_ID_LEN, MAX_UNIX_TIME, MAX_VERSION_LEN, Nonce,
};
/// The fingerprint crate's types that appear in this crate's API.
pub use tessera_fingerprint::{DeviceIdentity, HardwareId, KooGalleryFingerprint, MatchPolicy};
pub use verify::{
    DeviceRef, LicenseForm, SignedLicense, VerificationCache, Verifier, VerifyContext,
};
