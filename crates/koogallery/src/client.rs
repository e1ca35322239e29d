//! `MarketClient`: the ISV-side HTTPS client for the MKT open APIs (PROTOCOL.md §2.1–2.2).
//!
//! Every call is APIG-signed ([`crate::apig`]) with the time of the injected clock, validated
//! before sending, and answered with typed data plus the server's `Date` (the agent's trusted
//! time source) or a [`MarketError`] that says whether a retry helps. Certificate verification is
//! always strict; an extra CA can be added to (or, for tests against the emulator, replace) the
//! system roots. On a connection failure or a 5xx from the primary host the call is repeated once
//! on the fallback host; a 4xx is never retried there, since the fallback would say the same.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rand::Rng;
use serde::de::DeserializeOwned;
use tessera_types::{ApigCode, LicenseApiCode, MktCode, SharedClock};
use time::OffsetDateTime;
use url::Url;

use crate::apig::{self, Credentials, SigningRequest};
use crate::wire::{
    self, ActivateBatchRequest, ActivateData, ActivateRequest, FieldError, HeartbeatBatchData,
    HeartbeatBatchRequest, HeartbeatRequest, IsvUpdateFileReq, LicenseInfo, OrderInfo, OrderQuery,
    UsageData, UsageInfoRequest,
};

/// The documented primary base URL.
pub const DEFAULT_PRIMARY: &str = "https://mkt.myhuaweicloud.com";
/// The documented fallback base URL.
pub const DEFAULT_FALLBACK: &str = "https://mkt.myhuaweicloud.cn";
/// The largest response body read before parsing.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// The URI paths of the open APIs.
pub mod paths {
    /// Activate one code (v1).
    pub const ACTIVATE_V1: &str = "/api/mkp-openapi-public/global/v1/license/activate";
    /// Activate up to 100 codes (v2).
    pub const ACTIVATE_V2: &str = "/api/mkp-openapi-public/global/v2/license/activate";
    /// Query one code (v1).
    pub const HEARTBEAT_V1: &str = "/api/mkp-openapi-public/global/v1/license/heartbeat";
    /// Query up to 100 codes (v2).
    pub const HEARTBEAT_V2: &str = "/api/mkp-openapi-public/global/v2/license/heartbeat";
    /// Software usage statistics (v2).
    pub const USAGE_V2: &str = "/api/mkp-openapi-public/global/v2/license/software-usage-info";
    /// Order query (v1, GET).
    pub const ORDER_QUERY_V1: &str = "/api/mkp-openapi-public/global/v1/order/query";
    /// Market-event upload; `{event_id}` is replaced by [`super::upload_path`].
    pub const MARKET_EVENT_FILE_V1: &str =
        "/api/mkp-openapi-public/global/v1/market-event/{event_id}/file";
}

/// The upload path for `event_id` (validated by [`wire::event::validate_event_id`]).
#[must_use]
pub fn upload_path(event_id: &str) -> String {
    paths::MARKET_EVENT_FILE_V1.replace("{event_id}", event_id)
}

/// How an extra CA certificate joins the trust roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaMode {
    /// Trust the system roots and the extra CA.
    Merge,
    /// Trust only the extra CA (tests against the emulator).
    Only,
}

/// Everything a [`MarketClient`] needs.
#[derive(Debug, Clone)]
pub struct MarketConfig {
    /// The primary base URL (`https://mkt.myhuaweicloud.com`).
    pub primary: Url,
    /// The fallback base URL (`https://mkt.myhuaweicloud.cn`), or `None` for no fallback.
    pub fallback: Option<Url>,
    /// A PEM file with extra CA certificates.
    pub extra_ca_pem: Option<PathBuf>,
    /// How the extra CA joins the roots.
    pub ca_mode: CaMode,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request.
    pub request_timeout: Duration,
    /// The AK/SK.
    pub credentials: Credentials,
    /// The `x-stage` header value; the public Ruby SDK sends `RELEASE` and signs it.
    pub stage: Option<String>,
    /// The clock for `X-Sdk-Date`.
    pub clock: SharedClock,
    /// The largest response body read.
    pub max_response_body: usize,
    /// Fixed name → address resolutions (to point the real host names at an emulator).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl MarketConfig {
    /// The documented hosts, 10 s connect and 30 s request timeouts, `x-stage: RELEASE`.
    ///
    /// # Panics
    /// Never: the default URLs are valid.
    #[must_use]
    pub fn new(credentials: Credentials, clock: SharedClock) -> Self {
        Self {
            primary: Url::parse(DEFAULT_PRIMARY).expect("valid default URL"),
            fallback: Some(Url::parse(DEFAULT_FALLBACK).expect("valid default URL")),
            extra_ca_pem: None,
            ca_mode: CaMode::Merge,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            credentials,
            stage: Some("RELEASE".to_owned()),
            clock,
            max_response_body: MAX_RESPONSE_BODY,
            resolve: Vec::new(),
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A base URL is not `https://host[:port][/prefix]`.
    #[error("marketplace URL {0} is not an https URL with a host")]
    NotHttps(String),
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("the CA file {0} holds no PEM certificate")]
    BadCa(PathBuf),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTPS client")]
    Build(#[source] reqwest::Error),
}

/// The result code a marketplace answer carried, by family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCode {
    /// `error_code` of the License APIs (§3.1).
    License(LicenseApiCode),
    /// `resultCode` of the order query (§3.2).
    Mkt(MktCode),
    /// The API gateway (§3.4).
    Apig(ApigCode),
    /// A code this build does not know, as received (at most 64 characters).
    Unknown(String),
}

impl ApiCode {
    /// Classifies a wire code.
    #[must_use]
    pub fn parse(code: &str) -> Self {
        if let Some(c) = ApigCode::parse(code) {
            Self::Apig(c)
        } else if let Some(c) = MktCode::parse(code) {
            Self::Mkt(c)
        } else if let Some(c) = LicenseApiCode::parse(code) {
            Self::License(c)
        } else {
            Self::Unknown(code.chars().take(64).collect())
        }
    }

