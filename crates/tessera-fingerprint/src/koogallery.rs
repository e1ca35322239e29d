//! The KooGallery device fingerprint string, `MAC|disk|board|CPU` (PROTOCOL.md §4.4).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FingerprintError;
use crate::matching::{ComponentKind, MatchPolicy, MatchVerdict, compare_sets, compare_single};

/// KooGallery's limit on the whole string: "5 K bytes", taken as 5120 (PROTOCOL.md §4.4).
pub const MAX_FINGERPRINT_BYTES: usize = 5120;

/// `getLicenseAsync.deviceFingerprint` accepts at most 1024 characters (PROTOCOL.md §2.3.5).
pub const MAX_REQUEST_FORM_CHARS: usize = 1024;

/// Input longer than this is refused before any work is done on it: whitespace around the
/// values is tolerated, but not without bound.
const MAX_RAW_INPUT_BYTES: usize = 4 * MAX_FINGERPRINT_BYTES;

const SLOT_NAMES: [&str; 4] = ["MAC", "disk", "board", "CPU"];

/// The device fingerprint a customer pastes into KooGallery and a Model B License is bound to.
///
/// Canonical form: four slots `MAC|disk|board|CPU`; an unreadable slot is empty but keeps its
/// separators; several MACs or disks are joined with `,`; every value is trimmed and upper
/// case; multi-valued slots are sorted and free of duplicates, so two strings that list the
/// same adapters in another order are equal. MACs written with `-` are rewritten with `:`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KooGalleryFingerprint {
    text: String,
    macs: Vec<String>,
    disks: Vec<String>,
    board: String,
    cpu: String,
}

impl KooGalleryFingerprint {
    /// Builds the canonical fingerprint from collected values.
    ///
    /// Values are normalised as by [`parse`](Self::parse); a value with a control character
    /// or a `|` or `,` (which would break the format) is dropped. If the result would exceed
    /// [`MAX_FINGERPRINT_BYTES`] it is reduced by the same rule as
    /// [`to_request_form`](Self::to_request_form).
    #[must_use]
    pub fn from_values<S: AsRef<str>>(macs: &[S], disks: &[S], board: &str, cpu: &str) -> Self {
        let clean = |v: &str| {
            let v = normalise_value(v);
            (!v.is_empty() && !v.contains(['|', ',']) && !v.chars().any(char::is_control))
                .then_some(v)
        };
        let macs = macs
            .iter()
            .filter_map(|m| clean(m.as_ref()))
            .map(|m| normalise_mac(&m));
        let disks = disks.iter().filter_map(|d| clean(d.as_ref()));
        let full = Self::assemble(
            canonical_set(macs),
            canonical_set(disks),
            clean(board).unwrap_or_default(),
            clean(cpu).unwrap_or_default(),
        );
        full.reduce(MAX_FINGERPRINT_BYTES, str::len)
    }

    /// Parses a fingerprint as pasted by a user or sent by KooGallery.
    ///
    /// Tolerates any case and whitespace around the string and around each value; empty entries
    /// inside a multi-valued slot are dropped.
    ///
    /// # Errors
    /// [`FingerprintError::TooLong`] when the canonical string exceeds
    /// [`MAX_FINGERPRINT_BYTES`], [`FingerprintError::WrongSlotCount`] when there are not exactly
    /// four slots, [`FingerprintError::ControlCharacter`] when a value holds one.
    pub fn parse(input: &str) -> Result<Self, FingerprintError> {
        let trimmed = input.trim();
        if trimmed.len() > MAX_RAW_INPUT_BYTES {
            return Err(FingerprintError::TooLong {
                len: trimmed.len(),
                max: MAX_FINGERPRINT_BYTES,
            });
        }
        let slots: Vec<&str> = trimmed.split('|').collect();
        if slots.len() != 4 {
            return Err(FingerprintError::WrongSlotCount { found: slots.len() });
        }
        for (slot, name) in slots.iter().zip(SLOT_NAMES) {
            if slot.chars().any(char::is_control) {
                return Err(FingerprintError::ControlCharacter { slot: name });
            }
        }
        let split = |slot: &str| {
            slot.split(',')
                .map(normalise_value)
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
        };
        let macs = canonical_set(split(slots[0]).iter().map(|m| normalise_mac(m)));
        let disks = canonical_set(split(slots[1]));
        let fingerprint = Self::assemble(
            macs,
            disks,
            normalise_value(slots[2]),
            normalise_value(slots[3]),
        );
        if fingerprint.text.len() > MAX_FINGERPRINT_BYTES {
            return Err(FingerprintError::TooLong {
                len: fingerprint.text.len(),
                max: MAX_FINGERPRINT_BYTES,
            });
        }
        Ok(fingerprint)
    }

