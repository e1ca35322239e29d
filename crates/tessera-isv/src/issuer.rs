//! Building and signing one License, shared by the callback path, `tessera-isv issue` and the
//! bench.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tessera_license::{Binding, FORMAT_VERSION, Feature, License, Nonce, SigningKey};
use time::OffsetDateTime;

use crate::config::DeliveryMode;

/// Why a License could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The signing key file could not be read.
    #[error("cannot read signing key {path}")]
    ReadKey {
        /// The key file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The signing key file is not a usable key.
    #[error("signing key {path} is not usable")]
    Key {
        /// The key file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: tessera_license::KeyError,
    },
    /// The License breaks a rule of the format (or does not fit the string form).
    #[error("cannot sign the License")]
    Sign(#[source] tessera_license::IssueError),
}

/// Reads the PKCS#8 PEM signing key.
///
/// # Errors
/// When the file cannot be read or holds no usable RSA key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, IssuerError> {
    let pem = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        IssuerError::ReadKey {
            path: path.to_owned(),
            source,
        }
    })?);
    SigningKey::from_pkcs8_pem(&pem).map_err(|source| IssuerError::Key {
        path: path.to_owned(),
        source,
    })
}

/// What goes into one License.
#[derive(Debug, Clone)]
pub struct LicenseTerms<'a> {
    /// KooGallery productId.
    pub product_id: &'a str,
    /// Instance id (empty for offline issues).
    pub instance_id: &'a str,
    /// Order id (empty for offline issues).
    pub order_id: &'a str,
    /// Feature name → seat count.
    pub features: &'a BTreeMap<String, u32>,
    /// The device fingerprint the License is bound to.
    pub fingerprint: &'a str,
    /// Signing time.
    pub issued_at: OffsetDateTime,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity; `None` is perpetual.
    pub not_after: Option<OffsetDateTime>,
    /// A trial License.
    pub trial: bool,
}

/// A signed License ready to store and upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedArtifact {
    /// The License's id.
    pub license_id: String,
    /// File text or string form, as bytes.
    pub body: Vec<u8>,
    /// Hex SHA-256 of `body`.
    pub sha256: String,
    /// The form.
    pub delivery: DeliveryMode,
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Builds the License for `terms` and signs it in the form `delivery` asks for.
///
/// # Errors
/// When the License breaks a format rule, or does not fit the 1024-character string form.
pub fn sign_license(
    key: &SigningKey,
    terms: &LicenseTerms<'_>,
    delivery: DeliveryMode,
) -> Result<SignedArtifact, IssuerError> {
    let license_id = uuid::Uuid::new_v4().simple().to_string();
    let license = License {
        format_version: FORMAT_VERSION,
        license_id: license_id.clone(),
        product_id: terms.product_id.to_owned(),
        instance_id: terms.instance_id.to_owned(),
        order_id: terms.order_id.to_owned(),
        features: terms
            .features
            .iter()
            .map(|(name, count)| Feature {
                name: name.clone(),
                count: *count,
                max_version: None,
            })
            .collect(),
        binding: Binding::fingerprint(terms.fingerprint),
        issued_at: whole_seconds(terms.issued_at),
        not_before: whole_seconds(terms.not_before),
        not_after: terms.not_after.map(whole_seconds),
        trial: terms.trial,
        nonce: Nonce::random(),
    };
    let text = match delivery {
        DeliveryMode::File => key.sign_file(&license),
        DeliveryMode::String => key.sign_string(&license),
    }
    .map_err(IssuerError::Sign)?;
    let body = text.into_bytes();
    Ok(SignedArtifact {
        license_id,
        sha256: hex::encode(Sha256::digest(&body)),
        body,
        delivery,
    })
}

/// Hex SHA-256 of the normalised fingerprint (trimmed, upper case): the idempotency key's second
/// half, and what quota counts, so one device written two ways is still one device.
#[must_use]
pub fn fingerprint_key(fingerprint: &str) -> String {
    tessera_license::FingerprintHash::of(fingerprint).to_string()
}