    /// Whether the same request can succeed later, given the HTTP status.
    #[must_use]
    pub fn retryable(&self, http_status: u16) -> bool {
        match self {
            Self::License(c) => c.retryable_with_status(http_status),
            Self::Mkt(c) => c.retryable(),
            Self::Apig(c) => c.retryable_with_status(http_status),
            Self::Unknown(_) => status_retryable(http_status),
        }
    }

    fn is_success(&self) -> bool {
        matches!(
            self,
            Self::License(LicenseApiCode::Success) | Self::Mkt(MktCode::Success)
        )
    }
}

impl fmt::Display for ApiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::License(c) => c.fmt(f),
            Self::Mkt(c) => c.fmt(f),
            Self::Apig(c) => c.fmt(f),
            Self::Unknown(c) => write!(f, "{c} (unknown code)"),
        }
    }
}

fn status_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// A `Retry-After` header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Seconds to wait.
    Seconds(u64),
    /// A moment to wait for.
    At(OffsetDateTime),
}

impl RetryAfter {
    /// Reads `delta-seconds` or an HTTP-date.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim();
        if !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()) {
            return v.parse().ok().map(Self::Seconds);
        }
        parse_http_date(v).map(Self::At)
    }

    /// How long to wait from `now` (zero for a moment in the past).
    #[must_use]
    pub fn delay_from(&self, now: OffsetDateTime) -> Duration {
        match self {
            Self::Seconds(s) => Duration::from_secs(*s),
            Self::At(t) => Duration::try_from(*t - now).unwrap_or(Duration::ZERO),
        }
    }
}

fn parse_http_date(v: &str) -> Option<OffsetDateTime> {
    if v.len() > 64 {
        return None;
    }
    httpdate::parse_http_date(v).ok().map(OffsetDateTime::from)
}

/// Which host served an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    /// The primary host.
    Primary,
    /// The fallback host, after the primary failed.
    Fallback,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketResponse<T> {
    /// The typed payload.
    pub data: T,
    /// The server's `Date` header, when present and readable.
    pub server_date: Option<OffsetDateTime>,
    /// Which host answered.
    pub served_by: ServedBy,
}

