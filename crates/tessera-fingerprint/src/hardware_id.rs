//! The tolerant hardware id: one salted SHA-256 per component.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::matching::{ComponentKind, MatchPolicy, MatchVerdict, compare_sets, compare_single};

/// The format version of [`HardwareId`]; bumped if the hashing ever changes.
pub const HARDWARE_ID_VERSION: u32 = 1;

/// The salt mixed into every component hash.
///
/// The salt keeps one vendor's ids from being joined with another's and keeps raw serials off
/// the wire. It is not a secret: serials with little entropy (a MAC inside a known vendor
/// prefix has about 24 unknown bits) can be recovered by anyone who knows the salt and tries
/// them all. An ISV may use its own salt per product; ids hashed with different salts cannot be
/// compared, and [`HardwareId::matches`] says so.
#[derive(Clone, PartialEq, Eq)]
pub struct HardwareIdSalt(Vec<u8>);

impl HardwareIdSalt {
    /// A salt from the ISV's bytes (for example its product id).
    #[must_use]
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The short public name of this salt stored with each id: the first 8 bytes of its hash.
    #[must_use]
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"tessera-hwid-salt/v1\0");
        h.update(&self.0);
        hex::encode(&h.finalize()[..8])
    }
}

impl Default for HardwareIdSalt {
    /// The salt Tessera uses when the ISV does not choose one.
    fn default() -> Self {
        Self::new(b"tessera-default-salt/v1".to_vec())
    }
}

impl fmt::Debug for HardwareIdSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HardwareIdSalt({})", self.id())
    }
}

/// One component of a [`HardwareId`]: its kind and the salted hash of its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashedComponent {
    /// What the value was.
    pub kind: ComponentKind,
    /// Lower-case hex SHA-256 of the domain tag, salt, kind tag and normalised value.
    pub digest: String,
}

impl HashedComponent {
    /// Hashes `value` (trimmed, upper case) for `kind` under `salt`.
    #[must_use]
    pub fn new(kind: ComponentKind, value: &str, salt: &HardwareIdSalt) -> Self {
        let mut h = Sha256::new();
        h.update(b"tessera-hwid/v1\0");
        // Length-prefixed so no salt/value split can collide with another.
        h.update(
            u64::try_from(salt.0.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        h.update(&salt.0);
        h.update(kind.tag().as_bytes());
        h.update(b"\0");
        h.update(value.trim().to_uppercase().as_bytes());
        Self {
            kind,
            digest: hex::encode(h.finalize()),
        }
    }

    fn short(&self) -> String {
        format!("#{}", &self.digest[..self.digest.len().min(8)])
    }
}

/// The tolerant hardware id: the salted hashes of every component that could be read.
///
/// Components: machine id, product UUID, board serial, CPU id, each fixed-disk serial, each
/// physical MAC, and inside a container the container instance id. Raw values never appear in
/// it. Components are kept sorted, so equal machines give equal ids (`==` is exact equality;
/// use [`matches`](Self::matches) for the tolerant comparison).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareId {
    /// [`HARDWARE_ID_VERSION`].
    pub version: u32,
    /// [`HardwareIdSalt::id`] of the salt the components were hashed with.
    pub salt_id: String,
    /// The components, sorted by kind then digest.
    pub components: Vec<HashedComponent>,
}

impl HardwareId {
    /// Builds an id from raw `(kind, value)` pairs; empty values are skipped.
    #[must_use]
    pub fn from_values<'a>(
        values: impl IntoIterator<Item = (ComponentKind, &'a str)>,
        salt: &HardwareIdSalt,
    ) -> Self {
        let mut components: Vec<HashedComponent> = values
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(kind, v)| HashedComponent::new(kind, v, salt))
            .collect();
        components.sort();
        components.dedup();
        Self {
            version: HARDWARE_ID_VERSION,
            salt_id: salt.id(),
            components,
        }
    }

    /// The id a verified override file stands for: that device id alone.
    ///
    /// Only build this after the override's signature has been verified (tessera-license).
    #[must_use]
    pub fn from_override(device_id: &str, salt: &HardwareIdSalt) -> Self {
        Self::from_values([(ComponentKind::OverrideId, device_id)], salt)
    }

