//! Upgrades: the product's signed update manifest (`tessera-update-manifest/1`, RSA-PSS-SHA256
//! over the exact payload bytes), verified with the key in the product descriptor, cached with its
//! validity, and turned into `EVENT_UPGRADENOTICE` / `EVENT_UPDATE`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs8::DecodePublicKey;
use rsa::pss::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use serde::Deserialize;
use time::OffsetDateTime;

use tessera_ipc::{ErrorCode, RemoteError};
use tessera_types::events::Event;

use crate::agent::Agent;
use crate::db::ManifestRow;

/// The manifest format this agent reads.
pub const MANIFEST_FORMAT: &str = "tessera-update-manifest/1";
const MANIFEST_ALG: &str = "RSA-PSS-SHA256";
const MAX_MANIFEST_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct Envelope {
    format: String,
    alg: String,
    payload: String,
    signature: String,
}

#[derive(Deserialize)]
struct Payload {
    format: String,
    product_id: String,
    latest_version: String,
    #[serde(default)]
    forced: bool,
    #[serde(with = "time::serde::rfc3339")]
    valid_until: OffsetDateTime,
}

/// A manifest that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The newest version.
    pub latest_version: String,
    /// Whether the upgrade is forced.
    pub forced: bool,
    /// Until when it may be trusted.
    pub valid_until: OffsetDateTime,
    /// The payload JSON.
    pub payload: String,
}

/// Verifies a manifest envelope for `product_id` with `key_pem` at trusted time `now`.
///
/// # Errors
/// A message saying why the manifest is not trusted.
pub fn verify_manifest(
    body: &[u8],
    product_id: &str,
    key_pem: &str,
    now: OffsetDateTime,
) -> Result<VerifiedManifest, String> {
    if body.len() > MAX_MANIFEST_BYTES {
        return Err("the manifest is too large".to_owned());
    }
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|_| "the manifest is not a manifest envelope".to_owned())?;
    if env.format != MANIFEST_FORMAT || env.alg != MANIFEST_ALG {
        return Err(format!(
            "unsupported manifest format {:?}/{:?}",
            env.format, env.alg
        ));
    }
    let payload = B64
        .decode(&env.payload)
        .map_err(|_| "the manifest payload is not base64".to_owned())?;
    let signature = B64
        .decode(&env.signature)
        .map_err(|_| "the manifest signature is not base64".to_owned())?;
    let key = rsa::RsaPublicKey::from_public_key_pem(key_pem)
        .map_err(|_| "the product's manifest key is not an SPKI PEM RSA key".to_owned())?;
    let signature = Signature::try_from(signature.as_slice())
        .map_err(|_| "the manifest signature is malformed".to_owned())?;
    VerifyingKey::<sha2::Sha256>::new(key)
        .verify(&payload, &signature)
        .map_err(|_| "the manifest signature does not verify".to_owned())?;
    let p: Payload = serde_json::from_slice(&payload)
        .map_err(|_| "the manifest payload is not valid".to_owned())?;
    if p.format != MANIFEST_FORMAT || p.product_id != product_id {
        return Err("the manifest is for another product".to_owned());
    }
    if now >= p.valid_until {
        return Err("the manifest has expired".to_owned());
    }
    Ok(VerifiedManifest {
        latest_version: p.latest_version,
        forced: p.forced,
        valid_until: p.valid_until,
        payload: String::from_utf8_lossy(&payload).into_owned(),
    })
}

/// Compares dot-separated versions numerically (missing parts are 0, non-numbers compare as text).
#[must_use]
pub fn version_newer(candidate: &str, installed: &str) -> bool {
    let parts =
        |v: &str| -> Vec<String> { v.trim().split(['.', '-']).map(str::to_owned).collect() };
    let (a, b) = (parts(candidate), parts(installed));
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).map_or("0", String::as_str);
        let y = b.get(i).map_or("0", String::as_str);
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord == std::cmp::Ordering::Greater;
        }
    }
    false
}

