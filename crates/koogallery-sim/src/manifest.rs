//! Signed update manifests, one per product. This is the emulator's own invention (KooGallery's
//! CheckNewVersions returns only `available`, PROTOCOL.md §6 item 7); the format is described in
//! the crate README.
//!
//! The signature covers the exact payload bytes, which travel base64-encoded inside the envelope,
//! so a verifier never has to re-serialise JSON: decode, verify, then parse.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::pss::{BlindedSigningKey, Signature, VerifyingKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::fsutil::write_atomically;

/// `format` of the envelope and of the payload.
pub const MANIFEST_FORMAT: &str = "tessera-update-manifest/1";
/// The only signature algorithm of format 1.
pub const MANIFEST_ALG: &str = "RSA-PSS-SHA256";
/// Key size generated when the state directory holds no key.
pub const DEFAULT_KEY_BITS: usize = 3072;
/// The file the signing key lives in, inside the state directory.
pub const KEY_FILE: &str = "manifest-signing-key.pem";

/// What the operator publishes for a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSpec {
    /// The newest version.
    pub latest_version: String,
    /// Versions below this must upgrade.
    pub min_supported_version: String,
    /// Whether the upgrade is forced (EVENT_UPDATE `fromForceWin = "true"`).
    #[serde(default)]
    pub forced: bool,
    /// When the version was released.
    #[serde(with = "time::serde::rfc3339")]
    pub released_at: OffsetDateTime,
    /// Where the package is.
    pub download_url: String,
    /// SHA-256 of the package, lower-case hex.
    pub sha256: String,
    /// Release notes.
    #[serde(default)]
    pub notes: String,
    /// After this the manifest must not be trusted (limits replay of an old manifest).
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
}

/// The signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPayload {
    /// Always [`MANIFEST_FORMAT`]; binds the signature to this use of the key.
    pub format: String,
    /// The product.
    pub product_id: String,
    /// Increases with every publication for the product (lets clients refuse rollbacks).
    pub sequence: u64,
    /// When the emulator signed it.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The published fields.
    #[serde(flatten)]
    pub spec: ManifestSpec,
}

/// What `GET /sim/updates/{productId}/manifest` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`MANIFEST_ALG`].
    pub alg: String,
    /// Which key signed it: the first 16 hex digits of SHA-256 over the key's SPKI DER.
    pub key_id: String,
    /// Base64 (standard, padded) of the payload's UTF-8 JSON bytes.
    pub payload: String,
    /// Base64 of the RSA-PSS (SHA-256, MGF1-SHA-256, salt 32 bytes) signature over those bytes.
    pub signature: String,
}

