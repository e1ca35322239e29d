//! MKT's side of the production interface (PROTOCOL.md §2.3, §5.2): signed POSTs to the ISV's
//! production URL, retried on the documented schedule on a compressed clock, every attempt logged.
//!
//! Each callback runs as its own task. An attempt counts as delivered when the ISV answers HTTP
//! 200 with `resultCode` `000000` or `000004` (§3.3: anything else is retried). Between attempts
//! the task waits `interval / time_scale` of real time, so a two-hour schedule takes seconds in a
//! test; the log records each attempt's place on the nominal (uncompressed) schedule.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use koogallery::callback_sig::{AccessKey, SignatureParams};
use koogallery::wire::{CallbackRequest, CallbackResponse};
use serde::{Deserialize, Serialize};
use tessera_types::{IsvResultCode, KooTime, SharedClock};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::market::RenewScene;

/// Most callback records kept; the oldest settled ones go first.
const MAX_RECORDS: usize = 10_000;
/// Most bytes of an ISV answer kept in the log.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A production-interface call MKT makes (PROTOCOL.md §2.3.1–2.3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// Model B: an order was paid.
    NewInstance {
        /// Order.
        order_id: String,
        /// Line.
        order_line_id: String,
        /// testFlag.
        test: bool,
    },
    /// Model B: trial to formal, renewal, renewal cancellation.
    RefreshInstance {
        /// Instance.
        instance_id: String,
        /// Scene.
        scene: RenewScene,
        /// The new order.
        order_id: String,
        /// Its line.
        order_line_id: String,
        /// A new product id when the period type changed.
        product_id: Option<String>,
        /// New expiry.
        expire_time: OffsetDateTime,
        /// testFlag.
        test: bool,
    },
    /// Model B: FREEZE / UNFREEZE.
    UpdateInstanceStatus {
        /// Instance.
        instance_id: String,
        /// FREEZE when true.
        freeze: bool,
        /// testFlag.
        test: bool,
    },
    /// Model B: release.
    ReleaseInstance {
        /// Instance.
        instance_id: String,
        /// Unsubscribe order.
        order_id: Option<String>,
        /// Its line.
        order_line_id: Option<String>,
        /// testFlag.
        test: bool,
    },
    /// Model B: a License is wanted for a device.
    GetLicenseAsync {
        /// Instance.
        instance_id: String,
        /// MKT serial number, reused for the upload.
        event_id: String,
        /// License start.
        effective_time: OffsetDateTime,
        /// License end.
        expire_time: Option<OffsetDateTime>,
        /// The device fingerprint.
        device_fingerprint: String,
        /// testFlag.
        test: bool,
    },
    /// Model A: renewal or renewal cancellation.
    RefreshLicenseCode {
        /// The code.
        license: String,
        /// Scene.
        scene: RenewScene,
        /// The new order.
        order_id: String,
        /// Its line.
        order_line_id: String,
        /// A new product id when the period type changed.
        product_id: Option<String>,
        /// New expiry.
        expire_time: OffsetDateTime,
        /// testFlag.
        test: bool,
    },
    /// Model A: FREEZE / UNFREEZE.
    UpdateLicenseCodeStatus {
        /// The code.
        license: String,
        /// FREEZE when true.
        freeze: bool,
        /// testFlag.
        test: bool,
    },
    /// Model A: release.
    ReleaseLicenseCode {
        /// The code.
        license: String,
        /// Unsubscribe order.
        order_id: Option<String>,
        /// Its line.
        order_line_id: Option<String>,
        /// testFlag.
        test: bool,
    },
}

fn flag(test: bool) -> &'static str {
    if test { "1" } else { "0" }
}

fn status(freeze: bool) -> &'static str {
    if freeze { "FREEZE" } else { "UNFREEZE" }
}

