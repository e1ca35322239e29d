//! Model B: importing, verifying and delivering License files and strings.
//!
//! Verification is `tessera-license`'s: signature with the product's keys (by key id), product,
//! device binding against this device's identity, validity window. The verdict and its reason are
//! stored with the License and shown in the product's state. A refused License never replaces a
//! verified one; stored Licenses are re-verified at every start (keys or the device may change).

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::Digest;
use zeroize::Zeroizing;

use tessera_ipc::{ErrorCode, RemoteError};
use tessera_license::{PublicKey, Verifier, VerifyContext, VerifyError};
use tessera_types::events::LicenseKind;
use tessera_types::state::{FeatureState, ProductModel};
use tessera_types::{ProductState, StateReason};

use crate::agent::{Agent, secret_names};
use crate::db::LicenseRow;
use crate::enforcement::{LicenseFacts, Refusal};
use crate::products::{Catalog, DescriptorError};

/// Largest License accepted (file or string).
pub const MAX_LICENSE_BYTES: usize = 64 * 1024;

/// One verifier per Model B product, built from its descriptor's keys.
#[derive(Debug, Default)]
pub struct Verifiers {
    by_product: BTreeMap<String, Verifier>,
    all: Verifier,
}

impl Verifiers {
    /// Builds the verifiers; a descriptor whose keys do not parse is moved to the catalog's
    /// problems (the product is skipped, the agent goes on).
    pub fn build(catalog: &mut Catalog) -> Self {
        let mut out = Verifiers::default();
        let mut broken = Vec::new();
        for (pid, d) in &catalog.products {
            if !d.uses(ProductModel::LicenseFile) {
                continue;
            }
            let mut keys = Vec::new();
            for k in &d.keys {
                match PublicKey::from_spki_pem(&k.public_key_pem) {
                    Ok(key) => {
                        if key.key_id().as_str() != k.key_id {
                            tracing::warn!(product_id = %pid, declared = %k.key_id, actual = %key.key_id().as_str(), "descriptor key id differs from the key's own id; using the key's");
                        }
                        keys.push(key);
                    }
                    Err(e) => {
                        broken.push(DescriptorError {
                            path: d.source.clone(),
                            problem: format!(
                                "key {:?} is not an SPKI PEM public key: {e}",
                                k.key_id
                            ),
                        });
                        break;
                    }
                }
            }
            if keys.len() == d.keys.len() {
                for k in &keys {
                    out.all.add_key(k.clone());
                }
                out.by_product
                    .insert(pid.clone(), Verifier::with_keys(keys));
            }
        }
        for problem in broken {
            tracing::warn!(error = %problem, "skipping product descriptor");
            catalog.products.retain(|_, d| d.source != problem.path);
            catalog.problems.push(problem);
        }
        out
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> RemoteError {
    RemoteError::new(code, message)
}

fn refusal_of(e: &VerifyError) -> Refusal {
    let reason = match e {
        VerifyError::BindingMismatch { .. } => StateReason::BindingMismatch,
        VerifyError::Expired { .. } => StateReason::Expired,
        VerifyError::NotYetValid { .. } => StateReason::NotYetValid,
        _ => StateReason::SignatureInvalid,
    };
    Refusal {
        reason,
        message: e.to_string(),
    }
}

impl Agent {
    /// Verifies `text` for `product_id` (or the product it names, when the caller gives none).
    fn verify_text(
        &self,
        product_id: Option<&str>,
        text: &[u8],
    ) -> Result<(String, LicenseFacts), RemoteError> {
        let verifier = match product_id {
            Some(pid) => self.verifiers.by_product.get(pid).ok_or_else(|| {
                err(
                    ErrorCode::NotFound,
                    format!("{pid:?} is not a License-file product known to this agent"),
                )
            })?,
            None => &self.verifiers.all,
        };
        let signed = match verifier.open(text) {
            Ok(s) => s,
            Err(e) => {
                return match product_id {
                    Some(pid) => Ok((pid.to_owned(), LicenseFacts::Refused(refusal_of(&e)))),
                    None => Err(err(ErrorCode::BadRequest, e.to_string())),
                };
            }
        };
        let pid = product_id.map_or_else(|| signed.license.product_id.clone(), str::to_owned);
        if !self.verifiers.by_product.contains_key(&pid) {
            return Err(err(
                ErrorCode::NotFound,
                format!("{pid:?} is not a License-file product known to this agent"),
            ));
        }
        let now = self.trusted_now();
        let identity = self.identity();
        let ctx = VerifyContext::new(&pid, now, &*identity);
        let license = &signed.license;
        let verified = LicenseFacts::Verified {
            not_before: license.not_before,
            not_after: license.not_after,
            features: license
                .features
                .iter()
                .map(|f| FeatureState {
                    name: f.name.clone(),
                    seats: Some(f.count),
                    in_use: 0,
                    version_ceiling: f.max_version.clone(),
                })
                .collect(),
            verified_at: now,
        };
        match signed.check(&ctx) {
            // Validity is re-judged on trusted time at every decision, so a License outside its
            // window is kept as verified and shows Expired / NotYetValid from the decision.
            Ok(()) | Err(VerifyError::Expired { .. } | VerifyError::NotYetValid { .. }) => {
                Ok((pid, verified))
            }
            Err(e @ VerifyError::WrongProduct { .. }) => {
                Err(err(ErrorCode::BadRequest, e.to_string()))
            }
            Err(e) => Ok((pid, LicenseFacts::Refused(refusal_of(&e)))),
        }
    }

    /// `ImportLicense`: verifies, stores (durably, before answering) and recomputes.
    pub(crate) async fn import_license(
        &self,
        product_id: Option<&str>,
        text: &Zeroizing<String>,
        kind: LicenseKind,
    ) -> Result<ProductState, RemoteError> {
        if text.len() > MAX_LICENSE_BYTES {
            return Err(err(
                ErrorCode::BadRequest,
                "the License is larger than any License can be",
            ));
        }
        let (pid, facts) = self.verify_text(product_id, text.as_bytes())?;
        if let LicenseFacts::Refused(r) = &facts {
            tracing::warn!(product_id = %pid, reason = ?r.reason, detail = %r.message, "License refused");
            let keeps_verified = {
                let st = self.core.lock();
                st.licenses
                    .get(&pid)
                    .is_some_and(|l| matches!(l.facts, LicenseFacts::Verified { .. }))
            };
            if keeps_verified {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!(
                        "License refused ({}); the License already installed stays in use",
                        r.message
                    ),
                ));
            }
        } else {
            tracing::info!(product_id = %pid, "License verified and imported");
        }
        let row = LicenseRow {
            product_id: pid.clone(),
            kind: match kind {
                LicenseKind::File => "file".to_owned(),
                LicenseKind::String => "string".to_owned(),
            },
            content: text.to_string(),
            sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())),
            imported_at: self.trusted_now(),
            facts,
        };
        self.core
            .db
            .put_license(&row)
            .await
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        {
            let mut st = self.core.lock();
            st.licenses.insert(pid.clone(), row);
            self.core.recompute_locked(&mut st);
        }
        self.core
            .snapshot()
            .product(&pid)
            .cloned()
            .ok_or_else(|| err(ErrorCode::NotFound, "unknown product"))
    }

    /// Re-verifies every stored License (at start).
    pub(crate) async fn reverify_licenses(&self) {
        let stored: Vec<LicenseRow> = self.core.lock().licenses.values().cloned().collect();
        for mut row in stored {
            let Ok((_, facts)) = self.verify_text(Some(&row.product_id), row.content.as_bytes())
            else {
                continue;
            };
            if facts != row.facts {
                let same_kind = matches!(
                    (&facts, &row.facts),
                    (LicenseFacts::Verified { .. }, LicenseFacts::Verified { .. })
                );
                if !same_kind {
                    tracing::warn!(product_id = %row.product_id, "stored License verdict changed on re-verification");
                }
                row.facts = facts;
                if let Err(e) = self.core.db.put_license(&row).await {
                    tracing::error!(error = %e, "could not store a re-verified License");
                }
                self.core
                    .lock()
                    .licenses
                    .insert(row.product_id.clone(), row);
            }
        }
    }

    /// Fetches the License delivered for `pid` through the configured delivery channel, imports
    /// it, and returns its text. `Ok(None)` when no channel is configured or nothing is delivered.
    pub(crate) async fn fetch_delivered(&self, pid: &str) -> Result<Option<String>, String> {
        let Some(base) = self.core.settings.marketplace.delivery_url.clone() else {
            return Ok(None);
        };
        let secrets = self.core.secrets.clone();
        let token = tokio::task::spawn_blocking(move || secrets.get(secret_names::DELIVERY_TOKEN))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some(token) = token else {
            return Err("no delivery token is stored".to_owned());
        };
        let token = Zeroizing::new(String::from_utf8_lossy(&token).into_owned());
        let base = base.trim_end_matches('/');
        let get = |url: String| {
            let req = self
                .http
                .get(url)
                .header("Authorization", format!("Bearer {}", token.as_str()));
            async move {
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("delivery channel unreachable: {e}"))?;
                let status = resp.status().as_u16();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                if body.len() > 4 * MAX_LICENSE_BYTES {
                    return Err("the delivery answer is too large".to_owned());
                }
                let v: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                Ok::<_, String>((status, v))
            }
        };
        let (status, list) = get(format!("{base}/sim/delivery/instances")).await?;
        if status != 200 {
            return Err(format!("the delivery channel answered HTTP {status}"));
        }
        let instance = list
            .get("instances")
            .and_then(serde_json::Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|i| i.get("productId").and_then(serde_json::Value::as_str) == Some(pid))
            })
            .and_then(|i| i.get("instanceId").and_then(serde_json::Value::as_str))
            .map(str::to_owned);
        let Some(instance) = instance else {
            return Ok(None);
        };
        let (status, delivered) =
            get(format!("{base}/sim/delivery/instances/{instance}/license")).await?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(format!("the delivery channel answered HTTP {status}"));
        }
        let content = delivered
            .get("content")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let (text, kind) = match delivered
            .get("encoding")
            .and_then(serde_json::Value::as_str)
        {
            Some("base64") => (
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(content)
                        .map_err(|_| "the delivered License is not valid base64".to_owned())?,
                )
                .map_err(|_| "the delivered License is not UTF-8".to_owned())?,
                LicenseKind::File,
            ),
            _ => (content.to_owned(), LicenseKind::String),
        };
        let text = Zeroizing::new(text);
        let ps = self
            .import_license(Some(pid), &text, kind)
            .await
            .map_err(|e| e.message)?;
        if ps.state == tessera_types::LicenseState::Blocked {
            return Err(format!(
                "the delivered License was refused: {}",
                ps.message.unwrap_or_default()
            ));
        }
        Ok(Some(text.to_string()))
    }
}
