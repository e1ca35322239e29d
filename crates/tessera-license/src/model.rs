//! The content of a License, independent of its form (file or string).

use std::fmt;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The payload format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Longest accepted id (license, product, instance, order), in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted feature name, in bytes.
pub const MAX_FEATURE_NAME_LEN: usize = 64;
/// Longest accepted version ceiling, in bytes.
pub const MAX_VERSION_LEN: usize = 32;
/// Most features one License may carry.
pub const MAX_FEATURES: usize = 64;
/// Longest accepted KooGallery fingerprint, in bytes (PROTOCOL.md §4.4: "5 K bytes").
pub const MAX_FINGERPRINT_LEN: usize = 5120;
/// Latest accepted timestamp: 9999-12-31T23:59:59Z, the end of the range every consumer of the
/// file (and `time` without its large-dates feature) can represent.
pub const MAX_UNIX_TIME: i64 = 253_402_300_799;

/// A signed grant to run one product on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    /// Payload format version ([`FORMAT_VERSION`] for everything this crate produces).
    pub format_version: u32,
    /// The issuer's id for this License (unique per issue).
    pub license_id: String,
    /// The product the License is for; verification refuses any other product.
    pub product_id: String,
    /// The KooGallery instance the License was issued for (empty outside KooGallery).
    pub instance_id: String,
    /// The KooGallery order the License was issued for (empty outside KooGallery).
    pub order_id: String,
    /// What the License entitles, in the issuer's order.
    pub features: Vec<Feature>,
    /// The device the License is bound to.
    pub binding: Binding,
    /// When the License was signed (whole seconds, UTC).
    pub issued_at: OffsetDateTime,
    /// Start of validity (whole seconds, UTC).
    pub not_before: OffsetDateTime,
    /// End of validity, exclusive; `None` for a perpetual License.
    pub not_after: Option<OffsetDateTime>,
    /// A trial License.
    pub trial: bool,
    /// Random bytes making every issued License distinct.
    pub nonce: Nonce,
}

/// One entitlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// Feature name as the application checks it out.
    pub name: String,
    /// Concurrent seats (at least 1).
    pub count: u32,
    /// Highest application version the License covers, as dot-separated numbers (`"2025.2"`);
    /// `None` covers every version.
    pub max_version: Option<String>,
}

impl Feature {
    /// Whether an application of `version` (dot-separated numbers; missing parts count as 0)
    /// is covered by this feature's version ceiling. A version that is not dot-separated numbers
    /// is covered only when there is no ceiling.
    #[must_use]
    pub fn covers_version(&self, version: &str) -> bool {
        let Some(ceiling) = &self.max_version else {
            return true;
        };
        let (Some(asked), Some(limit)) = (version_parts(version), version_parts(ceiling)) else {
            return false;
        };
        let len = asked.len().max(limit.len());
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        for i in 0..len {
            match at(&asked, i).cmp(&at(&limit, i)) {
                std::cmp::Ordering::Less => return true,
                std::cmp::Ordering::Greater => return false,
                std::cmp::Ordering::Equal => {}
            }
        }
        true
    }
}

fn version_parts(v: &str) -> Option<Vec<u64>> {
    v.split('.')
        .map(|part| {
            if part.is_empty() || part.len() > 18 || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        })
        .collect()
}

/// What a License is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The full device identity; only the file form carries it. Checked with the tolerant
    /// matcher.
    Device {
        /// The KooGallery fingerprint string (`MAC|disk|board|CPU`), as submitted.
        fingerprint: String,
        /// The tolerant hardware id, when the issuer had it.
        hardware_id: Option<tessera_fingerprint::HardwareId>,
    },
    /// SHA-256 of the normalised fingerprint; what the string form carries. Checked exactly.
    FingerprintHash(FingerprintHash),
}

impl Binding {
    /// A binding to a device's KooGallery fingerprint alone.
    #[must_use]
    pub fn fingerprint(fingerprint: impl Into<String>) -> Self {
        Self::Device {
            fingerprint: fingerprint.into(),
            hardware_id: None,
        }
    }

    /// The fingerprint hash this binding reduces to in the string form.
    #[must_use]
    pub fn fingerprint_hash(&self) -> FingerprintHash {
        match self {
            Self::Device { fingerprint, .. } => FingerprintHash::of(fingerprint),
            Self::FingerprintHash(hash) => *hash,
        }
    }
}

/// SHA-256 of a normalised KooGallery fingerprint string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FingerprintHash(pub [u8; 32]);

impl FingerprintHash {
    /// Hashes `fingerprint` after normalising it the way `tessera-fingerprint` does (trimmed,
    /// upper case), so a fingerprint typed by hand and the one the agent computes agree.
    #[must_use]
    pub fn of(fingerprint: &str) -> Self {
        Self(Sha256::digest(normalise_fingerprint(fingerprint).as_bytes()).into())
    }
}

/// The normal form of a fingerprint string, the one hashed for the string form.
pub(crate) fn normalise_fingerprint(fingerprint: &str) -> String {
    match tessera_fingerprint::KooGalleryFingerprint::parse(fingerprint) {
        Ok(parsed) => parsed.as_str().to_owned(),
        // A string the fingerprint crate refuses still gets a stable hash, so a License bound to
        // it simply matches no real device rather than failing to issue.
        Err(_) => fingerprint.trim().to_uppercase(),
    }
}

