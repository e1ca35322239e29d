//! The APIG AK/SK `SDK-HMAC-SHA256` signature (PROTOCOL.md §5.1): signer for the client,
//! verifier for the emulator.
//!
//! Canonicalisation follows Huawei's official Python SDK (`huaweicloudsdkcore.signer.Signer`,
//! checked by `tests/interop_official_signer.rs`):
//! - the path is percent-decoded, split on `/`, each segment encoded with only the RFC 3986
//!   unreserved characters (`A-Z a-z 0-9 - . _ ~`) kept, and a trailing `/` appended;
//! - query pairs are sorted by raw name, then raw value (code-point order), each side encoded the
//!   same way, written `k=v` (an empty value gives `k=`) and joined with `&`;
//! - header names are lower-cased, values trimmed of surrounding whitespace, sorted by name;
//!   names containing `_` are not signed, as the SDK skips them;
//! - the body hash is lower-case hex SHA-256, or the literal `UNSIGNED-PAYLOAD` when the signed
//!   header `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` is sent (multipart uploads).

use std::fmt;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tessera_types::ApigCode;
use time::{Duration, OffsetDateTime};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The algorithm name at the start of the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The body-hash placeholder for payloads that are not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The header carrying the signing time, `yyyyMMdd'T'HHmmss'Z'`.
pub const HEADER_SDK_DATE: &str = "X-Sdk-Date";
/// The header announcing an unsigned payload.
pub const HEADER_CONTENT_SHA256: &str = "X-Sdk-Content-Sha256";
/// The largest clock difference APIG accepts between `X-Sdk-Date` and its own time.
pub const MAX_SKEW: Duration = Duration::minutes(15);
/// Longest `Authorization` header the verifier reads.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;
/// Most headers one signature may cover, as far as the verifier is concerned.
pub const MAX_SIGNED_HEADERS: usize = 64;
/// SHA-256 of the empty string, the body hash of every request without a body.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Everything but the RFC 3986 unreserved characters is percent-encoded (Python's
/// `quote(s, safe='~')`).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An access key and its secret. `Debug` never shows the secret; it is wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Credentials {
    ak: String,
    sk: String,
}

impl Credentials {
    /// Pairs an access key id with its secret.
    #[must_use]
    pub fn new(ak: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            ak: ak.into(),
            sk: sk.into(),
        }
    }

    /// The access key id (public: it travels in every `Authorization` header).
    #[must_use]
    pub fn access_key(&self) -> &str {
        &self.ak
    }

    fn secret(&self) -> &[u8] {
        self.sk.as_bytes()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("ak", &self.ak)
            .field("sk", &"<redacted>")
            .finish()
    }
}

/// How the body enters the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Payload {
    /// Lower-case hex SHA-256 of the body.
    Hashed(String),
    /// `UNSIGNED-PAYLOAD`, announced by a signed `X-Sdk-Content-Sha256` header.
    Unsigned,
}

/// What a request looks like to the signer. Build it with [`SigningRequest::new`] and the
/// chained setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningRequest {
    method: String,
    host: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    payload: Payload,
}

