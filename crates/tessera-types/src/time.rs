//! KooGallery time formats (PROTOCOL.md §6 item 10): one tolerant parser, one formatter per form.
//!
//! The marketplace is inconsistent: most APIs use `yyyyMMddHHmmss`, the refreshInstance example
//! carries 17 digits (milliseconds), getLicenseAsync uses `"2023-10-27 10:30:15 z"`, APIG uses
//! `yyyyMMdd'T'HHmmss'Z'`, and callback timestamps are Unix epochs in seconds or milliseconds.
//! Every one of them is read as UTC. An all-digit string is told apart by its length:
//!
//! | digits | read as |
//! |---|---|
//! | 9–11 | Unix epoch seconds (1973–5138) |
//! | 13 | Unix epoch milliseconds |
//! | 14 | `yyyyMMddHHmmss` |
//! | 17 | `yyyyMMddHHmmssSSS` |
//!
//! Other lengths (a bare year, 12, 15 or 16 digits) are refused rather than guessed at.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A moment in UTC as KooGallery writes it, in any of its formats.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KooTime(OffsetDateTime);

/// Why a string is not a KooGallery time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a KooGallery time: {reason}")]
pub struct TimeParseError {
    input: String,
    reason: &'static str,
}

impl TimeParseError {
    fn new(input: &str, reason: &'static str) -> Self {
        // Bound what we echo back: the input may be attacker-controlled and arbitrarily long.
        let input: String = input.chars().take(64).collect();
        Self { input, reason }
    }
}

impl KooTime {
    /// Wraps an `OffsetDateTime`, converting it to UTC.
    #[must_use]
    pub fn new(t: OffsetDateTime) -> Self {
        Self(t.to_offset(UtcOffset::UTC))
    }