    /// Number of components.
    #[must_use]
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// Whether no component could be read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// The digests of one kind.
    #[must_use]
    pub fn digests(&self, kind: ComponentKind) -> Vec<String> {
        self.components
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.digest.clone())
            .collect()
    }

    /// A short summary for people, `HWID1-XXXX-XXXX-XXXX-XXXX`: a hash over every component.
    /// Equal summaries mean exactly equal ids; the tolerant comparison needs the whole id.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.salt_id.as_bytes());
        for c in &self.components {
            h.update(c.kind.tag().as_bytes());
            h.update(b"=");
            h.update(c.digest.as_bytes());
            h.update(b";");
        }
        let hex = hex::encode_upper(&h.finalize()[..8]);
        format!(
            "HWID{}-{}-{}-{}-{}",
            self.version,
            &hex[0..4],
            &hex[4..8],
            &hex[8..12],
            &hex[12..16]
        )
    }

    /// Compares `self` (the reference, e.g. the id a License is bound to) with `other` (e.g.
    /// this machine now). Each component counts once: each disk and each MAC on its own; a disk
    /// gone and another come is one replacement. Components missing on both sides (unreadable
    /// both times) are not counted.
    #[must_use]
    pub fn matches(&self, other: &HardwareId, policy: MatchPolicy) -> MatchVerdict {
        if self.version != other.version {
            return MatchVerdict::incomparable(
                policy,
                format!(
                    "hardware id versions differ ({} and {})",
                    self.version, other.version
                ),
            );
        }
        if self.salt_id != other.salt_id {
            return MatchVerdict::incomparable(
                policy,
                "the ids were hashed with different salts and cannot be compared",
            );
        }
        let mut agreed = 0;
        let mut changed = Vec::new();
        let short = |d: &str| format!("#{}", &d[..d.len().min(8)]);
        for kind in ComponentKind::ALL {
            let a = self.digests(kind);
            let b = other.digests(kind);
            if kind.is_multi() {
                compare_sets(kind, &a, &b, short, &mut agreed, &mut changed);
            } else {
                // Several values of a single kind cannot come from the collector; compare
                // them as sets anyway rather than dropping any.
                if a.len() > 1 || b.len() > 1 {
                    compare_sets(kind, &a, &b, short, &mut agreed, &mut changed);
                } else {
                    compare_single(
                        kind,
                        a.first().map(String::as_str),
                        b.first().map(String::as_str),
                        short,
                        &mut agreed,
                        &mut changed,
                    );
                }
            }
        }
        MatchVerdict::decide(policy, agreed, changed)
    }
}

