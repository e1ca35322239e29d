//! The ISV's behaviour: answering KooGallery's callbacks and running the job queue.
//!
//! Every callback is checked in this order, and stops at the first failure:
//! body size (`000002`), signature parameters, timestamp window and HMAC (`000001`), nonce replay
//! (`000001`; the nonce lives in the database so it holds across restarts and instances), JSON
//! shape and documented field rules (`000002`), then the activity's own checks. Only a callback
//! that passes all of them changes state.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use koogallery::callback_sig::{
    self, AccessKey, NonceCache, NonceCheck, NonceStoreError, SignatureParams,
};
use koogallery::wire::{
    CallbackRequest, CallbackResponse, GetLicenseAsync, InstanceStatus as WireStatus, NewInstance,
    OrderInfo, RefreshInstance,
};
use serde::{Deserialize, Serialize};
use tessera_license::SigningKey;
use tessera_types::{IsvResultCode, SharedClock};
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;

use crate::config::{Charging, DeliveryMode, IsvConfig, KeyFamily};
use crate::issuer::{self, LicenseTerms};
use crate::market::{BoxFuture, MarketFailure, Marketplace, Upload};
use crate::store::{
    Instance, InstanceStatus, IssueOutcome, IssueRequest, IssuedLicense, Job, JobState,
    OrderDetails, RenewalRecord, Store, StoreError,
};

/// The file name License files are uploaded under.
pub const LICENSE_FILE_NAME: &str = "license.lic";
/// Job kind: fetch the order details of a new instance.
pub const JOB_QUERY_ORDER: &str = "query_order";
/// Job kind: upload an issued License with market-event.
pub const JOB_DELIVER: &str = "deliver_license";

/// How far a requested License period may reach outside the order's validity before it is
/// refused with `000901`: KooGallery's time zones are "mostly UTC", so a day of slack absorbs a
/// sender that used local time without letting a request escape its order.
pub const ORDER_WINDOW_SLACK: Duration = Duration::days(1);

/// How long an inline order query (getLicenseAsync before the background query finished) may
/// take, leaving room in MKT's 5 s budget.
const INLINE_ORDER_QUERY: StdDuration = StdDuration::from_secs(3);

/// Points where tests can stop the ISV to simulate a crash.
pub trait JobHooks: Send + Sync + std::fmt::Debug {
    /// Called after a License is signed and stored, right before it is uploaded.
    fn before_upload<'a>(&'a self, event_id: &'a str) -> BoxFuture<'a, ()>;
}

/// No hooks (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl JobHooks for NoHooks {
    fn before_upload<'a>(&'a self, _event_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The shared state of one ISV process.
#[derive(Clone)]
pub struct IsvService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: SharedClock,
    config: Arc<IsvConfig>,
    signer: Arc<SigningKey>,
    market: Arc<dyn Marketplace>,
    hooks: Arc<dyn JobHooks>,
    wake: Notify,
    worker_id: String,
}

impl std::fmt::Debug for IsvService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsvService")
            .field("worker_id", &self.inner.worker_id)
            .field("backend", &self.inner.store.backend())
            .finish_non_exhaustive()
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn answer(code: IsvResultCode) -> CallbackResponse {
    CallbackResponse::new(code)
}

/// The database-backed nonce cache: atomic across instances sharing the database, and kept
/// across restarts.
#[derive(Debug, Clone)]
pub struct DbNonceCache {
    store: Store,
}

