//! The marketplace over HTTPS: APIG-signed calls (`koogallery::apig`) to the primary host, falling
//! back to the second host when the primary cannot be reached or answers 5xx (PROTOCOL.md §2.0).
//! Answers are parsed leniently (unknown keys ignored, the v2 heartbeat list by `license_code`).

use std::path::Path;
use std::time::Duration as StdDuration;

use koogallery::apig::{Credentials, SigningRequest, sign};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use tessera_types::{KooTime, SharedClock};

use crate::market::{Answer, BoxFuture, CodeInfo, HeartbeatOutcome, MarketFailure, Marketplace};

const OPEN_API: &str = "/api/mkp-openapi-public/global";
/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A marketplace client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MarketSetupError {
    /// The CA file could not be read or parsed.
    #[error("cannot use the CA file {path}")]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTPS client")]
    Client(#[source] reqwest::Error),
}

/// Builds the HTTPS client the agent uses (strict TLS, optional extra CA).
///
/// # Errors
/// When the CA file is unreadable or the client cannot be built.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, MarketSetupError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(StdDuration::from_secs(10))
        .timeout(StdDuration::from_secs(30));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| MarketSetupError::Ca {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| MarketSetupError::Ca {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        builder = builder.tls_certs_merge([cert]);
    }
    builder.build().map_err(MarketSetupError::Client)
}

/// KooGallery's Model A open APIs.
pub struct KooMarket {
    client: reqwest::Client,
    hosts: Vec<String>,
    credentials: Credentials,
    clock: SharedClock,
}

impl std::fmt::Debug for KooMarket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KooMarket")
            .field("hosts", &self.hosts)
            .field("access_key", &self.credentials.access_key())
            .finish_non_exhaustive()
    }
}

enum Failure {
    /// Try the next host.
    Unreachable(String),
    /// Final.
    Final(MarketFailure),
}