    fn assemble(macs: Vec<String>, disks: Vec<String>, board: String, cpu: String) -> Self {
        let text = format!("{}|{}|{}|{}", macs.join(","), disks.join(","), board, cpu);
        Self {
            text,
            macs,
            disks,
            board,
            cpu,
        }
    }

    /// The canonical string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The MAC addresses, sorted, colon-separated, upper case.
    #[must_use]
    pub fn macs(&self) -> &[String] {
        &self.macs
    }

    /// The disk serial numbers, sorted, upper case.
    #[must_use]
    pub fn disks(&self) -> &[String] {
        &self.disks
    }

    /// The board serial, empty when unreadable.
    #[must_use]
    pub fn board(&self) -> &str {
        &self.board
    }

    /// The CPU id, empty when unreadable.
    #[must_use]
    pub fn cpu(&self) -> &str {
        &self.cpu
    }

    /// Whether every slot is empty: such a fingerprint identifies nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
            && self.disks.is_empty()
            && self.board.is_empty()
            && self.cpu.is_empty()
    }

    /// The form sent as `getLicenseAsync.deviceFingerprint`: at most
    /// [`MAX_REQUEST_FORM_CHARS`] characters, itself a valid fingerprint.
    ///
    /// Identical to [`as_str`](Self::as_str) when that fits. Otherwise whole values are
    /// dropped, never cut: repeatedly the last value (in sort order) of whichever of the MAC
    /// and disk slots holds more values is removed (disks first on a tie), keeping at least one
    /// value in each; if one value per slot still does not fit, whole slots are emptied in the
    /// order disk, MAC, board, CPU. The rule depends only on the values, so the same machine
    /// always produces the same request form.
    #[must_use]
    pub fn to_request_form(&self) -> KooGalleryFingerprint {
        self.reduce(MAX_REQUEST_FORM_CHARS, |s| s.chars().count())
    }

    fn reduce(&self, limit: usize, measure: impl Fn(&str) -> usize) -> Self {
        let mut current = self.clone();
        while measure(&current.text) > limit {
            let (mut macs, mut disks) = (current.macs, current.disks);
            let (mut board, mut cpu) = (current.board, current.cpu);
            if disks.len() > 1 && disks.len() >= macs.len() {
                disks.pop();
            } else if macs.len() > 1 {
                macs.pop();
            } else if !disks.is_empty() {
                disks.clear();
            } else if !macs.is_empty() {
                macs.clear();
            } else if !board.is_empty() {
                board.clear();
            } else {
                cpu.clear();
            }
            current = Self::assemble(macs, disks, board, cpu);
        }
        current
    }

    /// Compares `self` (the reference, e.g. the string a License is bound to) with `other`
    /// (e.g. the fingerprint of the machine now), slot by slot.
    ///
    /// The four slots are the components: the MAC set, the disk set, the board serial, the CPU
    /// id. A slot empty on both sides is not compared (it was unreadable both times); empty on
    /// one side only, it counts as removed or added. Inside the MAC and disk slots every value
    /// counts on its own, so replacing one disk of three is one change, not a changed slot.
    ///
    /// A request form compares against a full fingerprint fairly: when one side fits in
    /// [`MAX_REQUEST_FORM_CHARS`] and the other does not, the longer side is first reduced with
    /// [`to_request_form`](Self::to_request_form), so the values dropped by the reduction are
    /// not counted as removed.
    #[must_use]
    pub fn matches(&self, other: &KooGalleryFingerprint, policy: MatchPolicy) -> MatchVerdict {
        let chars = |f: &Self| f.text.chars().count();
        let (reference, candidate) = match (chars(self), chars(other)) {
            (a, b) if a <= MAX_REQUEST_FORM_CHARS && b > MAX_REQUEST_FORM_CHARS => {
                (self.clone(), other.to_request_form())
            }
            (a, b) if b <= MAX_REQUEST_FORM_CHARS && a > MAX_REQUEST_FORM_CHARS => {
                (self.to_request_form(), other.clone())
            }
            _ => (self.clone(), other.clone()),
        };
        let mut agreed = 0;
        let mut changed = Vec::new();
        let show = |v: &str| v.to_owned();
        compare_sets(
            ComponentKind::Mac,
            &reference.macs,
            &candidate.macs,
            show,
            &mut agreed,
            &mut changed,
        );
        compare_sets(
            ComponentKind::Disk,
            &reference.disks,
            &candidate.disks,
            show,
            &mut agreed,
            &mut changed,
        );
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        compare_single(
            ComponentKind::BoardSerial,
            non_empty(&reference.board).as_deref(),
            non_empty(&candidate.board).as_deref(),
            show,
            &mut agreed,
            &mut changed,
        );
        compare_single(
            ComponentKind::CpuId,
            non_empty(&reference.cpu).as_deref(),
            non_empty(&candidate.cpu).as_deref(),
            show,
            &mut agreed,
            &mut changed,
        );
        MatchVerdict::decide(policy, agreed, changed)
    }
}

