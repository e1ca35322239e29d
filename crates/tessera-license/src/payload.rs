//! The file form's payload: a License as canonical JSON.

use serde_json::{Map, Value};

use crate::canonical::{self, NotCanonical};
use crate::error::{Location, VerifyError};
use crate::model::{Binding, FORMAT_VERSION, Feature, FieldError, License, Nonce, time_from_unix};

/// Why a License could not be encoded as a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field breaks the format's rules.
    #[error("the License is not valid")]
    Invalid(#[source] FieldError),
    /// The binding holds only a fingerprint hash, which the file form cannot carry.
    #[error("the file form needs the full device fingerprint, but the License holds only its hash")]
    HashOnlyBinding,
    /// The hardware id could not be written as canonical JSON.
    #[error("the hardware id cannot be written as canonical JSON: {0}")]
    HardwareId(String),
}

/// The canonical JSON bytes of `license`.
///
/// # Errors
/// [`EncodeError`] if the License breaks a rule or cannot be written in this form.
pub fn encode(license: &License) -> Result<Vec<u8>, EncodeError> {
    license.validate().map_err(EncodeError::Invalid)?;
    let Binding::Device {
        fingerprint,
        hardware_id,
    } = &license.binding
    else {
        return Err(EncodeError::HashOnlyBinding);
    };
    let mut binding = Map::new();
    binding.insert("fingerprint".into(), fingerprint.clone().into());
    if let Some(hw) = hardware_id {
        let hw = serde_json::to_value(hw).map_err(|e| EncodeError::HardwareId(e.to_string()))?;
        binding.insert("hardware_id".into(), hw);
    }
    let features = license
        .features
        .iter()
        .map(|f| {
            let mut m = Map::new();
            m.insert("name".into(), f.name.clone().into());
            m.insert("count".into(), f.count.into());
            if let Some(v) = &f.max_version {
                m.insert("max_version".into(), v.clone().into());
            }
            Value::Object(m)
        })
        .collect::<Vec<_>>();
    let mut root = Map::new();
    root.insert("format_version".into(), license.format_version.into());
    root.insert("license_id".into(), license.license_id.clone().into());
    root.insert("product_id".into(), license.product_id.clone().into());
    root.insert("instance_id".into(), license.instance_id.clone().into());
    root.insert("order_id".into(), license.order_id.clone().into());
    root.insert("features".into(), Value::Array(features));
    root.insert("binding".into(), Value::Object(binding));
    root.insert(
        "issued_at".into(),
        license.issued_at.unix_timestamp().into(),
    );
    root.insert(
        "not_before".into(),
        license.not_before.unix_timestamp().into(),
    );
    if let Some(t) = license.not_after {
        root.insert("not_after".into(), t.unix_timestamp().into());
    }
    root.insert("trial".into(), license.trial.into());
    root.insert("nonce".into(), license.nonce.to_string().into());
    canonical::to_vec(&Value::Object(root)).map_err(|e| EncodeError::HardwareId(e.to_string()))
}

