//! Typed request and response bodies for every interface of PROTOCOL.md §2.1–2.3.
//!
//! Everything derives both `Serialize` and `Deserialize`: the client writes requests and reads
//! responses, the emulator does the opposite. Parsing is lenient the way the marketplace needs:
//! unknown fields are ignored, integers may arrive as strings, ids may arrive as numbers, and
//! every time goes through [`tessera_types::KooTime`]. Sizes and required fields are *not*
//! enforced by parsing; each type has a `validate` method that applies the documented limits and
//! names the field and the rule that failed.

pub mod callback;
pub mod event;
pub mod license;
pub mod order;

mod lenient;

use std::fmt;

pub use callback::{
    CallbackParseError, CallbackRequest, CallbackResponse, GetLicenseAsync, InstanceStatus,
    NewInstance, RefreshInstance, RefreshLicenseCode, RefreshScene, ReleaseInstance,
    ReleaseLicenseCode, UpdateInstanceStatus, UpdateLicenseCodeStatus,
};
pub use event::{IsvUpdateFileReq, UploadKind, validate_event_id};
pub use license::{
    ActivateBatchRequest, ActivateData, ActivateRequest, CodeStatus, HeartbeatBatchData,
    HeartbeatBatchRequest, HeartbeatInfo, HeartbeatRequest, LicenseApiResponse, LicenseCodeInfo,
    LicenseInfo, SoftwareUsage, UsageData, UsageEntry, UsageInfoRequest,
};
pub use order::{
    BuyerInfo, ChargingMode, ExtendParam, OrderInfo, OrderLine, OrderQuery, OrderQueryResponse,
    OrderType, ProductInfo,
};

/// Most items in one batch call (activate v2, heartbeat v2, usage entries): PROTOCOL.md §2.1.
pub const MAX_BATCH: usize = 100;

/// A field that breaks a documented rule (PROTOCOL.md field tables).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {rule}")]
pub struct FieldError {
    /// The JSON path of the field, e.g. `usage_info[2].license`.
    pub field: String,
    /// The rule it breaks.
    pub rule: FieldRule,
}

/// The documented rule a field breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRule {
    /// Mandatory but absent or empty.
    Required,
    /// Longer than the documented maximum (in characters).
    TooLong {
        /// The documented maximum.
        max: usize,
        /// The length received.
        actual: usize,
    },
    /// A list with fewer or more items than allowed.
    ItemCount {
        /// The least number of items allowed.
        min: usize,
        /// The most items allowed.
        max: usize,
        /// The number received.
        actual: usize,
    },
    /// Exactly one of two fields must be present.
    ExactlyOneOf(&'static str, &'static str),
    /// The value is outside its documented domain.
    Invalid(&'static str),
}

impl fmt::Display for FieldRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Required => f.write_str("is mandatory and missing or empty"),
            Self::TooLong { max, actual } => {
                write!(f, "has {actual} characters, more than the maximum of {max}")
            }
            Self::ItemCount { min, max, actual } => {
                write!(f, "has {actual} items, outside {min}..={max}")
            }
            Self::ExactlyOneOf(a, b) => write!(f, "must carry exactly one of `{a}` and `{b}`"),
            Self::Invalid(why) => write!(f, "is invalid: {why}"),
        }
    }
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, rule: FieldRule) -> Self {
        Self {
            field: field.into(),
            rule,
        }
    }
}

/// A mandatory string: present, non-empty after trimming, at most `max` characters.
pub(crate) fn required(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, FieldRule::Required));
    }
    max_len(field, value, max)
}

/// An optional string: when present, at most `max` characters.
pub(crate) fn optional(field: &str, value: Option<&str>, max: usize) -> Result<(), FieldError> {
    value.map_or(Ok(()), |v| max_len(field, v, max))
}

pub(crate) fn max_len(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    // Count at most max+1 characters: the value may be huge and only the verdict matters here.
    let actual = value.chars().take(max + 1).count();
    if actual > max {
        let actual = value.chars().count();
        return Err(FieldError::new(field, FieldRule::TooLong { max, actual }));
    }
    Ok(())
}

pub(crate) fn item_count(
    field: &str,
    len: usize,
    min: usize,
    max: usize,
) -> Result<(), FieldError> {
    if len < min || len > max {
        return Err(FieldError::new(
            field,
            FieldRule::ItemCount {
                min,
                max,
                actual: len,
            },
        ));
    }
    Ok(())
}

/// `testFlag` is `"0"` or `"1"` (max 2 characters) when present.
pub(crate) fn test_flag(value: Option<&str>) -> Result<(), FieldError> {
    optional("testFlag", value, 2)
}

/// True when a `testFlag` value marks a seller-console debugging request (PROTOCOL.md §2.0).
pub(crate) fn is_test_flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim() == "1")
}

/// Declares a wire enum that keeps unknown values in `Other(String)` instead of failing, so a new
/// marketplace value never breaks parsing; callers decide what an unknown value means.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this build does not know, kept as received.
            Other(String),
        }

        impl $name {
            /// The value as written on the wire.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(s) => s,
                }
            }

            /// Reads a wire value, case-insensitively; unknown values become `Other`.
            #[must_use]
            pub fn from_wire(s: &str) -> Self {
                let t = s.trim();
                $( if t.eq_ignore_ascii_case($wire) { return Self::$variant; } )+
                Self::Other(s.to_owned())
            }

            /// Whether this is a value the documentation lists.
            #[must_use]
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(Self::from_wire(&s))
            }
        }
    };
}
pub(crate) use open_enum;

/// Serialises `value` as compact JSON with every object's keys sorted alphabetically
/// (PROTOCOL.md §5.2 recommendation for signed callback bodies), independent of whether some
/// other crate in the build turned on serde_json's `preserve_order`.
///
/// # Errors
/// When `value` cannot be represented as JSON (e.g. a map with non-string keys).
pub fn to_sorted_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    serde_json::to_vec(&Sorted(&v))
}

pub(crate) struct Sorted<'a>(&'a serde_json::Value);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, &Sorted(v))?;
                }
                m.end()
            }
            serde_json::Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_json_orders_keys_at_every_level_and_is_compact() {
        let v = serde_json::json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": "s p"}});
        let out = String::from_utf8(to_sorted_json(&v).unwrap()).unwrap();
        assert_eq!(out, r#"{"a":{"c":"s p","z":[{"x":2,"y":1}]},"b":1}"#);
    }

    #[test]
    fn length_rules_count_characters_not_bytes() {
        assert!(required("license", "授权码", 3).is_ok());
        let err = required("license", "授权码码", 3).unwrap_err();
        assert_eq!(err.rule, FieldRule::TooLong { max: 3, actual: 4 });
        assert_eq!(
            err.to_string(),
            "field `license` has 4 characters, more than the maximum of 3"
        );
        assert_eq!(
            required("license", "  ", 3).unwrap_err().rule,
            FieldRule::Required
        );
    }
}