impl fmt::Debug for FingerprintHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FingerprintHash({})", hex::encode(self.0))
    }
}

impl fmt::Display for FingerprintHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// 16 random bytes, written as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    /// A fresh random nonce.
    #[cfg(feature = "issuer")]
    #[must_use]
    pub fn random() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses 32 lower-case hex digits.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", hex::encode(self.0))
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A License field that breaks the format's rules, found when issuing or decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {problem}")]
pub struct FieldError {
    /// Path of the field, such as `features[2].name`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl License {
    /// Checks every rule of the format that is not about encoding: id lengths, feature names,
    /// counts and ceilings, the fingerprint length, the time range and order.
    ///
    /// # Errors
    /// The first [`FieldError`] found.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.format_version != FORMAT_VERSION {
            return Err(FieldError::new(
                "format_version",
                format!(
                    "is {}, only {FORMAT_VERSION} is supported",
                    self.format_version
                ),
            ));
        }
        check_id("license_id", &self.license_id, false)?;
        check_id("product_id", &self.product_id, false)?;
        check_id("instance_id", &self.instance_id, true)?;
        check_id("order_id", &self.order_id, true)?;
        if self.features.len() > MAX_FEATURES {
            return Err(FieldError::new(
                "features",
                format!(
                    "has {} entries, at most {MAX_FEATURES} are allowed",
                    self.features.len()
                ),
            ));
        }
        for (i, feature) in self.features.iter().enumerate() {
            let at = |name: &str| format!("features[{i}].{name}");
            check_text(&at("name"), &feature.name, 1, MAX_FEATURE_NAME_LEN)?;
            if self.features[..i].iter().any(|f| f.name == feature.name) {
                return Err(FieldError::new(
                    at("name"),
                    "repeats an earlier feature name",
                ));
            }
            if feature.count == 0 {
                return Err(FieldError::new(
                    at("count"),
                    "is 0; a feature grants at least 1 seat",
                ));
            }
            if let Some(v) = &feature.max_version
                && (v.len() > MAX_VERSION_LEN || version_parts(v).is_none())
            {
                return Err(FieldError::new(
                    at("max_version"),
                    format!("must be dot-separated numbers of at most {MAX_VERSION_LEN} bytes"),
                ));
            }
        }
        match &self.binding {
            Binding::Device { fingerprint, .. } => {
                check_text("binding.fingerprint", fingerprint, 1, MAX_FINGERPRINT_LEN)?;
            }
            Binding::FingerprintHash(_) => {}
        }
        for (name, t) in [
            ("issued_at", Some(self.issued_at)),
            ("not_before", Some(self.not_before)),
            ("not_after", self.not_after),
        ] {
            if let Some(t) = t {
                check_time(name, t)?;
            }
        }
        if let Some(not_after) = self.not_after
            && not_after <= self.not_before
        {
            return Err(FieldError::new("not_after", "is not later than not_before"));
        }
        Ok(())
    }
}

fn check_id(field: &str, value: &str, may_be_empty: bool) -> Result<(), FieldError> {
    check_text(field, value, usize::from(!may_be_empty), MAX_ID_LEN)
}

fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    if value.len() < min || value.len() > max {
        return Err(FieldError::new(
            field,
            format!("is {} bytes long, allowed are {min} to {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(field, "contains a control character"));
    }
    Ok(())
}

fn check_time(field: &str, t: OffsetDateTime) -> Result<(), FieldError> {
    let secs = t.unix_timestamp();
    if !(0..=MAX_UNIX_TIME).contains(&secs) {
        return Err(FieldError::new(
            field,
            format!("is {secs} s after 1970, allowed are 0 to {MAX_UNIX_TIME}"),
        ));
    }
    Ok(())
}

/// A timestamp in the range [`License::validate`] accepts, from Unix seconds.
pub(crate) fn time_from_unix(field: &str, secs: i64) -> Result<OffsetDateTime, FieldError> {
    if !(0..=MAX_UNIX_TIME).contains(&secs) {
        return Err(FieldError::new(
            field,
            format!("is {secs} s after 1970, allowed are 0 to {MAX_UNIX_TIME}"),
        ));
    }
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| FieldError::new(field, "is not a representable time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(max: Option<&str>) -> Feature {
        Feature {
            name: "solver".into(),
            count: 1,
            max_version: max.map(str::to_owned),
        }
    }

    #[test]
    fn version_ceiling_compares_numerically_part_by_part() {
        let f = feature(Some("2025.10"));
        assert!(f.covers_version("2025.9"));
        assert!(f.covers_version("2025.10"));
        assert!(f.covers_version("2025.10.0"));
        assert!(!f.covers_version("2025.10.1"));
        assert!(!f.covers_version("2026"));
        assert!(!f.covers_version("2025.x"));
        assert!(feature(None).covers_version("anything"));
    }

    #[test]
    fn nonce_hex_is_strict() {
        let n = Nonce([0xab; 16]);
        assert_eq!(Nonce::from_hex(&n.to_string()), Some(n));
        assert_eq!(Nonce::from_hex(&n.to_string().to_uppercase()), None);
        assert_eq!(Nonce::from_hex("abab"), None);
    }
}
