//! Model B market-event upload (PROTOCOL.md §2.2.2):
//! `POST …/v1/market-event/{event_id}/file`, multipart with a `file` part and an
//! `isvUpdateFileReq` JSON part. The answer is a [`super::LicenseApiResponse`] without `data`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FieldError, FieldRule, open_enum, required};

/// Longest License string a `CHARACTERS` upload accepts.
pub const MAX_CHARACTERS: usize = 1024;
/// Longest `event_id` path segment.
pub const MAX_EVENT_ID: usize = 64;

open_enum! {
    /// `isvUpdateFileReq.type`.
    UploadKind {
        /// A License string in `characters`.
        Characters = "CHARACTERS",
        /// A License file in the `file` part.
        File = "FILE",
    }
}

/// The `isvUpdateFileReq` part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsvUpdateFileReq {
    /// `CHARACTERS` or `FILE` (M, 10).
    #[serde(rename = "type")]
    pub kind: UploadKind,
    /// The file name (M if FILE, 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Lower-case hex SHA-256 of the file (M if FILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The License string (M if CHARACTERS, 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub characters: Option<String>,
}

impl IsvUpdateFileReq {
    /// The descriptor of a file upload, hashing `contents`.
    #[must_use]
    pub fn file(file_name: impl Into<String>, contents: &[u8]) -> Self {
        Self {
            kind: UploadKind::File,
            file_name: Some(file_name.into()),
            sha256: Some(hex::encode(Sha256::digest(contents))),
            characters: None,
        }
    }

    /// The descriptor of a string upload.
    #[must_use]
    pub fn characters(license: impl Into<String>) -> Self {
        Self {
            kind: UploadKind::Characters,
            file_name: None,
            sha256: None,
            characters: Some(license.into()),
        }
    }

    /// Checks the fields the kind requires and their lengths.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self.kind {
            UploadKind::File => {
                required(
                    "isvUpdateFileReq.file_name",
                    self.file_name.as_deref().unwrap_or(""),
                    1024,
                )?;
                let sha = self.sha256.as_deref().unwrap_or("");
                required("isvUpdateFileReq.sha256", sha, 1024)?;
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(FieldError::new(
                        "isvUpdateFileReq.sha256",
                        FieldRule::Invalid("not 64 hex digits"),
                    ));
                }
                Ok(())
            }
            UploadKind::Characters => required(
                "isvUpdateFileReq.characters",
                self.characters.as_deref().unwrap_or(""),
                MAX_CHARACTERS,
            ),
            UploadKind::Other(_) => Err(FieldError::new(
                "isvUpdateFileReq.type",
                FieldRule::Invalid("must be CHARACTERS or FILE"),
            )),
        }
    }

    /// Whether `contents` hashes to the declared `sha256` (case-insensitive hex).
    #[must_use]
    pub fn matches_file(&self, contents: &[u8]) -> bool {
        self.sha256
            .as_deref()
            .is_some_and(|want| want.eq_ignore_ascii_case(&hex::encode(Sha256::digest(contents))))
    }
}

/// Checks an `event_id` path parameter (M, 64) and that it is safe to place in a URL path.
///
/// # Errors
/// When it is empty, too long or contains anything but ASCII letters, digits, `-`, `_` and `.`.
pub fn validate_event_id(event_id: &str) -> Result<(), FieldError> {
    required("event_id", event_id, MAX_EVENT_ID)?;
    if !event_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || event_id == "."
        || event_id == ".."
    {
        return Err(FieldError::new(
            "event_id",
            FieldRule::Invalid("only ASCII letters, digits, '-', '_' and '.' are accepted"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_descriptor_hashes_and_checks_the_file() {
        let req = IsvUpdateFileReq::file("license.lic", b"abc");
        assert_eq!(
            req.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        req.validate().unwrap();
        assert!(req.matches_file(b"abc"));
        assert!(!req.matches_file(b"abd"));
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"type":"FILE","file_name":"license.lic","sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#
        );
    }

    #[test]
    fn characters_are_limited_to_1024() {
        IsvUpdateFileReq::characters("x".repeat(1024))
            .validate()
            .unwrap();
        let err = IsvUpdateFileReq::characters("x".repeat(1025))
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "isvUpdateFileReq.characters");
        let parsed: IsvUpdateFileReq =
            serde_json::from_str(r#"{"type":"FILE","sha256":"00","characters":"111"}"#).unwrap();
        assert_eq!(
            parsed.validate().unwrap_err().field,
            "isvUpdateFileReq.file_name"
        );
        let odd: IsvUpdateFileReq = serde_json::from_str(r#"{"type":"BLOB"}"#).unwrap();
        assert_eq!(odd.validate().unwrap_err().field, "isvUpdateFileReq.type");
    }

    #[test]
    fn event_ids_must_be_path_safe() {
        validate_event_id("evt-0001_a.b").unwrap();
        assert!(validate_event_id("../x").is_err());
        assert!(validate_event_id("a/b").is_err());
        assert!(validate_event_id("").is_err());
        assert!(validate_event_id(&"e".repeat(65)).is_err());
    }
}