impl Callback {
    /// The `activity` discriminator.
    #[must_use]
    pub fn activity(&self) -> &'static str {
        match self {
            Self::NewInstance { .. } => "newInstance",
            Self::RefreshInstance { .. } => "refreshInstance",
            Self::UpdateInstanceStatus { .. } => "updateInstanceStatus",
            Self::ReleaseInstance { .. } => "releaseInstance",
            Self::GetLicenseAsync { .. } => "getLicenseAsync",
            Self::RefreshLicenseCode { .. } => "refreshLicenseCode",
            Self::UpdateLicenseCodeStatus { .. } => "updateLicenseCodeStatus",
            Self::ReleaseLicenseCode { .. } => "releaseLicenseCode",
        }
    }

    /// Whether this is a Model A (authorization code) call, which has its own retry schedule.
    #[must_use]
    pub fn is_model_a(&self) -> bool {
        matches!(
            self,
            Self::RefreshLicenseCode { .. }
                | Self::UpdateLicenseCodeStatus { .. }
                | Self::ReleaseLicenseCode { .. }
        )
    }

    /// The id this call is about (order, instance or redacted code), for the log.
    #[must_use]
    pub fn subject(&self) -> String {
        match self {
            Self::NewInstance { order_id, .. } => order_id.clone(),
            Self::RefreshInstance { instance_id, .. }
            | Self::UpdateInstanceStatus { instance_id, .. }
            | Self::ReleaseInstance { instance_id, .. }
            | Self::GetLicenseAsync { instance_id, .. } => instance_id.clone(),
            Self::RefreshLicenseCode { license, .. }
            | Self::UpdateLicenseCodeStatus { license, .. }
            | Self::ReleaseLicenseCode { license, .. } => crate::redact(license),
        }
    }

    /// The request of one attempt. `business_id` is used by newInstance only; MKT sends a
    /// different one on every call, retries included.
    #[must_use]
    pub fn request(&self, business_id: &str) -> CallbackRequest {
        use koogallery::wire::callback as w;
        let test_flag = |test: bool| Some(flag(test).to_owned());
        let wire_status = |freeze: bool| w::InstanceStatus::from_wire(status(freeze));
        let wire_scene = |s: RenewScene| w::RefreshScene::from_wire(s.as_str());
        match self.clone() {
            Self::NewInstance {
                order_id,
                order_line_id,
                test,
            } => CallbackRequest::NewInstance(w::NewInstance {
                order_id,
                order_line_id,
                business_id: business_id.to_owned(),
                test_flag: test_flag(test),
            }),
            Self::RefreshInstance {
                instance_id,
                scene,
                order_id,
                order_line_id,
                product_id,
                expire_time,
                test,
            } => CallbackRequest::RefreshInstance(w::RefreshInstance {
                scene: wire_scene(scene),
                order_id,
                order_line_id,
                instance_id,
                product_id,
                expire_time: KooTime::new(expire_time),
                test_flag: test_flag(test),
            }),
            Self::UpdateInstanceStatus {
                instance_id,
                freeze,
                test,
            } => CallbackRequest::UpdateInstanceStatus(w::UpdateInstanceStatus {
                instance_id,
                status: wire_status(freeze),
                test_flag: test_flag(test),
            }),
            Self::ReleaseInstance {
                instance_id,
                order_id,
                order_line_id,
                test,
            } => CallbackRequest::ReleaseInstance(w::ReleaseInstance {
                instance_id,
                order_id,
                order_line_id,
                test_flag: test_flag(test),
            }),
            Self::GetLicenseAsync {
                instance_id,
                event_id,
                effective_time,
                expire_time,
                device_fingerprint,
                test,
            } => CallbackRequest::GetLicenseAsync(w::GetLicenseAsync {
                instance_id,
                effective_time: KooTime::new(effective_time),
                expire_time: expire_time.map(KooTime::new),
                event_id,
                device_fingerprint: Some(device_fingerprint),
                test_flag: test_flag(test),
            }),
            Self::RefreshLicenseCode {
                license,
                scene,
                order_id,
                order_line_id,
                product_id,
                expire_time,
                test,
            } => CallbackRequest::RefreshLicenseCode(w::RefreshLicenseCode {
                scene: wire_scene(scene),
                order_id,
                order_line_id,
                license,
                product_id,
                expire_time: KooTime::new(expire_time),
                test_flag: test_flag(test),
            }),
            Self::UpdateLicenseCodeStatus {
                license,
                freeze,
                test,
            } => CallbackRequest::UpdateLicenseCodeStatus(w::UpdateLicenseCodeStatus {
                license,
                status: wire_status(freeze),
                test_flag: test_flag(test),
            }),
            Self::ReleaseLicenseCode {
                license,
                order_id,
                order_line_id,
                test,
            } => CallbackRequest::ReleaseLicenseCode(w::ReleaseLicenseCode {
                license,
                order_id,
                order_line_id,
                test_flag: test_flag(test),
            }),
        }
    }
}