impl fmt::Display for HardwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} components:",
            self.summary(),
            self.components.len()
        )?;
        for c in &self.components {
            write!(f, " {}{}", c.kind.tag(), c.short())?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::ChangeKind;

    fn id(values: &[(ComponentKind, &str)]) -> HardwareId {
        HardwareId::from_values(values.iter().copied(), &HardwareIdSalt::default())
    }

    fn workstation() -> Vec<(ComponentKind, &'static str)> {
        vec![
            (ComponentKind::MachineId, "4c4c4544004a3510804cb7c04f4d3332"),
            (ComponentKind::CpuId, "BFEBFBFF000906EA"),
            (ComponentKind::Disk, "S4EWNX0R123456"),
            (ComponentKind::Disk, "WD-WCC4N1234567"),
            (ComponentKind::Mac, "3C:EC:EF:12:34:56"),
        ]
    }

    #[test]
    fn hashes_hide_raw_values_and_depend_on_salt_and_kind() {
        let a = HashedComponent::new(
            ComponentKind::Disk,
            "S4EWNX0R123456",
            &HardwareIdSalt::default(),
        );
        assert_eq!(a.digest.len(), 64);
        assert!(!a.digest.to_uppercase().contains("S4EWNX0R123456"));
        let b = HashedComponent::new(
            ComponentKind::Disk,
            " s4ewnx0r123456 ",
            &HardwareIdSalt::default(),
        );
        assert_eq!(a, b, "normalisation: trim and case");
        let c = HashedComponent::new(
            ComponentKind::BoardSerial,
            "S4EWNX0R123456",
            &HardwareIdSalt::default(),
        );
        assert_ne!(a.digest, c.digest);
        let d = HashedComponent::new(
            ComponentKind::Disk,
            "S4EWNX0R123456",
            &HardwareIdSalt::new("isv-a"),
        );
        assert_ne!(a.digest, d.digest);
    }

    #[test]
    fn order_of_collection_does_not_matter() {
        let mut values = workstation();
        let a = id(&values);
        values.reverse();
        assert_eq!(a, id(&values));
        assert_eq!(a.summary(), id(&values).summary());
        assert!(a.summary().starts_with("HWID1-"));
    }

    #[test]
    fn replacing_one_disk_is_one_change_and_matches_by_default() {
        let before = id(&workstation());
        let mut values = workstation();
        values[3] = (ComponentKind::Disk, "WD-WCC4N7654321");
        let after = id(&values);
        let v = before.matches(&after, MatchPolicy::default());
        assert!(v.matched, "{v}");
        assert_eq!(v.changed.len(), 1);
        assert_eq!(v.changed[0].change, ChangeKind::Replaced);
        assert!(
            v.explain()
                .starts_with("match, 1 component changed: disk replaced (was #"),
            "{v}"
        );
        assert!(!before.matches(&after, MatchPolicy::Strict).matched);
    }

    #[test]
    fn policies_differ_as_documented() {
        let before = id(&workstation());
        // two of five changed
        let mut values = workstation();
        values[1] = (ComponentKind::CpuId, "BFEBFBFF000A0671");
        values[4] = (ComponentKind::Mac, "3C:EC:EF:65:43:21");
        let after = id(&values);
        assert!(!before.matches(&after, MatchPolicy::AllButOne).matched);
        assert!(before.matches(&after, MatchPolicy::Loose).matched);
        // four of five changed
        let stranger = id(&[
            (ComponentKind::MachineId, "ffffffffffffffffffffffffffffffff"),
            (ComponentKind::CpuId, "X"),
            (ComponentKind::Disk, "Y"),
            (ComponentKind::Disk, "WD-WCC4N1234567"),
            (ComponentKind::Mac, "Z"),
        ]);
        let v = before.matches(&stranger, MatchPolicy::Loose);
        assert!(!v.matched, "{v}");
        assert_eq!(v.changed.len(), 4);
    }

    #[test]
    fn decisive_component_differs_means_no_match_under_any_policy() {
        let mut a = workstation();
        a.push((ComponentKind::ContainerInstance, "aaaa"));
        let mut b = workstation();
        b.push((ComponentKind::ContainerInstance, "bbbb"));
        for policy in MatchPolicy::ALL {
            let v = id(&a).matches(&id(&b), policy);
            assert!(!v.matched, "{policy}: {v}");
            assert!(
                v.note
                    .as_deref()
                    .unwrap_or("")
                    .contains("container instance")
            );
        }
    }

    #[test]
    fn different_salts_are_incomparable() {
        let a = id(&workstation());
        let b = HardwareId::from_values(workstation(), &HardwareIdSalt::new("other"));
        let v = a.matches(&b, MatchPolicy::Loose);
        assert!(!v.matched);
        assert!(v.to_string().contains("different salts"), "{v}");
    }

    #[test]
    fn empty_ids_never_match() {
        let a = id(&[]);
        assert!(!a.matches(&a, MatchPolicy::Loose).matched);
    }

    #[test]
    fn serde_round_trip_and_rejects_unknown_fields() {
        let a = id(&workstation());
        let json = serde_json::to_string(&a).unwrap();
        let back: HardwareId = serde_json::from_str(&json).unwrap();
        assert_eq!(a, back);
        let tampered = json.replacen("{", "{\"extra\":1,", 1);
        assert!(serde_json::from_str::<HardwareId>(&tampered).is_err());
    }
}
