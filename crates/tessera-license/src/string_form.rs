//! The string form, for KooGallery's `CHARACTERS` upload (at most 1024 characters).
//!
//! `TL1.<algorithm>.<key id>.<payload>.<signature>`, payload and signature in base64url without
//! padding. The payload is a fixed binary layout (README.md, "String form") rather than JSON: a
//! 3072-bit signature alone takes 512 of the 1024 characters.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Location, VerifyError};
use crate::model::{
    Binding, FORMAT_VERSION, Feature, FieldError, FingerprintHash, License, Nonce, time_from_unix,
};

/// Longest string form, in characters (KooGallery's `CHARACTERS` limit).
pub const MAX_STRING_LEN: usize = 1024;
/// First part of every string form.
pub const PREFIX: &str = "TL1";
/// Prepended to the compact payload to form the signed message of the string form.
pub const SIGNING_CONTEXT: &[u8] = b"TESSERA LICENSE STRING V1\n";

const FLAG_TRIAL: u8 = 0b01;
const FLAG_NOT_AFTER: u8 = 0b10;

/// A string-form License taken apart, signature not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// The compact binary payload.
    pub payload: Vec<u8>,
    /// The algorithm name.
    pub algorithm: String,
    /// The key id.
    pub key_id: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Why a License could not be written in the string form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StringFormError {
    /// A field breaks the format's rules.
    #[error("the License is not valid")]
    Invalid(#[source] FieldError),
    /// The result would be longer than KooGallery accepts.
    #[error(
        "the string form would be {len} characters ({payload_chars} for a {payload_bytes}-byte \
         payload, {signature_chars} for the signature, {overhead_chars} for the rest), more than \
         the {max} allowed; shorten the ids or features, or issue a License file"
    )]
    TooLong {
        /// Total length.
        len: usize,
        /// The limit.
        max: usize,
        /// Compact payload size in bytes.
        payload_bytes: usize,
        /// Characters taken by the payload.
        payload_chars: usize,
        /// Characters taken by the signature.
        signature_chars: usize,
        /// Characters taken by prefix, algorithm, key id and separators.
        overhead_chars: usize,
    },
}

/// The compact payload of `license` (its binding reduced to the fingerprint hash; a hardware id
/// is not carried).
///
/// # Errors
/// [`StringFormError::Invalid`] if the License breaks a rule.
pub fn encode_payload(license: &License) -> Result<Vec<u8>, StringFormError> {
    license.validate().map_err(StringFormError::Invalid)?;
    let mut out = Vec::with_capacity(256);
    out.push(u8::try_from(license.format_version).unwrap_or(u8::MAX));
    let mut flags = 0;
    if license.trial {
        flags |= FLAG_TRIAL;
    }
    if license.not_after.is_some() {
        flags |= FLAG_NOT_AFTER;
    }
    out.push(flags);
    for (field, s) in [
        ("license_id", &license.license_id),
        ("product_id", &license.product_id),
        ("instance_id", &license.instance_id),
        ("order_id", &license.order_id),
    ] {
        push_str8(&mut out, field, s)?;
    }
    out.extend_from_slice(&license.binding.fingerprint_hash().0);
    for t in [
        Some(license.issued_at),
        Some(license.not_before),
        license.not_after,
    ]
    .into_iter()
    .flatten()
    {
        // validate() keeps every time in 0..=MAX_UNIX_TIME.
        out.extend_from_slice(&u64::try_from(t.unix_timestamp()).unwrap_or(0).to_be_bytes());
    }
    out.extend_from_slice(&license.nonce.0);
    out.push(u8::try_from(license.features.len()).unwrap_or(u8::MAX));
    for (i, f) in license.features.iter().enumerate() {
        push_str8(&mut out, &format!("features[{i}].name"), &f.name)?;
        out.extend_from_slice(&f.count.to_be_bytes());
        push_str8(
            &mut out,
            &format!("features[{i}].max_version"),
            f.max_version.as_deref().unwrap_or(""),
        )?;
    }
    Ok(out)
}

fn push_str8(out: &mut Vec<u8>, field: &str, s: &str) -> Result<(), StringFormError> {
    let len = u8::try_from(s.len()).map_err(|_| {
        StringFormError::Invalid(FieldError::new(field, "is longer than 255 bytes"))
    })?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// [`SIGNING_CONTEXT`] followed by `payload`.
#[must_use]
pub fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(payload);
    message
}

/// Joins the parts, refusing a result longer than [`MAX_STRING_LEN`].
///
/// # Errors
/// [`StringFormError::TooLong`] with every size involved.
pub fn encode(
    payload: &[u8],
    algorithm: &str,
    key_id: &str,
    signature: &[u8],
) -> Result<String, StringFormError> {
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    let signature_b64 = URL_SAFE_NO_PAD.encode(signature);
    let out = format!("{PREFIX}.{algorithm}.{key_id}.{payload_b64}.{signature_b64}");
    if out.len() > MAX_STRING_LEN {
        return Err(StringFormError::TooLong {
            len: out.len(),
            max: MAX_STRING_LEN,
            payload_bytes: payload.len(),
            payload_chars: payload_b64.len(),
            signature_chars: signature_b64.len(),
            overhead_chars: out.len() - payload_b64.len() - signature_b64.len(),
        });
    }
    Ok(out)
}