    /// Parses any KooGallery time format (see the module docs).
    ///
    /// # Errors
    /// When the text matches none of the formats, or names a date that does not exist.
    pub fn parse(input: &str) -> Result<Self, TimeParseError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(TimeParseError::new(input, "it is empty"));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return parse_digits(input, s);
        }
        let b = s.as_bytes();
        // yyyyMMdd'T'HHmmss'Z' (APIG X-Sdk-Date)
        if b.len() == 16
            && b[8] == b'T'
            && (b[15] == b'Z' || b[15] == b'z')
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        {
            return compact(input, &s[..8], &s[9..15], None);
        }
        parse_separated(input, s)
    }

    /// Reads a Unix timestamp, seconds or milliseconds by digit count (9–11 digits: seconds,
    /// 13: milliseconds).
    ///
    /// # Errors
    /// When the digit count fits neither unit.
    pub fn from_epoch_digits(digits: &str) -> Result<Self, TimeParseError> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimeParseError::new(
                digits,
                "an epoch timestamp is all digits",
            ));
        }
        match digits.len() {
            9..=11 | 13 => parse_digits(digits, digits),
            _ => Err(TimeParseError::new(
                digits,
                "an epoch timestamp has 9-11 digits (seconds) or 13 (milliseconds)",
            )),
        }
    }

    /// The moment as an `OffsetDateTime` in UTC.
    #[must_use]
    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub fn unix_millis(self) -> i64 {
        i64::try_from(self.0.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// `yyyyMMddHHmmss`, the form of most KooGallery APIs.
    #[must_use]
    pub fn format_compact(self) -> String {
        let t = self.0;
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// `yyyyMMddHHmmssSSS`, the 17-digit form (refreshInstance, legacy `timeStamp`).
    #[must_use]
    pub fn format_compact_millis(self) -> String {
        format!("{}{:03}", self.format_compact(), self.0.millisecond())
    }

    /// `yyyy-MM-dd HH:mm:ss z`, the getLicenseAsync form (`"2023-10-27 10:30:15 z"`).
    #[must_use]
    pub fn format_spaced(self) -> String {
        let t = self.0;
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// `yyyyMMdd'T'HHmmss'Z'`, the APIG `X-Sdk-Date` form.
    #[must_use]
    pub fn format_sdk_date(self) -> String {
        let c = self.format_compact();
        format!("{}T{}Z", &c[..8], &c[8..])
    }
}

fn parse_digits(input: &str, s: &str) -> Result<KooTime, TimeParseError> {
    match s.len() {
        9..=11 => {
            let secs: i64 = s
                .parse()
                .map_err(|_| TimeParseError::new(input, "epoch seconds out of range"))?;
            OffsetDateTime::from_unix_timestamp(secs)
                .map(KooTime)
                .map_err(|_| TimeParseError::new(input, "epoch seconds out of range"))
        }
        13 => {
            let millis: i128 = s
                .parse()
                .map_err(|_| TimeParseError::new(input, "epoch milliseconds out of range"))?;
            OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
                .map(KooTime)
                .map_err(|_| TimeParseError::new(input, "epoch milliseconds out of range"))
        }
        14 => compact(input, &s[..8], &s[8..14], None),
        17 => compact(input, &s[..8], &s[8..14], Some(&s[14..17])),
        _ => Err(TimeParseError::new(
            input,
            "an all-digit time has 9-11 (epoch s), 13 (epoch ms), 14 (yyyyMMddHHmmss) or 17 digits",
        )),
    }
}

fn num(input: &str, digits: &str) -> Result<u16, TimeParseError> {
    digits
        .parse()
        .map_err(|_| TimeParseError::new(input, "expected digits"))
}

/// Builds a time from `yyyyMMdd`, `HHmmss` and optional `SSS` digit groups.
fn compact(
    input: &str,
    ymd: &str,
    hms: &str,
    millis: Option<&str>,
) -> Result<KooTime, TimeParseError> {
    let year = i32::from(num(input, &ymd[..4])?);
    let month = num(input, &ymd[4..6])?;
    let day = num(input, &ymd[6..8])?;
    let hour = num(input, &hms[..2])?;
    let minute = num(input, &hms[2..4])?;
    let second = num(input, &hms[4..6])?;
    let milli = millis.map(|m| num(input, m)).transpose()?.unwrap_or(0);
    build(input, year, month, day, (hour, minute, second, milli))
}

fn build(
    input: &str,
    year: i32,
    month: u16,
    day: u16,
    (hour, minute, second, milli): (u16, u16, u16, u16),
) -> Result<KooTime, TimeParseError> {
    let bad = |reason| TimeParseError::new(input, reason);
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| bad("the month is not 01-12"))?;
    let day = u8::try_from(day).map_err(|_| bad("the day is out of range"))?;
    let date = Date::from_calendar_date(year, month, day)
        .map_err(|_| bad("that day does not exist in that month"))?;
    let small = |v: u16| u8::try_from(v).unwrap_or(u8::MAX);
    let time = Time::from_hms_milli(small(hour), small(minute), small(second), milli)
        .map_err(|_| bad("the time of day is out of range"))?;
    Ok(KooTime(PrimitiveDateTime::new(date, time).assume_utc()))
}

/// `yyyy-MM-dd[ T]HH:mm:ss[.SSS][ ][z|Z|UTC|±hh:mm]`.
fn parse_separated(input: &str, s: &str) -> Result<KooTime, TimeParseError> {
    let bad = |reason| TimeParseError::new(input, reason);
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad(
            "expected yyyyMMddHHmmss, yyyy-MM-dd HH:mm:ss z, yyyyMMddTHHmmssZ or epoch digits",
        ));
    }
    let field = |range: std::ops::Range<usize>| -> Result<u16, TimeParseError> {
        let part = &s[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            num(input, part)
        } else {
            Err(bad("expected digits in the date or time"))
        }
    };
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let mut rest = &s[19..];
    let mut milli = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return Err(bad("a fraction of a second needs 1-9 digits"));
        }
        // Keep milliseconds, the finest resolution KooGallery uses.
        let mut ms = frac[..n.min(3)].to_owned();
        while ms.len() < 3 {
            ms.push('0');
        }
        milli = num(input, &ms)?;
        rest = &frac[n..];
    }
    let offset = parse_zone(rest.trim_start()).ok_or_else(|| {
        bad("the zone after the time must be empty, z, Z, UTC, GMT or an offset like +08:00")
    })?;
    let t = build(
        input,
        i32::from(year),
        month,
        day,
        (hour, minute, second, milli),
    )?;
    // A local time with an offset: the UTC instant is local minus offset.
    Ok(KooTime(
        t.0.replace_offset(offset).to_offset(UtcOffset::UTC),
    ))
}

