//! Product descriptors: one TOML file per product in `products.d/`, system dir first, then the
//! user's (a user file with the same product id replaces the system one).
//!
//! ```toml
//! product_id = "00301-667251-0--0"
//! name = "FooCAD 2026"
//! models = ["authorization_code", "license_file"]
//! update_manifest_url = "https://updates.example.com/foocad/manifest.json"
//! current_version = "2026.1.0"
//!
//! [[keys]]
//! key_id = "3f2a9c0d1e4b5a69"
//! public_key_pem = """
//! -----BEGIN PUBLIC KEY-----
//! ...
//! -----END PUBLIC KEY-----
//! """
//!
//! [[features]]          # Model A seat pools; Model B takes features from the License
//! name = "solver"
//! seats = 2
//!
//! [policy]
//! offline_grace_days = 14      # 0..=30
//! lease_minutes = 15           # 1..=1440
//! heartbeat_interval_hours = 12  # 1..=24
//! block_immediately = false
//! ```
//!
//! A malformed descriptor is reported (log and status) and skipped; it never stops the agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::Duration;

/// Largest descriptor read; anything bigger is refused rather than parsed.
pub const MAX_DESCRIPTOR_BYTES: u64 = 256 * 1024;
/// Longest product id accepted (KooGallery ids are short; this bounds what lands in the database).
pub const MAX_PRODUCT_ID_LEN: usize = 128;

/// How a KooGallery product is licensed.
pub use tessera_types::state::ProductModel;

/// Enforcement policy of one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Offline grace after the last successful online check, in days (0..=30).
    pub offline_grace_days: u32,
    /// Lease granted per checkout, in minutes (1..=1440).
    pub lease_minutes: u32,
    /// Online check interval while an application of the product is connected, in hours (1..=24).
    pub heartbeat_interval_hours: u32,
    /// Whether blocking also revokes the leases already granted.
    pub block_immediately: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            offline_grace_days: 14,
            lease_minutes: 15,
            heartbeat_interval_hours: 12,
            block_immediately: false,
        }
    }
}

impl Policy {
    /// The offline grace as a duration.
    #[must_use]
    pub fn offline_grace(&self) -> Duration {
        Duration::days(i64::from(self.offline_grace_days))
    }

    /// The lease length as a duration.
    #[must_use]
    pub fn lease(&self) -> Duration {
        Duration::minutes(i64::from(self.lease_minutes))
    }

    /// The connected-application check interval.
    #[must_use]
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::hours(i64::from(self.heartbeat_interval_hours))
    }

    fn validate(&self) -> Result<(), String> {
        if self.offline_grace_days > 30 {
            return Err(format!(
                "policy.offline_grace_days is {}, allowed 0..=30",
                self.offline_grace_days
            ));
        }
        if !(1..=1440).contains(&self.lease_minutes) {
            return Err(format!(
                "policy.lease_minutes is {}, allowed 1..=1440",
                self.lease_minutes
            ));
        }
        if !(1..=24).contains(&self.heartbeat_interval_hours) {
            return Err(format!(
                "policy.heartbeat_interval_hours is {}, allowed 1..=24",
                self.heartbeat_interval_hours
            ));
        }
        Ok(())
    }
}

/// An ISV public key as the descriptor gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The key id Licenses name.
    pub key_id: String,
    /// SPKI PEM.
    pub public_key_pem: String,
}

/// A seat pool for a Model A product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureEntry {
    /// Feature name.
    pub name: String,
    /// Concurrent seats; absent means unlimited.
    #[serde(default)]
    pub seats: Option<u32>,
}

/// One product descriptor, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductDescriptor {
    /// KooGallery product id.
    pub product_id: String,
    /// Display name.
    pub name: String,
    /// Licensing models the product uses (one or both).
    pub models: Vec<ProductModel>,
    /// ISV public keys, by key id.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Signed update manifest location.
    #[serde(default)]
    pub update_manifest_url: Option<String>,
    /// SPKI PEM of the key that signs the update manifest.
    #[serde(default)]
    pub update_manifest_key_pem: Option<String>,
    /// The version installed, compared against the manifest.
    #[serde(default)]
    pub current_version: Option<String>,
    /// Model A seat pools. Empty: any feature, unlimited seats.
    #[serde(default)]
    pub features: Vec<FeatureEntry>,
    /// Enforcement policy.
    #[serde(default)]
    pub policy: Policy,
    /// Which file it came from (set by the loader).
    #[serde(skip)]
    pub source: PathBuf,
}

impl ProductDescriptor {
    /// Whether the product uses `model`.
    #[must_use]
    pub fn uses(&self, model: ProductModel) -> bool {
        self.models.contains(&model)
    }

    /// Parses and validates one descriptor.
    ///
    /// # Errors
    /// When the TOML is malformed or a value is out of range.
    pub fn parse(text: &str, source: &Path) -> Result<Self, DescriptorError> {
        let mut d: ProductDescriptor = toml::from_str(text).map_err(|e| DescriptorError {
            path: source.to_path_buf(),
            problem: e.message().to_owned(),
        })?;
        d.source = source.to_path_buf();
        d.validate().map_err(|problem| DescriptorError {
            path: source.to_path_buf(),
            problem,
        })?;
        Ok(d)
    }

