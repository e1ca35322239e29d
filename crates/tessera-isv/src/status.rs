//! What the ISV reports about itself: instances with their state and Licenses, the job queue
//! (including dead-lettered jobs) and Model A codes. Served by the admin listener and printed by
//! `tessera-isv status`, both straight from the database.

use serde::Serialize;
use tessera_types::KooTime;
use time::OffsetDateTime;

use crate::store::{JobState, Store, StoreError};

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Every instance.
    pub instances: Vec<InstanceStatusView>,
    /// Jobs per state.
    pub jobs: JobsView,
    /// Model A codes.
    pub license_codes: Vec<CodeView>,
}

/// One instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatusView {
    /// Instance id.
    pub instance_id: String,
    /// Order and line.
    pub order: String,
    /// `ACTIVE`, `FROZEN` or `RELEASED`.
    pub status: &'static str,
    /// Product, once the order was queried.
    pub product_id: Option<String>,
    /// Quota (`linearValue`).
    pub linear_value: Option<i64>,
    /// Current expiry, `yyyyMMddHHmmss`.
    pub expires: Option<String>,
    /// Scene of the latest refreshInstance.
    pub last_scene: Option<String>,
    /// Whether the order details are in.
    pub order_fetched: bool,
    /// Licenses issued.
    pub licenses: Vec<LicenseView>,
    /// Fingerprints whose newest License ends before the instance's current expiry: after a
    /// renewal they need a new License (next getLicenseAsync, or `tessera-isv issue`).
    pub renewal_reissue_due: usize,
}

/// One issued License (never its bytes).
#[derive(Debug, Clone, Serialize)]
pub struct LicenseView {
    /// License id.
    pub license_id: String,
    /// getLicenseAsync eventId.
    pub event_id: String,
    /// First 12 hex digits of the fingerprint hash.
    pub fingerprint: String,
    /// `FILE` or `CHARACTERS`.
    pub delivery: String,
    /// Validity end, `yyyyMMddHHmmss`; absent when perpetual.
    pub not_after: Option<String>,
    /// Whether MKT acknowledged the upload.
    pub uploaded: bool,
}

/// Job queue summary.
#[derive(Debug, Clone, Serialize)]
pub struct JobsView {
    /// Pending (including in progress and waiting for a retry).
    pub pending: i64,
    /// Finished.
    pub done: i64,
    /// Dead-lettered.
    pub dead: i64,
    /// The dead jobs, for an operator.
    pub dead_jobs: Vec<DeadJobView>,
}

/// A dead-lettered job.
#[derive(Debug, Clone, Serialize)]
pub struct DeadJobView {
    /// Job id (for `tessera-isv retry-job`).
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Attempts made.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
}

/// One Model A code (shortened).
#[derive(Debug, Clone, Serialize)]
pub struct CodeView {
    /// The code's first characters.
    pub code: String,
    /// `ALIVE`, `FROZEN` or `RELEASED`.
    pub status: String,
    /// Expiry, `yyyyMMddHHmmss`.
    pub expires: Option<String>,
}

fn compact(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|t| KooTime::new(t).format_compact())
}

/// Codes are credentials; show only enough to tell them apart.
fn shorten(code: &str) -> String {
    let head: String = code.chars().take(6).collect();
    if code.chars().count() > 6 {
        format!("{head}…")
    } else {
        head
    }
}

impl StatusReport {
    /// Reads the report from the database.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn collect(store: &Store) -> Result<Self, StoreError> {
        let mut instances = Vec::new();
        for i in store.instances().await? {
            let licenses = store.licenses_of(&i.instance_id).await?;
            let mut newest: std::collections::BTreeMap<&str, Option<i64>> = Default::default();
            for l in &licenses {
                newest.insert(&l.fingerprint_hash, l.not_after_ms);
            }
            let renewal_reissue_due = match i.expire_ms {
                Some(exp) if i.last_scene.is_some() => newest
                    .values()
                    .filter(|na| na.is_some_and(|na| na < exp))
                    .count(),
                _ => 0,
            };
            instances.push(InstanceStatusView {
                order: format!("{}/{}", i.order_id, i.order_line_id),
                status: i.status.as_str(),
                product_id: i.product_id.clone(),
                linear_value: i.linear_value,
                expires: i.expire_ms.and_then(compact),
                last_scene: i.last_scene.clone(),
                order_fetched: i.order_fetched_ms.is_some(),
                licenses: licenses
                    .iter()
                    .map(|l| LicenseView {
                        license_id: l.license_id.clone(),
                        event_id: l.event_id.clone(),
                        fingerprint: l.fingerprint_hash.chars().take(12).collect(),
                        delivery: l.delivery.clone(),
                        not_after: l.not_after_ms.and_then(compact),
                        uploaded: l.uploaded_ms.is_some(),
                    })
                    .collect(),
                renewal_reissue_due,
                instance_id: i.instance_id,
            });
        }
        let counts = store.job_counts().await?;
        let dead_jobs = store
            .jobs(Some(JobState::Dead))
            .await?
            .into_iter()
            .map(|j| DeadJobView {
                id: j.id,
                kind: j.kind,
                attempts: j.attempts,
                last_error: j.last_error,
            })
            .collect();
        let license_codes = store
            .codes()
            .await?
            .into_iter()
            .map(|c| CodeView {
                code: shorten(&c.license_code),
                status: c.status,
                expires: c.expire_ms.and_then(compact),
            })
            .collect();
        Ok(Self {
            backend: match store.backend() {
                crate::store::Backend::Sqlite => "sqlite",
                crate::store::Backend::Postgres => "postgres",
            },
            instances,
            jobs: JobsView {
                pending: counts.pending,
                done: counts.done,
                dead: counts.dead,
                dead_jobs,
            },
            license_codes,
        })
    }
}