fn parse_zone(zone: &str) -> Option<UtcOffset> {
    match zone {
        "" | "z" | "Z" | "UTC" | "utc" | "GMT" | "gmt" => return Some(UtcOffset::UTC),
        _ => {}
    }
    let b = zone.as_bytes();
    let sign: i8 = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i8 = digits[..2].parse().ok()?;
    let m: i8 = digits[2..].parse().ok()?;
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

impl From<OffsetDateTime> for KooTime {
    fn from(t: OffsetDateTime) -> Self {
        Self::new(t)
    }
}

impl From<KooTime> for OffsetDateTime {
    fn from(t: KooTime) -> Self {
        t.0
    }
}

impl FromStr for KooTime {
    type Err = TimeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for KooTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KooTime({})", self.format_compact_millis())
    }
}

/// Displays as `yyyyMMddHHmmss`, the most common wire form.
impl fmt::Display for KooTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format_compact())
    }
}

/// Serialises as `yyyyMMddHHmmss`; use [`spaced`] for the getLicenseAsync form.
impl Serialize for KooTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.format_compact())
    }
}

/// Deserialises from a string in any format, or from a JSON integer epoch (s or ms by digits).
impl<'de> Deserialize<'de> for KooTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = KooTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a KooGallery time string or an epoch number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KooTime, E> {
                KooTime::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<KooTime, E> {
                KooTime::from_epoch_digits(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<KooTime, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("a negative epoch is not a KooGallery time"))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Serde adapter for fields written as `yyyy-MM-dd HH:mm:ss z` (getLicenseAsync).
pub mod spaced {
    use super::KooTime;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time as `yyyy-MM-dd HH:mm:ss z`.
    ///
    /// # Errors
    /// Only those of the serializer.
    pub fn serialize<S: Serializer>(t: &KooTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format_spaced())
    }

    /// Reads any KooGallery format.
    ///
    /// # Errors
    /// When the value is not a KooGallery time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KooTime, D::Error> {
        KooTime::deserialize(d)
    }

    /// The same for an optional field.
    pub mod option {
        use super::KooTime;
        use serde::{Deserializer, Serializer};

        /// Writes `Some` as `yyyy-MM-dd HH:mm:ss z`, `None` as null.
        ///
        /// # Errors
        /// Only those of the serializer.
        pub fn serialize<S: Serializer>(t: &Option<KooTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&t.format_spaced()),
                None => s.serialize_none(),
            }
        }

        /// Reads any KooGallery format; null, absent or an empty string is `None`.
        ///
        /// # Errors
        /// When the value is neither empty nor a KooGallery time.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KooTime>, D::Error> {
            super::super::optional(d)
        }
    }
}

/// Serde adapter for optional fields in the default `yyyyMMddHHmmss` form that tolerates an
/// empty string as "absent" (several KooGallery samples send `""`).
pub mod optional {
    use super::KooTime;
    use serde::{Deserializer, Serialize, Serializer};

    /// Writes `Some` as `yyyyMMddHHmmss`, `None` as null.
    ///
    /// # Errors
    /// Only those of the serializer.
    pub fn serialize<S: Serializer>(t: &Option<KooTime>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    /// Reads any KooGallery format; null, absent or an empty string is `None`.
    ///
    /// # Errors
    /// When the value is neither empty nor a KooGallery time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KooTime>, D::Error> {
        super::optional(d)
    }
}

fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KooTime>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Text(s)) => KooTime::parse(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Raw::Number(n)) => KooTime::from_epoch_digits(&n.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn t(s: &str) -> OffsetDateTime {
        KooTime::parse(s).unwrap().datetime()
    }

    #[test]
    fn every_documented_format_parses_to_the_same_instant() {
        let want = datetime!(2023-10-27 10:30:15 UTC);
        assert_eq!(t("20231027103015"), want);
        assert_eq!(t("20231027103015000"), want);
        assert_eq!(t("2023-10-27 10:30:15 z"), want);
        assert_eq!(t("2023-10-27 10:30:15 Z"), want);
        assert_eq!(t("2023-10-27 10:30:15"), want);
        assert_eq!(t("2023-10-27T10:30:15Z"), want);
        assert_eq!(t("20231027T103015Z"), want);
        assert_eq!(t("1698402615"), want);
        assert_eq!(t("1698402615000"), want);
        assert_eq!(t("  20231027103015 "), want);
    }

    #[test]
    fn milliseconds_and_offsets_are_kept() {
        assert_eq!(
            t("20221124023618256"),
            datetime!(2022-11-24 02:36:18.256 UTC)
        );
        assert_eq!(t("1680508066618"), datetime!(2023-04-03 07:47:46.618 UTC));
        assert_eq!(
            t("2023-10-27 18:30:15 +08:00"),
            datetime!(2023-10-27 10:30:15 UTC)
        );
        assert_eq!(
            t("2023-10-27 10:30:15.5 z"),
            datetime!(2023-10-27 10:30:15.5 UTC)
        );
    }

    #[test]
    fn formatters_write_each_wire_form() {
        let k = KooTime::new(datetime!(2016-06-29 10:14:59.042 UTC));
        assert_eq!(k.format_compact(), "20160629101459");
        assert_eq!(k.format_compact_millis(), "20160629101459042");
        assert_eq!(k.format_spaced(), "2016-06-29 10:14:59 z");
        assert_eq!(k.format_sdk_date(), "20160629T101459Z");
        assert_eq!(k.unix_millis(), 1_467_195_299_042);
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        for bad in [
            "",
            "2023",
            "202310271030",
            "20231327103015",
            "20230230103015",
            "20231027253015",
            "2023-10-27 10:30:15 CEST",
            "yesterday",
            "2023-10-27 10:30",
            "20231027T103015",
        ] {
            let err = KooTime::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("not a KooGallery time"),
                "{bad}: {err}"
            );
        }
        let long = "9".repeat(10_000);
        assert!(KooTime::parse(&long).unwrap_err().to_string().len() < 300);
    }

    #[test]
    fn serde_reads_strings_numbers_and_empty_optionals() {
        #[derive(Deserialize, Serialize)]
        struct S {
            a: KooTime,
            #[serde(with = "spaced")]
            b: KooTime,
            #[serde(default, with = "optional")]
            c: Option<KooTime>,
            #[serde(default, with = "optional")]
            d: Option<KooTime>,
        }
        let s: S = serde_json::from_str(
            r#"{"a":1698402615000,"b":"20231027103015","c":"","d":"2023-10-27 10:30:15 z"}"#,
        )
        .unwrap();
        assert_eq!(s.a, s.b);
        assert_eq!(s.c, None);
        assert_eq!(s.d, Some(s.a));
        let out = serde_json::to_string(&s).unwrap();
        assert_eq!(
            out,
            r#"{"a":"20231027103015","b":"2023-10-27 10:30:15 z","c":null,"d":"20231027103015"}"#
        );
    }

    proptest! {
        #[test]
        fn every_formatter_round_trips(secs in 1_000_000_000i64..4_102_444_800, ms in 0i64..1000) {
            let k = KooTime::new(OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(secs * 1000 + ms) * 1_000_000).unwrap());
            let whole = KooTime::new(OffsetDateTime::from_unix_timestamp(secs).unwrap());
            prop_assert_eq!(KooTime::parse(&k.format_compact_millis()).unwrap(), k);
            prop_assert_eq!(KooTime::parse(&k.unix_millis().to_string()).unwrap(), k);
            prop_assert_eq!(KooTime::parse(&k.format_compact()).unwrap(), whole);
            prop_assert_eq!(KooTime::parse(&k.format_spaced()).unwrap(), whole);
            prop_assert_eq!(KooTime::parse(&k.format_sdk_date()).unwrap(), whole);
        }

        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = KooTime::parse(&s);
        }
    }
}