impl KooMarket {
    /// A client for `base_url` (and `fallback_url`), signing with `credentials`.
    #[must_use]
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        fallback_url: Option<&str>,
        credentials: Credentials,
        clock: SharedClock,
    ) -> Self {
        let mut hosts = vec![base_url.trim_end_matches('/').to_owned()];
        if let Some(f) = fallback_url {
            hosts.push(f.trim_end_matches('/').to_owned());
        }
        Self {
            client,
            hosts,
            credentials,
            clock,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Answer<Value>, MarketFailure> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut last = String::from("no marketplace host configured");
        for host in &self.hosts {
            match self.post_to(host, path, &bytes).await {
                Ok(a) => return Ok(a),
                Err(Failure::Final(f)) => return Err(f),
                Err(Failure::Unreachable(why)) => {
                    tracing::warn!(host = %host, error = %why, "marketplace host failed; trying the next");
                    last = why;
                }
            }
        }
        Err(MarketFailure::Unavailable {
            message: last,
            retry_after: None,
        })
    }

    async fn post_to(&self, base: &str, path: &str, body: &[u8]) -> Result<Answer<Value>, Failure> {
        let url = format!("{base}{path}");
        let parsed = reqwest::Url::parse(&url).map_err(|e| Failure::Unreachable(e.to_string()))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => {
                return Err(Failure::Unreachable(
                    "the marketplace URL has no host".to_owned(),
                ));
            }
        };
        let req = SigningRequest::new("POST", &host, parsed.path())
            .header("Content-Type", "application/json")
            .body(body);
        let signed = sign(&self.credentials, &req, self.clock.now());
        let mut builder = self.client.post(parsed);
        for (name, value) in &signed.headers {
            if name.eq_ignore_ascii_case("host") {
                continue;
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        let resp = builder
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Failure::Unreachable(transport_message(&e)))?;
        let status = resp.status().as_u16();
        let server_date = resp
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()
            });
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|s| Duration::seconds(s.clamp(0, 3600)));
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::Unreachable(transport_message(&e)))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(Failure::Final(MarketFailure::Unavailable {
                message: "the marketplace answer is too large".to_owned(),
                retry_after,
            }));
        }
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        let code = value
            .as_ref()
            .and_then(|v| v.get("error_code"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let message = value
            .as_ref()
            .and_then(|v| v.get("error_msg"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        match (status, code.as_deref()) {
            (200, Some("92020000")) => Ok(Answer {
                value: value.unwrap_or(Value::Null),
                server_date,
            }),
            (500..=599, _) => Err(Failure::Unreachable(format!("HTTP {status} {message}"))),
            (_, Some(c)) if c.starts_with("APIG.") || c.starts_with("MKT.") || c == "92020001" => {
                Err(Failure::Final(MarketFailure::Unavailable {
                    message: format!("{c} {message}"),
                    retry_after,
                }))
            }
            (_, Some(c)) if c.starts_with("9202") => Err(Failure::Final(MarketFailure::Refused {
                code: c.to_owned(),
                message,
            })),
            _ => Err(Failure::Final(MarketFailure::Unavailable {
                message: format!("unexpected answer: HTTP {status}"),
                retry_after,
            })),
        }
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg.chars().take(300).collect()
}

fn parse_time(v: Option<&Value>) -> Option<OffsetDateTime> {
    v.and_then(Value::as_str)
        .and_then(|s| KooTime::parse(s).ok())
        .map(KooTime::datetime)
}

fn amount(v: Option<&Value>) -> Option<u32> {
    v.and_then(|a| {
        a.as_u64()
            .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
    })
    .and_then(|a| u32::try_from(a).ok())
}

fn info_from(obj: &Value) -> CodeInfo {
    CodeInfo {
        status: obj
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_owned(),
        expires_at: parse_time(obj.get("expire_time")),
        product_id: obj
            .get("product_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        amount: amount(obj.get("amount")),
    }
}

impl KooMarket {
    async fn heartbeat_one(&self, code: &str) -> Result<Answer<HeartbeatOutcome>, MarketFailure> {
        match self
            .post(
                &format!("{OPEN_API}/v1/license/heartbeat"),
                &json!({ "license": code }),
            )
            .await
        {
            Ok(a) => Ok(Answer {
                value: Ok(info_from(a.value.get("data").unwrap_or(&Value::Null))),
                server_date: a.server_date,
            }),
            Err(f @ MarketFailure::Refused { .. }) => Ok(Answer {
                value: Err(f),
                server_date: None,
            }),
            Err(f) => Err(f),
        }
    }
}

impl Marketplace for KooMarket {
    fn activate<'a>(
        &'a self,
        code: &'a str,
    ) -> BoxFuture<'a, Result<Answer<CodeInfo>, MarketFailure>> {
        Box::pin(async move {
            let a = self
                .post(
                    &format!("{OPEN_API}/v1/license/activate"),
                    &json!({ "license": code }),
                )
                .await?;
            // license_code_info is a JSON string holding an object (PROTOCOL.md §2.1.1).
            let info = a
                .value
                .get("data")
                .and_then(|d| d.get("license_code_info"))
                .and_then(|s| match s {
                    Value::String(text) => serde_json::from_str::<Value>(text).ok(),
                    other @ Value::Object(_) => Some(other.clone()),
                    _ => None,
                })
                .map_or_else(
                    || CodeInfo {
                        status: "ALIVE".to_owned(),
                        expires_at: None,
                        product_id: None,
                        amount: None,
                    },
                    |v| info_from(&v),
                );
            Ok(Answer {
                value: info,
                server_date: a.server_date,
            })
        })
    }

    fn heartbeat<'a>(
        &'a self,
        codes: &'a [String],
    ) -> BoxFuture<'a, Result<Answer<Vec<HeartbeatOutcome>>, MarketFailure>> {
        Box::pin(async move {
            if codes.len() == 1 {
                let a = self.heartbeat_one(&codes[0]).await?;
                return Ok(Answer {
                    value: vec![a.value],
                    server_date: a.server_date,
                });
            }
            match self
                .post(
                    &format!("{OPEN_API}/v2/license/heartbeat"),
                    &json!({ "license_list": codes }),
                )
                .await
            {
                Ok(a) => {
                    let list = a
                        .value
                        .get("data")
                        .and_then(|d| d.get("license_info_list"))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let value = codes
                        .iter()
                        .map(|code| {
                            list.iter()
                                .find(|i| {
                                    i.get("license_code").and_then(Value::as_str)
                                        == Some(code.as_str())
                                })
                                .map(info_from)
                                .ok_or_else(|| MarketFailure::Refused {
                                    code: crate::market::CODE_NOT_EXIST.to_owned(),
                                    message: "the batch answer does not list this code".to_owned(),
                                })
                        })
                        .collect();
                    Ok(Answer {
                        value,
                        server_date: a.server_date,
                    })
                }
                Err(MarketFailure::Refused { .. }) => {
                    // One bad code refuses the whole batch (92020020): ask one by one.
                    let mut value = Vec::with_capacity(codes.len());
                    let mut server_date = None;
                    for code in codes {
                        let a = self.heartbeat_one(code).await?;
                        server_date = a.server_date.or(server_date);
                        value.push(a.value);
                    }
                    Ok(Answer { value, server_date })
                }
                Err(e) => Err(e),
            }
        })
    }

    fn report_usage<'a>(
        &'a self,
        codes: &'a [String],
        id: &'a str,
    ) -> BoxFuture<'a, Result<Answer<()>, MarketFailure>> {
        Box::pin(async move {
            let usage: Vec<Value> = codes
                .iter()
                .map(|c| json!({ "license": c, "software_usage_Info": [{ "id": id }] }))
                .collect();
            let a = self
                .post(
                    &format!("{OPEN_API}/v2/license/software-usage-info"),
                    &json!({ "usage_info": usage }),
                )
                .await?;
            Ok(Answer {
                value: (),
                server_date: a.server_date,
            })
        })
    }
}
