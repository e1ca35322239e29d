//! Starting the emulator, and the Rust API to drive it (the same operations as the control API).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_types::{Clock, SharedClock, SystemClock};
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::callbacks::{
    Callback, CallbackDriver, CallbackRecord, DriverSettings, EndpointError, IsvEndpoint,
    RetrySchedule, SettleHook,
};
use crate::clock::SimClock;
use crate::faults::{FaultRule, FaultSet, Faults, HostFaults, HostRole};
use crate::manifest::{
    DEFAULT_KEY_BITS, MANIFEST_FORMAT, ManifestError, ManifestPayload, ManifestSigner,
    ManifestSpec, SignedManifest,
};
use crate::market::{
    AuthCode, Instance, LicenseRequest, Market, MarketError, MarketEvent, NewOrder, Order, Renewal,
    UsageReport,
};
use crate::tls::{SimPki, TlsSetupError};

/// Default test access key (AK) of the open APIs.
pub const DEFAULT_ACCESS_KEY: &str = "SIMTESTAK0000000000";
/// Default test secret key (SK) of the open APIs.
pub const DEFAULT_SECRET_KEY: &str = "sim-test-secret-key-do-not-use-in-production";
/// Extra names the default server certificate carries, so a client can keep the production
/// host names and point them at the loopback address.
pub const DEFAULT_EXTRA_NAMES: [&str; 2] = ["mkt.myhuaweicloud.com", "mkt.myhuaweicloud.cn"];

/// An AK/SK pair the open APIs accept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCredential {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for ApiCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCredential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Where the manifest signing key comes from.
#[derive(Clone)]
pub enum ManifestKeySource {
    /// `manifest-signing-key.pem` in the state directory, generated (3072-bit) when absent.
    StateDir,
    /// This PKCS#8 PEM (tests share one fixture key instead of generating one each).
    Pem(String),
}

impl std::fmt::Debug for ManifestKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StateDir => f.write_str("StateDir"),
            Self::Pem(_) => f.write_str("Pem(<redacted>)"),
        }
    }
}

/// Everything the emulator is started with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where the CA, the server certificate and the manifest key live.
    pub state_dir: PathBuf,
    /// Primary listener (`mkt.myhuaweicloud.com`); port 0 picks a free one.
    pub primary_addr: SocketAddr,
    /// Fallback listener (`mkt.myhuaweicloud.cn`).
    pub fallback_addr: SocketAddr,
    /// Names (DNS or IP) the server certificate carries besides localhost/127.0.0.1/::1.
    pub server_names: Vec<String>,
    /// AK/SK pairs the open APIs accept.
    pub credentials: Vec<ApiCredential>,
    /// The base clock; the control API shifts the marketplace's time relative to it.
    pub clock: SharedClock,
    /// Nominal seconds per real second for callback retries (1.0 = real time).
    pub time_scale: f64,
    /// The ISV production interface, if any.
    pub isv: Option<IsvEndpoint>,
    /// How long MKT waits for an ISV answer.
    pub callback_timeout: StdDuration,
    /// Retry schedule of Model A callbacks.
    pub model_a_schedule: RetrySchedule,
    /// Retry schedule of Model B callbacks.
    pub model_b_schedule: RetrySchedule,
    /// How far `X-Sdk-Date` may be from the marketplace's time.
    pub apig_skew: StdDuration,
    /// Extra fields every heartbeat `data` carries (PROTOCOL.md §6 item 1).
    pub heartbeat_extra: Map<String, Value>,
    /// Serve the nine documented mock orders.
    pub seed_mock_orders: bool,
    /// The manifest signing key.
    pub manifest_key: ManifestKeySource,
}

impl SimConfig {
    /// Loopback on free ports, default credentials, real time, no ISV.
    #[must_use]
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            state_dir: state_dir.into(),
            primary_addr: loopback,
            fallback_addr: loopback,
            server_names: DEFAULT_EXTRA_NAMES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            credentials: vec![ApiCredential {
                access_key: DEFAULT_ACCESS_KEY.to_owned(),
                secret_key: DEFAULT_SECRET_KEY.to_owned(),
            }],
            clock: SystemClock::shared(),
            time_scale: 1.0,
            isv: None,
            callback_timeout: StdDuration::from_secs(5),
            model_a_schedule: RetrySchedule::MODEL_A,
            model_b_schedule: RetrySchedule::MODEL_B,
            apig_skew: StdDuration::from_secs(15 * 60),
            heartbeat_extra: Map::new(),
            seed_mock_orders: true,
            manifest_key: ManifestKeySource::StateDir,
        }
    }
}

