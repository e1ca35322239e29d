//! Signing, for ISVs (feature `issuer`): key generation, private-key PEM, and issuing Licenses in
//! both forms.

use std::fmt;

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, pss};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::{
    Algorithm, DEFAULT_RSA_BITS, KeyError, KeyId, MAX_RSA_BITS, MIN_RSA_BITS, PublicKey,
};
use crate::model::License;
use crate::payload::{self, EncodeError};
use crate::string_form::{self, StringFormError};
use crate::{file, string_form::MAX_STRING_LEN};

/// Why a License could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The License cannot be written as a file.
    #[error("the License cannot be written as a file")]
    File(#[source] EncodeError),
    /// The License cannot be written as a string (including: it does not fit in
    /// [`MAX_STRING_LEN`] characters).
    #[error("the License cannot be written as a string of at most {MAX_STRING_LEN} characters")]
    String(#[source] StringFormError),
}

/// An ISV's private key, which signs Licenses.
pub struct SigningKey {
    signer: pss::BlindedSigningKey<Sha256>,
    public: PublicKey,
}

impl SigningKey {
    /// Generates a new RSA key pair of [`DEFAULT_RSA_BITS`] bits.
    ///
    /// # Errors
    /// [`KeyError::Generate`] if the RSA generator fails.
    pub fn generate() -> Result<Self, KeyError> {
        Self::generate_with_bits(DEFAULT_RSA_BITS)
    }

    /// Generates a new RSA key pair of `bits` bits (2048 to 4096).
    ///
    /// # Errors
    /// [`KeyError::UnsupportedSize`] or [`KeyError::Generate`].
    pub fn generate_with_bits(bits: usize) -> Result<Self, KeyError> {
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::UnsupportedSize { bits });
        }
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
            .map_err(|source| KeyError::Generate { bits, source })?;
        Self::from_rsa(key)
    }

    /// Wraps an RSA private key.
    ///
    /// # Errors
    /// [`KeyError::UnsupportedSize`] outside 2048–4096 bits.
    pub fn from_rsa(key: RsaPrivateKey) -> Result<Self, KeyError> {
        let public = PublicKey::from_rsa(key.to_public_key())?;
        Ok(Self {
            signer: pss::BlindedSigningKey::new(key),
            public,
        })
    }

    /// Reads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM.
    ///
    /// # Errors
    /// [`KeyError::Decode`] if it is not an unencrypted RSA PKCS#8 PEM; [`KeyError::UnsupportedSize`].
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem.trim()).map_err(|e| KeyError::Decode {
            what: "private key PEM",
            expected: "unencrypted RSA PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)",
            source: Box::new(e),
        })?;
        Self::from_rsa(key)
    }

    /// The private key as PKCS#8 PEM with `\n` line endings, wiped from memory when dropped.
    ///
    /// # Errors
    /// [`KeyError::Encode`] if encoding fails.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.signer
            .as_ref()
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                what: "private key PEM",
                source: Box::new(e),
            })
    }

    /// The matching public key, for verifiers.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key id Licenses signed with this key carry.
    #[must_use]
    pub fn key_id(&self) -> &KeyId {
        self.public.key_id()
    }

    /// Modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.signer.as_ref().size() * 8
    }

    /// Signs `message` as is, for documents other than Licenses (such as identity overrides);
    /// [`crate::Verifier::verify_detached`] checks the result. Prefix the message with a context
    /// naming the document kind.
    #[must_use]
    pub fn sign_detached(&self, message: &[u8]) -> Vec<u8> {
        self.signer
            .sign_with_rng(&mut rand::rngs::OsRng, message)
            .to_vec()
    }

    /// Issues `license` as a License file.
    ///
    /// # Errors
    /// [`IssueError::File`] if the License breaks a rule of the format.
    pub fn sign_file(&self, license: &License) -> Result<String, IssueError> {
        let payload = payload::encode(license).map_err(IssueError::File)?;
        let signature = self.sign_detached(&file::signed_message(&payload));
        Ok(file::encode(
            &payload,
            Algorithm::RsaPssSha256.as_str(),
            self.key_id().as_str(),
            &signature,
        ))
    }

    /// Issues `license` as a License string of at most [`MAX_STRING_LEN`] characters. The binding
    /// is reduced to the fingerprint's SHA-256 and a hardware id is left out.
    ///
    /// # Errors
    /// [`IssueError::String`] if the License breaks a rule or does not fit, with the sizes.
    pub fn sign_string(&self, license: &License) -> Result<String, IssueError> {
        let payload = string_form::encode_payload(license).map_err(IssueError::String)?;
        // Refuse before spending a signature on a string that cannot fit.
        let signature_len = self.public.signature_len();
        string_form::encode(
            &payload,
            Algorithm::RsaPssSha256.as_str(),
            self.key_id().as_str(),
            &vec![0u8; signature_len],
        )
        .map_err(IssueError::String)?;
        let signature = self.sign_detached(&string_form::signed_message(&payload));
        string_form::encode(
            &payload,
            Algorithm::RsaPssSha256.as_str(),
            self.key_id().as_str(),
            &signature,
        )
        .map_err(IssueError::String)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", self.key_id())
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}
