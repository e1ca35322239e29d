//! The `tessera-isv` configuration file (TOML).
//!
//! Secrets (access keys, the MKT secret key) are held in [`Secret`], whose `Debug` prints
//! `"<redacted>"` and whose memory is wiped on drop, so a config can be logged without leaking.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

/// A secret string: redacted in `Debug`, zeroed on drop.
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
pub struct Secret(Zeroizing<String>);

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(Zeroizing::new(value))
    }
}

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself; call only where it is used, never to log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path} is not valid")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is present but unusable.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsvConfig {
    /// `sqlite://PATH` (default backend; created and migrated on start) or `postgres://…`.
    pub database_url: String,
    /// The production-interface listener.
    pub server: ServerConfig,
    /// The callback access keys, one per KooGallery interface type (PROTOCOL.md §2.0).
    pub access_keys: AccessKeys,
    /// The MKT open-API client (AK/SK, base URLs).
    pub market: MarketConfig,
    /// The License signing key.
    pub signing: SigningConfig,
    /// Job-queue tuning.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// The products this ISV sells, by KooGallery `productId`.
    #[serde(default)]
    pub products: Vec<ProductConfig>,
}

/// The HTTPS (or plain HTTP) listener of the production URL, and the loopback admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the production interface listens on.
    pub listen: SocketAddr,
    /// URL path of the production interface (KooGallery calls one URL for everything).
    #[serde(default = "default_path")]
    pub path: String,
    /// PEM certificate chain for TLS; required unless `plain_http`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS; required unless `plain_http`.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP, for deployments behind a TLS-terminating proxy.
    #[serde(default)]
    pub plain_http: bool,
    /// Optional admin listener (`GET /status`); must be a loopback address.
    pub admin_listen: Option<SocketAddr>,
    /// Largest accepted callback body in bytes; larger bodies get `000002`.
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
}

fn default_path() -> String {
    "/produce".to_owned()
}

fn default_body_limit() -> usize {
    64 * 1024
}

/// The callback keys. KooGallery has one key per interface type; the verifier picks the key by
/// the callback's `activity` family.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeys {
    /// 基础接口: the Model B instance callbacks (newInstance … getLicenseAsync).
    pub basic: Option<Secret>,
    /// License授权码交付接口: the Model A code callbacks.
    pub license_code: Option<Secret>,
    /// 联营SaaS同步接口 (not used by License products; accepted for completeness).
    pub saas_sync: Option<Secret>,
    /// 通用接口, used when the family's own key is not configured.
    pub general: Option<Secret>,
}

/// Which interface type a callback belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// Model B instance callbacks.
    Basic,
    /// Model A authorization-code callbacks.
    LicenseCode,
}

impl AccessKeys {
    /// The key for a family: its own key, else the general key.
    #[must_use]
    pub fn for_family(&self, family: KeyFamily) -> Option<&Secret> {
        let own = match family {
            KeyFamily::Basic => self.basic.as_ref(),
            KeyFamily::LicenseCode => self.license_code.as_ref(),
        };
        own.or(self.general.as_ref())
    }

    /// Every configured key, for a request whose family cannot be told (unparsable body).
    #[must_use]
    pub fn all(&self) -> Vec<&Secret> {
        [
            &self.basic,
            &self.license_code,
            &self.saas_sync,
            &self.general,
        ]
        .into_iter()
        .filter_map(Option::as_ref)
        .collect()
    }
}

/// The MKT open-API client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    /// APIG access key id.
    pub access_key_id: String,
    /// APIG secret access key.
    pub secret_access_key: Secret,
    /// Base URLs, primary first then fallbacks.
    #[serde(default = "default_market_urls")]
    pub base_urls: Vec<String>,
    /// Extra PEM CA file to trust (emulator, TLS-inspecting proxy).
    pub extra_ca_file: Option<PathBuf>,
    /// Trust only `extra_ca_file`, not the system roots (tests against the emulator).
    #[serde(default)]
    pub trust_only_extra_ca: bool,
}

fn default_market_urls() -> Vec<String> {
    vec![
        "https://mkt.myhuaweicloud.com".to_owned(),
        "https://mkt.myhuaweicloud.cn".to_owned(),
    ]
}

/// The License signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// PKCS#8 PEM private key written by `tessera-isv keygen`.
    pub private_key: PathBuf,
}

/// Job-queue tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Attempts before a job is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long a claimed job is reserved for its worker before another instance may take it.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
    /// How often an idle worker polls the queue for jobs enqueued by other instances.
    #[serde(default = "default_poll_millis")]
    pub poll_millis: u64,
    /// Concurrent workers in this process.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_max_attempts() -> u32 {
    10
}
fn default_lease_seconds() -> u32 {
    120
}
fn default_poll_millis() -> u64 {
    500
}
fn default_workers() -> usize {
    2
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            lease_seconds: default_lease_seconds(),
            poll_millis: default_poll_millis(),
            workers: default_workers(),
        }
    }
}

/// KooGallery product model (PROTOCOL.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProductModel {
    /// Authorization code (授权码).
    A,
    /// Online-issued License file/string (在线开通License).
    B,
}

/// How a License is uploaded with market-event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// `type=FILE`: the License file with its SHA-256.
    File,
    /// `type=CHARACTERS`: the ≤1024-character License string.
    String,
}

impl DeliveryMode {
    /// The stored name (`FILE` / `CHARACTERS`, as on the wire).
    #[must_use]
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::File => "FILE",
            Self::String => "CHARACTERS",
        }
    }

    /// The mode for a stored name.
    #[must_use]
    pub fn from_wire_name(s: &str) -> Option<Self> {
        match s {
            "FILE" => Some(Self::File),
            "CHARACTERS" => Some(Self::String),
            _ => None,
        }
    }
}