impl SigningRequest {
    /// A request without query, extra headers or body.
    ///
    /// `host` is the value of the `Host` header that will be sent (with `:port` when it is not
    /// the scheme's default); `path` is the URL path, percent-encoded or not.
    #[must_use]
    pub fn new(method: &str, host: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            query: Vec::new(),
            headers: Vec::new(),
            payload: Payload::Hashed(EMPTY_BODY_SHA256.to_owned()),
        }
    }

    /// Adds a query parameter (raw, not yet percent-encoded). Repeats are allowed.
    #[must_use]
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a header to sign (and send). `Host` and `X-Sdk-Date` are added by the signer.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Signs the SHA-256 of `body`.
    #[must_use]
    pub fn body(mut self, body: &[u8]) -> Self {
        self.payload = Payload::Hashed(hex::encode(Sha256::digest(body)));
        self
    }

    /// Signs `UNSIGNED-PAYLOAD` instead of the body hash and adds the signed header
    /// `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`. Meant for non-empty multipart bodies: the
    /// official SDK (and [`verify`]) use the empty-body hash whenever the body is empty.
    #[must_use]
    pub fn unsigned_payload(mut self) -> Self {
        self.payload = Payload::Unsigned;
        self
    }

    /// The query string to send: the canonical query, so what is sent is what was signed.
    #[must_use]
    pub fn query_string(&self) -> String {
        canonical_query(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// The result of signing: the headers to add, and the intermediate strings for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The `X-Sdk-Date` value.
    pub sdk_date: String,
    /// The `Authorization` value.
    pub authorization: String,
    /// The lower-case hex signature.
    pub signature: String,
    /// `;`-joined lower-case names of the signed headers.
    pub signed_headers: String,
    /// The canonical request (no secrets in it).
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// The query string to send (equal to the canonical query).
    pub query_string: String,
    /// Every header the request must carry for the signature to hold, with the casing to send:
    /// the caller's headers, `Host`, `X-Sdk-Date`, `X-Sdk-Content-Sha256` when unsigned, and
    /// `Authorization`.
    pub headers: Vec<(String, String)>,
}

/// Signs `req` with `credentials` at time `now` (formatted as `X-Sdk-Date`; any `X-Sdk-Date` the
/// caller put in the headers is replaced).
#[must_use]
pub fn sign(credentials: &Credentials, req: &SigningRequest, now: OffsetDateTime) -> SignedRequest {
    let sdk_date = format_sdk_date(now);
    let mut send: Vec<(String, String)> = Vec::with_capacity(req.headers.len() + 4);
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case(HEADER_SDK_DATE) {
            continue;
        }
        send.push((name.clone(), value.clone()));
    }
    if !send.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        send.push(("Host".to_owned(), req.host.clone()));
    }
    send.push((HEADER_SDK_DATE.to_owned(), sdk_date.clone()));
    let payload_hash = match &req.payload {
        Payload::Hashed(h) => h.as_str(),
        Payload::Unsigned => {
            send.retain(|(n, _)| !n.eq_ignore_ascii_case(HEADER_CONTENT_SHA256));
            send.push((
                HEADER_CONTENT_SHA256.to_owned(),
                UNSIGNED_PAYLOAD.to_owned(),
            ));
            UNSIGNED_PAYLOAD
        }
    };

    // Later duplicates win, like the SDK's dict of headers.
    let mut canon: Vec<(String, &str)> = Vec::with_capacity(send.len());
    for (name, value) in &send {
        if name.contains('_') {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let value = python_strip(value);
        if let Some(slot) = canon.iter_mut().find(|(n, _)| *n == lower) {
            slot.1 = value;
        } else {
            canon.push((lower, value));
        }
    }
    canon.sort_by(|a, b| a.0.cmp(&b.0));
    let signed_headers = join_names(canon.iter().map(|(n, _)| n.as_str()));
    let query_string = req.query_string();
    let canonical_request = canonical_request(
        &req.method,
        &req.path,
        &query_string,
        canon.iter().map(|(n, v)| (n.as_str(), *v)),
        &signed_headers,
        payload_hash,
    );
    let string_to_sign = string_to_sign(&sdk_date, &canonical_request);
    let signature = hex::encode(hmac_sha256(credentials.secret(), string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Access={}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key()
    );
    send.push(("Authorization".to_owned(), authorization.clone()));
    SignedRequest {
        sdk_date,
        authorization,
        signature,
        signed_headers,
        canonical_request,
        string_to_sign,
        query_string,
        headers: send,
    }
}

/// `yyyyMMdd'T'HHmmss'Z'` in UTC.
#[must_use]
pub fn format_sdk_date(t: OffsetDateTime) -> String {
    tessera_types::KooTime::new(t).format_sdk_date()
}

fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, n) in names.enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(n);
    }
    out
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators U+001C..U+001F.
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// The canonical URI: decoded, split on `/`, each segment encoded, ending with `/`.
#[must_use]
pub fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let mut out = String::with_capacity(decoded.len() + 8);
    for (i, segment) in decoded.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.extend(utf8_percent_encode(segment, ENCODE));
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query string of raw (decoded) pairs.
pub fn canonical_query<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = pairs.collect();
    pairs.sort_unstable();
    let mut out = String::new();
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(utf8_percent_encode(k, ENCODE));
        out.push('=');
        out.extend(utf8_percent_encode(v, ENCODE));
    }
    out
}