/// Why the emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The test PKI could not be set up.
    #[error("cannot set up the emulator's TLS certificates")]
    Tls(#[source] TlsSetupError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The manifest key could not be loaded or generated.
    #[error("cannot set up the update-manifest signing key")]
    Manifest(#[source] ManifestError),
    /// The ISV endpoint is unusable.
    #[error("the ISV production endpoint is unusable")]
    Endpoint(#[source] EndpointError),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

pub(crate) struct PublishedManifest {
    pub signed: SignedManifest,
    pub payload: ManifestPayload,
}

/// The shared state every handler and the Rust API work on.
pub(crate) struct SimCore {
    pub clock: SimClock,
    pub market: Mutex<Market>,
    pub driver: CallbackDriver,
    pub faults: Faults,
    pub pki: SimPki,
    pub signer: ManifestSigner,
    pub manifests: Mutex<BTreeMap<String, PublishedManifest>>,
    pub credentials: Vec<ApiCredential>,
    pub apig_skew: StdDuration,
    pub heartbeat_extra: Mutex<Map<String, Value>>,
    pub primary_addr: SocketAddr,
    pub fallback_addr: SocketAddr,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these locks stays consistent between statements; a panic elsewhere must
    // not take the emulator down.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimCore {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn secret_for(&self, access_key: &str) -> Option<&str> {
        self.credentials
            .iter()
            .find(|c| c.access_key == access_key)
            .map(|c| c.secret_key.as_str())
    }

    /// Sends a callback, with the follow-up MKT does on the answer.
    pub fn send(self: &Arc<Self>, callback: Callback) -> u64 {
        let hook: Option<SettleHook> = match &callback {
            Callback::NewInstance {
                order_id,
                order_line_id,
                ..
            } => {
                let core = Arc::downgrade(self);
                let (order_id, line) = (order_id.clone(), order_line_id.clone());
                Some(Box::new(move |answer| {
                    new_instance_settled(&core, &order_id, &line, answer)
                }))
            }
            _ => None,
        };
        self.driver.send(callback, hook)
    }
}

fn new_instance_settled(
    core: &Weak<SimCore>,
    order_id: &str,
    order_line_id: &str,
    answer: Option<&koogallery::wire::CallbackResponse>,
) -> Option<String> {
    let core = core.upgrade()?;
    let mut market = lock(&core.market);
    let Some(answer) = answer else {
        market.fail_order(order_id);
        return Some(format!(
            "order {order_id} judged failed and unsubscribed after the retry schedule ran out"
        ));
    };
    let Some(instance_id) = answer.instance_id.as_deref() else {
        return Some(format!(
            "the ISV answered {} without an instanceId; the instance stays unknown",
            answer.result_code
        ));
    };
    match market.register_instance(order_id, order_line_id, instance_id) {
        Ok(None) => None,
        Ok(Some(earlier)) => Some(format!(
            "idempotency violation: the ISV answered instanceId {instance_id:?} for an order line it had already given {earlier:?}"
        )),
        Err(e) => Some(format!("instanceId not recorded: {e}")),
    }
}

/// A running emulator. Dropping it without [`Sim::shutdown`] stops the listeners too (they watch
/// the same signal), but `shutdown` also waits for them.
pub struct Sim {
    handle: SimHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("handle", &self.handle).finish()
    }
}

impl std::ops::Deref for Sim {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Sim {
    /// Sets up the PKI and keys, binds both listeners and starts serving.
    ///
    /// # Errors
    /// See [`SimError`].
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(SimError::Config("time_scale must be a positive number"));
        }
        if config.credentials.is_empty() {
            return Err(SimError::Config("at least one AK/SK pair is needed"));
        }
        let state_dir = config.state_dir.clone();
        let names = config.server_names.clone();
        let key_source = config.manifest_key.clone();
        // Key generation and file I/O block; keep them off the async workers.
        let (pki, signer) = tokio::task::spawn_blocking(move || {
            let pki = SimPki::load_or_create(&state_dir, &names).map_err(SimError::Tls)?;
            let signer = match key_source {
                ManifestKeySource::StateDir => {
                    ManifestSigner::load_or_generate(&state_dir, DEFAULT_KEY_BITS)
                }
                ManifestKeySource::Pem(pem) => ManifestSigner::from_pem(&pem),
            }
            .map_err(SimError::Manifest)?;
            Ok::<_, SimError>((pki, signer))
        })
        .await
        .map_err(|_| SimError::Config("the key setup task panicked"))??;

        let primary = TcpListener::bind(config.primary_addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.primary_addr,
                source,
            })?;
        let fallback = TcpListener::bind(config.fallback_addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.fallback_addr,
                source,
            })?;
        let primary_addr = primary.local_addr().map_err(|source| SimError::Bind {
            addr: config.primary_addr,
            source,
        })?;
        let fallback_addr = fallback.local_addr().map_err(|source| SimError::Bind {
            addr: config.fallback_addr,
            source,
        })?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let clock = SimClock::new(config.clock.clone());
        let driver = CallbackDriver::new(
            clock.shared(),
            &DriverSettings {
                time_scale: config.time_scale,
                timeout: config.callback_timeout,
                model_a: config.model_a_schedule,
                model_b: config.model_b_schedule,
            },
            shutdown_rx.clone(),
            tokio::runtime::Handle::current(),
        );
        driver
            .set_endpoint(config.isv.clone())
            .map_err(SimError::Endpoint)?;
        let market = if config.seed_mock_orders {
            Market::with_mock_orders(clock.now())
        } else {
            Market::new()
        };
        let core = Arc::new(SimCore {
            clock,
            market: Mutex::new(market),
            driver,
            faults: Faults::default(),
            pki,
            signer,
            manifests: Mutex::new(BTreeMap::new()),
            credentials: config.credentials.clone(),
            apig_skew: config.apig_skew,
            heartbeat_extra: Mutex::new(config.heartbeat_extra.clone()),
            primary_addr,
            fallback_addr,
        });
        let router = crate::routes::router(core.clone());
        let tasks = vec![
            tokio::spawn(crate::server::serve(
                primary,
                HostRole::Primary,
                core.clone(),
                router.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(crate::server::serve(
                fallback,
                HostRole::Fallback,
                core.clone(),
                router,
                shutdown_rx,
            )),
        ];
        tracing::info!(%primary_addr, %fallback_addr, "koogallery-sim listening");
        Ok(Self {
            handle: SimHandle { core },
            shutdown,
            tasks,
        })
    }

    /// A cloneable handle to drive the emulator.
    #[must_use]
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops listening, abandons pending callbacks and waits for the listeners to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

/// What creating an order returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedOrder {
    /// The order.
    pub order: Order,
    /// The buyer's token for the delivery channel.
    pub buyer_token: String,
    /// The newInstance callback sent (Model B).
    pub callback_id: Option<u64>,
}