/// Charging mode of a product (as in the order query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Charging {
    /// Periodic (yearly/monthly…): an expiry is required.
    Period,
    /// One-time purchase, perpetual.
    OneTime,
    /// On demand.
    OnDemand,
    /// On-demand package.
    OnDemandPkg,
}

impl Charging {
    /// Parses the order query's `chargingMode`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PERIOD" => Some(Self::Period),
            "ONE_TIME" => Some(Self::OneTime),
            "ON_DEMAND" => Some(Self::OnDemand),
            "ON_DEMAND_PKG" => Some(Self::OnDemandPkg),
            _ => None,
        }
    }
}

/// One product this ISV sells.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    /// KooGallery `productId`; `"*"` matches any product not listed otherwise.
    pub id: String,
    /// Product model.
    pub model: ProductModel,
    /// Charging mode used when the order does not say.
    pub charging: Charging,
    /// Upload as a file or as a string.
    #[serde(default = "default_delivery")]
    pub delivery: DeliveryMode,
    /// Licensed features and their counts.
    #[serde(default)]
    pub features: BTreeMap<String, u32>,
    /// Validity of a License when neither the request nor the order gives an expiry
    /// (non-periodic products); absent means perpetual.
    pub default_validity_days: Option<u32>,
}

fn default_delivery() -> DeliveryMode {
    DeliveryMode::File
}

impl IsvConfig {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid TOML for this schema, or a value is unusable.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_str(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    ///
    /// # Errors
    /// When the text is not valid TOML for this schema or a value is unusable.
    pub fn parse_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::new(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.server.plain_http
            && (self.server.tls_cert.is_none() || self.server.tls_key.is_none())
        {
            return Err(ConfigError::Invalid(
                "server.tls_cert and server.tls_key are required unless server.plain_http = true"
                    .into(),
            ));
        }
        if let Some(admin) = self.server.admin_listen
            && !admin.ip().is_loopback()
        {
            return Err(ConfigError::Invalid(format!(
                "server.admin_listen {admin} must be a loopback address"
            )));
        }
        if !self.server.path.starts_with('/') {
            return Err(ConfigError::Invalid(
                "server.path must start with '/'".into(),
            ));
        }
        if self.access_keys.all().is_empty() {
            return Err(ConfigError::Invalid(
                "access_keys: at least one callback access key is required".into(),
            ));
        }
        if self.market.base_urls.is_empty() {
            return Err(ConfigError::Invalid(
                "market.base_urls must not be empty".into(),
            ));
        }
        if self.jobs.max_attempts == 0 || self.jobs.workers == 0 || self.jobs.lease_seconds == 0 {
            return Err(ConfigError::Invalid(
                "jobs.max_attempts, jobs.workers and jobs.lease_seconds must be positive".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.products {
            if !seen.insert(p.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "product {:?} is listed twice",
                    p.id
                )));
            }
        }
        Ok(())
    }

    /// The product configuration for a KooGallery `productId` (exact match, else `"*"`).
    #[must_use]
    pub fn product(&self, product_id: &str) -> Option<&ProductConfig> {
        self.products
            .iter()
            .find(|p| p.id == product_id)
            .or_else(|| self.products.iter().find(|p| p.id == "*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
database_url = "sqlite:///tmp/isv.db"

[server]
listen = "127.0.0.1:8443"
tls_cert = "cert.pem"
tls_key = "key.pem"
admin_listen = "127.0.0.1:8444"

[access_keys]
basic = "BASIC-SECRET-KEY"
license_code = "CODE-SECRET-KEY"

[market]
access_key_id = "AKID"
secret_access_key = "MKT-SECRET-VALUE"

[signing]
private_key = "signing.pem"

[[products]]
id = "prod-cad"
model = "B"
charging = "PERIOD"
delivery = "string"
features = { solver = 4, mesher = 1 }
"#;

    #[test]
    fn example_parses_and_secrets_never_print() {
        let c = IsvConfig::parse_str(EXAMPLE).unwrap();
        assert_eq!(c.server.path, "/produce");
        assert_eq!(c.server.max_body_bytes, 65536);
        assert_eq!(c.market.base_urls.len(), 2);
        assert_eq!(
            c.product("prod-cad").unwrap().delivery,
            DeliveryMode::String
        );
        assert!(c.product("other").is_none());
        let dbg = format!("{c:?}");
        for secret in ["BASIC-SECRET-KEY", "CODE-SECRET-KEY", "MKT-SECRET-VALUE"] {
            assert!(!dbg.contains(secret), "{secret} leaked into Debug");
        }
        assert_eq!(
            c.access_keys
                .for_family(KeyFamily::LicenseCode)
                .unwrap()
                .expose(),
            "CODE-SECRET-KEY"
        );
    }

    #[test]
    fn tls_required_unless_plain_and_admin_must_be_loopback() {
        let no_tls = EXAMPLE.replace("tls_cert = \"cert.pem\"\n", "");
        assert!(matches!(
            IsvConfig::parse_str(&no_tls),
            Err(ConfigError::Invalid(_))
        ));
        let public_admin = EXAMPLE.replace("127.0.0.1:8444", "0.0.0.0:8444");
        assert!(matches!(
            IsvConfig::parse_str(&public_admin),
            Err(ConfigError::Invalid(_))
        ));
        let unknown_key = format!("{EXAMPLE}\n[extra]\nx = 1\n");
        assert!(matches!(
            IsvConfig::parse_str(&unknown_key),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn general_key_backs_up_a_missing_family_key() {
        let keys = AccessKeys {
            general: Some(Secret::new("G")),
            ..AccessKeys::default()
        };
        assert_eq!(keys.for_family(KeyFamily::Basic).unwrap().expose(), "G");
        assert_eq!(keys.all().len(), 1);
    }
}