fn canonical_request<'a>(
    method: &str,
    path: &str,
    canonical_query: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let mut out = String::with_capacity(256 + path.len() + canonical_query.len());
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(&canonical_uri(path));
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    for (name, value) in headers {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
    out
}

fn string_to_sign(sdk_date: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// A request as the gateway received it.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The URL path as received (percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The URI authority, used as `host` when the request has no `Host` header (HTTP/2).
    pub authority: Option<&'a str>,
    /// The body bytes.
    pub body: &'a [u8],
}

impl<'a> ReceivedRequest<'a> {
    /// Borrows the parts of an `http` request.
    #[must_use]
    pub fn from_parts(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        Self {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            authority: parts.uri.authority().map(http::uri::Authority::as_str),
            body,
        }
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key that signed.
    pub access_key: String,
    /// The signing time (`X-Sdk-Date`).
    pub signed_at: OffsetDateTime,
    /// Whether the body was left out of the signature (`UNSIGNED-PAYLOAD`).
    pub unsigned_payload: bool,
}

/// Why a request's APIG signature was refused. Every case answers `APIG.0303` (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApigAuthError {
    /// No `Authorization` header.
    #[error("request has no Authorization header")]
    MissingAuthorization,
    /// The `Authorization` header is longer than [`MAX_AUTHORIZATION_LEN`].
    #[error("Authorization header is {0} bytes long, more than {MAX_AUTHORIZATION_LEN}")]
    AuthorizationTooLong(usize),
    /// The `Authorization` header does not name `SDK-HMAC-SHA256`.
    #[error("Authorization header does not use the SDK-HMAC-SHA256 algorithm")]
    UnsupportedAlgorithm,
    /// The `Authorization` header is not `Access=…, SignedHeaders=…, Signature=…`.
    #[error("Authorization header is malformed: {0}")]
    MalformedAuthorization(&'static str),
    /// `host` or `x-sdk-date` is not among the signed headers.
    #[error("the signature does not cover the {0} header")]
    RequiredHeaderNotSigned(&'static str),
    /// A header named in `SignedHeaders` is absent or repeated.
    #[error("signed header {0:?} is missing or repeated")]
    SignedHeaderUnusable(String),
    /// No `X-Sdk-Date` header, or not `yyyyMMdd'T'HHmmss'Z'`.
    #[error("X-Sdk-Date is missing or not in the form yyyyMMddTHHmmssZ")]
    BadDate,
    /// `X-Sdk-Date` is more than the allowed skew from the gateway's clock.
    #[error("X-Sdk-Date is {seconds} s away from the gateway clock, more than allowed")]
    DateSkew {
        /// Signed difference `date − now` in seconds.
        seconds: i64,
    },
    /// The access key is not known.
    #[error("the access key is not known")]
    UnknownAccessKey,
    /// `X-Sdk-Content-Sha256` names a hash that is not the body's.
    #[error("X-Sdk-Content-Sha256 does not match the body")]
    PayloadHashMismatch,
    /// The recomputed signature differs.
    #[error("the signature does not match the request")]
    SignatureMismatch,
}

impl ApigAuthError {
    /// The gateway code to answer with (`APIG.0303`, HTTP 401).
    #[must_use]
    pub fn code(&self) -> ApigCode {
        ApigCode::AppAuthIncorrect
    }
}

struct ParsedAuthorization<'a> {
    access: &'a str,
    signed_headers: Vec<&'a str>,
    signature: [u8; 32],
}

fn parse_authorization(value: &str) -> Result<ParsedAuthorization<'_>, ApigAuthError> {
    use ApigAuthError::MalformedAuthorization as Bad;
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(ApigAuthError::UnsupportedAlgorithm)?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    let mut parts = 0;
    for part in rest.split(',') {
        parts += 1;
        if parts > 3 {
            return Err(Bad("more than three fields"));
        }
        let (key, val) = part
            .trim_start_matches(' ')
            .split_once('=')
            .ok_or(Bad("a field has no '='"))?;
        let slot = match key {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(Bad("unknown field")),
        };
        if slot.replace(val).is_some() {
            return Err(Bad("a field is repeated"));
        }
    }
    let access = access.ok_or(Bad("no Access"))?;
    if access.is_empty() || access.len() > 256 || !access.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Bad("Access is empty, too long or not printable ASCII"));
    }
    let signed = signed.ok_or(Bad("no SignedHeaders"))?;
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers.len() > MAX_SIGNED_HEADERS {
        return Err(Bad("too many signed headers"));
    }
    let valid_name = |n: &&str| {
        !n.is_empty()
            && n.len() <= 128
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !signed_headers.iter().all(valid_name) {
        return Err(Bad("a signed header name is not a lower-case token"));
    }
    if !signed_headers.windows(2).all(|w| w[0] < w[1]) {
        return Err(Bad("signed headers are not sorted and unique"));
    }
    let signature = signature.ok_or(Bad("no Signature"))?;
    let mut sig = [0u8; 32];
    if signature.len() != 64 || hex::decode_to_slice(signature, &mut sig).is_err() {
        return Err(Bad("Signature is not 64 hex digits"));
    }
    Ok(ParsedAuthorization {
        access,
        signed_headers,
        signature: sig,
    })
}

