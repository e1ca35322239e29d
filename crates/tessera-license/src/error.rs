//! Why a License was refused.

use std::fmt;

use time::OffsetDateTime;

use crate::keys::KeyId;
use crate::model::FieldError;

/// Where in a License something is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A byte of the input as given (for example the first byte that is not UTF-8).
    InputByte(usize),
    /// A line of the file form, counted from 1.
    Line(usize),
    /// A part of the string form: `prefix`, `algorithm`, `key id`, `payload` or `signature`.
    StringPart(&'static str),
    /// A byte of the decoded payload, counted from 0.
    PayloadByte(usize),
    /// A payload field, by path (`features[1].count`).
    Field(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InputByte(at) => write!(f, "input byte {at}"),
            Self::Line(n) => write!(f, "line {n}"),
            Self::StringPart(part) => write!(f, "the {part} part"),
            Self::PayloadByte(at) => write!(f, "payload byte {at}"),
            Self::Field(path) => write!(f, "field `{path}`"),
        }
    }
}

/// Why verification refused a License. Checks run in the order of the variants below, and the
/// first failing check is reported.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The input is larger than any License can be.
    #[error("the License is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// Input size.
        len: usize,
        /// The bound for this form.
        max: usize,
    },
    /// The input does not follow the format.
    #[error("the License is malformed at {location}: {reason}")]
    Malformed {
        /// Where.
        location: Location,
        /// What is wrong.
        reason: String,
    },
    /// The signature's algorithm is not one this build supports.
    #[error("the License is signed with algorithm {0:?}, which this verifier does not support")]
    UnsupportedAlgorithm(String),
    /// No trusted key has the License's key id.
    #[error("the License is signed with key {0}, which is not among the trusted keys")]
    UnknownKeyId(KeyId),
    /// The signature does not verify: the License was altered or not signed by that key.
    #[error("the License signature does not verify with key {key_id}")]
    BadSignature {
        /// The key tried.
        key_id: KeyId,
    },
    /// The payload comes from a newer (or unknown) version of the format.
    #[error(
        "the License has payload format version {found}; this verifier reads version {supported} only"
    )]
    UnsupportedFormatVersion {
        /// The version in the License.
        found: u64,
        /// The version this crate reads.
        supported: u32,
    },
    /// The License is for another product.
    #[error("the License is for product {found:?}, not {expected:?}")]
    WrongProduct {
        /// The product verification was asked about.
        expected: String,
        /// The product in the License.
        found: String,
    },
    /// The License is bound to another device.
    #[error("the License is bound to another device: {explanation}")]
    BindingMismatch {
        /// The matcher's explanation of what differs.
        explanation: String,
    },
    /// The License's validity has not started.
    #[error("the License is not valid before {not_before}")]
    NotYetValid {
        /// Start of validity.
        not_before: OffsetDateTime,
    },
    /// The License's validity has ended.
    #[error("the License expired at {not_after}")]
    Expired {
        /// End of validity.
        not_after: OffsetDateTime,
    },
}

impl VerifyError {
    pub(crate) fn malformed(location: Location, reason: impl Into<String>) -> Self {
        Self::Malformed {
            location,
            reason: reason.into(),
        }
    }

    pub(crate) fn field(e: FieldError) -> Self {
        Self::Malformed {
            location: Location::Field(e.field),
            reason: e.problem,
        }
    }

    /// Whether the License itself is unusable everywhere (forged, corrupt, unreadable), as opposed
    /// to authentic but not applicable here and now (other product, device, or time).
    #[must_use]
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. }
                | Self::Malformed { .. }
                | Self::UnsupportedAlgorithm(_)
                | Self::UnknownKeyId(_)
                | Self::BadSignature { .. }
                | Self::UnsupportedFormatVersion { .. }
        )
    }
}

/// Why a detached signature (such as an identity override's) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The algorithm is not one this build supports.
    #[error("the signature algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    /// No trusted key has that id.
    #[error("key {0:?} is not among the trusted keys")]
    UnknownKeyId(String),
    /// The signature does not verify.
    #[error("the signature does not verify with key {0}")]
    BadSignature(KeyId),
}