/// A retry schedule: attempts `interval` apart, at most `max_attempts` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySchedule {
    /// Nominal time between attempts.
    #[serde(with = "secs")]
    pub interval: StdDuration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl RetrySchedule {
    /// Model B (newInstance, refreshInstance, updateInstanceStatus; [INFER] also
    /// releaseInstance and getLicenseAsync): every 2 min for 2 h, i.e. the first call and 60
    /// retries.
    pub const MODEL_B: Self = Self {
        interval: StdDuration::from_secs(120),
        max_attempts: 61,
    };
    /// Model A (refreshLicenseCode, updateLicenseCodeStatus, releaseLicenseCode): 60 attempts,
    /// one every 2 min.
    pub const MODEL_A: Self = Self {
        interval: StdDuration::from_secs(120),
        max_attempts: 60,
    };
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Where the callbacks go: the ISV's production URL and the key they are signed with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsvEndpoint {
    /// The production URL (HTTPS in production; any scheme the emulator can reach in tests).
    pub url: String,
    /// The access key of §5.2.
    pub access_key: String,
    /// PEM of an extra CA to trust for the production URL (e.g. the ISV's test CA).
    #[serde(default)]
    pub extra_ca_pem: Option<String>,
}

impl std::fmt::Debug for IsvEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsvEndpoint")
            .field("url", &self.url)
            .field("access_key", &"<redacted>")
            .field("extra_ca_pem", &self.extra_ca_pem.is_some())
            .finish()
    }
}

/// Why the ISV endpoint was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL does not parse or is not http(s).
    #[error("the production URL {0:?} is not an http(s) URL")]
    BadUrl(String),
    /// The access key is empty.
    #[error("the production-interface access key is empty")]
    EmptyKey,
    /// The extra CA is not a PEM certificate.
    #[error("the extra CA for the production URL is not a PEM certificate")]
    BadCa(#[source] reqwest::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the callback HTTP client")]
    Client(#[source] reqwest::Error),
}

/// One attempt at a callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackAttempt {
    /// 1 for the first call.
    pub number: u32,
    /// Where this attempt sits on the nominal schedule, in seconds after the first.
    pub nominal_offset_secs: u64,
    /// The marketplace time it was sent at.
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// The full URL, signature query included.
    pub url: String,
    /// The exact body sent.
    pub body: String,
    /// The HTTP status answered, if any.
    pub http_status: Option<u16>,
    /// The answer's body (bounded), if any.
    pub answer: Option<String>,
    /// `resultCode` of the answer, if it had one.
    pub result_code: Option<String>,
    /// Transport failure (timeout, refused, TLS), if any.
    pub error: Option<String>,
    /// Round-trip time in milliseconds.
    pub latency_ms: u64,
    /// Whether MKT counted this attempt as delivered.
    pub accepted: bool,
}

/// Where a callback stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// Still being attempted.
    Pending,
    /// Accepted by the ISV.
    Delivered {
        /// `000000` or `000004`.
        result_code: String,
    },
    /// The schedule ran out.
    GaveUp,
    /// The emulator shut down first.
    Abandoned,
}

/// Everything about one callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRecord {
    /// Log id.
    pub id: u64,
    /// `activity`.
    pub activity: String,
    /// What it is about (order, instance, redacted code).
    pub subject: String,
    /// Its schedule.
    pub schedule: RetrySchedule,
    /// The attempts so far.
    pub attempts: Vec<CallbackAttempt>,
    /// Where it stands.
    pub outcome: CallbackOutcome,
    /// Findings about the ISV's answers (e.g. an idempotency violation).
    pub notes: Vec<String>,
}

/// Called once a callback settles: with the accepted answer, or `None` when MKT gave up.
/// Returns a note for the log.
pub type SettleHook = Box<dyn FnOnce(Option<&CallbackResponse>) -> Option<String> + Send>;

struct Target {
    endpoint: IsvEndpoint,
    client: reqwest::Client,
}

struct Log {
    records: VecDeque<CallbackRecord>,
    /// What each logged record sent, for replays.
    sent: std::collections::HashMap<u64, Callback>,
    next_id: u64,
}