fn normalise_value(value: &str) -> String {
    value.trim().to_uppercase()
}

/// `04-7c-16-5e-e3-5d` (Windows `getmac`) and `04:7C:16:5E:E3:5D` (WMI, Linux) are one MAC.
fn normalise_mac(mac: &str) -> String {
    let octets: Vec<&str> = mac.split('-').collect();
    if octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()))
    {
        octets.join(":")
    } else {
        mac.to_owned()
    }
}

fn canonical_set(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut values: Vec<String> = values.into_iter().collect();
    values.sort();
    values.dedup();
    values
}

impl fmt::Display for KooGalleryFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for KooGalleryFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KooGalleryFingerprint")
            .field(&self.text)
            .finish()
    }
}

impl std::str::FromStr for KooGalleryFingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for KooGalleryFingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for KooGalleryFingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::ChangeKind;

    const DOC_EXAMPLE: &str = "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672";

    #[test]
    fn documented_example_round_trips() {
        let fp = KooGalleryFingerprint::parse(DOC_EXAMPLE).unwrap();
        assert_eq!(fp.as_str(), DOC_EXAMPLE);
        assert_eq!(fp.macs(), ["04:7C:16:5E:E3:5D"]);
        assert_eq!(fp.disks(), ["001B_444A_488B_5CEC."]);
        assert_eq!(fp.board(), "");
        assert_eq!(fp.cpu(), "BFEBFBFF00090672");
        assert_eq!(fp.to_string(), DOC_EXAMPLE);
    }

    #[test]
    fn parse_tolerates_case_whitespace_order_and_dashes() {
        let messy = "  04-7c-16-5e-e3-5d , 00:11:22:33:44:55 ,| 001b_444a_488b_5cec. |  | bfebfbff00090672 \n";
        let fp = KooGalleryFingerprint::parse(messy).unwrap();
        assert_eq!(
            fp.as_str(),
            "00:11:22:33:44:55,04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672"
        );
    }

    #[test]
    fn parse_rejects_wrong_slot_count_length_and_control_characters() {
        assert_eq!(
            KooGalleryFingerprint::parse("a|b|c"),
            Err(FingerprintError::WrongSlotCount { found: 3 })
        );
        assert_eq!(
            KooGalleryFingerprint::parse("a|b|c|d|e"),
            Err(FingerprintError::WrongSlotCount { found: 5 })
        );
        let long = format!("{}|||", "A".repeat(MAX_FINGERPRINT_BYTES - 2));
        assert!(matches!(
            KooGalleryFingerprint::parse(&long),
            Err(FingerprintError::TooLong { .. })
        ));
        let fits = format!("{}|||", "A".repeat(MAX_FINGERPRINT_BYTES - 3));
        assert!(KooGalleryFingerprint::parse(&fits).is_ok());
        assert_eq!(
            KooGalleryFingerprint::parse("a|b\u{7}|c|d"),
            Err(FingerprintError::ControlCharacter { slot: "disk" })
        );
    }

    #[test]
    fn empty_slots_keep_their_separators() {
        let fp = KooGalleryFingerprint::from_values::<&str>(&[], &[], "", "");
        assert_eq!(fp.as_str(), "|||");
        assert!(fp.is_empty());
        let fp = KooGalleryFingerprint::from_values(&["aa:bb:cc:dd:ee:ff"], &[], "", "x");
        assert_eq!(fp.as_str(), "AA:BB:CC:DD:EE:FF|||X");
    }

    #[test]
    fn from_values_drops_values_that_would_break_the_format() {
        let fp =
            KooGalleryFingerprint::from_values(&["a|b", "  "], &["s,1", "ok"], "b\u{0}", "cpu");
        assert_eq!(fp.as_str(), "|OK||CPU");
    }

    fn many(prefix: &str, n: usize, width: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:0width$}")).collect()
    }

    #[test]
    fn request_form_fits_and_never_cuts_a_value() {
        let macs: Vec<String> = (0..60).map(|i| format!("02:00:00:00:00:{i:02X}")).collect();
        let disks = many("SERIAL-", 80, 20);
        let full = KooGalleryFingerprint::from_values(&macs, &disks, "BOARD1", "CPU1");
        assert!(full.as_str().len() > MAX_REQUEST_FORM_CHARS);
        let reduced = full.to_request_form();
        assert!(reduced.as_str().chars().count() <= MAX_REQUEST_FORM_CHARS);
        assert!(reduced.macs().iter().all(|m| full.macs().contains(m)));
        assert!(reduced.disks().iter().all(|d| full.disks().contains(d)));
        assert_eq!(reduced.board(), "BOARD1");
        assert_eq!(reduced.cpu(), "CPU1");
        // the kept values are the first ones in sort order, and both slots keep some
        assert_eq!(reduced.macs(), &full.macs()[..reduced.macs().len()]);
        assert_eq!(reduced.disks(), &full.disks()[..reduced.disks().len()]);
        assert!(!reduced.macs().is_empty() && !reduced.disks().is_empty());
        // it is itself a valid fingerprint and a fixed point
        assert_eq!(
            KooGalleryFingerprint::parse(reduced.as_str()).unwrap(),
            reduced
        );
        assert_eq!(reduced.to_request_form(), reduced);
        // and deterministic regardless of the input order
        let mut shuffled = disks.clone();
        shuffled.reverse();
        let again = KooGalleryFingerprint::from_values(&macs, &shuffled, "BOARD1", "CPU1");
        assert_eq!(again.to_request_form(), reduced);
    }

    #[test]
    fn request_form_empties_slots_whose_single_value_is_too_long() {
        let huge = "D".repeat(2000);
        let full =
            KooGalleryFingerprint::from_values(&["AA:BB:CC:DD:EE:FF"], &[huge.as_str()], "", "CPU");
        let reduced = full.to_request_form();
        assert_eq!(reduced.as_str(), "AA:BB:CC:DD:EE:FF|||CPU");
    }

    #[test]
    fn short_fingerprint_is_its_own_request_form() {
        let fp = KooGalleryFingerprint::parse(DOC_EXAMPLE).unwrap();
        assert_eq!(fp.to_request_form(), fp);
    }

    #[test]
    fn matching_counts_each_value_and_tolerates_one_change() {
        let bound =
            KooGalleryFingerprint::parse("AA:AA:AA:AA:AA:01,AA:AA:AA:AA:AA:02|D1,D2|B|C").unwrap();
        let same = bound.clone();
        let v = bound.matches(&same, MatchPolicy::Strict);
        assert!(v.matched, "{v}");
        assert_eq!(v.agreed, 6);

        let new_disk =
            KooGalleryFingerprint::parse("AA:AA:AA:AA:AA:01,AA:AA:AA:AA:AA:02|D1,D3|B|C").unwrap();
        let v = bound.matches(&new_disk, MatchPolicy::AllButOne);
        assert!(v.matched);
        assert_eq!(v.changed.len(), 1);
        assert_eq!(v.changed[0].component, ComponentKind::Disk);
        assert_eq!(v.changed[0].change, ChangeKind::Replaced);
        assert_eq!(
            v.to_string(),
            "match, 1 component changed: disk replaced (was D2, now D3)"
        );
        assert!(!bound.matches(&new_disk, MatchPolicy::Strict).matched);

        let two = KooGalleryFingerprint::parse("AA:AA:AA:AA:AA:01|D1,D3|B|C").unwrap();
        let v = bound.matches(&two, MatchPolicy::AllButOne);
        assert!(!v.matched, "{v}");
        assert!(bound.matches(&two, MatchPolicy::Loose).matched);
    }

    #[test]
    fn empty_slots_on_both_sides_are_not_compared() {
        let a = KooGalleryFingerprint::parse("||B|C").unwrap();
        let v = a.matches(&a, MatchPolicy::Strict);
        assert!(v.matched);
        assert_eq!(v.agreed, 2);
        let blank = KooGalleryFingerprint::parse("|||").unwrap();
        let v = blank.matches(&blank, MatchPolicy::Loose);
        assert!(!v.matched, "an empty fingerprint must never match: {v}");
        let lost_board = KooGalleryFingerprint::parse("|||C").unwrap();
        let v = a.matches(&lost_board, MatchPolicy::AllButOne);
        assert!(v.matched);
        assert_eq!(v.changed[0].change, ChangeKind::Removed);
    }

    #[test]
    fn request_form_matches_its_full_fingerprint_strictly() {
        let macs: Vec<String> = (0..40).map(|i| format!("02:00:00:00:00:{i:02X}")).collect();
        let disks = many("WD-WX", 60, 12);
        let full = KooGalleryFingerprint::from_values(&macs, &disks, "", "BFEBFBFF000906EA");
        let bound = full.to_request_form();
        assert!(bound.matches(&full, MatchPolicy::Strict).matched);
        assert!(full.matches(&bound, MatchPolicy::Strict).matched);
    }

    #[test]
    fn serde_is_the_canonical_string() {
        let fp = KooGalleryFingerprint::parse(DOC_EXAMPLE).unwrap();
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, format!("\"{DOC_EXAMPLE}\""));
        let back: KooGalleryFingerprint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, fp);
        assert!(serde_json::from_str::<KooGalleryFingerprint>("\"a|b\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_canonical_form_is_a_fixed_point(s in "[ a-fA-F0-9,|:._-]{0,300}") {
            if let Ok(fp) = KooGalleryFingerprint::parse(&s) {
                let again = KooGalleryFingerprint::parse(fp.as_str()).unwrap();
                proptest::prop_assert_eq!(again, fp.clone());
                proptest::prop_assert!(fp.to_request_form().as_str().chars().count() <= MAX_REQUEST_FORM_CHARS);
            }
        }
    }
}