/// What a lifecycle operation returns: the object's new state and the callbacks it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome<T> {
    /// The object after the operation.
    pub result: T,
    /// Log ids of the callbacks sent.
    pub callback_ids: Vec<u64>,
}

/// A cloneable handle on a running emulator: its addresses and every operator operation.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) core: Arc<SimCore>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("primary", &self.core.primary_addr)
            .field("fallback", &self.core.fallback_addr)
            .finish_non_exhaustive()
    }
}

fn url_for(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let host = if ip.is_unspecified() {
        "127.0.0.1".to_owned()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("https://{host}:{}", addr.port())
}

impl SimHandle {
    pub(crate) fn from_core(core: Arc<SimCore>) -> Self {
        Self { core }
    }

    /// Base URL of the primary host, e.g. `https://127.0.0.1:8443`.
    #[must_use]
    pub fn primary_url(&self) -> String {
        url_for(self.core.primary_addr)
    }

    /// Base URL of the fallback host.
    #[must_use]
    pub fn fallback_url(&self) -> String {
        url_for(self.core.fallback_addr)
    }

    /// The primary listener's address.
    #[must_use]
    pub fn primary_addr(&self) -> SocketAddr {
        self.core.primary_addr
    }

    /// The fallback listener's address.
    #[must_use]
    pub fn fallback_addr(&self) -> SocketAddr {
        self.core.fallback_addr
    }

    /// PEM of the CA a client must trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.core.pki.ca_pem
    }

    /// Path of `ca.pem`.
    #[must_use]
    pub fn ca_path(&self) -> PathBuf {
        self.core.pki.ca_path()
    }

    /// PEM of the CA behind the untrusted-certificate fault (never trust it).
    #[must_use]
    pub fn untrusted_ca_pem(&self) -> &str {
        &self.core.pki.untrusted_ca_pem
    }

    /// The AK/SK pairs the open APIs accept.
    #[must_use]
    pub fn credentials(&self) -> &[ApiCredential] {
        &self.core.credentials
    }

    /// The marketplace's current time.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        self.core.now()
    }

    /// The marketplace's clock (a client sharing it stays within the APIG skew).
    #[must_use]
    pub fn clock(&self) -> SharedClock {
        self.core.clock.shared()
    }

    /// Sets the marketplace's time.
    pub fn set_time(&self, to: OffsetDateTime) {
        self.core.clock.set(to);
    }

    /// Moves the marketplace's time.
    pub fn advance_time(&self, by: Duration) {
        self.core.clock.advance(by);
    }

    fn market(&self) -> std::sync::MutexGuard<'_, Market> {
        lock(&self.core.market)
    }

    /// Places an order; a Model B order sends newInstance.
    ///
    /// # Errors
    /// When a field is invalid.
    pub fn create_order(&self, req: &NewOrder) -> Result<CreatedOrder, MarketError> {
        let now = self.now();
        let (order, callback, token) = {
            let mut market = self.market();
            let (order, callback) = market.create_order(req, now)?;
            let token = market.buyer_token(&order.buyer.customer_id);
            (order, callback, token)
        };
        let callback_id = callback.map(|cb| self.core.send(cb));
        Ok(CreatedOrder {
            order,
            buyer_token: token,
            callback_id,
        })
    }

    /// An order.
    #[must_use]
    pub fn order(&self, order_id: &str) -> Option<Order> {
        self.market().order(order_id).cloned()
    }

    /// Every order.
    #[must_use]
    pub fn orders(&self) -> Vec<Order> {
        self.market().orders()
    }

    /// The delivery token of a buyer.
    #[must_use]
    pub fn buyer_token(&self, customer_id: &str) -> String {
        self.market().buyer_token(customer_id)
    }

    /// Issues the code of a Model A order line.
    ///
    /// # Errors
    /// Unknown order/line, or a Model B order.
    pub fn issue_code(
        &self,
        order_id: &str,
        order_line_id: Option<&str>,
    ) -> Result<AuthCode, MarketError> {
        self.market().issue_code(order_id, order_line_id)
    }

    /// A code.
    #[must_use]
    pub fn code(&self, code: &str) -> Option<AuthCode> {
        let now = self.now();
        self.market().code(code, now)
    }

    /// The user accepts a code.
    ///
    /// # Errors
    /// Unknown code, or not in the unreceived state.
    pub fn accept_code(&self, code: &str) -> Result<AuthCode, MarketError> {
        let now = self.now();
        self.market().accept_code(code, now)
    }

    fn sent<T>(&self, result: T, callbacks: Vec<Callback>) -> Outcome<T> {
        let callback_ids = callbacks.into_iter().map(|cb| self.core.send(cb)).collect();
        Outcome {
            result,
            callback_ids,
        }
    }

    /// Renews a code (refreshLicenseCode, and UNFREEZE when it was frozen).
    ///
    /// # Errors
    /// See [`Market::renew_code`].
    pub fn renew_code(
        &self,
        code: &str,
        renewal: &Renewal,
    ) -> Result<Outcome<AuthCode>, MarketError> {
        let now = self.now();
        let (auth, cbs) = self.market().renew_code(code, renewal, now)?;
        Ok(self.sent(auth, cbs))
    }

    /// Expires a code now.
    ///
    /// # Errors
    /// See [`Market::expire_code`].
    pub fn expire_code(&self, code: &str) -> Result<AuthCode, MarketError> {
        let now = self.now();
        self.market().expire_code(code, now)
    }

    /// Freezes a code (updateLicenseCodeStatus FREEZE).
    ///
    /// # Errors
    /// See [`Market::freeze_code`].
    pub fn freeze_code(&self, code: &str) -> Result<Outcome<AuthCode>, MarketError> {
        let now = self.now();
        let (auth, cb) = self.market().freeze_code(code, now)?;
        Ok(self.sent(auth, vec![cb]))
    }

    /// Unfreezes a code (updateLicenseCodeStatus UNFREEZE).
    ///
    /// # Errors
    /// See [`Market::unfreeze_code`].
    pub fn unfreeze_code(&self, code: &str) -> Result<Outcome<AuthCode>, MarketError> {
        let now = self.now();
        let (auth, cb) = self.market().unfreeze_code(code, now)?;
        Ok(self.sent(auth, vec![cb]))
    }

    /// Releases a code (releaseLicenseCode).
    ///
    /// # Errors
    /// See [`Market::release_code`].
    pub fn release_code(
        &self,
        code: &str,
        unsubscribe: bool,
    ) -> Result<Outcome<AuthCode>, MarketError> {
        let now = self.now();
        let (auth, cb) = self.market().release_code(code, unsubscribe, now)?;
        Ok(self.sent(auth, vec![cb]))
    }

    /// Usage reports stored for a code.
    #[must_use]
    pub fn usage(&self, code: &str) -> Vec<UsageReport> {
        self.market().usage(code)
    }

    /// An instance.
    #[must_use]
    pub fn instance(&self, instance_id: &str) -> Option<Instance> {
        self.market().instance(instance_id).cloned()
    }

    /// Renews an instance (refreshInstance, and UNFREEZE when it was frozen).
    ///
    /// # Errors
    /// See [`Market::renew_instance`].
    pub fn renew_instance(
        &self,
        instance_id: &str,
        renewal: &Renewal,
    ) -> Result<Outcome<Instance>, MarketError> {
        let now = self.now();
        let (inst, cbs) = self.market().renew_instance(instance_id, renewal, now)?;
        Ok(self.sent(inst, cbs))
    }

    /// Freezes or unfreezes an instance (updateInstanceStatus).
    ///
    /// # Errors
    /// See [`Market::set_instance_frozen`].
    pub fn set_instance_frozen(
        &self,
        instance_id: &str,
        freeze: bool,
    ) -> Result<Outcome<Instance>, MarketError> {
        let (inst, cb) = self.market().set_instance_frozen(instance_id, freeze)?;
        Ok(self.sent(inst, vec![cb]))
    }

    /// Releases an instance (releaseInstance).
    ///
    /// # Errors
    /// See [`Market::release_instance`].
    pub fn release_instance(
        &self,
        instance_id: &str,
        unsubscribe: bool,
    ) -> Result<Outcome<Instance>, MarketError> {
        let now = self.now();
        let (inst, cb) = self
            .market()
            .release_instance(instance_id, unsubscribe, now)?;
        Ok(self.sent(inst, vec![cb]))
    }

    /// Submits a device fingerprint for an instance: getLicenseAsync with a fresh `eventId`.
    ///
    /// # Errors
    /// See [`Market::request_license`].
    pub fn request_license(
        &self,
        instance_id: &str,
        req: &LicenseRequest,
    ) -> Result<Outcome<MarketEvent>, MarketError> {
        let now = self.now();
        let (event, cb) = self.market().request_license(instance_id, req, now)?;
        Ok(self.sent(event, vec![cb]))
    }

    /// A License event.
    #[must_use]
    pub fn event(&self, event_id: &str) -> Option<MarketEvent> {
        self.market().event(event_id).cloned()
    }

    /// The latest License delivered for an instance.
    #[must_use]
    pub fn delivered_license(&self, instance_id: &str) -> Option<MarketEvent> {
        self.market().latest_delivery(instance_id).cloned()
    }

    /// Points callbacks at an ISV (or nowhere).
    ///
    /// # Errors
    /// When the endpoint is unusable.
    pub fn set_isv_endpoint(&self, endpoint: Option<IsvEndpoint>) -> Result<(), EndpointError> {
        self.core.driver.set_endpoint(endpoint)
    }

    /// The callback log, oldest first.
    #[must_use]
    pub fn callbacks(&self) -> Vec<CallbackRecord> {
        self.core.driver.records()
    }

    /// One callback record.
    #[must_use]
    pub fn callback(&self, id: u64) -> Option<CallbackRecord> {
        self.core.driver.record(id)
    }

    /// Sends a logged callback again, as MKT does when a seller restarts it (生产接口消息 →
    /// 重新启动): fresh signature and businessId, same content. A replayed newInstance checks the
    /// ISV's idempotency (same instanceId); a replayed getLicenseAsync expects the same License
    /// (see [`MarketEvent::content_changed`]). Returns the new log id.
    #[must_use]
    pub fn replay_callback(&self, id: u64) -> Option<u64> {
        let callback = self.core.driver.callback_of(id)?;
        Some(self.core.send(callback))
    }

    /// Waits until callback `id` is delivered or given up.
    pub async fn callback_settled(&self, id: u64) -> Option<CallbackRecord> {
        self.core.driver.settled(id).await
    }

    /// Waits until no callback is pending.
    pub async fn callbacks_idle(&self) {
        self.core.driver.idle().await;
    }

    /// Adds a fault rule; returns its id.
    ///
    /// # Errors
    /// When the rule is malformed or the table is full.
    pub fn add_fault(&self, rule: FaultRule) -> Result<u64, String> {
        self.core.faults.add(rule)
    }

    /// Removes a fault rule.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.core.faults.remove(id)
    }

    /// Sets the host faults.
    pub fn set_host_faults(&self, hosts: HostFaults) {
        self.core.faults.set_hosts(hosts);
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        self.core.faults.clear();
    }

    /// Everything currently injected.
    #[must_use]
    pub fn faults(&self) -> FaultSet {
        self.core.faults.snapshot()
    }

    /// Sets the extra heartbeat fields.
    pub fn set_heartbeat_extra(&self, extra: Map<String, Value>) {
        *lock(&self.core.heartbeat_extra) = extra;
    }

    /// Publishes (signs and serves) a manifest for a product.
    ///
    /// # Errors
    /// When the product id is invalid or signing fails.
    pub fn publish_manifest(
        &self,
        product_id: &str,
        spec: ManifestSpec,
    ) -> Result<SignedManifest, ManifestError> {
        if product_id.is_empty() || product_id.len() > crate::market::MAX_ID_LEN {
            return Err(ManifestError::Malformed(
                "product id must be 1 to 64 characters",
            ));
        }
        let mut manifests = lock(&self.core.manifests);
        let sequence = manifests
            .get(product_id)
            .map_or(1, |m| m.payload.sequence + 1);
        let payload = ManifestPayload {
            format: MANIFEST_FORMAT.to_owned(),
            product_id: product_id.to_owned(),
            sequence,
            issued_at: self.now(),
            spec,
        };
        let signed = self.core.signer.sign(&payload)?;
        manifests.insert(
            product_id.to_owned(),
            PublishedManifest {
                signed: signed.clone(),
                payload,
            },
        );
        Ok(signed)
    }

    /// The manifest served for a product.
    #[must_use]
    pub fn manifest(&self, product_id: &str) -> Option<SignedManifest> {
        lock(&self.core.manifests)
            .get(product_id)
            .map(|m| m.signed.clone())
    }

    /// The manifest signing public key (SPKI PEM).
    #[must_use]
    pub fn manifest_public_key_pem(&self) -> &str {
        self.core.signer.public_key_pem()
    }

    /// The manifest key id.
    #[must_use]
    pub fn manifest_key_id(&self) -> &str {
        self.core.signer.key_id()
    }
}