struct Inner {
    clock: SharedClock,
    time_scale: f64,
    timeout: StdDuration,
    model_a: RetrySchedule,
    model_b: RetrySchedule,
    target: Mutex<Option<Arc<Target>>>,
    log: Mutex<Log>,
    version: watch::Sender<u64>,
    shutdown: watch::Receiver<bool>,
    runtime: tokio::runtime::Handle,
}

/// Settings of the callback driver.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// Nominal seconds per real second between attempts (1.0 = real time).
    pub time_scale: f64,
    /// How long MKT waits for each answer (5 s documented).
    pub timeout: StdDuration,
    /// Schedule of Model A calls.
    pub model_a: RetrySchedule,
    /// Schedule of Model B calls.
    pub model_b: RetrySchedule,
}

/// Sends callbacks and keeps their log. Cloning shares the driver.
#[derive(Clone)]
pub struct CallbackDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CallbackDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackDriver")
            .field("time_scale", &self.inner.time_scale)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CallbackDriver {
    /// A driver spawning its tasks on `runtime`, stopping when `shutdown` turns true.
    #[must_use]
    pub fn new(
        clock: SharedClock,
        settings: &DriverSettings,
        shutdown: watch::Receiver<bool>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let (version, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                clock,
                time_scale: settings.time_scale,
                timeout: settings.timeout,
                model_a: settings.model_a,
                model_b: settings.model_b,
                target: Mutex::new(None),
                log: Mutex::new(Log {
                    records: VecDeque::new(),
                    sent: std::collections::HashMap::new(),
                    next_id: 1,
                }),
                version,
                shutdown,
                runtime,
            }),
        }
    }

    /// Points the callbacks at an ISV (or nowhere, with `None`: attempts then fail and retry).
    ///
    /// # Errors
    /// When the URL, key or CA is unusable.
    pub fn set_endpoint(&self, endpoint: Option<IsvEndpoint>) -> Result<(), EndpointError> {
        let target = match endpoint {
            None => None,
            Some(endpoint) => {
                let url = url::Url::parse(&endpoint.url)
                    .map_err(|_| EndpointError::BadUrl(endpoint.url.clone()))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(EndpointError::BadUrl(endpoint.url.clone()));
                }
                if endpoint.access_key.is_empty() {
                    return Err(EndpointError::EmptyKey);
                }
                let mut builder = reqwest::Client::builder()
                    .timeout(self.inner.timeout)
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(pem) = &endpoint.extra_ca_pem {
                    let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                        .map_err(EndpointError::BadCa)?;
                    builder = builder.tls_certs_merge([cert]);
                }
                let client = builder.build().map_err(EndpointError::Client)?;
                Some(Arc::new(Target { endpoint, client }))
            }
        };
        *lock(&self.inner.target) = target;
        Ok(())
    }

    /// The configured endpoint.
    #[must_use]
    pub fn endpoint(&self) -> Option<IsvEndpoint> {
        lock(&self.inner.target)
            .as_ref()
            .map(|t| t.endpoint.clone())
    }

    /// Starts delivering `callback`; returns its log id.
    pub fn send(&self, callback: Callback, hook: Option<SettleHook>) -> u64 {
        let schedule = if callback.is_model_a() {
            self.inner.model_a
        } else {
            self.inner.model_b
        };
        let id = {
            let mut log = lock(&self.inner.log);
            let id = log.next_id;
            log.next_id += 1;
            log.records.push_back(CallbackRecord {
                id,
                activity: callback.activity().to_owned(),
                subject: callback.subject(),
                schedule,
                attempts: Vec::new(),
                outcome: CallbackOutcome::Pending,
                notes: Vec::new(),
            });
            log.sent.insert(id, callback.clone());
            while log.records.len() > MAX_RECORDS {
                let Some(pos) = log
                    .records
                    .iter()
                    .position(|r| r.outcome != CallbackOutcome::Pending)
                else {
                    break;
                };
                if let Some(old) = log.records.remove(pos) {
                    log.sent.remove(&old.id);
                }
            }
            id
        };
        self.bump();
        tracing::info!(id, activity = callback.activity(), "callback queued");
        let driver = self.clone();
        self.inner
            .runtime
            .spawn(async move { driver.run(id, callback, schedule, hook).await });
        id
    }

    fn bump(&self) {
        self.inner.version.send_modify(|v| *v += 1);
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut CallbackRecord)) {
        {
            let mut log = lock(&self.inner.log);
            if let Some(record) = log.records.iter_mut().find(|r| r.id == id) {
                f(record);
            }
        }
        self.bump();
    }

    async fn run(
        self,
        id: u64,
        callback: Callback,
        schedule: RetrySchedule,
        hook: Option<SettleHook>,
    ) {
        let mut shutdown = self.inner.shutdown.clone();
        let pause = schedule.interval.div_f64(self.inner.time_scale);
        for number in 1..=schedule.max_attempts.max(1) {
            if number > 1 {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|stop| *stop) => {
                        self.update(id, |r| r.outcome = CallbackOutcome::Abandoned);
                        return;
                    }
                }
            }
            let nominal_offset_secs = schedule.interval.as_secs() * u64::from(number - 1);
            let (attempt, answer) = self.attempt(&callback, number, nominal_offset_secs).await;
            let accepted = attempt.accepted;
            let result_code = attempt.result_code.clone();
            self.update(id, |r| r.attempts.push(attempt));
            if accepted {
                let note = hook.and_then(|h| h(answer.as_ref()));
                self.update(id, |r| {
                    r.outcome = CallbackOutcome::Delivered {
                        result_code: result_code.unwrap_or_default(),
                    };
                    r.notes.extend(note);
                });
                tracing::info!(id, attempts = number, "callback delivered");
                return;
            }
        }
        let note = hook.and_then(|h| h(None));
        self.update(id, |r| {
            r.outcome = CallbackOutcome::GaveUp;
            r.notes.extend(note);
        });
        tracing::warn!(
            id,
            activity = callback.activity(),
            "callback schedule exhausted; giving up"
        );
    }

    async fn attempt(
        &self,
        callback: &Callback,
        number: u32,
        nominal_offset_secs: u64,
    ) -> (CallbackAttempt, Option<CallbackResponse>) {
        let business_id = uuid::Uuid::new_v4().simple().to_string();
        let body = String::from_utf8_lossy(&callback.request(&business_id).to_body()).into_owned();
        let sent_at = self.inner.clock.now();
        let mut attempt = CallbackAttempt {
            number,
            nominal_offset_secs,
            sent_at,
            url: String::new(),
            body: body.clone(),
            http_status: None,
            answer: None,
            result_code: None,
            error: None,
            latency_ms: 0,
            accepted: false,
        };
        let target = lock(&self.inner.target).clone();
        let Some(target) = target else {
            attempt.error = Some("no ISV production URL is configured".to_owned());
            return (attempt, None);
        };
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let params = SignatureParams::sign(
            &AccessKey::new(target.endpoint.access_key.clone()),
            body.as_bytes(),
            sent_at,
            &nonce,
        );
        let url = params.append_to(&target.endpoint.url);
        attempt.url.clone_from(&url);
        let started = Instant::now();
        let sent = target
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json;charset=UTF-8")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                attempt.latency_ms = elapsed_ms(started);
                attempt.error = Some(crate::error_chain(&e));
                return (attempt, None);
            }
        };
        attempt.http_status = Some(response.status().as_u16());
        let bytes = read_bounded(response).await;
        attempt.latency_ms = elapsed_ms(started);
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                attempt.error = Some(e);
                return (attempt, None);
            }
        };
        attempt.answer = Some(String::from_utf8_lossy(&bytes).into_owned());
        let answer: Option<CallbackResponse> = serde_json::from_slice(&bytes).ok();
        attempt.result_code = answer.as_ref().map(|a| a.result_code.clone());
        attempt.accepted = attempt.http_status == Some(200)
            && attempt
                .result_code
                .as_deref()
                .and_then(IsvResultCode::parse)
                .is_some_and(IsvResultCode::is_accepted);
        (attempt, answer)
    }

    /// The callback a record sent (while the record is kept).
    #[must_use]
    pub fn callback_of(&self, id: u64) -> Option<Callback> {
        lock(&self.inner.log).sent.get(&id).cloned()
    }

    /// A copy of the log, oldest first.
    #[must_use]
    pub fn records(&self) -> Vec<CallbackRecord> {
        lock(&self.inner.log).records.iter().cloned().collect()
    }

    /// One record.
    #[must_use]
    pub fn record(&self, id: u64) -> Option<CallbackRecord> {
        lock(&self.inner.log)
            .records
            .iter()
            .find(|r| r.id == id)
            .cloned()
    }

    /// Waits until the callback `id` is settled (delivered, given up or abandoned).
    pub async fn settled(&self, id: u64) -> Option<CallbackRecord> {
        let mut rx = self.inner.version.subscribe();
        loop {
            match self.record(id) {
                None => return None,
                Some(r) if r.outcome != CallbackOutcome::Pending => return Some(r),
                Some(_) => {}
            }
            if rx.changed().await.is_err() {
                return self.record(id);
            }
        }
    }

    /// Waits until no callback is pending.
    pub async fn idle(&self) {
        let mut rx = self.inner.version.subscribe();
        loop {
            let pending = lock(&self.inner.log)
                .records
                .iter()
                .any(|r| r.outcome == CallbackOutcome::Pending);
            if !pending || rx.changed().await.is_err() {
                return;
            }
        }
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ANSWER_BYTES.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    return Ok(out);
                }
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(crate::error_chain(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(cb: &Callback, business_id: &str) -> String {
        String::from_utf8(cb.request(business_id).to_body()).unwrap()
    }

    #[test]
    fn new_instance_body_is_sorted_compact_json_as_in_the_documented_vector() {
        let cb = Callback::NewInstance {
            order_id: "MOCKPERIODYEARNEW".into(),
            order_line_id: "MOCKPERIODYEARNEW-000001".into(),
            test: true,
        };
        assert_eq!(
            body(&cb, "b-0001"),
            r#"{"activity":"newInstance","businessId":"b-0001","orderId":"MOCKPERIODYEARNEW","orderLineId":"MOCKPERIODYEARNEW-000001","testFlag":"1"}"#
        );
    }

    #[test]
    fn get_license_async_uses_the_spaced_time_form_and_drops_absent_fields() {
        let t = OffsetDateTime::from_unix_timestamp(1_698_402_615).unwrap();
        let cb = Callback::GetLicenseAsync {
            instance_id: "i".into(),
            event_id: "e".into(),
            effective_time: t,
            expire_time: None,
            device_fingerprint: "F".into(),
            test: false,
        };
        let text = body(&cb, "unused");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["effectiveTime"], "2023-10-27 10:30:15 z");
        assert!(v.get("expireTime").is_none());
        assert!(v.get("businessId").is_none());
        assert!(CallbackRequest::parse(text.as_bytes()).is_ok());
    }

    #[test]
    fn every_activity_round_trips_through_the_wire_parser() {
        let t = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
        let all = [
            Callback::RefreshInstance {
                instance_id: "i".into(),
                scene: RenewScene::Renewal,
                order_id: "o".into(),
                order_line_id: "o-1".into(),
                product_id: None,
                expire_time: t,
                test: false,
            },
            Callback::UpdateInstanceStatus {
                instance_id: "i".into(),
                freeze: true,
                test: false,
            },
            Callback::ReleaseInstance {
                instance_id: "i".into(),
                order_id: None,
                order_line_id: None,
                test: false,
            },
            Callback::RefreshLicenseCode {
                license: "PLX".into(),
                scene: RenewScene::UnsubscribeRenewalPeriod,
                order_id: "o".into(),
                order_line_id: "o-1".into(),
                product_id: Some("p".into()),
                expire_time: t,
                test: true,
            },
            Callback::UpdateLicenseCodeStatus {
                license: "PLX".into(),
                freeze: false,
                test: false,
            },
            Callback::ReleaseLicenseCode {
                license: "PLX".into(),
                order_id: Some("u".into()),
                order_line_id: Some("u-1".into()),
                test: false,
            },
        ];
        for cb in all {
            let parsed = CallbackRequest::parse(body(&cb, "b").as_bytes()).unwrap();
            assert_eq!(parsed.activity(), cb.activity());
            assert_eq!(parsed, cb.request("b"));
        }
    }

    #[test]
    fn model_a_calls_use_the_sixty_attempt_schedule() {
        let cb = Callback::ReleaseLicenseCode {
            license: "PLX".into(),
            order_id: None,
            order_line_id: None,
            test: false,
        };
        assert!(cb.is_model_a());
        assert_eq!(RetrySchedule::MODEL_A.max_attempts, 60);
        assert_eq!(RetrySchedule::MODEL_B.max_attempts, 61);
    }
}