    fn validate(&self) -> Result<(), String> {
        let id_ok = !self.product_id.is_empty()
            && self.product_id.len() <= MAX_PRODUCT_ID_LEN
            && self
                .product_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            return Err("product_id must be 1..=128 characters of A-Z a-z 0-9 - _ .".to_owned());
        }
        if self.models.is_empty() {
            return Err("models must name authorization_code and/or license_file".to_owned());
        }
        if self.uses(ProductModel::LicenseFile) && self.keys.is_empty() {
            return Err("a license_file product needs at least one [[keys]] entry".to_owned());
        }
        if let Some(url) = &self.update_manifest_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err("update_manifest_url must be an http(s) URL".to_owned());
        }
        for f in &self.features {
            if f.name.is_empty() || f.name.len() > 64 {
                return Err("feature names must be 1..=64 characters".to_owned());
            }
        }
        self.policy.validate()
    }
}

/// A descriptor that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("product descriptor {path} is unusable: {problem}")]
pub struct DescriptorError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// Every usable descriptor, plus the problems found while loading.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// By product id.
    pub products: BTreeMap<String, ProductDescriptor>,
    /// Descriptors skipped, with why.
    pub problems: Vec<DescriptorError>,
}

impl Catalog {
    /// Loads `*.toml` from each dir in order; later dirs override earlier ones per product id.
    /// Missing dirs are fine; unreadable or malformed files are recorded in `problems`.
    #[must_use]
    pub fn load(dirs: &[PathBuf]) -> Self {
        let mut catalog = Catalog::default();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for path in files {
                match read_descriptor(&path) {
                    Ok(d) => {
                        catalog.products.insert(d.product_id.clone(), d);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping product descriptor");
                        catalog.problems.push(e);
                    }
                }
            }
        }
        catalog
    }

    /// The descriptor of `product_id`.
    #[must_use]
    pub fn get(&self, product_id: &str) -> Option<&ProductDescriptor> {
        self.products.get(product_id)
    }
}

fn read_descriptor(path: &Path) -> Result<ProductDescriptor, DescriptorError> {
    let err = |problem: String| DescriptorError {
        path: path.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it ({e})")))?;
    if meta.len() > MAX_DESCRIPTOR_BYTES {
        return Err(err(format!(
            "it is larger than {MAX_DESCRIPTOR_BYTES} bytes"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it ({e})")))?;
    ProductDescriptor::parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
product_id = "P-1"
name = "FooCAD"
models = ["authorization_code"]
[[features]]
name = "solver"
seats = 2
[policy]
offline_grace_days = 7
"#;

    #[test]
    fn good_descriptor_parses_with_defaults() {
        let d = ProductDescriptor::parse(GOOD, Path::new("a.toml")).unwrap();
        assert_eq!(d.product_id, "P-1");
        assert!(d.uses(ProductModel::AuthorizationCode));
        assert!(!d.uses(ProductModel::LicenseFile));
        assert_eq!(d.policy.offline_grace_days, 7);
        assert_eq!(d.policy.lease_minutes, 15);
        assert_eq!(d.policy.heartbeat_interval(), Duration::hours(12));
        assert_eq!(d.features[0].seats, Some(2));
    }

    #[test]
    fn out_of_range_and_malformed_are_refused_with_reason() {
        let e = ProductDescriptor::parse(
            &GOOD.replace("offline_grace_days = 7", "offline_grace_days = 31"),
            Path::new("b.toml"),
        )
        .unwrap_err();
        assert!(e.problem.contains("0..=30"), "{e}");
        let e = ProductDescriptor::parse("product_id = ", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("c.toml"));
        let e = ProductDescriptor::parse(
            "product_id = \"x\"\nname = \"n\"\nmodels = [\"license_file\"]\n",
            Path::new("d.toml"),
        )
        .unwrap_err();
        assert!(e.problem.contains("keys"), "{e}");
        let e = ProductDescriptor::parse(&GOOD.replace("P-1", "../../etc"), Path::new("e.toml"))
            .unwrap_err();
        assert!(e.problem.contains("product_id"));
    }

    #[test]
    fn catalog_skips_bad_files_and_user_dir_overrides_system() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        let user = tmp.path().join("user");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(sys.join("foo.toml"), GOOD).unwrap();
        std::fs::write(sys.join("broken.toml"), "models = 3").unwrap();
        std::fs::write(sys.join("ignored.txt"), "not toml").unwrap();
        std::fs::write(user.join("foo.toml"), GOOD.replace("FooCAD", "FooCAD user")).unwrap();
        let cat = Catalog::load(&[sys, user, tmp.path().join("missing")]);
        assert_eq!(cat.products.len(), 1);
        assert_eq!(cat.get("P-1").unwrap().name, "FooCAD user");
        assert_eq!(cat.problems.len(), 1);
        assert!(cat.problems[0].path.ends_with("broken.toml"));
    }
}