/// Decodes payload bytes whose signature has been checked.
///
/// # Errors
/// [`VerifyError::Malformed`] naming the byte or field, or
/// [`VerifyError::UnsupportedFormatVersion`].
pub fn decode(bytes: &[u8]) -> Result<License, VerifyError> {
    let value = canonical::parse(bytes).map_err(|e| match e {
        NotCanonical::Differs { offset } => VerifyError::malformed(
            Location::PayloadByte(offset),
            "the payload is not canonical JSON (README.md, \"Canonical JSON\")",
        ),
        NotCanonical::Syntax {
            line: _,
            column,
            message,
        } => VerifyError::malformed(
            // The canonical payload is a single line, so the column is the byte offset + 1.
            Location::PayloadByte(column.saturating_sub(1)),
            format!("the payload is not JSON: {message}"),
        ),
        NotCanonical::Content(e) => VerifyError::malformed(Location::PayloadByte(0), e.to_string()),
    })?;
    let Value::Object(mut root) = value else {
        return Err(VerifyError::malformed(
            Location::PayloadByte(0),
            "the payload is not a JSON object",
        ));
    };
    // The version is read before anything else so that a future format, whatever its fields,
    // is reported as such rather than as an unknown field.
    let version = match root.get("format_version") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            VerifyError::field(FieldError::new(
                "format_version",
                "is not a non-negative integer",
            ))
        })?,
        Some(_) => {
            return Err(VerifyError::field(FieldError::new(
                "format_version",
                "is not an integer",
            )));
        }
        None => {
            return Err(VerifyError::field(FieldError::new(
                "format_version",
                "is missing",
            )));
        }
    };
    if version != u64::from(FORMAT_VERSION) {
        return Err(VerifyError::UnsupportedFormatVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    root.remove("format_version");
    let license = read_license(Fields::new("", root)).map_err(VerifyError::field)?;
    license.validate().map_err(VerifyError::field)?;
    // Everything decoded must encode back to the same bytes: this catches what the typed model
    // drops or normalises (for instance in the hardware id's own serde), so each License has
    // exactly one valid payload.
    match encode(&license) {
        Ok(again) if again == bytes => Ok(license),
        Ok(again) => {
            let offset = again
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            Err(VerifyError::malformed(
                Location::PayloadByte(offset),
                "the payload does not re-encode to the same bytes",
            ))
        }
        Err(e) => Err(VerifyError::malformed(
            Location::Field("binding".into()),
            e.to_string(),
        )),
    }
}

fn read_license(mut root: Fields) -> Result<License, FieldError> {
    let license_id = root.string("license_id")?;
    let product_id = root.string("product_id")?;
    let instance_id = root.string("instance_id")?;
    let order_id = root.string("order_id")?;
    let features = root
        .array("features")?
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("features[{i}]");
            let Value::Object(map) = item else {
                return Err(FieldError::new(path, "is not an object"));
            };
            let mut f = Fields::new(&path, map);
            let feature = Feature {
                name: f.string("name")?,
                count: u32::try_from(f.unsigned("count")?)
                    .map_err(|_| FieldError::new(f.path("count"), "is larger than 4294967295"))?,
                max_version: f.optional_string("max_version")?,
            };
            f.finish()?;
            Ok(feature)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut b = Fields::new("binding", root.object("binding")?);
    let fingerprint = b.string("fingerprint")?;
    let hardware_id = match b.take("hardware_id") {
        None => None,
        Some(v) => Some(serde_json::from_value(v).map_err(|e| {
            FieldError::new("binding.hardware_id", format!("is not a hardware id: {e}"))
        })?),
    };
    b.finish()?;
    let issued_at = time_from_unix("issued_at", root.integer("issued_at")?)?;
    let not_before = time_from_unix("not_before", root.integer("not_before")?)?;
    let not_after = match root.take("not_after") {
        None => None,
        Some(v) => Some(time_from_unix("not_after", as_integer("not_after", &v)?)?),
    };
    let trial = match root.take("trial") {
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(FieldError::new("trial", "is not true or false")),
        None => return Err(FieldError::new("trial", "is missing")),
    };
    let nonce = Nonce::from_hex(&root.string("nonce")?)
        .ok_or_else(|| FieldError::new("nonce", "is not 32 lower-case hex digits"))?;
    root.finish()?;
    Ok(License {
        format_version: FORMAT_VERSION,
        license_id,
        product_id,
        instance_id,
        order_id,
        features,
        binding: Binding::Device {
            fingerprint,
            hardware_id,
        },
        issued_at,
        not_before,
        not_after,
        trial,
        nonce,
    })
}

fn as_integer(path: &str, v: &Value) -> Result<i64, FieldError> {
    v.as_i64()
        .ok_or_else(|| FieldError::new(path, "is not an integer in the range of i64"))
}

/// The fields of one JSON object, taken one by one so that leftovers can be reported.
struct Fields {
    prefix: String,
    map: Map<String, Value>,
}

impl Fields {
    fn new(prefix: &str, map: Map<String, Value>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            map,
        }
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

    fn required(&mut self, name: &str) -> Result<Value, FieldError> {
        self.take(name)
            .ok_or_else(|| FieldError::new(self.path(name), "is missing"))
    }

    fn string(&mut self, name: &str) -> Result<String, FieldError> {
        match self.required(name)? {
            Value::String(s) => Ok(s),
            _ => Err(FieldError::new(self.path(name), "is not a string")),
        }
    }

    fn optional_string(&mut self, name: &str) -> Result<Option<String>, FieldError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(FieldError::new(self.path(name), "is not a string")),
        }
    }

    fn integer(&mut self, name: &str) -> Result<i64, FieldError> {
        let v = self.required(name)?;
        as_integer(&self.path(name), &v)
    }

    fn unsigned(&mut self, name: &str) -> Result<u64, FieldError> {
        self.required(name)?
            .as_u64()
            .ok_or_else(|| FieldError::new(self.path(name), "is not a non-negative integer"))
    }

    fn array(&mut self, name: &str) -> Result<Vec<Value>, FieldError> {
        match self.required(name)? {
            Value::Array(items) => Ok(items),
            _ => Err(FieldError::new(self.path(name), "is not an array")),
        }
    }

    fn object(&mut self, name: &str) -> Result<Map<String, Value>, FieldError> {
        match self.required(name)? {
            Value::Object(map) => Ok(map),
            _ => Err(FieldError::new(self.path(name), "is not an object")),
        }
    }

    /// Refuses fields nobody took: within one format version the field set is closed.
    fn finish(self) -> Result<(), FieldError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(extra) => Err(FieldError::new(
                self.path(extra),
                "is not a field of this format",
            )),
        }
    }
}
