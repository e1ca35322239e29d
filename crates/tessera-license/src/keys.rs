//! Signature algorithms, key ids and the public keys a verifier trusts.

use std::fmt;

use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPublicKey, pss};
use sha2::{Digest, Sha256};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (also the `rsa` crate's own limit for public keys).
pub const MAX_RSA_BITS: usize = 4096;
/// The modulus size new keys get unless told otherwise.
pub const DEFAULT_RSA_BITS: usize = 3072;

/// A signature algorithm, named in the file's signature block and the string form.
///
/// The format is algorithm-tagged so that Ed25519 or SM2 can be added without a format break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PSS (RFC 8017) with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPssSha256,
}

impl Algorithm {
    /// The name written into Licenses.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RsaPssSha256 => "RSA-PSS-SHA256",
        }
    }

    /// The algorithm named exactly `name` (case-sensitive), if this build supports it.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        (name == "RSA-PSS-SHA256").then_some(Self::RsaPssSha256)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a public key: the first 16 lower-case hex digits (8 bytes) of the SHA-256 of the
/// key's DER-encoded SubjectPublicKeyInfo.
///
/// Derived from the key itself, so an issuer and a verifier always agree on it and two different
/// keys cannot be configured under one id by mistake.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Length of a key id in characters.
    pub const LEN: usize = 16;

    /// The key id of a DER-encoded SubjectPublicKeyInfo.
    #[must_use]
    pub fn of_spki_der(der: &[u8]) -> Self {
        let digest = Sha256::digest(der);
        Self(hex::encode(&digest[..Self::LEN / 2]))
    }

    /// Parses a key id: exactly 16 lower-case hex digits.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Why a key could not be loaded, encoded or generated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM or DER could not be decoded as the expected key type.
    #[error("the {what} is not a valid {expected}")]
    Decode {
        /// What was being read, such as "public key PEM".
        what: &'static str,
        /// The encoding expected.
        expected: &'static str,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The key is an RSA key of a size this crate refuses.
    #[error("the RSA key has {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted")]
    UnsupportedSize {
        /// The key's modulus size.
        bits: usize,
    },
    /// Encoding the key failed.
    #[error("encoding the {what} failed")]
    Encode {
        /// What was being written.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Generating a key pair failed.
    #[error("generating a {bits}-bit RSA key failed")]
    Generate {
        /// The size asked for.
        bits: usize,
        /// The generator's error.
        #[source]
        source: rsa::Error,
    },
}

/// A public key trusted to sign Licenses, with its [`KeyId`].
#[derive(Clone)]
pub struct PublicKey {
    id: KeyId,
    verifying: pss::VerifyingKey<Sha256>,
}

impl PublicKey {
    /// Wraps an RSA public key.
    ///
    /// # Errors
    /// [`KeyError::UnsupportedSize`] outside 2048–4096 bits; [`KeyError::Encode`] if the key
    /// cannot be DER-encoded to derive its id.
    pub fn from_rsa(key: RsaPublicKey) -> Result<Self, KeyError> {
        let bits = key.size() * 8;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::UnsupportedSize { bits });
        }
        let der = key.to_public_key_der().map_err(|e| KeyError::Encode {
            what: "public key DER",
            source: Box::new(e),
        })?;
        Ok(Self {
            id: KeyId::of_spki_der(der.as_bytes()),
            verifying: pss::VerifyingKey::new(key),
        })
    }

    /// Reads a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM.
    ///
    /// # Errors
    /// [`KeyError::Decode`] if it is not an RSA SPKI PEM; [`KeyError::UnsupportedSize`].
    pub fn from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        let key = RsaPublicKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError::Decode {
            what: "public key PEM",
            expected: "RSA SubjectPublicKeyInfo PEM (-----BEGIN PUBLIC KEY-----)",
            source: Box::new(e),
        })?;
        Self::from_rsa(key)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`KeyError::Decode`] if it is not an RSA SPKI; [`KeyError::UnsupportedSize`].
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = RsaPublicKey::from_public_key_der(der).map_err(|e| KeyError::Decode {
            what: "public key DER",
            expected: "RSA SubjectPublicKeyInfo",
            source: Box::new(e),
        })?;
        Self::from_rsa(key)
    }

    /// The key as a SubjectPublicKeyInfo PEM with `\n` line endings.
    ///
    /// # Errors
    /// [`KeyError::Encode`] if encoding fails.
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        self.verifying
            .as_ref()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                what: "public key PEM",
                source: Box::new(e),
            })
    }

    /// The key's id.
    #[must_use]
    pub fn key_id(&self) -> &KeyId {
        &self.id
    }

    /// The algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::RsaPssSha256
    }

    /// Modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.verifying.as_ref().size() * 8
    }

    /// Length in bytes of every signature this key makes.
    #[must_use]
    pub fn signature_len(&self) -> usize {
        self.verifying.as_ref().size()
    }

    /// Whether `signature` is a valid signature of `message` by this key.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use rsa::signature::Verifier as _;
        if signature.len() != self.signature_len() {
            return false;
        }
        let Ok(signature) = pss::Signature::try_from(signature) else {
            return false;
        };
        self.verifying.verify(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm())
            .field("bits", &self.bits())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_strict_lower_hex() {
        assert!(KeyId::parse("0123456789abcdef").is_some());
        assert!(KeyId::parse("0123456789ABCDEF").is_none());
        assert!(KeyId::parse("0123456789abcde").is_none());
        assert!(KeyId::parse("0123456789abcdeg").is_none());
        assert_eq!(KeyId::of_spki_der(b"").as_str(), "e3b0c44298fc1c14");
    }

    #[test]
    fn algorithm_names_round_trip_and_are_case_sensitive() {
        assert_eq!(
            Algorithm::parse(Algorithm::RsaPssSha256.as_str()),
            Some(Algorithm::RsaPssSha256)
        );
        assert_eq!(Algorithm::parse("rsa-pss-sha256"), None);
        assert_eq!(Algorithm::parse("ED25519"), None);
    }
}