/// Why a manifest or key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The key file could not be read or written.
    #[error("cannot access the manifest signing key file")]
    Io(#[source] std::io::Error),
    /// The key file does not hold a PKCS#8 RSA key.
    #[error("the manifest signing key file is not a PKCS#8 RSA private key")]
    BadKey(#[source] rsa::pkcs8::Error),
    /// Key generation failed.
    #[error("cannot generate the manifest signing key")]
    Generate(#[source] rsa::Error),
    /// The envelope is not format 1 or its base64 is broken.
    #[error("the manifest envelope is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not verify.
    #[error("the manifest signature does not verify")]
    BadSignature,
    /// The payload is not the documented JSON.
    #[error("the manifest payload is not valid")]
    Payload(#[source] serde_json::Error),
}

/// The signing key and its published form.
#[derive(Clone)]
pub struct ManifestSigner {
    key: RsaPrivateKey,
    public_pem: String,
    key_id: String,
}

impl std::fmt::Debug for ManifestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ManifestSigner {
    /// Wraps a private key.
    ///
    /// # Errors
    /// When the public key cannot be encoded (never for a valid RSA key).
    pub fn new(key: RsaPrivateKey) -> Result<Self, ManifestError> {
        let public = RsaPublicKey::from(&key);
        let der = public
            .to_public_key_der()
            .map_err(|e| ManifestError::BadKey(rsa::pkcs8::Error::from(e)))?;
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| ManifestError::BadKey(rsa::pkcs8::Error::from(e)))?;
        let key_id = hex::encode(&Sha256::digest(der.as_bytes())[..8]);
        Ok(Self {
            key,
            public_pem,
            key_id,
        })
    }

    /// Reads a PKCS#8 PEM private key.
    ///
    /// # Errors
    /// When the text is not such a key.
    pub fn from_pem(pem: &str) -> Result<Self, ManifestError> {
        Self::new(RsaPrivateKey::from_pkcs8_pem(pem).map_err(ManifestError::BadKey)?)
    }

    /// Loads the key from the state directory, generating (and saving) one when absent.
    ///
    /// # Errors
    /// When the file is unreadable or corrupt, or cannot be written.
    pub fn load_or_generate(dir: &Path, bits: usize) -> Result<Self, ManifestError> {
        let path = dir.join(KEY_FILE);
        if path.exists() {
            let pem = std::fs::read_to_string(&path).map_err(ManifestError::Io)?;
            return Self::from_pem(&pem);
        }
        let key =
            RsaPrivateKey::new(&mut rand::thread_rng(), bits).map_err(ManifestError::Generate)?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(ManifestError::BadKey)?;
        write_atomically(&path, pem.as_bytes()).map_err(ManifestError::Io)?;
        Self::new(key)
    }

    /// The public key, SPKI PEM.
    #[must_use]
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a payload.
    ///
    /// # Errors
    /// When the payload cannot be serialised (never for this type).
    pub fn sign(&self, payload: &ManifestPayload) -> Result<SignedManifest, ManifestError> {
        let bytes = serde_json::to_vec(payload).map_err(ManifestError::Payload)?;
        let signer = BlindedSigningKey::<Sha256>::new(self.key.clone());
        let signature = signer.sign_with_rng(&mut rand::thread_rng(), &bytes);
        Ok(SignedManifest {
            format: MANIFEST_FORMAT.to_owned(),
            alg: MANIFEST_ALG.to_owned(),
            key_id: self.key_id.clone(),
            payload: STANDARD.encode(&bytes),
            signature: STANDARD.encode(signature.to_bytes()),
        })
    }
}

/// Verifies an envelope with a public key and returns its payload: the reference implementation
/// of the README's "how to verify".
///
/// # Errors
/// When the envelope is malformed, the signature fails or the payload is not a format-1 payload.
pub fn verify(
    manifest: &SignedManifest,
    public: &RsaPublicKey,
) -> Result<ManifestPayload, ManifestError> {
    if manifest.format != MANIFEST_FORMAT || manifest.alg != MANIFEST_ALG {
        return Err(ManifestError::Malformed("unknown format or algorithm"));
    }
    let bytes = STANDARD
        .decode(&manifest.payload)
        .map_err(|_| ManifestError::Malformed("payload is not base64"))?;
    let sig_bytes = STANDARD
        .decode(&manifest.signature)
        .map_err(|_| ManifestError::Malformed("signature is not base64"))?;
    let signature = Signature::try_from(sig_bytes.as_slice())
        .map_err(|_| ManifestError::Malformed("signature has the wrong shape"))?;
    VerifyingKey::<Sha256>::new(public.clone())
        .verify(&bytes, &signature)
        .map_err(|_| ManifestError::BadSignature)?;
    let payload: ManifestPayload =
        serde_json::from_slice(&bytes).map_err(ManifestError::Payload)?;
    if payload.format != MANIFEST_FORMAT {
        return Err(ManifestError::Malformed("payload format differs"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePublicKey;

    const FIXTURE_KEY: &str = include_str!("../tests/fixtures/manifest-key-2048.pem");

    fn payload() -> ManifestPayload {
        let t = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
        ManifestPayload {
            format: MANIFEST_FORMAT.to_owned(),
            product_id: "P1".to_owned(),
            sequence: 1,
            issued_at: t,
            spec: ManifestSpec {
                latest_version: "2.0.0".to_owned(),
                min_supported_version: "1.5.0".to_owned(),
                forced: false,
                released_at: t,
                download_url: "https://example.invalid/p1-2.0.0.zip".to_owned(),
                sha256: "00".repeat(32),
                notes: "faster meshing".to_owned(),
                valid_until: t + time::Duration::days(7),
            },
        }
    }

    #[test]
    fn signed_manifest_verifies_and_tampering_is_caught() {
        let signer = ManifestSigner::from_pem(FIXTURE_KEY).unwrap();
        let public = RsaPublicKey::from_public_key_pem(signer.public_key_pem()).unwrap();
        let signed = signer.sign(&payload()).unwrap();
        assert_eq!(signed.key_id.len(), 16);
        assert_eq!(verify(&signed, &public).unwrap(), payload());

        let mut tampered = signed.clone();
        let mut p = payload();
        p.spec.latest_version = "9.9.9".to_owned();
        tampered.payload = STANDARD.encode(serde_json::to_vec(&p).unwrap());
        assert!(matches!(
            verify(&tampered, &public),
            Err(ManifestError::BadSignature)
        ));
        let mut wrong_format = signed;
        wrong_format.format = "other/1".to_owned();
        assert!(matches!(
            verify(&wrong_format, &public),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn key_is_saved_and_reloaded_from_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), FIXTURE_KEY).unwrap();
        let a = ManifestSigner::load_or_generate(dir.path(), 2048).unwrap();
        let b = ManifestSigner::from_pem(FIXTURE_KEY).unwrap();
        assert_eq!(a.key_id(), b.key_id());
    }
}