impl Agent {
    /// `CheckNewVersions`: whether a newer version than the installed one is published. Uses the
    /// cached manifest while it is valid; fetches otherwise. Any failure answers `false`.
    pub(crate) async fn check_new_versions(&self, pid: &str) -> bool {
        let Some(product) = self.core.catalog.get(pid).cloned() else {
            return false;
        };
        let (Some(url), Some(key), Some(installed)) = (
            product.update_manifest_url.clone(),
            product.update_manifest_key_pem.clone(),
            product.current_version.clone(),
        ) else {
            tracing::info!(product_id = %pid, "no update manifest configured");
            return false;
        };
        let now = self.trusted_now();
        if let Ok(Some(cached)) = self.core.db.manifest(pid).await
            && cached.valid_until.is_some_and(|v| now < v)
            && now - cached.fetched_at < time::Duration::hours(1)
        {
            self.remember_offer(pid, &cached);
            return cached.available;
        }
        let body = match self.fetch_manifest(&url).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(product_id = %pid, error = %e, "update manifest unavailable");
                return false;
            }
        };
        match verify_manifest(&body, pid, &key, now) {
            Ok(m) => {
                let row = ManifestRow {
                    product_id: pid.to_owned(),
                    body: m.payload.clone(),
                    fetched_at: now,
                    valid_until: Some(m.valid_until),
                    available: version_newer(&m.latest_version, &installed),
                    latest_version: Some(m.latest_version.clone()),
                    forced: m.forced,
                };
                if let Err(e) = self.core.db.put_manifest(&row).await {
                    tracing::warn!(error = %e, "could not cache the update manifest");
                }
                tracing::info!(product_id = %pid, latest = %m.latest_version, installed = %installed, available = row.available, "update manifest checked");
                self.remember_offer(pid, &row);
                row.available
            }
            Err(e) => {
                tracing::warn!(product_id = %pid, error = %e, "update manifest refused");
                false
            }
        }
    }

    fn remember_offer(&self, pid: &str, row: &ManifestRow) {
        let mut st = self.core.lock();
        if row.available {
            st.upgrade_offers.insert(pid.to_owned(), row.forced);
        } else {
            st.upgrade_offers.remove(pid);
        }
    }

    async fn fetch_manifest(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok(body.to_vec())
    }

    /// The user accepted the upgrade of `pid` (CLI or tray): recorded, then `EVENT_UPDATE` to the
    /// product's applications with `fromForceWin` from the manifest.
    pub(crate) async fn accept_update(&self, pid: &str) -> Result<(), RemoteError> {
        let offer = self.core.lock().upgrade_offers.get(pid).copied();
        let forced = match offer {
            Some(f) => f,
            None => {
                if !self.check_new_versions(pid).await {
                    return Err(RemoteError::new(
                        ErrorCode::NotFound,
                        "no upgrade is available for this product",
                    ));
                }
                self.core
                    .lock()
                    .upgrade_offers
                    .get(pid)
                    .copied()
                    .unwrap_or(false)
            }
        };
        let now = self.trusted_now();
        self.core
            .db
            .record_upgrade_answer(pid, now, "user", true)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string()))?;
        let sent = self.core.push_to_apps(pid, &Event::Update { forced });
        tracing::info!(product_id = %pid, forced, applications = sent, "upgrade accepted by the user");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_newer("2026.2.0", "2026.1.9"));
        assert!(version_newer("1.10", "1.9"));
        assert!(!version_newer("1.0", "1.0.0"));
        assert!(!version_newer("1.0", "1.1"));
    }

    #[test]
    fn garbage_manifests_are_refused() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert!(verify_manifest(b"{}", "p", "x", now).is_err());
        let env = serde_json::json!({"format": MANIFEST_FORMAT, "alg": "RSA-PSS-SHA256", "payload": "e30=", "signature": "AAAA"});
        let e = verify_manifest(env.to_string().as_bytes(), "p", "not a key", now).unwrap_err();
        assert!(e.contains("key"), "{e}");
    }
}
