//! `tessera.toml`: the agent's own settings.
//!
//! ```toml
//! [marketplace]
//! base_url = "https://mkt.myhuaweicloud.com"      # primary host
//! fallback_url = "https://mkt.myhuaweicloud.cn"   # used when the primary is unreachable
//! ca_file = "/etc/tessera/corp-ca.pem"           # extra trusted CA (emulator, TLS-inspecting proxy)
//! delivery_url = "https://127.0.0.1:8443"         # optional: where Model B Licenses are fetched
//! usage_id = "workstation-17"                     # optional: id reported in software-usage-info
//!
//! [secrets]
//! store = "auto"            # auto | keyring | file
//!
//! [log]
//! filter = "info"           # tracing env-filter directive; changeable over IPC
//!
//! [ipc]
//! max_connections = 1024    # open connections allowed per user (each app holds one)
//! ```
//!
//! Every key is optional. A malformed file is an error at start (the agent cannot guess the
//! marketplace), unlike a malformed product descriptor, which is skipped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secrets::StoreChoice;

/// KooGallery's production host.
pub const DEFAULT_BASE_URL: &str = "https://mkt.myhuaweicloud.com";
/// KooGallery's fallback host.
pub const DEFAULT_FALLBACK_URL: &str = "https://mkt.myhuaweicloud.cn";

/// Marketplace settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketplaceSettings {
    /// Primary host.
    pub base_url: String,
    /// Fallback host.
    pub fallback_url: Option<String>,
    /// Extra CA certificate file (PEM).
    pub ca_file: Option<PathBuf>,
    /// Delivery channel for Model B Licenses (the emulator's stand-in for ISCDesk's channel).
    pub delivery_url: Option<String>,
    /// Id reported per user in `software-usage-info`; default: a hash of user and machine.
    pub usage_id: Option<String>,
    /// Whether the server's `Date` header feeds trusted time (offset and high-water mark).
    /// Off only where the server's `Date` is not its notion of time (an emulator on a simulated
    /// clock); an online check then still clears the tamper flag.
    pub trust_server_time: bool,
}

impl Default for MarketplaceSettings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            fallback_url: Some(DEFAULT_FALLBACK_URL.to_owned()),
            ca_file: None,
            delivery_url: None,
            usage_id: None,
            trust_server_time: true,
        }
    }
}

/// Secrets settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsSettings {
    /// Which store.
    pub store: StoreChoice,
}

/// Log settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` env-filter directive.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
        }
    }
}

/// IPC settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpcSettings {
    /// Open connections allowed per user: a bound on file descriptors and memory a runaway
    /// process can take, high enough for every application of a busy workstation.
    pub max_connections: usize,
}

impl Default for IpcSettings {
    fn default() -> Self {
        Self {
            max_connections: 1024,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[marketplace]`.
    pub marketplace: MarketplaceSettings,
    /// `[secrets]`.
    pub secrets: SecretsSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[ipc]`.
    pub ipc: IpcSettings,
}

/// `tessera.toml` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// It could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("{path} is invalid: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl Settings {
    /// Reads `path`; a missing file gives the defaults.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text of `path`.
    ///
    /// # Errors
    /// When the TOML is invalid or a URL is not http(s).
    pub fn parse(text: &str, path: &Path) -> Result<Self, SettingsError> {
        let invalid = |problem: String| SettingsError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let s: Settings = toml::from_str(text).map_err(|e| invalid(e.message().to_owned()))?;
        let urls = [
            Some(&s.marketplace.base_url),
            s.marketplace.fallback_url.as_ref(),
            s.marketplace.delivery_url.as_ref(),
        ];
        for url in urls.into_iter().flatten() {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(format!("{url:?} is not an http(s) URL")));
            }
        }
        if !(1..=65_536).contains(&s.ipc.max_connections) {
            return Err(invalid("ipc.max_connections must be 1..=65536".to_owned()));
        }
        if s.marketplace
            .usage_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 256)
        {
            return Err(invalid(
                "marketplace.usage_id must be 1..=256 characters".to_owned(),
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::parse("", Path::new("t.toml")).unwrap();
        assert_eq!(s.marketplace.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.secrets.store, StoreChoice::Auto);
        let s = Settings::parse(
            "[marketplace]\nbase_url = \"https://127.0.0.1:9\"\nfallback_url = \"https://127.0.0.1:10\"\n[secrets]\nstore = \"file\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(s.marketplace.base_url, "https://127.0.0.1:9");
        assert_eq!(s.secrets.store, StoreChoice::File);
        assert!(
            Settings::parse(
                "[marketplace]\nbase_url = \"ftp://x\"\n",
                Path::new("t.toml")
            )
            .is_err()
        );
        assert!(Settings::parse("[nope]\n", Path::new("t.toml")).is_err());
        let missing = Settings::load(Path::new("/nonexistent/tessera.toml")).unwrap();
        assert_eq!(missing, Settings::default());
    }
}