/// Why a marketplace call failed.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// The request breaks a documented rule; nothing was sent.
    #[error("request not sent")]
    InvalidRequest(#[from] FieldError),
    /// The marketplace could not be reached or the exchange broke off.
    #[error("cannot reach the marketplace at {host}")]
    Transport {
        /// The host tried last.
        host: String,
        /// What the HTTP stack reported.
        #[source]
        source: reqwest::Error,
    },
    /// The marketplace answered with a failure code.
    #[error("marketplace refused the call: {code}, HTTP {status}")]
    Api {
        /// The code.
        code: ApiCode,
        /// The marketplace's message (at most 256 characters).
        message: String,
        /// The HTTP status.
        status: u16,
        /// `Retry-After`, when sent.
        retry_after: Option<RetryAfter>,
        /// The server's `Date`, when sent.
        server_date: Option<OffsetDateTime>,
        /// The answer's `data`, when it had one (e.g. usage `check_fail_*` lists).
        data: Option<Box<serde_json::Value>>,
    },
    /// The marketplace answered an HTTP error without a readable result code.
    #[error("marketplace answered HTTP {status} without a result code")]
    Http {
        /// The HTTP status.
        status: u16,
        /// `Retry-After`, when sent.
        retry_after: Option<RetryAfter>,
        /// The server's `Date`, when sent.
        server_date: Option<OffsetDateTime>,
    },
    /// The answer body is larger than the configured bound.
    #[error("marketplace answer is larger than {limit} bytes")]
    BodyTooLarge {
        /// The bound.
        limit: usize,
    },
    /// The answer is not the JSON this API returns.
    #[error("marketplace answer (HTTP {status}) is not the expected JSON")]
    Malformed {
        /// The HTTP status.
        status: u16,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A success answer lacks its mandatory `data`.
    #[error("marketplace success answer has no data")]
    MissingData,
}

impl MarketError {
    /// Whether sending the same request later can succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InvalidRequest(_) | Self::BodyTooLarge { .. } | Self::MissingData => false,
            Self::Transport { .. } => true,
            Self::Api { code, status, .. } => code.retryable(*status),
            Self::Http { status, .. } | Self::Malformed { status, .. } => status_retryable(*status),
        }
    }

    /// The server's `Retry-After`, when it sent one.
    #[must_use]
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::Api { retry_after, .. } | Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The server's `Date`, when an answer carried one.
    #[must_use]
    pub fn server_date(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Api { server_date, .. } | Self::Http { server_date, .. } => *server_date,
            _ => None,
        }
    }

    /// The result code, for [`MarketError::Api`].
    #[must_use]
    pub fn code(&self) -> Option<&ApiCode> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    #[must_use]
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. }
            | Self::Http { status, .. }
            | Self::Malformed { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A raw answer: status, the headers that matter, and the bounded body.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Date`, parsed.
    pub server_date: Option<OffsetDateTime>,
    /// `Retry-After`, parsed.
    pub retry_after: Option<RetryAfter>,
    /// The body.
    pub body: Vec<u8>,
}

/// Interprets an answer of any open API: success (a known success code and a 2xx status) gives
/// the parsed envelope as JSON; anything else a typed error.
///
/// # Errors
/// [`MarketError::Api`] for a failure code, [`MarketError::Http`] for an HTTP error without a
/// code, [`MarketError::Malformed`] for a body that is not a JSON object.
pub fn interpret(answer: &RawAnswer) -> Result<serde_json::Value, MarketError> {
    let http_error = || MarketError::Http {
        status: answer.status,
        retry_after: answer.retry_after,
        server_date: answer.server_date,
    };
    let value: serde_json::Value = match serde_json::from_slice(&answer.body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) if answer.status >= 400 => return Err(http_error()),
        Ok(_) => {
            return Err(MarketError::Malformed {
                status: answer.status,
                source: <serde_json::Error as serde::de::Error>::custom(
                    "the body is not a JSON object",
                ),
            });
        }
        Err(_) if answer.status >= 400 => return Err(http_error()),
        Err(source) => {
            return Err(MarketError::Malformed {
                status: answer.status,
                source,
            });
        }
    };
    let text = |key: &str| -> Option<String> {
        match value.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let (code, message) = match (text("error_code"), text("resultCode")) {
        (Some(c), _) => (c, text("error_msg")),
        (None, Some(c)) => (c, text("resultMsg")),
        (None, None) if answer.status >= 400 => return Err(http_error()),
        (None, None) => {
            return Err(MarketError::Malformed {
                status: answer.status,
                source: <serde_json::Error as serde::de::Error>::custom(
                    "the body has neither error_code nor resultCode",
                ),
            });
        }
    };
    let code = ApiCode::parse(&code);
    if code.is_success() && (200..300).contains(&answer.status) {
        return Ok(value);
    }
    let data = value
        .get("data")
        .filter(|d| !d.is_null())
        .cloned()
        .map(Box::new);
    Err(MarketError::Api {
        code,
        message: message.unwrap_or_default().chars().take(256).collect(),
        status: answer.status,
        retry_after: answer.retry_after,
        server_date: answer.server_date,
        data,
    })
}

/// Reads the envelope's `data` as `T`, `None` when it is absent or null.
fn take_data<T: DeserializeOwned>(
    value: &serde_json::Value,
    status: u16,
) -> Result<Option<T>, MarketError> {
    match value.get("data") {
        Some(d) if !d.is_null() => T::deserialize(d)
            .map(Some)
            .map_err(|source| MarketError::Malformed { status, source }),
        _ => Ok(None),
    }
}

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// No body (GET).
    Empty,
    /// A JSON document.
    Json(Vec<u8>),
    /// A `multipart/form-data` body, signed `UNSIGNED-PAYLOAD`.
    Multipart {
        /// The full `Content-Type`, with the boundary.
        content_type: String,
        /// The encoded body.
        bytes: Vec<u8>,
    },
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart<'a> {
    /// The form field name.
    pub name: &'a str,
    /// The file name, for file parts.
    pub file_name: Option<&'a str>,
    /// The part's content type.
    pub content_type: &'a str,
    /// The content.
    pub bytes: &'a [u8],
}

/// Encodes a `multipart/form-data` body (RFC 7578) with `boundary`. Quotes, CR and LF in names
/// are replaced by `_`, since they would break the header line they sit in.
#[must_use]
pub fn encode_multipart(boundary: &str, parts: &[FormPart<'_>]) -> RequestBody {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if matches!(c, '"' | '\r' | '\n') {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!(
            "Content-Disposition: form-data; name=\"{}\"",
            clean(part.name)
        );
        if let Some(f) = part.file_name {
            disposition.push_str(&format!("; filename=\"{}\"", clean(f)));
        }
        bytes.extend_from_slice(disposition.as_bytes());
        bytes.extend_from_slice(
            format!("\r\nContent-Type: {}\r\n\r\n", part.content_type).as_bytes(),
        );
        bytes.extend_from_slice(part.bytes);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    RequestBody::Multipart {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        bytes,
    }
}

/// The body of a market-event upload: a `file` part (FILE only) and the `isvUpdateFileReq` JSON
/// part.
///
/// # Errors
/// When the descriptor is invalid (e.g. a string over 1024 characters).
pub fn upload_body(
    boundary: &str,
    descriptor: &IsvUpdateFileReq,
    file: Option<&[u8]>,
) -> Result<RequestBody, FieldError> {
    descriptor.validate()?;
    let json = serde_json::to_vec(descriptor).expect("IsvUpdateFileReq always serialises");
    let mut parts = Vec::with_capacity(2);
    if let Some(file) = file {
        parts.push(FormPart {
            name: "file",
            file_name: descriptor.file_name.as_deref(),
            content_type: "application/octet-stream",
            bytes: file,
        });
    }
    parts.push(FormPart {
        name: "isvUpdateFileReq",
        file_name: None,
        content_type: "application/json",
        bytes: &json,
    });
    Ok(encode_multipart(boundary, &parts))
}

fn random_boundary() -> String {
    let mut rng = rand::thread_rng();
    let tail: String = (0..24)
        .map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.gen_range(0..36)]))
        .collect();
    format!("tessera-{tail}")
}

/// The marketplace client. Cheap to clone.
#[derive(Clone)]
pub struct MarketClient {
    http: reqwest::Client,
    config: MarketConfig,
}

impl fmt::Debug for MarketClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn check_base(url: &Url) -> Result<(), ConfigError> {
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(ConfigError::NotHttps(url.to_string()));
    }
    Ok(())
}

/// The `Host` header value the HTTP stack sends for `url`.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

impl MarketClient {
    /// Builds the client.
    ///
    /// # Errors
    /// A base URL that is not https, an unreadable or empty CA file, or a TLS setup failure.
    pub fn new(config: MarketConfig) -> Result<Self, ConfigError> {
        check_base(&config.primary)?;
        if let Some(f) = &config.fallback {
            check_base(f)?;
        }
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tessera-koogallery/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.extra_ca_pem {
            let pem = std::fs::read(path).map_err(|source| ConfigError::ReadCa {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| ConfigError::BadCa(path.clone()))?;
            if certs.is_empty() {
                return Err(ConfigError::BadCa(path.clone()));
            }
            builder = match config.ca_mode {
                CaMode::Merge => builder.tls_certs_merge(certs),
                CaMode::Only => builder.tls_certs_only(certs),
            };
        }
        for (name, addr) in &config.resolve {
            builder = builder.resolve(name, *addr);
        }
        let http = builder.build().map_err(ConfigError::Build)?;
        Ok(Self { http, config })
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &MarketConfig {
        &self.config
    }

    /// Activates one code (v1) and returns its `license_code_info`.
    ///
    /// # Errors
    /// See [`MarketError`].
    pub async fn activate(
        &self,
        req: &ActivateRequest,
    ) -> Result<MarketResponse<ActivateData>, MarketError> {
        req.validate()?;
        let r = self.license_call(paths::ACTIVATE_V1, json(req)).await?;
        required_data(r)
    }

    /// Activates up to 100 codes (v2). The answer has no data.
    ///
    /// # Errors
    /// See [`MarketError`]; more than 100 codes is refused before sending.
    pub async fn activate_batch(
        &self,
        req: &ActivateBatchRequest,
    ) -> Result<MarketResponse<()>, MarketError> {
        req.validate()?;
        let r: MarketResponse<Option<serde::de::IgnoredAny>> =
            self.license_call(paths::ACTIVATE_V2, json(req)).await?;
        Ok(MarketResponse {
            data: (),
            server_date: r.server_date,
            served_by: r.served_by,
        })
    }

    /// Queries one code (v1, the daily heartbeat).
    ///
    /// # Errors
    /// See [`MarketError`].
    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<MarketResponse<LicenseInfo>, MarketError> {
        req.validate()?;
        let r = self.license_call(paths::HEARTBEAT_V1, json(req)).await?;
        required_data(r)
    }

    /// Queries up to 100 codes (v2; request and answer shapes are the [INFER] of
    /// [`HeartbeatBatchRequest`]).
    ///
    /// # Errors
    /// See [`MarketError`]; more than 100 codes is refused before sending.
    pub async fn heartbeat_batch(
        &self,
        req: &HeartbeatBatchRequest,
    ) -> Result<MarketResponse<HeartbeatBatchData>, MarketError> {
        req.validate()?;
        let r = self.license_call(paths::HEARTBEAT_V2, json(req)).await?;
        Ok(default_data(r))
    }

    /// Reports software usage. A success may still list failed items in `check_fail_*`.
    ///
    /// # Errors
    /// See [`MarketError`].
    pub async fn software_usage_info(
        &self,
        req: &UsageInfoRequest,
    ) -> Result<MarketResponse<UsageData>, MarketError> {
        req.validate()?;
        let r = self.license_call(paths::USAGE_V2, json(req)).await?;
        Ok(default_data(r))
    }

    /// Queries an order (GET with `orderId` and optional `orderLineId`).
    ///
    /// # Errors
    /// See [`MarketError`].
    pub async fn query_order(
        &self,
        query: &OrderQuery,
    ) -> Result<MarketResponse<OrderInfo>, MarketError> {
        query.validate()?;
        let answer = self
            .send(
                "GET",
                paths::ORDER_QUERY_V1,
                &query.pairs(),
                &RequestBody::Empty,
                "application/json;charset=UTF-8",
            )
            .await?;
        let (answer, served_by) = answer;
        let value = interpret(&answer)?;
        let parsed: wire::OrderQueryResponse =
            serde_json::from_value(value).map_err(|source| MarketError::Malformed {
                status: answer.status,
                source,
            })?;
        let data = parsed.order_info.ok_or(MarketError::MissingData)?;
        Ok(MarketResponse {
            data,
            server_date: answer.server_date,
            served_by,
        })
    }

    /// Uploads a License file for a getLicenseAsync event (type FILE, SHA-256 computed).
    ///
    /// # Errors
    /// See [`MarketError`]; an invalid event id or file name is refused before sending.
    pub async fn upload_license_file(
        &self,
        event_id: &str,
        file_name: &str,
        contents: &[u8],
    ) -> Result<MarketResponse<()>, MarketError> {
        let descriptor = IsvUpdateFileReq::file(file_name, contents);
        self.upload(event_id, &descriptor, Some(contents)).await
    }

    /// Uploads a License string for a getLicenseAsync event (type CHARACTERS, ≤ 1024).
    ///
    /// # Errors
    /// See [`MarketError`]; a string over 1024 characters is refused before sending.
    pub async fn upload_license_string(
        &self,
        event_id: &str,
        license: &str,
    ) -> Result<MarketResponse<()>, MarketError> {
        let descriptor = IsvUpdateFileReq::characters(license);
        self.upload(event_id, &descriptor, None).await
    }

    async fn upload(
        &self,
        event_id: &str,
        descriptor: &IsvUpdateFileReq,
        file: Option<&[u8]>,
    ) -> Result<MarketResponse<()>, MarketError> {
        wire::event::validate_event_id(event_id)?;
        let body = upload_body(&random_boundary(), descriptor, file)?;
        let RequestBody::Multipart { content_type, .. } = &body else {
            unreachable!("upload_body always builds a multipart body");
        };
        let content_type = content_type.clone();
        let (answer, served_by) = self
            .send("POST", &upload_path(event_id), &[], &body, &content_type)
            .await?;
        interpret(&answer)?;
        Ok(MarketResponse {
            data: (),
            server_date: answer.server_date,
            served_by,
        })
    }

    async fn license_call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: RequestBody,
    ) -> Result<MarketResponse<Option<T>>, MarketError> {
        let (answer, served_by) = self
            .send("POST", path, &[], &body, "application/json")
            .await?;
        let value = interpret(&answer)?;
        let data = take_data(&value, answer.status)?;
        Ok(MarketResponse {
            data,
            server_date: answer.server_date,
            served_by,
        })
    }

    /// Sends on the primary host, and once more on the fallback after a connection failure or
    /// a 5xx.
    async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &RequestBody,
        content_type: &str,
    ) -> Result<(RawAnswer, ServedBy), MarketError> {
        let primary = self
            .send_to(
                &self.config.primary,
                method,
                path,
                query,
                body,
                content_type,
            )
            .await;
        let Some(fallback) = &self.config.fallback else {
            return primary.map(|a| (a, ServedBy::Primary));
        };
        let reason = match &primary {
            Ok(a) if a.status >= 500 => format!("HTTP {}", a.status),
            Err(MarketError::Transport { source, .. }) if source.is_connect() => {
                "connection failure".to_owned()
            }
            _ => return primary.map(|a| (a, ServedBy::Primary)),
        };
        tracing::warn!(
            primary = %host_header(&self.config.primary),
            fallback = %host_header(fallback),
            %reason,
            path,
            "primary marketplace host failed; trying the fallback host once"
        );
        self.send_to(fallback, method, path, query, body, content_type)
            .await
            .map(|a| (a, ServedBy::Fallback))
    }

    async fn send_to(
        &self,
        base: &Url,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &RequestBody,
        content_type: &str,
    ) -> Result<RawAnswer, MarketError> {
        let host = host_header(base);
        let full_path = format!("{}{path}", base.path().trim_end_matches('/'));
        let mut signing = SigningRequest::new(method, &host, &full_path);
        for (k, v) in query {
            signing = signing.query(k, v);
        }
        signing = signing.header("Content-Type", content_type);
        if let Some(stage) = &self.config.stage {
            signing = signing.header("x-stage", stage);
        }
        let (payload, signing) = match body {
            RequestBody::Empty => (Vec::new(), signing.body(&[])),
            RequestBody::Json(b) => (b.clone(), signing.body(b)),
            RequestBody::Multipart { bytes, .. } => (bytes.clone(), signing.unsigned_payload()),
        };
        let signed = apig::sign(&self.config.credentials, &signing, self.config.clock.now());

        let mut url = base.clone();
        url.set_path(&full_path);
        url.set_query((!signed.query_string.is_empty()).then_some(signed.query_string.as_str()));
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .expect("methods are literals of this module");
        let mut request = self.http.request(method, url);
        for (name, value) in &signed.headers {
            // reqwest derives Host (HTTP/1.1) or :authority (HTTP/2) from the URL, the same
            // value that was signed.
            if name.eq_ignore_ascii_case("host") {
                continue;
            }
            request = request.header(name.as_str(), value.as_str());
        }
        let transport = |source| MarketError::Transport {
            host: host.clone(),
            source,
        };
        let mut response = request.body(payload).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let header_text = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        let server_date = header_text(reqwest::header::DATE).and_then(parse_http_date);
        let retry_after = header_text(reqwest::header::RETRY_AFTER).and_then(RetryAfter::parse);
        let limit = self.config.max_response_body;
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(MarketError::BodyTooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(MarketError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawAnswer {
            status,
            server_date,
            retry_after,
            body,
        })
    }
}

fn json<T: serde::Serialize>(value: &T) -> RequestBody {
    RequestBody::Json(serde_json::to_vec(value).expect("wire requests always serialise"))
}

fn required_data<T>(r: MarketResponse<Option<T>>) -> Result<MarketResponse<T>, MarketError> {
    Ok(MarketResponse {
        data: r.data.ok_or(MarketError::MissingData)?,
        server_date: r.server_date,
        served_by: r.served_by,
    })
}

fn default_data<T: Default>(r: MarketResponse<Option<T>>) -> MarketResponse<T> {
    MarketResponse {
        data: r.data.unwrap_or_default(),
        server_date: r.server_date,
        served_by: r.served_by,
    }
}

/// Formats `t` as an HTTP-date (`Date`, `Retry-After`), for the emulator and tests.
#[must_use]
pub fn http_date(t: OffsetDateTime) -> String {
    httpdate::fmt_http_date(SystemTime::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::ManualClock;

    fn answer(status: u16, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            server_date: None,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn success_needs_both_the_code_and_a_2xx_status() {
        let ok = interpret(&answer(
            200,
            r#"{"error_code":"92020000","error_msg":"success"}"#,
        ));
        assert!(ok.is_ok());
        let order = interpret(&answer(
            200,
            r#"{"resultCode":"MKT.0000","resultMsg":"ok"}"#,
        ));
        assert!(order.is_ok());
        let odd = interpret(&answer(
            500,
            r#"{"error_code":"92020000","error_msg":"success"}"#,
        ))
        .unwrap_err();
        assert!(matches!(odd, MarketError::Api { status: 500, .. }));
    }

    #[test]
    fn license_codes_map_with_their_retry_advice() {
        let e = interpret(&answer(
            200,
            r#"{"error_code":"92020005","error_msg":"license code notexist"}"#,
        ))
        .unwrap_err();
        assert_eq!(e.code(), Some(&ApiCode::License(LicenseApiCode::NotExist)));
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("92020005"), "{e}");
        let internal = interpret(&answer(
            500,
            r#"{"error_code":"92020001","error_msg":"internal error"}"#,
        ))
        .unwrap_err();
        assert!(internal.is_retryable());
        let unauthorized = interpret(&answer(
            403,
            r#"{"error_code":"92020001","error_msg":"Unauthorized"}"#,
        ))
        .unwrap_err();
        assert!(!unauthorized.is_retryable());
        assert_eq!(unauthorized.http_status(), Some(403));
    }

    #[test]
    fn gateway_and_business_codes_are_recognised() {
        let e = interpret(&answer(
            401,
            r#"{"error_code":"APIG.0303","error_msg":"Incorrect app authentication information"}"#,
        ))
        .unwrap_err();
        assert_eq!(e.code(), Some(&ApiCode::Apig(ApigCode::AppAuthIncorrect)));
        assert!(!e.is_retryable());
        let busy = interpret(&answer(
            504,
            r#"{"error_code":"APIG.0201","error_msg":"Backend timeout"}"#,
        ))
        .unwrap_err();
        assert!(busy.is_retryable());
        let limited = interpret(&RawAnswer {
            retry_after: RetryAfter::parse("120"),
            ..answer(406, r#"{"resultCode":"MKT.0250","resultMsg":"overlimit"}"#)
        })
        .unwrap_err();
        assert_eq!(limited.code(), Some(&ApiCode::Mkt(MktCode::RateLimited)));
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(RetryAfter::Seconds(120)));
        let unknown =
            interpret(&answer(200, r#"{"error_code":"99999999","error_msg":"?"}"#)).unwrap_err();
        assert_eq!(unknown.code(), Some(&ApiCode::Unknown("99999999".into())));
        assert!(!unknown.is_retryable());
    }

    #[test]
    fn non_json_answers_map_by_status() {
        let e = interpret(&answer(502, "<html>Bad gateway</html>")).unwrap_err();
        assert!(matches!(e, MarketError::Http { status: 502, .. }));
        assert!(e.is_retryable());
        let e = interpret(&answer(404, "")).unwrap_err();
        assert!(!e.is_retryable());
        let e = interpret(&answer(200, "<html>captive portal</html>")).unwrap_err();
        assert!(matches!(e, MarketError::Malformed { status: 200, .. }));
        assert!(!e.is_retryable());
        let e = interpret(&answer(200, r#"{"data":{}}"#)).unwrap_err();
        assert!(matches!(e, MarketError::Malformed { .. }));
    }

    #[test]
    fn usage_failures_keep_their_data() {
        let e = interpret(&answer(
            200,
            r#"{"error_code":"92020002","error_msg":"invalid param","data":{"check_fail_list":[{"license":"PL1"}]}}"#,
        ))
        .unwrap_err();
        let MarketError::Api {
            data: Some(data), ..
        } = e
        else {
            panic!("expected data");
        };
        assert_eq!(data["check_fail_list"][0]["license"], "PL1");
    }

    #[test]
    fn data_is_required_only_where_documented() {
        let v = serde_json::json!({"error_code":"92020000","error_msg":"success"});
        fn resp<T>(data: T) -> MarketResponse<T> {
            MarketResponse {
                data,
                server_date: None,
                served_by: ServedBy::Primary,
            }
        }
        let absent = take_data::<ActivateData>(&v, 200).unwrap();
        assert!(matches!(
            required_data(resp(absent)),
            Err(MarketError::MissingData)
        ));
        let batch: Option<HeartbeatBatchData> = take_data(&v, 200).unwrap();
        assert!(default_data(resp(batch)).data.license_info_list.is_empty());
        let bad = serde_json::json!({"error_code":"92020000","data":{"license_info_list":"x"}});
        assert!(matches!(
            take_data::<HeartbeatBatchData>(&bad, 200),
            Err(MarketError::Malformed { .. })
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let later = http_date(now + time::Duration::seconds(90));
        let r = RetryAfter::parse(&later).unwrap();
        assert_eq!(r.delay_from(now), Duration::from_secs(90));
        assert_eq!(
            RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT")
                .unwrap()
                .delay_from(now),
            Duration::ZERO
        );
        assert_eq!(RetryAfter::parse(" 5 "), Some(RetryAfter::Seconds(5)));
        assert_eq!(RetryAfter::parse("soon"), None);
        assert_eq!(RetryAfter::parse("-5"), None);
    }

    #[test]
    fn upload_body_has_both_parts_and_refuses_long_strings() {
        let descriptor = IsvUpdateFileReq::file("license.lic", b"LICENSE-BYTES");
        let RequestBody::Multipart {
            content_type,
            bytes,
        } = upload_body("BOUNDARY", &descriptor, Some(b"LICENSE-BYTES")).unwrap()
        else {
            panic!("multipart expected");
        };
        assert_eq!(content_type, "multipart/form-data; boundary=BOUNDARY");
        let text = String::from_utf8(bytes).unwrap();
        let sha = descriptor.sha256.clone().unwrap();
        assert_eq!(
            text,
            format!(
                "--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"license.lic\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\nLICENSE-BYTES\r\n\
                 --BOUNDARY\r\nContent-Disposition: form-data; name=\"isvUpdateFileReq\"\r\n\
                 Content-Type: application/json\r\n\r\n\
                 {{\"type\":\"FILE\",\"file_name\":\"license.lic\",\"sha256\":\"{sha}\"}}\r\n--BOUNDARY--\r\n"
            )
        );
        let too_long = IsvUpdateFileReq::characters("x".repeat(1025));
        let err = upload_body("B", &too_long, None).unwrap_err();
        assert_eq!(err.field, "isvUpdateFileReq.characters");
        let chars = upload_body("B", &IsvUpdateFileReq::characters("LIC"), None).unwrap();
        let RequestBody::Multipart { bytes, .. } = chars else {
            panic!("multipart expected");
        };
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("name=\"file\""));
        assert!(text.contains(r#"{"type":"CHARACTERS","characters":"LIC"}"#));
        let tricky = encode_multipart(
            "B",
            &[FormPart {
                name: "file",
                file_name: Some("a\"b\r\n.lic"),
                content_type: "application/octet-stream",
                bytes: b"",
            }],
        );
        let RequestBody::Multipart { bytes, .. } = tricky else {
            panic!("multipart expected");
        };
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("filename=\"a_b__.lic\"")
        );
    }

    fn config() -> MarketConfig {
        MarketConfig::new(
            Credentials::new("MYAK", "TOPSECRETSK"),
            ManualClock::at_unix(1_700_000_000).shared(),
        )
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let client = MarketClient::new(config()).unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains("MYAK"));
        assert!(!shown.contains("TOPSECRETSK"), "{shown}");
    }

    #[test]
    fn plain_http_and_bad_ca_files_are_refused() {
        let mut c = config();
        c.primary = Url::parse("http://mkt.myhuaweicloud.com").unwrap();
        assert!(matches!(
            MarketClient::new(c),
            Err(ConfigError::NotHttps(_))
        ));
        let mut c = config();
        c.extra_ca_pem = Some(PathBuf::from("/nonexistent/ca.pem"));
        assert!(matches!(
            MarketClient::new(c),
            Err(ConfigError::ReadCa { .. })
        ));
    }

    #[tokio::test]
    async fn oversized_batches_are_refused_before_sending() {
        // The primary points at a port nothing listens on: reaching the network would fail
        // differently, so the error proves nothing was sent.
        let mut c = config();
        c.primary = Url::parse("https://127.0.0.1:9").unwrap();
        c.fallback = None;
        let client = MarketClient::new(c).unwrap();
        let req = HeartbeatBatchRequest {
            license_list: (0..101).map(|i| format!("PL{i}")).collect(),
        };
        let err = client.heartbeat_batch(&req).await.unwrap_err();
        assert!(matches!(err, MarketError::InvalidRequest(_)), "{err:?}");
        assert!(!err.is_retryable());
        let err = client
            .upload_license_string("evt-1", &"x".repeat(1025))
            .await
            .unwrap_err();
        assert!(matches!(err, MarketError::InvalidRequest(_)), "{err:?}");
        let err = client
            .upload_license_string("../evt", "x")
            .await
            .unwrap_err();
        assert!(matches!(err, MarketError::InvalidRequest(_)), "{err:?}");
    }

    #[tokio::test]
    async fn connection_failure_is_retryable_and_names_the_host() {
        let mut c = config();
        c.primary = Url::parse("https://127.0.0.1:9").unwrap();
        c.fallback = Some(Url::parse("https://127.0.0.1:19").unwrap());
        c.connect_timeout = Duration::from_secs(2);
        let client = MarketClient::new(c).unwrap();
        let err = client
            .heartbeat(&HeartbeatRequest {
                license: "PL1".into(),
                heartbeat_info: None,
            })
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        // The fallback was tried after the primary's connection failure.
        assert!(
            matches!(&err, MarketError::Transport { host, .. } if host == "127.0.0.1:19"),
            "{err:?}"
        );
    }
}
