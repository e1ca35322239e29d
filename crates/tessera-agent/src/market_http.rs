//! The marketplace over HTTPS: an adapter from [`koogallery::client::MarketClient`] (APIG
//! signing, strict TLS, bounded answers, primary → fallback host) to the agent's
//! [`Marketplace`] seam. This module only translates requests and answers; every byte on the
//! wire is the `koogallery` client's.
//!
//! It also builds the plain HTTPS client the agent uses for the two unsigned fetches it does
//! itself (update manifests and the Model B delivery channel).

use std::path::Path;
use std::time::Duration as StdDuration;

use koogallery::apig::Credentials;
use koogallery::client::{ApiCode, CaMode, ConfigError, MarketClient, MarketConfig, MarketError};
use koogallery::wire::{
    ActivateBatchRequest, ActivateRequest, HeartbeatBatchRequest, HeartbeatRequest, LicenseInfo,
    SoftwareUsage, UsageEntry, UsageInfoRequest,
};
use time::Duration;
use url::Url;

use tessera_types::{KooTime, SharedClock};

use crate::config::MarketplaceSettings;
use crate::market::{
    ActivationOutcome, Answer, BoxFuture, CodeInfo, HeartbeatOutcome, MarketFailure, Marketplace,
};

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
    /// The HTTP client for manifests and delivery could not be built.
    #[error("cannot build the HTTPS client")]
    Client(#[source] reqwest::Error),
    /// A marketplace URL is not an https URL.
    #[error("the marketplace URL {url} is not usable")]
    Url {
        /// The URL, as configured.
        url: String,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// The `koogallery` client refused the configuration.
    #[error("cannot build the marketplace client")]
    Market(#[source] ConfigError),
}

/// Builds the HTTPS client for update manifests and the delivery channel (strict TLS, optional
/// extra CA). Marketplace API calls never use it.
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

/// KooGallery's Model A open APIs through [`MarketClient`].
#[derive(Debug, Clone)]
pub struct KooMarket {
    client: MarketClient,
    clock: SharedClock,
}

fn parse_url(url: &str) -> Result<Url, MarketSetupError> {
    Url::parse(url).map_err(|source| MarketSetupError::Url {
        url: url.to_owned(),
        source,
    })
}

impl KooMarket {
    /// Wraps a ready client.
    #[must_use]
    pub fn new(client: MarketClient, clock: SharedClock) -> Self {
        Self { client, clock }
    }

    /// A client for the hosts and CA of `settings`, signing with `credentials`.
    ///
    /// # Errors
    /// A URL that is not https, an unusable CA file, or a TLS setup failure.
    pub fn from_settings(
        settings: &MarketplaceSettings,
        credentials: Credentials,
        clock: SharedClock,
    ) -> Result<Self, MarketSetupError> {
        let mut config = MarketConfig::new(credentials, clock.clone());
        config.primary = parse_url(&settings.base_url)?;
        config.fallback = settings
            .fallback_url
            .as_deref()
            .map(parse_url)
            .transpose()?;
        config.extra_ca_pem.clone_from(&settings.ca_file);
        config.ca_mode = CaMode::Merge;
        let client = MarketClient::new(config).map_err(MarketSetupError::Market)?;
        Ok(Self::new(client, clock))
    }

    fn failure(&self, e: &MarketError) -> MarketFailure {
        let retry_after = e.retry_after().map(|r| {
            let wait = r.delay_from(self.clock.now());
            Duration::seconds(i64::try_from(wait.as_secs().min(3600)).unwrap_or(3600))
        });
        match e {
            // A definite business answer about the code, which a retry will not change.
            MarketError::Api {
                code: ApiCode::License(c),
                message,
                ..
            } if !e.is_retryable() => MarketFailure::Refused {
                code: c.code().to_owned(),
                message: message.chars().take(200).collect(),
            },
            // Gateway, rate limit, transport, server trouble, or an answer we cannot read: the
            // code itself is not at fault, so it must not be blocked for it.
            _ => MarketFailure::Unavailable {
                message: error_chain(e),
                retry_after,
            },
        }
    }

    async fn heartbeat_one(&self, code: &str) -> Result<Answer<HeartbeatOutcome>, MarketFailure> {
        let req = HeartbeatRequest {
            license: code.to_owned(),
            heartbeat_info: None,
        };
        match self.client.heartbeat(&req).await {
            Ok(r) => Ok(Answer {
                value: Ok(info_from(&r.data)),
                server_date: r.server_date,
            }),
            Err(e) => match self.failure(&e) {
                f @ MarketFailure::Refused { .. } => Ok(Answer {
                    value: Err(f),
                    server_date: e.server_date(),
                }),
                f => Err(f),
            },
        }
    }

    async fn heartbeat_codes(
        &self,
        codes: &[String],
    ) -> Result<Answer<Vec<HeartbeatOutcome>>, MarketFailure> {
        if let [code] = codes {
            let a = self.heartbeat_one(code).await?;
            return Ok(Answer {
                value: vec![a.value],
                server_date: a.server_date,
            });
        }
        let req = HeartbeatBatchRequest {
            license_list: codes.to_vec(),
        };
        match self.client.heartbeat_batch(&req).await {
            Ok(r) => {
                let list = r.data.license_info_list;
                let value = codes
                    .iter()
                    .map(|code| {
                        list.iter()
                            .find(|i| i.license_code == *code)
                            .map(info_from)
                            .ok_or_else(|| MarketFailure::Refused {
                                code: crate::market::CODE_NOT_EXIST.to_owned(),
                                message: "the batch answer does not list this code".to_owned(),
                            })
                    })
                    .collect();
                Ok(Answer {
                    value,
                    server_date: r.server_date,
                })
            }
            Err(e) => match self.failure(&e) {
                // One bad code refuses the whole batch (92020020): ask one by one.
                MarketFailure::Refused { .. } => self.one_by_one(codes).await,
                f => Err(f),
            },
        }
    }

    async fn one_by_one(
        &self,
        codes: &[String],
    ) -> Result<Answer<Vec<HeartbeatOutcome>>, MarketFailure> {
        let mut value = Vec::with_capacity(codes.len());
        let mut server_date = None;
        for code in codes {
            let a = self.heartbeat_one(code).await?;
            server_date = a.server_date.or(server_date);
            value.push(a.value);
        }
        Ok(Answer { value, server_date })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg.chars().take(300).collect()
}

fn info_from(i: &LicenseInfo) -> CodeInfo {
    CodeInfo {
        status: i.status.as_str().to_owned(),
        expires_at: i.expire_time.map(KooTime::datetime),
        product_id: i.product_id.clone(),
        amount: i
            .extra
            .get("amount")
            .and_then(|a| {
                a.as_u64()
                    .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
            })
            .and_then(|a| u32::try_from(a).ok()),
    }
}

impl Marketplace for KooMarket {
    fn activate<'a>(
        &'a self,
        code: &'a str,
    ) -> BoxFuture<'a, Result<Answer<CodeInfo>, MarketFailure>> {
        Box::pin(async move {
            let req = ActivateRequest {
                license: code.to_owned(),
                real_effect_time: None,
            };
            let r = self
                .client
                .activate(&req)
                .await
                .map_err(|e| self.failure(&e))?;
            // An activation whose details cannot be decoded still succeeded; the next
            // heartbeat fills in the expiry.
            let info = r.data.info().map_or_else(
                |_| CodeInfo {
                    status: "ALIVE".to_owned(),
                    expires_at: None,
                    product_id: None,
                    amount: None,
                },
                |i| CodeInfo {
                    status: i.status.as_str().to_owned(),
                    expires_at: i.expire_time.map(KooTime::datetime),
                    product_id: i.product_id,
                    amount: i.amount.and_then(|a| u32::try_from(a).ok()),
                },
            );
            Ok(Answer {
                value: info,
                server_date: r.server_date,
            })
        })
    }

    fn activate_batch<'a>(
        &'a self,
        codes: &'a [String],
    ) -> BoxFuture<'a, Result<Answer<Vec<ActivationOutcome>>, MarketFailure>> {
        Box::pin(async move {
            if let [code] = codes {
                return Ok(match self.activate(code).await {
                    Ok(a) => Answer {
                        value: vec![Ok(a.value)],
                        server_date: a.server_date,
                    },
                    Err(f @ MarketFailure::Refused { .. }) => Answer {
                        value: vec![Err(f)],
                        server_date: None,
                    },
                    Err(f) => return Err(f),
                });
            }
            let req = ActivateBatchRequest {
                license_list: codes.to_vec(),
                real_effect_time: None,
            };
            match self.client.activate_batch(&req).await {
                // v2 answers without data: the heartbeat says what each code now is.
                Ok(r) => {
                    let mut a = self.heartbeat_codes(codes).await?;
                    a.server_date = a.server_date.or(r.server_date);
                    Ok(a)
                }
                Err(e) => match self.failure(&e) {
                    // One code refused the batch: activate one by one so the others succeed
                    // and each refusal names its own code.
                    MarketFailure::Refused { .. } => {
                        let mut value = Vec::with_capacity(codes.len());
                        let mut server_date = None;
                        for code in codes {
                            match self.activate(code).await {
                                Ok(a) => {
                                    server_date = a.server_date.or(server_date);
                                    value.push(Ok(a.value));
                                }
                                Err(f @ MarketFailure::Refused { .. }) => value.push(Err(f)),
                                Err(f) => return Err(f),
                            }
                        }
                        Ok(Answer { value, server_date })
                    }
                    f => Err(f),
                },
            }
        })
    }

    fn heartbeat<'a>(
        &'a self,
        codes: &'a [String],
    ) -> BoxFuture<'a, Result<Answer<Vec<HeartbeatOutcome>>, MarketFailure>> {
        Box::pin(self.heartbeat_codes(codes))
    }

    fn report_usage<'a>(
        &'a self,
        codes: &'a [String],
        id: &'a str,
    ) -> BoxFuture<'a, Result<Answer<()>, MarketFailure>> {
        Box::pin(async move {
            let req = UsageInfoRequest {
                usage_info: codes
                    .iter()
                    .map(|c| UsageEntry {
                        license: c.clone(),
                        software_usage_info: vec![SoftwareUsage::login(id)],
                    })
                    .collect(),
            };
            let r = self
                .client
                .software_usage_info(&req)
                .await
                .map_err(|e| self.failure(&e))?;
            if r.data.has_failures() {
                tracing::warn!(
                    codes = codes.len(),
                    "the marketplace listed failed items in a usage report"
                );
            }
            Ok(Answer {
                value: (),
                server_date: r.server_date,
            })
        })
    }
}