impl DbNonceCache {
    /// A cache over `store`'s `nonces` table.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl NonceCache for DbNonceCache {
    fn check_and_insert(
        &self,
        nonce: &str,
        seen_at: OffsetDateTime,
        window: Duration,
    ) -> impl Future<Output = Result<NonceCheck, NonceStoreError>> + Send {
        // A nonce accepted at `seen_at` carried a timestamp within `window` of it, and a replay
        // is accepted only within `window` of that timestamp: remember it twice as long.
        let expires = ms(seen_at + window + window);
        let now = ms(seen_at);
        let nonce = nonce.to_owned();
        let store = self.store.clone();
        async move {
            match store.remember_nonce(&nonce, now, expires).await {
                Ok(true) => Ok(NonceCheck::Fresh),
                Ok(false) => Ok(NonceCheck::Replayed),
                Err(e) => Err(NonceStoreError::Backend(e.to_string())),
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct QueryOrderJob {
    instance_id: String,
    order_id: String,
    order_line_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeliverJob {
    event_id: String,
    fingerprint_hash: String,
}

/// What one worker iteration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRun {
    /// No job was due.
    Idle,
    /// A job ran to the given state (`Pending` means it will be retried).
    Ran {
        /// The job id.
        id: i64,
        /// Its kind.
        kind: String,
        /// Its state afterwards.
        state: JobState,
    },
}

impl IsvService {
    /// Wires the service together.
    #[must_use]
    pub fn new(
        store: Store,
        clock: SharedClock,
        config: Arc<IsvConfig>,
        signer: Arc<SigningKey>,
        market: Arc<dyn Marketplace>,
        hooks: Arc<dyn JobHooks>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                signer,
                market,
                hooks,
                wake: Notify::new(),
                worker_id: format!("isv-{}", uuid::Uuid::new_v4().simple()),
            }),
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &IsvConfig {
        &self.inner.config
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    // ------------------------------------------------------------------ callbacks

    /// Answers one production-interface call: `query` is the raw URL query string, `body` the
    /// raw body bytes. Never fails: every outcome is a result code.
    pub async fn handle_callback(&self, query: Option<&str>, body: &[u8]) -> CallbackResponse {
        if body.len() > self.inner.config.server.max_body_bytes {
            tracing::warn!(bytes = body.len(), "callback body too large");
            return answer(IsvResultCode::InvalidParams);
        }
        let Ok(params) = SignatureParams::from_query(query.unwrap_or("")) else {
            tracing::warn!("callback without signature parameters");
            return answer(IsvResultCode::AuthFailed);
        };
        let now = self.now();
        let keys: Vec<AccessKey> = match key_family(body) {
            Some(family) => self
                .inner
                .config
                .access_keys
                .for_family(family)
                .map(|k| AccessKey::new(k.expose()))
                .into_iter()
                .collect(),
            None => self
                .inner
                .config
                .access_keys
                .all()
                .into_iter()
                .map(|k| AccessKey::new(k.expose()))
                .collect(),
        };
        let mut verified = None;
        let mut last_err = None;
        for key in &keys {
            match callback_sig::verify_signature(key, body, &params, now) {
                Ok(v) => {
                    verified = Some(v);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some(verified) = verified else {
            if let Some(e) = last_err {
                tracing::warn!(error = %e, "callback refused");
            }
            return answer(IsvResultCode::AuthFailed);
        };
        let cache = DbNonceCache::new(self.inner.store.clone());
        match cache
            .check_and_insert(&verified.nonce, now, callback_sig::WINDOW)
            .await
        {
            Ok(NonceCheck::Fresh) => {}
            Ok(NonceCheck::Replayed) => {
                tracing::warn!("callback nonce replayed");
                return answer(IsvResultCode::AuthFailed);
            }
            Err(e) => {
                tracing::error!(error = %e, "nonce store unavailable");
                return answer(IsvResultCode::InternalError);
            }
        }
        let request = match CallbackRequest::parse(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "callback body refused");
                return answer(e.result_code());
            }
        };
        if let Err(e) = request.validate() {
            tracing::warn!(activity = request.activity(), error = %e, "callback fields invalid");
            return answer(IsvResultCode::InvalidParams);
        }
        let activity = request.activity();
        let result = self.dispatch(request).await;
        match result {
            Ok(response) => {
                tracing::info!(activity, code = %response.result_code, "callback answered");
                response
            }
            Err(e) => {
                tracing::error!(activity, error = %e, "callback failed");
                answer(IsvResultCode::InternalError)
            }
        }
    }

    async fn dispatch(&self, request: CallbackRequest) -> Result<CallbackResponse, StoreError> {
        let now = ms(self.now());
        let store = &self.inner.store;
        match request {
            CallbackRequest::NewInstance(r) => self.new_instance(&r).await,
            CallbackRequest::RefreshInstance(r) => self.refresh_instance(&r).await,
            CallbackRequest::UpdateInstanceStatus(r) => {
                let status = match r.status {
                    WireStatus::Freeze => InstanceStatus::Frozen,
                    WireStatus::Unfreeze => InstanceStatus::Active,
                    WireStatus::Other(_) => return Ok(answer(IsvResultCode::InvalidParams)),
                };
                Ok(
                    if store
                        .set_instance_status(&r.instance_id, status, now)
                        .await?
                    {
                        answer(IsvResultCode::Success)
                    } else {
                        answer(IsvResultCode::NotFound)
                    },
                )
            }
            CallbackRequest::ReleaseInstance(r) => {
                Ok(match store.instance(&r.instance_id).await? {
                    None => answer(IsvResultCode::NotFound),
                    Some(i) if i.status == InstanceStatus::Released => {
                        answer(IsvResultCode::Success)
                    }
                    Some(_) => {
                        store
                            .set_instance_status(&r.instance_id, InstanceStatus::Released, now)
                            .await?;
                        answer(IsvResultCode::Success)
                    }
                })
            }
            CallbackRequest::GetLicenseAsync(r) => self.get_license_async(&r).await,
            CallbackRequest::RefreshLicenseCode(r) => {
                let renewal = RenewalRecord {
                    expire_ms: ms(r.expire_time.datetime()),
                    order_id: &r.order_id,
                    order_line_id: &r.order_line_id,
                    scene: r.scene.as_str(),
                    product_id: r.product_id.as_deref(),
                };
                store.refresh_code(&r.license, &renewal, now).await?;
                Ok(answer(IsvResultCode::Success))
            }
            CallbackRequest::UpdateLicenseCodeStatus(r) => {
                let status = match r.status {
                    WireStatus::Freeze => "FROZEN",
                    WireStatus::Unfreeze => "ALIVE",
                    WireStatus::Other(_) => return Ok(answer(IsvResultCode::InvalidParams)),
                };
                Ok(if store.set_code_status(&r.license, status, now).await? {
                    answer(IsvResultCode::Success)
                } else {
                    answer(IsvResultCode::NotFound)
                })
            }
            CallbackRequest::ReleaseLicenseCode(r) => {
                store
                    .release_code(&r.license, r.order_id.as_deref(), now)
                    .await?;
                Ok(answer(IsvResultCode::Success))
            }
        }
    }

    async fn new_instance(&self, r: &NewInstance) -> Result<CallbackResponse, StoreError> {
        let now = ms(self.now());
        let fresh_id = uuid::Uuid::new_v4().to_string();
        let (instance_id, created) = self
            .inner
            .store
            .create_instance(
                &r.order_id,
                &r.order_line_id,
                &r.business_id,
                koogallery_is_test(r.test_flag.as_deref()),
                &fresh_id,
                now,
            )
            .await?;
        // The order details are not in the callback; fetch them in the background so the answer
        // is not held up (PROTOCOL.md §1.1 step 4). Enqueuing is idempotent on the instance.
        let payload = serde_json::to_string(&QueryOrderJob {
            instance_id: instance_id.clone(),
            order_id: r.order_id.clone(),
            order_line_id: r.order_line_id.clone(),
        })
        .unwrap_or_default();
        self.inner
            .store
            .enqueue(
                JOB_QUERY_ORDER,
                &format!("{JOB_QUERY_ORDER}:{instance_id}"),
                &payload,
                now,
                now,
            )
            .await?;
        self.inner.wake.notify_waiters();
        tracing::info!(%instance_id, created, "newInstance");
        Ok(answer(IsvResultCode::Success).with_instance_id(instance_id))
    }

    async fn refresh_instance(&self, r: &RefreshInstance) -> Result<CallbackResponse, StoreError> {
        let now = ms(self.now());
        let found = self
            .inner
            .store
            .refresh_instance(
                &r.instance_id,
                &RenewalRecord {
                    expire_ms: ms(r.expire_time.datetime()),
                    order_id: &r.order_id,
                    order_line_id: &r.order_line_id,
                    scene: r.scene.as_str(),
                    product_id: r.product_id.as_deref(),
                },
                now,
            )
            .await?;
        Ok(if found {
            answer(IsvResultCode::Success)
        } else {
            answer(IsvResultCode::NotFound)
        })
    }

    async fn get_license_async(&self, r: &GetLicenseAsync) -> Result<CallbackResponse, StoreError> {
        let Some(fingerprint) = r
            .device_fingerprint
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        else {
            return Ok(answer(IsvResultCode::FingerprintRequired));
        };
        let store = &self.inner.store;
        let Some(mut instance) = store.instance(&r.instance_id).await? else {
            return Ok(answer(IsvResultCode::NotFound));
        };
        match instance.status {
            InstanceStatus::Released => return Ok(answer(IsvResultCode::NotFound)),
            // A frozen instance is past its paid period until UNFREEZE.
            InstanceStatus::Frozen => return Ok(answer(IsvResultCode::OutsideOrderPeriod)),
            InstanceStatus::Active => {}
        }
        if instance.order_fetched_ms.is_none() {
            match tokio::time::timeout(INLINE_ORDER_QUERY, self.fetch_order(&instance)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "order query for getLicenseAsync failed");
                    return Ok(answer(IsvResultCode::InternalError));
                }
                Err(_) => {
                    tracing::warn!("order query for getLicenseAsync timed out");
                    return Ok(answer(IsvResultCode::InternalError));
                }
            }
            let Some(refreshed) = store.instance(&r.instance_id).await? else {
                return Ok(answer(IsvResultCode::NotFound));
            };
            instance = refreshed;
        }
        let product_id = instance.product_id.clone().unwrap_or_default();
        let Some(product) = self.inner.config.product(&product_id).cloned() else {
            tracing::error!(%product_id, "getLicenseAsync for a product missing from the config");
            return Ok(answer(IsvResultCode::InternalError));
        };
        let charging = instance
            .charging_mode
            .as_deref()
            .and_then(Charging::parse)
            .unwrap_or(product.charging);
        let effective = r.effective_time.datetime();
        let expire = r.expire_time.map(|t| t.datetime());
        if charging == Charging::Period && expire.is_none() {
            return Ok(answer(IsvResultCode::ExpiryRequired));
        }
        if !period_inside_order(&instance, effective, expire, self.now()) {
            return Ok(answer(IsvResultCode::OutsideOrderPeriod));
        }
        let not_after = expire.or_else(|| {
            product
                .default_validity_days
                .map(|d| effective + Duration::days(i64::from(d)))
        });
        let quota = instance.linear_value.filter(|v| *v > 0).unwrap_or(1);
        let fingerprint_hash = issuer::fingerprint_key(fingerprint);
        let job_key = format!("{JOB_DELIVER}:{}:{fingerprint_hash}", r.event_id);
        let payload = serde_json::to_string(&DeliverJob {
            event_id: r.event_id.clone(),
            fingerprint_hash: fingerprint_hash.clone(),
        })
        .unwrap_or_default();
        let now = self.now();
        let request = IssueRequest {
            instance_id: &instance.instance_id,
            event_id: &r.event_id,
            fingerprint_hash: &fingerprint_hash,
            quota,
            job_kind: JOB_DELIVER,
            job_key: &job_key,
            job_payload: &payload,
            now_ms: ms(now),
        };
        let trial = instance.order_type.as_deref() == Some("TRIAL");
        let signer = Arc::clone(&self.inner.signer);
        let outcome = store
            .issue_once(&request, || {
                let terms = LicenseTerms {
                    product_id: &product_id,
                    instance_id: &instance.instance_id,
                    order_id: &instance.order_id,
                    features: &product.features,
                    fingerprint,
                    issued_at: now,
                    not_before: effective,
                    not_after,
                    trial,
                };
                let signed = issuer::sign_license(&signer, &terms, product.delivery)?;
                Ok::<_, issuer::IssuerError>(IssuedLicense {
                    event_id: r.event_id.clone(),
                    fingerprint_hash: fingerprint_hash.clone(),
                    fingerprint: fingerprint.to_owned(),
                    instance_id: instance.instance_id.clone(),
                    license_id: signed.license_id,
                    delivery: signed.delivery.wire_name().to_owned(),
                    body: signed.body,
                    sha256: signed.sha256,
                    not_before_ms: ms(effective),
                    not_after_ms: not_after.map(ms),
                    issued_ms: ms(now),
                    uploaded_ms: None,
                })
            })
            .await?;
        Ok(match outcome {
            IssueOutcome::Issued(l) => {
                tracing::info!(instance_id = %l.instance_id, license_id = %l.license_id, "License issued");
                self.inner.wake.notify_waiters();
                answer(IsvResultCode::Processing)
            }
            IssueOutcome::Existing(l) => {
                tracing::info!(license_id = %l.license_id, "getLicenseAsync repeated; same License re-queued");
                self.inner.wake.notify_waiters();
                answer(IsvResultCode::Processing)
            }
            IssueOutcome::QuotaExhausted { used } => {
                tracing::warn!(used, quota, "License quota exhausted");
                answer(IsvResultCode::QuotaExhausted)
            }
            IssueOutcome::NoInstance => answer(IsvResultCode::NotFound),
            IssueOutcome::SignFailed(e) => {
                tracing::error!(error = %e, "signing failed");
                answer(IsvResultCode::InternalError)
            }
        })
    }

    async fn fetch_order(&self, instance: &Instance) -> Result<(), JobError> {
        let info = self
            .inner
            .market
            .query_order(&instance.order_id, &instance.order_line_id)
            .await
            .map_err(JobError::Market)?;
        let details = order_details(&info, &instance.order_line_id);
        self.inner
            .store
            .set_order_details(&instance.instance_id, &details, ms(self.now()))
            .await
            .map_err(JobError::Store)
    }

    // ------------------------------------------------------------------ jobs

    /// Runs workers until the task is dropped or aborted: each claims due jobs with a lease,
    /// and idles until woken by a local enqueue or the poll interval (jobs enqueued by other
    /// instances).
    pub async fn run_worker(self) {
        let poll = StdDuration::from_millis(self.inner.config.jobs.poll_millis.max(10));
        loop {
            match self.run_one().await {
                Ok(JobRun::Ran { .. }) => continue,
                Ok(JobRun::Idle) => {}
                Err(e) => tracing::error!(error = %e, "job queue unavailable"),
            }
            let notified = self.inner.wake.notified();
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Deletes expired nonces every `every` until dropped.
    pub async fn run_nonce_janitor(self, every: StdDuration) {
        loop {
            match self.inner.store.purge_nonces(ms(self.now())).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired nonces deleted"),
                Err(e) => tracing::warn!(error = %e, "nonce purge failed"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Claims and runs at most one due job.
    ///
    /// # Errors
    /// When the database cannot be reached (the job stays leased and is retried after the
    /// lease).
    pub async fn run_one(&self) -> Result<JobRun, StoreError> {
        let now = self.now();
        let lease = Duration::seconds(i64::from(self.inner.config.jobs.lease_seconds));
        let owner = &self.inner.worker_id;
        let Some(job) = self
            .inner
            .store
            .claim_job(owner, ms(now), ms(now + lease))
            .await?
        else {
            return Ok(JobRun::Idle);
        };
        let result = match job.kind.as_str() {
            JOB_QUERY_ORDER => self.run_query_order(&job).await,
            JOB_DELIVER => self.run_deliver(&job).await,
            other => Err(JobError::Permanent(format!("unknown job kind {other:?}"))),
        };
        let done_at = ms(self.now());
        let store = &self.inner.store;
        let state = match result {
            Ok(()) => {
                store
                    .finish_job(job.id, owner, JobState::Done, None, done_at)
                    .await?;
                JobState::Done
            }
            Err(e) => {
                let message = e.to_string();
                let retryable = e.is_retryable();
                let max = i64::from(self.inner.config.jobs.max_attempts);
                if retryable && job.attempts < max {
                    let delay = retry_delay(job.attempts, e.retry_after());
                    store
                        .retry_job(job.id, owner, done_at + delay, &message, done_at)
                        .await?;
                    tracing::warn!(job = job.id, kind = %job.kind, attempts = job.attempts, error = %message, "job failed; will retry");
                    JobState::Pending
                } else {
                    store
                        .finish_job(job.id, owner, JobState::Dead, Some(&message), done_at)
                        .await?;
                    tracing::error!(job = job.id, kind = %job.kind, attempts = job.attempts, error = %message, "job dead-lettered");
                    JobState::Dead
                }
            }
        };
        Ok(JobRun::Ran {
            id: job.id,
            kind: job.kind,
            state,
        })
    }

    async fn run_query_order(&self, job: &Job) -> Result<(), JobError> {
        let args: QueryOrderJob = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
        let Some(instance) = self
            .inner
            .store
            .instance(&args.instance_id)
            .await
            .map_err(JobError::Store)?
        else {
            return Err(JobError::Permanent("instance vanished".into()));
        };
        if instance.order_fetched_ms.is_some() {
            return Ok(());
        }
        self.fetch_order(&instance).await
    }

    async fn run_deliver(&self, job: &Job) -> Result<(), JobError> {
        let args: DeliverJob = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
        let license = self
            .inner
            .store
            .license(&args.event_id, &args.fingerprint_hash)
            .await
            .map_err(JobError::Store)?
            .ok_or_else(|| JobError::Permanent("issued License row is missing".into()))?;
        let upload = match DeliveryMode::from_wire_name(&license.delivery) {
            Some(DeliveryMode::File) => Upload::File {
                file_name: LICENSE_FILE_NAME.to_owned(),
                contents: license.body.clone(),
            },
            Some(DeliveryMode::String) => Upload::Characters(
                String::from_utf8(license.body.clone())
                    .map_err(|_| JobError::Permanent("License string is not UTF-8".into()))?,
            ),
            None => {
                return Err(JobError::Permanent(format!(
                    "unknown delivery {:?}",
                    license.delivery
                )));
            }
        };
        self.inner.hooks.before_upload(&args.event_id).await;
        self.inner
            .market
            .upload_license(&args.event_id, &upload)
            .await
            .map_err(JobError::Market)?;
        self.inner
            .store
            .mark_uploaded(&args.event_id, &args.fingerprint_hash, ms(self.now()))
            .await
            .map_err(JobError::Store)?;
        tracing::info!(license_id = %license.license_id, "License uploaded");
        Ok(())
    }
}

/// Why a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The marketplace refused or could not be reached.
    #[error(transparent)]
    Market(MarketFailure),
    /// The database failed.
    #[error("database failed")]
    Store(#[source] StoreError),
    /// Retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    fn retry_after(&self) -> Option<StdDuration> {
        match self {
            Self::Market(m) => m.retry_after,
            _ => None,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Market(m) => m.retryable,
            Self::Store(_) => true,
            Self::Permanent(_) => false,
        }
    }
}

/// Delay in milliseconds before the next attempt, after `attempts` attempts: koogallery's
/// full-jitter backoff (2 s base, 10 min cap), at least the server's `Retry-After`.
fn retry_delay(attempts: i64, retry_after: Option<StdDuration>) -> i64 {
    let attempt = u32::try_from(attempts.saturating_sub(1).max(0)).unwrap_or(u32::MAX);
    let wait = koogallery::backoff::Backoff::default().delay(
        attempt,
        retry_after,
        &mut rand::thread_rng(),
    );
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

fn koogallery_is_test(flag: Option<&str>) -> bool {
    flag.map(str::trim) == Some("1")
}

/// The key family of a callback from a lenient look at its `activity`; `None` when the body is
/// not JSON or names no known activity (then every configured key is tried, so a correctly
/// signed but malformed body gets `000002` and an unsigned one `000001`).
fn key_family(body: &[u8]) -> Option<KeyFamily> {
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        activity: Option<std::borrow::Cow<'a, str>>,
    }
    let peek: Peek<'_> = serde_json::from_slice(body).ok()?;
    match peek.activity?.as_ref() {
        "newInstance"
        | "refreshInstance"
        | "updateInstanceStatus"
        | "releaseInstance"
        | "getLicenseAsync" => Some(KeyFamily::Basic),
        "refreshLicenseCode" | "updateLicenseCodeStatus" | "releaseLicenseCode" => {
            Some(KeyFamily::LicenseCode)
        }
        _ => None,
    }
}

fn period_inside_order(
    instance: &Instance,
    effective: OffsetDateTime,
    expire: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    if let Some(exp) = expire
        && exp <= effective
    {
        return false;
    }
    if let Some(created) = instance.order_created_ms
        && effective < from_ms(created) - ORDER_WINDOW_SLACK
    {
        return false;
    }
    if let Some(order_end) = instance.expire_ms.map(from_ms) {
        let limit = order_end + ORDER_WINDOW_SLACK;
        if effective > limit || now > limit || expire.is_some_and(|e| e > limit) {
            return false;
        }
    }
    true
}

/// The details of `order_line_id` (or the first line) of a queried order.
#[must_use]
pub fn order_details(info: &OrderInfo, order_line_id: &str) -> OrderDetails {
    let line = info
        .order_line
        .iter()
        .find(|l| l.order_line_id == order_line_id)
        .or_else(|| info.order_line.first());
    let product = line.and_then(|l| l.product_info.first());
    OrderDetails {
        product_id: product.and_then(|p| p.product_id.clone()),
        sku_code: product.and_then(|p| p.sku_code.clone()),
        charging_mode: line.map(|l| l.charging_mode.as_str().to_owned()),
        order_type: Some(info.order_type.as_str().to_owned()),
        linear_value: product
            .and_then(|p| p.linear_value)
            .and_then(|v| i64::try_from(v).ok()),
        order_created_ms: Some(ms(info.create_time.datetime())),
        expire_ms: line.and_then(|l| l.expire_time).map(|t| ms(t.datetime())),
    }
}