/// Parses `yyyyMMdd'T'HHmmss'Z'` exactly.
fn parse_sdk_date(value: &str) -> Option<OffsetDateTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    tessera_types::KooTime::parse(value)
        .ok()
        .map(tessera_types::KooTime::datetime)
}

/// Verifies the APIG signature of `req` at time `now`, allowing [`MAX_SKEW`].
///
/// `lookup` maps an access key to its credentials (`None`: unknown key).
///
/// # Errors
/// The first check that fails, as an [`ApigAuthError`] (all answer `APIG.0303`).
pub fn verify(
    req: &ReceivedRequest<'_>,
    lookup: impl FnOnce(&str) -> Option<Credentials>,
    now: OffsetDateTime,
) -> Result<Verified, ApigAuthError> {
    verify_with_skew(req, lookup, now, MAX_SKEW)
}

/// [`verify`] with a chosen skew allowance.
///
/// # Errors
/// As [`verify`].
pub fn verify_with_skew(
    req: &ReceivedRequest<'_>,
    lookup: impl FnOnce(&str) -> Option<Credentials>,
    now: OffsetDateTime,
    max_skew: Duration,
) -> Result<Verified, ApigAuthError> {
    let mut auth_values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let auth = auth_values
        .next()
        .ok_or(ApigAuthError::MissingAuthorization)?;
    if auth_values.next().is_some() {
        return Err(ApigAuthError::MalformedAuthorization(
            "more than one Authorization header",
        ));
    }
    if auth.len() > MAX_AUTHORIZATION_LEN {
        return Err(ApigAuthError::AuthorizationTooLong(auth.len()));
    }
    let auth = auth
        .to_str()
        .map_err(|_| ApigAuthError::MalformedAuthorization("not visible ASCII"))?;
    let parsed = parse_authorization(auth)?;
    for required in ["host", "x-sdk-date"] {
        if !parsed.signed_headers.contains(&required) {
            return Err(ApigAuthError::RequiredHeaderNotSigned(required));
        }
    }

    let date_text = single_header(req.headers, "x-sdk-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApigAuthError::BadDate)?;
    let signed_at = parse_sdk_date(date_text).ok_or(ApigAuthError::BadDate)?;
    let skew = signed_at - now;
    if skew.abs() > max_skew {
        return Err(ApigAuthError::DateSkew {
            seconds: skew.whole_seconds(),
        });
    }

    let credentials = lookup(parsed.access).ok_or(ApigAuthError::UnknownAccessKey)?;

    let mut canon: Vec<(&str, String)> = Vec::with_capacity(parsed.signed_headers.len());
    for &name in &parsed.signed_headers {
        let value = match single_header(req.headers, name) {
            Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            None if name == "host" && req.headers.get(name).is_none() => req
                .authority
                .map(str::to_owned)
                .ok_or_else(|| ApigAuthError::SignedHeaderUnusable(name.to_owned()))?,
            None => return Err(ApigAuthError::SignedHeaderUnusable(name.to_owned())),
        };
        canon.push((name, python_strip(&value).to_owned()));
    }

    let declared = single_header(req.headers, "x-sdk-content-sha256")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    let body_hash = hex::encode(Sha256::digest(req.body));
    let (payload_hash, unsigned_payload) = match declared.as_deref() {
        Some(UNSIGNED_PAYLOAD) => (UNSIGNED_PAYLOAD.to_owned(), true),
        Some(h) if !h.eq_ignore_ascii_case(&body_hash) => {
            return Err(ApigAuthError::PayloadHashMismatch);
        }
        _ => (body_hash, false),
    };

    let pairs = parse_query(req.query.unwrap_or(""));
    let query = canonical_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signed_headers = join_names(parsed.signed_headers.iter().copied());
    let canonical = canonical_request(
        req.method,
        req.path,
        &query,
        canon.iter().map(|(n, v)| (*n, v.as_str())),
        &signed_headers,
        &payload_hash,
    );
    let expected = hmac_sha256(
        credentials.secret(),
        string_to_sign(date_text, &canonical).as_bytes(),
    );
    if !bool::from(expected.ct_eq(&parsed.signature)) {
        return Err(ApigAuthError::SignatureMismatch);
    }
    Ok(Verified {
        access_key: parsed.access.to_owned(),
        signed_at,
        unsigned_payload,
    })
}

/// The one value of `name`, or `None` when it is absent or repeated.
fn single_header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h http::HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Splits a raw query string into decoded pairs. `+` stays a plus: the signer encodes spaces as
/// `%20`, so a literal `+` on the wire is a plus sign.
#[must_use]
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode_str(k).decode_utf8_lossy().into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVATE: &str = "/api/mkp-openapi-public/global/v1/license/activate";
    const HOST: &str = "mkt.myhuaweicloud.com";

    fn at(date: &str) -> OffsetDateTime {
        parse_sdk_date(date).unwrap()
    }

    #[test]
    fn published_vector_matches_exactly() {
        let req = SigningRequest::new("POST", HOST, ACTIVATE)
            .header("x-stage", "RELEASE")
            .header("Content-Type", "application/json")
            .header("Host", HOST);
        let s = sign(&Credentials::new("AK", "123"), &req, at("20240317T144237Z"));
        assert_eq!(
            s.canonical_request,
            "POST\n/api/mkp-openapi-public/global/v1/license/activate/\n\ncontent-type:application/json\nhost:mkt.myhuaweicloud.com\nx-sdk-date:20240317T144237Z\nx-stage:RELEASE\n\ncontent-type;host;x-sdk-date;x-stage\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "SDK-HMAC-SHA256\n20240317T144237Z\n9a33b07351104f6c775075faa7dc0db58ec18bc532feaa8fd0b8fcf7990b1a9e"
        );
        assert_eq!(
            s.signature,
            "77595ad624b6e4e49990b8c4e84bf1c287457fca61069c4e60b9b6765b52053d"
        );
        assert_eq!(
            s.authorization,
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=content-type;host;x-sdk-date;x-stage, Signature=77595ad624b6e4e49990b8c4e84bf1c287457fca61069c4e60b9b6765b52053d"
        );
    }

    #[test]
    fn local_heartbeat_vector_matches() {
        let body = br#"{"license":"PLTEST0001"}"#;
        let req = SigningRequest::new(
            "POST",
            HOST,
            "/api/mkp-openapi-public/global/v1/license/heartbeat",
        )
        .header("Content-Type", "application/json")
        .body(body);
        let s = sign(
            &Credentials::new("MYAK", "MYSK"),
            &req,
            at("20250101T000000Z"),
        );
        assert!(
            s.canonical_request
                .ends_with("\n0dc02b17d18ece7fb6190cf80def126e84d36f50a7e46f25272e1925d6789757")
        );
        assert!(
            s.string_to_sign
                .ends_with("\n97992d158c263d2383d44c1c5835d38a45347c374922bc933c0456b825aa989f")
        );
        assert_eq!(
            s.signature,
            "3f2b7f4092870d9ddde5e05fd9278468538775094539450f9e81414f42514031"
        );
    }

    #[test]
    fn local_order_query_vector_matches() {
        let req = SigningRequest::new("GET", HOST, "/api/mkp-openapi-public/global/v1/order/query")
            .query("orderLineId", "MOCKPERIODYEARNEW-000001")
            .query("orderId", "MOCKPERIODYEARNEW")
            .header("Content-Type", "application/json");
        let s = sign(
            &Credentials::new("MYAK", "MYSK"),
            &req,
            at("20250101T000000Z"),
        );
        assert_eq!(
            s.query_string,
            "orderId=MOCKPERIODYEARNEW&orderLineId=MOCKPERIODYEARNEW-000001"
        );
        assert_eq!(
            s.signature,
            "afd4b20fff483aea4184a552cd14dd24d2b36014ce785edfb58b434cfcf01c63"
        );
    }

    #[test]
    fn canonical_forms_follow_the_sdk() {
        assert_eq!(canonical_uri("/a b/c~d/%E6%B5%8B"), "/a%20b/c~d/%E6%B5%8B/");
        assert_eq!(canonical_uri("/测/"), "/%E6%B5%8B/");
        assert_eq!(canonical_uri("/a%2Fb"), "/a/b/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(
            canonical_query(
                [("b", "2"), ("a", "z"), ("a", "y y"), ("e", ""), ("+", "=&")].into_iter()
            ),
            "%2B=%3D%26&a=y%20y&a=z&b=2&e="
        );
        assert_eq!(python_strip(" \t v a \u{1f}"), "v a");
    }

    fn request_from(
        s: &SignedRequest,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> http::Request<Vec<u8>> {
        let mut b = http::Request::builder().method(method).uri(path_and_query);
        for (n, v) in &s.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        b.body(body.to_vec()).unwrap()
    }

    fn check(req: &http::Request<Vec<u8>>, now: OffsetDateTime) -> Result<Verified, ApigAuthError> {
        let (parts, body) = req.clone().into_parts();
        verify(
            &ReceivedRequest::from_parts(&parts, &body),
            |ak| (ak == "MYAK").then(|| Credentials::new("MYAK", "MYSK")),
            now,
        )
    }

    fn signed_order_query() -> (SignedRequest, OffsetDateTime) {
        let now = at("20250101T000000Z");
        let req = SigningRequest::new("POST", HOST, "/v1/x y")
            .query("k", "v 1")
            .query("k", "~")
            .header("Content-Type", "application/json")
            .header("x-stage", "RELEASE")
            .body(b"{\"a\":1}");
        (sign(&Credentials::new("MYAK", "MYSK"), &req, now), now)
    }

    #[test]
    fn sign_then_verify_round_trips_and_tampering_is_rejected() {
        let (s, now) = signed_order_query();
        let uri = format!("/v1/x%20y?{}", s.query_string);
        let good = request_from(&s, "POST", &uri, b"{\"a\":1}");
        let v = check(&good, now).unwrap();
        assert_eq!(v.access_key, "MYAK");
        assert!(!v.unsigned_payload);

        let mismatch = Err(ApigAuthError::SignatureMismatch);
        assert_eq!(
            check(&request_from(&s, "PUT", &uri, b"{\"a\":1}"), now),
            mismatch
        );
        let other_path = format!("/v1/x%20z?{}", s.query_string);
        assert_eq!(
            check(&request_from(&s, "POST", &other_path, b"{\"a\":1}"), now),
            mismatch
        );
        assert_eq!(
            check(
                &request_from(&s, "POST", "/v1/x%20y?k=v%201&k=%7E&k=2", b"{\"a\":1}"),
                now
            ),
            mismatch
        );
        assert_eq!(
            check(&request_from(&s, "POST", &uri, b"{\"a\":2}"), now),
            mismatch
        );
        let mut header = good.clone();
        header
            .headers_mut()
            .insert("x-stage", http::HeaderValue::from_static("TEST"));
        assert_eq!(check(&header, now), mismatch);
        // An unsigned header may be added freely.
        let mut extra = good.clone();
        extra
            .headers_mut()
            .insert("user-agent", http::HeaderValue::from_static("x"));
        assert!(check(&extra, now).is_ok());
        let mut gone = good.clone();
        gone.headers_mut().remove("x-stage");
        assert_eq!(
            check(&gone, now),
            Err(ApigAuthError::SignedHeaderUnusable("x-stage".into()))
        );
    }

    #[test]
    fn skew_of_14_minutes_passes_and_16_fails() {
        let (s, signed_at) = signed_order_query();
        let uri = format!("/v1/x%20y?{}", s.query_string);
        let req = request_from(&s, "POST", &uri, b"{\"a\":1}");
        assert!(check(&req, signed_at + Duration::minutes(14)).is_ok());
        assert!(check(&req, signed_at - Duration::minutes(14)).is_ok());
        assert_eq!(
            check(&req, signed_at + Duration::minutes(16)),
            Err(ApigAuthError::DateSkew { seconds: -960 })
        );
        assert!(matches!(
            check(&req, signed_at - Duration::minutes(16)),
            Err(ApigAuthError::DateSkew { seconds: 960 })
        ));
    }

    #[test]
    fn unsigned_payload_is_announced_and_accepts_any_body() {
        let now = at("20250101T000000Z");
        let req = SigningRequest::new("POST", HOST, "/upload")
            .header("Content-Type", "multipart/form-data; boundary=x")
            .unsigned_payload();
        let s = sign(&Credentials::new("MYAK", "MYSK"), &req, now);
        assert!(s.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
        assert!(s.signed_headers.contains("x-sdk-content-sha256"));
        let v = check(&request_from(&s, "POST", "/upload", b"--x\r\n..."), now).unwrap();
        assert!(v.unsigned_payload);
    }

    #[test]
    fn authorization_is_parsed_strictly() {
        let (s, now) = signed_order_query();
        let uri = format!("/v1/x%20y?{}", s.query_string);
        let base = request_from(&s, "POST", &uri, b"{\"a\":1}");
        let with_auth = |value: &str| {
            let mut r = base.clone();
            r.headers_mut().insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(value).unwrap(),
            );
            check(&r, now)
        };
        let sig = &s.signature;
        assert_eq!(
            with_auth(&format!(
                "SDK-HMAC-SHA1 Access=MYAK, SignedHeaders=host, Signature={sig}"
            )),
            Err(ApigAuthError::UnsupportedAlgorithm)
        );
        assert!(matches!(
            with_auth(&format!(
                "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=x-sdk-date;host, Signature={sig}"
            )),
            Err(ApigAuthError::MalformedAuthorization(_))
        ));
        assert_eq!(
            with_auth(&format!(
                "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=content-type;x-sdk-date, Signature={sig}"
            )),
            Err(ApigAuthError::RequiredHeaderNotSigned("host"))
        );
        assert!(matches!(
            with_auth("SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=host;x-sdk-date, Signature=zz"),
            Err(ApigAuthError::MalformedAuthorization(_))
        ));
        assert_eq!(
            with_auth(&format!(
                "SDK-HMAC-SHA256 Access=OTHER, SignedHeaders={}, Signature={sig}",
                s.signed_headers
            )),
            Err(ApigAuthError::UnknownAccessKey)
        );
        assert_eq!(
            with_auth(&format!("SDK-HMAC-SHA256 Access={}", "A".repeat(5000))),
            Err(ApigAuthError::AuthorizationTooLong(5023))
        );
        let mut none = base.clone();
        none.headers_mut().remove(http::header::AUTHORIZATION);
        assert_eq!(check(&none, now), Err(ApigAuthError::MissingAuthorization));
        assert_eq!(
            ApigAuthError::SignatureMismatch.code(),
            ApigCode::AppAuthIncorrect
        );
    }

    proptest::proptest! {
        #[test]
        fn any_signed_request_verifies_after_travelling_as_a_uri(
            segments in proptest::collection::vec("[a-zA-Z0-9 ~+=&%/测é._-]{1,8}", 1..4),
            query in proptest::collection::vec(("[a-z~+ 测]{1,4}", "[a-zA-Z0-9 ~+=&%测é]{0,6}"), 0..5),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let now = at("20250101T000000Z");
            let path = format!("/{}", segments.join("/"));
            let mut req = SigningRequest::new("POST", HOST, &path).body(&body);
            for (k, v) in &query {
                req = req.query(k, v);
            }
            let s = sign(&Credentials::new("MYAK", "MYSK"), &req, now);
            // What a client sends: the canonical path (already encoded) and the signed query.
            let wire_path = canonical_uri(&path);
            let uri = if s.query_string.is_empty() {
                wire_path
            } else {
                format!("{wire_path}?{}", s.query_string)
            };
            let received = request_from(&s, "POST", &uri, &body);
            proptest::prop_assert!(check(&received, now).is_ok(), "{uri}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials::new("MYAK", "SUPERSECRET");
        let shown = format!("{c:?}");
        assert!(shown.contains("MYAK"));
        assert!(!shown.contains("SUPERSECRET"));
    }
}
