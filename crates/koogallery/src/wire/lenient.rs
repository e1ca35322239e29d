//! Serde adapters for the ways KooGallery bends its own types.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;
use tessera_types::KooTime;

/// A string that may arrive as a JSON number (ids, `customerType`, `currencyAfterDiscount`).
pub(crate) mod string {
    use super::{Deserializer, StrOrNum, de};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(StrOrNum)?
            .ok_or_else(|| de::Error::custom("expected a string or a number, found null"))
    }
}

/// A string where `null` means empty (`error_msg`, `resultMsg` of some gateways).
pub(crate) mod nullable_string {
    use super::{Deserializer, StrOrNum};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(d.deserialize_any(StrOrNum)?.unwrap_or_default())
    }
}

/// An optional string that may arrive as a number; null and absent are `None`.
pub(crate) mod opt_string {
    use super::{Deserializer, StrOrNum};
    use serde::Deserialize;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(d)?.and_then(|w| w.0))
    }

    struct Wrapped(Option<String>);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StrOrNum).map(Wrapped)
        }
    }
}

struct StrOrNum;

impl<'de> Visitor<'de> for StrOrNum {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An optional unsigned integer that may arrive as a number or a numeric string; null, absent
/// and `""` are `None`. Serialises as a JSON number.
pub(crate) mod opt_uint {
    use super::{Deserializer, de};
    use serde::{Deserialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Float(f64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Num(n)) => Ok(Some(n)),
            // `2.0` is a quantity written by a JavaScript-ish serialiser; anything fractional is
            // not a count.
            Some(Raw::Float(f)) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => format!("{f:.0}")
                .parse()
                .map(Some)
                .map_err(de::Error::custom),
            Some(Raw::Float(f)) => Err(de::Error::custom(format!(
                "{f} is not a non-negative whole number"
            ))),
            Some(Raw::Text(s)) if s.trim().is_empty() => Ok(None),
            Some(Raw::Text(s)) => s.trim().parse().map(Some).map_err(|_| {
                let shown: String = s.chars().take(32).collect();
                de::Error::custom(format!("{shown:?} is not a non-negative whole number"))
            }),
        }
    }

    #[allow(clippy::ref_option)] // serde's `serialize_with` hands us `&Option<T>`.
    pub(crate) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }
}

/// A time whose format the documentation did not capture (heartbeat `activate_time`,
/// `expire_time`): read it with [`KooTime`] when possible, otherwise drop it rather than reject
/// the whole answer, since the caller can live without it.
pub(crate) mod best_effort_time {
    use super::{Deserialize, Deserializer, KooTime, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<KooTime>, D::Error> {
        let raw = Option::<serde_json::Value>::deserialize(d)?;
        let parsed = match &raw {
            Some(serde_json::Value::String(s)) => KooTime::parse(s).ok(),
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .and_then(|n| KooTime::from_epoch_digits(&n.to_string()).ok()),
            _ => None,
        };
        if parsed.is_none() && raw.as_ref().is_some_and(|v| !v.is_null()) {
            tracing::debug!("ignoring a heartbeat time in an unknown format");
        }
        Ok(parsed)
    }

    #[allow(clippy::ref_option)] // serde's `serialize_with` hands us `&Option<T>`.
    pub(crate) fn serialize<S: Serializer>(v: &Option<KooTime>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&t.format_compact()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, with = "super::opt_uint")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "super::opt_string::deserialize")]
        s: Option<String>,
    }

    fn t(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_and_strings_interchange() {
        assert_eq!(t(r#"{"n":"42"}"#).unwrap().n, Some(42));
        assert_eq!(t(r#"{"n":42}"#).unwrap().n, Some(42));
        assert_eq!(t(r#"{"n":2.0}"#).unwrap().n, Some(2));
        assert_eq!(t(r#"{"n":""}"#).unwrap().n, None);
        assert_eq!(t(r#"{"n":null}"#).unwrap().n, None);
        assert!(t(r#"{"n":"x1"}"#).is_err());
        assert!(t(r#"{"n":-1}"#).is_err());
        assert!(t(r#"{"n":1.5}"#).is_err());
        assert_eq!(t(r#"{"s":0}"#).unwrap().s.as_deref(), Some("0"));
        assert_eq!(t(r#"{"s":"a"}"#).unwrap().s.as_deref(), Some("a"));
        assert_eq!(t(r#"{"s":null}"#).unwrap().s, None);
        assert_eq!(t("{}").unwrap().s, None);
    }
}
