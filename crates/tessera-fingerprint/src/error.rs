//! Errors of this crate.

use thiserror::Error;

/// Why a fingerprint, hardware id or override file was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FingerprintError {
    /// The fingerprint is longer than KooGallery's 5 KB limit (PROTOCOL.md §4.4).
    #[error("fingerprint is {len} bytes, more than the {max}-byte limit")]
    TooLong {
        /// Length of the offending input, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The string does not have the four `MAC|disk|board|CPU` slots.
    #[error("fingerprint has {found} slots separated by '|', expected 4 (MAC|disk|board|CPU)")]
    WrongSlotCount {
        /// How many slots were found.
        found: usize,
    },
    /// A value holds a control character, which no hardware serial contains.
    #[error("fingerprint slot {slot} contains a control character")]
    ControlCharacter {
        /// The slot name.
        slot: &'static str,
    },
    /// The override id file could not be parsed.
    #[error("device override file is invalid: {reason}")]
    InvalidOverride {
        /// What is wrong with it.
        reason: String,
    },
}