/// Takes a string-form License apart. Surrounding ASCII whitespace is ignored.
///
/// # Errors
/// [`VerifyError::TooLarge`] or [`VerifyError::Malformed`] naming the part.
pub fn decode(input: &[u8]) -> Result<Parts, VerifyError> {
    let trimmed = input.trim_ascii();
    if trimmed.len() > MAX_STRING_LEN {
        return Err(VerifyError::TooLarge {
            len: trimmed.len(),
            max: MAX_STRING_LEN,
        });
    }
    if let Some(at) = input.iter().position(|b| !b.is_ascii()) {
        return Err(VerifyError::malformed(
            Location::InputByte(at),
            "a License string is ASCII; this byte is not ASCII",
        ));
    }
    let text = std::str::from_utf8(trimmed).unwrap_or_default();
    let mut parts = text.split('.');
    let mut next = |part: &'static str| {
        parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| VerifyError::malformed(Location::StringPart(part), "is missing"))
    };
    if next("prefix")? != PREFIX {
        return Err(VerifyError::malformed(
            Location::StringPart("prefix"),
            format!("is not {PREFIX:?}"),
        ));
    }
    let algorithm = next("algorithm")?.to_owned();
    let key_id = next("key id")?.to_owned();
    let payload = decode_b64(next("payload")?, "payload")?;
    let signature = decode_b64(next("signature")?, "signature")?;
    if parts.next().is_some() {
        return Err(VerifyError::malformed(
            Location::StringPart("signature"),
            "is followed by another '.'-separated part",
        ));
    }
    Ok(Parts {
        payload,
        algorithm,
        key_id,
        signature,
    })
}

fn decode_b64(s: &str, part: &'static str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|e| {
        VerifyError::malformed(
            Location::StringPart(part),
            format!("is not unpadded base64url: {e}"),
        )
    })
}

/// Decodes a compact payload whose signature has been checked.
///
/// # Errors
/// [`VerifyError::Malformed`] naming the byte or field, or
/// [`VerifyError::UnsupportedFormatVersion`].
pub fn decode_payload(bytes: &[u8]) -> Result<License, VerifyError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8("the format version")?;
    if u32::from(version) != FORMAT_VERSION {
        return Err(VerifyError::UnsupportedFormatVersion {
            found: u64::from(version),
            supported: FORMAT_VERSION,
        });
    }
    let flags_at = r.at;
    let flags = r.u8("the flags")?;
    if flags & !(FLAG_TRIAL | FLAG_NOT_AFTER) != 0 {
        return Err(VerifyError::malformed(
            Location::PayloadByte(flags_at),
            "unknown flag bits are set",
        ));
    }
    let license_id = r.str8("license_id")?;
    let product_id = r.str8("product_id")?;
    let instance_id = r.str8("instance_id")?;
    let order_id = r.str8("order_id")?;
    let hash = FingerprintHash(r.array("the fingerprint hash")?);
    let issued_at = r.time("issued_at")?;
    let not_before = r.time("not_before")?;
    let not_after = if flags & FLAG_NOT_AFTER != 0 {
        Some(r.time("not_after")?)
    } else {
        None
    };
    let nonce = Nonce(r.array("the nonce")?);
    let count = r.u8("the feature count")?;
    let mut features = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let name = r.str8(&format!("features[{i}].name"))?;
        let seats = u32::from_be_bytes(r.array(&format!("features[{i}].count"))?);
        let max_version = r.str8(&format!("features[{i}].max_version"))?;
        features.push(Feature {
            name,
            count: seats,
            max_version: (!max_version.is_empty()).then_some(max_version),
        });
    }
    if r.at != bytes.len() {
        return Err(VerifyError::malformed(
            Location::PayloadByte(r.at),
            "bytes follow the last feature",
        ));
    }
    let license = License {
        format_version: FORMAT_VERSION,
        license_id,
        product_id,
        instance_id,
        order_id,
        features,
        binding: Binding::FingerprintHash(hash),
        issued_at,
        not_before,
        not_after,
        trial: flags & FLAG_TRIAL != 0,
        nonce,
    };
    license.validate().map_err(VerifyError::field)?;
    Ok(license)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], VerifyError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(VerifyError::malformed(
                Location::PayloadByte(self.at),
                format!("the payload ends inside {what}"),
            ));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &str) -> Result<u8, VerifyError> {
        Ok(self.take(1, what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], VerifyError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn str8(&mut self, field: &str) -> Result<String, VerifyError> {
        let len = self.u8(field)?;
        let start = self.at;
        let raw = self.take(usize::from(len), field)?;
        String::from_utf8(raw.to_vec()).map_err(|e| {
            VerifyError::malformed(
                Location::PayloadByte(start + e.utf8_error().valid_up_to()),
                format!("`{field}` is not UTF-8"),
            )
        })
    }

    fn time(&mut self, field: &str) -> Result<time::OffsetDateTime, VerifyError> {
        let secs = u64::from_be_bytes(self.array(field)?);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        time_from_unix(field, secs).map_err(VerifyError::field)
    }
}
