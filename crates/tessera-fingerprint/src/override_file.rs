//! The signed override id file for containers and cloned images.
//!
//! ```json
//! {
//!   "format": "tessera-device-override/1",
//!   "payload": "<base64 of the UTF-8 JSON payload below>",
//!   "signature": {
//!     "algorithm": "RSA-PSS-SHA256",
//!     "key_id": "acme-2026-01",
//!     "value": "<base64 of the signature over the decoded payload bytes>"
//!   }
//! }
//! ```
//! Payload: `{"device_id": "build-farm-17", "reason": "CI container fleet", "issued_for":
//! "ACME GmbH, Munich build farm", "issued_at": "20261122103015", "product_id": "…"}`
//! (`product_id` optional, unknown fields kept for later versions).
//!
//! The signature covers the payload *bytes* exactly as decoded from base64, so no
//! canonicalisation is needed to verify it. This crate only parses the file and hands out the
//! signed bytes and the signature; tessera-license verifies them with the ISV's public key, and
//! only then may the agent use [`crate::HardwareId::from_override`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::FingerprintError;

/// The value of the `format` field.
pub const OVERRIDE_FORMAT: &str = "tessera-device-override/1";

/// Override files are a few hundred bytes; refuse anything much larger before parsing.
pub const MAX_OVERRIDE_FILE_BYTES: usize = 64 * 1024;

/// Where the agent looks for the override file on this platform.
#[must_use]
pub fn default_override_path() -> &'static str {
    if cfg!(windows) {
        r"C:\ProgramData\Tessera\device-override.json"
    } else if cfg!(target_os = "macos") {
        "/Library/Application Support/Tessera/device-override.json"
    } else {
        "/etc/tessera/device-override.json"
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    payload: String,
    signature: Signature,
}

/// The detached signature of an override file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Signature algorithm, e.g. `RSA-PSS-SHA256`.
    pub algorithm: String,
    /// Which ISV key signed it.
    pub key_id: String,
    /// The signature bytes, base64 in the file.
    #[serde(with = "b64")]
    pub value: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.trim())
            .map_err(|_| serde::de::Error::custom("signature value is not base64"))
    }
}

/// What the override asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverridePayload {
    /// The device id to use instead of the hardware.
    pub device_id: String,
    /// Why the ISV issued it.
    pub reason: String,
    /// Whom it was issued for.
    pub issued_for: String,
    /// When, in a KooGallery time format (kept as written; tessera-license parses it).
    pub issued_at: String,
    /// The product it is valid for, when limited to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
}

/// A parsed, *unverified* override file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideFile {
    /// The decoded payload.
    pub payload: OverridePayload,
    /// The exact bytes the signature covers.
    #[serde(with = "b64")]
    pub signed_bytes: Vec<u8>,
    /// The detached signature.
    pub signature: Signature,
}

impl OverrideFile {
    /// Parses an override file. Does not verify the signature.
    ///
    /// # Errors
    /// [`FingerprintError::InvalidOverride`] when the file is too large, not the expected JSON,
    /// of another format, or its payload is not base64 JSON with a non-empty device id.
    pub fn parse(bytes: &[u8]) -> Result<Self, FingerprintError> {
        let invalid = |reason: String| FingerprintError::InvalidOverride { reason };
        if bytes.len() > MAX_OVERRIDE_FILE_BYTES {
            return Err(invalid(format!(
                "larger than {MAX_OVERRIDE_FILE_BYTES} bytes"
            )));
        }
        let envelope: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not the expected JSON: {e}")))?;
        if envelope.format != OVERRIDE_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, expected {OVERRIDE_FORMAT:?}",
                envelope.format
            )));
        }
        let signed_bytes = STANDARD
            .decode(envelope.payload.trim())
            .map_err(|_| invalid("payload is not base64".to_owned()))?;
        let payload: OverridePayload = serde_json::from_slice(&signed_bytes)
            .map_err(|e| invalid(format!("payload is not the expected JSON: {e}")))?;
        let id = payload.device_id.trim();
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(invalid(
                "device_id is empty, longer than 256 characters or has control characters"
                    .to_owned(),
            ));
        }
        if envelope.signature.value.is_empty() || envelope.signature.key_id.trim().is_empty() {
            return Err(invalid("signature value or key id is empty".to_owned()));
        }
        Ok(Self {
            payload,
            signed_bytes,
            signature: envelope.signature,
        })
    }

    /// Builds the file text for a payload and a signature made over `payload_bytes` (ISV tools
    /// and tests).
    #[must_use]
    pub fn encode(payload_bytes: &[u8], signature: &Signature) -> String {
        serde_json::json!({
            "format": OVERRIDE_FORMAT,
            "payload": STANDARD.encode(payload_bytes),
            "signature": signature,
        })
        .to_string()
    }
}

/// What the collector found at the override path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OverrideStatus {
    /// No file.
    Absent {
        /// Where it was looked for.
        path: String,
    },
    /// A well-formed file whose signature has not been verified yet.
    Unverified {
        /// Where it was found.
        path: String,
        /// Its content.
        file: OverrideFile,
    },
    /// A file that could not be read or parsed.
    Invalid {
        /// Where it was found.
        path: String,
        /// Why it is unusable.
        reason: String,
    },
}

impl OverrideStatus {
    /// The parsed file, if one was found.
    #[must_use]
    pub fn file(&self) -> Option<&OverrideFile> {
        match self {
            OverrideStatus::Unverified { file, .. } => Some(file),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature() -> Signature {
        Signature {
            algorithm: "RSA-PSS-SHA256".into(),
            key_id: "acme-2026-01".into(),
            value: vec![1, 2, 3, 4],
        }
    }

    const PAYLOAD: &str = r#"{"device_id":"build-farm-17","reason":"CI containers","issued_for":"ACME GmbH","issued_at":"20261122103015"}"#;

    #[test]
    fn round_trips_and_exposes_the_exact_signed_bytes() {
        let text = OverrideFile::encode(PAYLOAD.as_bytes(), &signature());
        let file = OverrideFile::parse(text.as_bytes()).unwrap();
        assert_eq!(file.signed_bytes, PAYLOAD.as_bytes());
        assert_eq!(file.payload.device_id, "build-farm-17");
        assert_eq!(file.payload.product_id, None);
        assert_eq!(file.signature, signature());
    }

    #[test]
    fn rejects_malformed_files() {
        let cases = [
            b"not json".to_vec(),
            OverrideFile::encode(PAYLOAD.as_bytes(), &signature())
                .replace("tessera-device-override/1", "other/9")
                .into_bytes(),
            OverrideFile::encode(
                br#"{"device_id":"","reason":"","issued_for":"","issued_at":""}"#,
                &signature(),
            )
            .into_bytes(),
            OverrideFile::encode(b"not json either", &signature()).into_bytes(),
            OverrideFile::encode(
                PAYLOAD.as_bytes(),
                &Signature {
                    value: vec![],
                    ..signature()
                },
            )
            .into_bytes(),
            vec![b' '; MAX_OVERRIDE_FILE_BYTES + 1],
        ];
        for bytes in cases {
            assert!(
                matches!(
                    OverrideFile::parse(&bytes),
                    Err(FingerprintError::InvalidOverride { .. })
                ),
                "{}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            );
        }
    }
}
