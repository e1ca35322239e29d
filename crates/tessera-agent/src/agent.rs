//! Starting, driving and stopping an agent: [`Agent::start`] → [`AgentHandle`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use koogallery::apig::Credentials;
use tessera_fingerprint::{DeviceIdentity, IdentityCache};
use tessera_ipc::{Endpoint, EndpointError, IpcServer, ProbeOutcome, ServerConfig};
use tessera_types::events::Event;
use tessera_types::{SharedClock, Snapshot};

use crate::config::{Settings, SettingsError};
use crate::core::{Core, CoreState};
use crate::db::{Db, DbError};
use crate::leases::LeaseTable;
use crate::licensing::Verifiers;
use crate::market::Marketplace;
use crate::market_http::{KooMarket, MarketSetupError};
use crate::paths::Paths;
use crate::products::{Catalog, DescriptorError};
use crate::secrets::{Secrets, SecretsError, StoreKind};
use crate::trusted_time::TrustedTime;

/// Secret names in the store.
pub mod secret_names {
    /// The marketplace access key id.
    pub const ACCESS_KEY: &str = "marketplace-ak";
    /// The marketplace secret key.
    pub const SECRET_KEY: &str = "marketplace-sk";
    /// The buyer token for the delivery channel.
    pub const DELIVERY_TOKEN: &str = "delivery-token";
    /// The state MAC key.
    pub const STATE_MAC_KEY: &str = "state-mac-key";
    /// Prefix of authorization code entries (`code:<product id>`).
    pub const CODE_PREFIX: &str = "code:";
}

/// How often the device identity is collected again.
pub const IDENTITY_RECHECK: time::Duration = time::Duration::days(1);

/// Collects the device identity (blocking).
pub type IdentityCollector = Arc<dyn Fn() -> DeviceIdentity + Send + Sync>;

/// Least time between two lease-table writes.
pub const LEASE_WRITE_SPACING: std::time::Duration = std::time::Duration::from_secs(1);

/// How heartbeats and lease expiry are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    /// A task sleeps until the next due time (production).
    Automatic,
    /// Only [`AgentHandle::tick`] runs passes (tests on a manual clock).
    Manual,
}

/// Changes the log filter; given by the binary that owns the subscriber.
pub type LogControl = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Everything [`Agent::start`] needs.
pub struct AgentOptions {
    /// Directories and socket.
    pub paths: Paths,
    /// Settings; `None` reads `tessera.toml` from the config dir.
    pub settings: Option<Settings>,
    /// The clock all time comes from.
    pub clock: SharedClock,
    /// How passes are driven.
    pub scheduling: Scheduling,
    /// A secrets store to use instead of opening one per the settings (tests).
    pub secrets: Option<Secrets>,
    /// A marketplace to use instead of the HTTPS client built from the settings (tests).
    pub market: Option<Arc<dyn Marketplace>>,
    /// The device identity; `None` collects the local one.
    pub identity: Option<DeviceIdentity>,
    /// Collects the device identity again for the daily re-check; `None` uses the local
    /// platform sources (or, when `identity` is given, keeps that one). Tests give a fixture.
    pub identity_collector: Option<IdentityCollector>,
    /// Marketplace AK/SK to store in the secrets store at start.
    pub credentials: Option<(String, Zeroizing<String>)>,
    /// Delivery-channel buyer token to store at start.
    pub delivery_token: Option<Zeroizing<String>>,
    /// Log filter control, when the host owns a reloadable subscriber.
    pub log_control: Option<LogControl>,
    /// Where the host writes the log files, and the filter it started with (for `AgentInfo`).
    pub log: Option<(PathBuf, String)>,
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("paths", &self.paths)
            .field("scheduling", &self.scheduling)
            .finish_non_exhaustive()
    }
}

impl AgentOptions {
    /// Options for `paths` with the system clock, automatic scheduling and everything else
    /// from the environment and settings.
    #[must_use]
    pub fn new(paths: Paths, clock: SharedClock) -> Self {
        Self {
            paths,
            settings: None,
            clock,
            scheduling: Scheduling::Automatic,
            secrets: None,
            market: None,
            identity: None,
            identity_collector: None,
            credentials: None,
            delivery_token: None,
            log_control: None,
            log: None,
        }
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another agent serves this user's socket.
    #[error("another agent is already running for this user (socket {0})")]
    AlreadyRunning(PathBuf),
    /// The state dir could not be prepared.
    #[error("cannot prepare the state directory {path}")]
    StateDir {
        /// The dir.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `tessera.toml` is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The secrets store is unusable.
    #[error("cannot open the secrets store")]
    Secrets(#[source] SecretsError),
    /// The database is unusable.
    #[error("cannot open the state database")]
    Db(#[source] DbError),
    /// The marketplace client could not be built.
    #[error("cannot set up the marketplace client")]
    Market(#[source] MarketSetupError),
    /// The socket could not be bound.
    #[error("cannot listen on the agent socket")]
    Endpoint(#[source] EndpointError),
    /// A blocking task failed.
    #[error("an internal start-up task failed: {0}")]
    Internal(String),
}

/// What status reports beyond the product states.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// Agent version.
    pub version: String,
    /// The secrets store in use.
    pub secrets_store: StoreKind,
    /// Why that store (when it is a fallback).
    pub secrets_note: Option<String>,
    /// Descriptors skipped, with why.
    pub descriptor_problems: Vec<String>,
    /// Whether the clock was found set back (offline grace withheld).
    pub clock_tampered: bool,
    /// Whether a stored check record failed its integrity check.
    pub integrity_failures: Vec<String>,
    /// The socket.
    pub socket: PathBuf,
    /// Product states.
    pub snapshot: Snapshot,
}

/// The running agent's logic, shared by the IPC server and the scheduler.
pub struct Agent {
    pub(crate) core: Core,
    pub(crate) paths: Paths,
    identity: std::sync::RwLock<Arc<DeviceIdentity>>,
    identity_cache: Arc<IdentityCache>,
    pub(crate) verifiers: Verifiers,
    pub(crate) http: reqwest::Client,
    pub(crate) log_control: Option<LogControl>,
    pub(crate) log_dir: Option<PathBuf>,
    pub(crate) log_filter: Mutex<Option<String>>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) shutdown_requested: Notify,
    pub(crate) descriptor_problems: Vec<DescriptorError>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Control of a running agent.
#[derive(Debug)]
pub struct AgentHandle {
    agent: Arc<Agent>,
    server: tessera_ipc::ServerHandle,
    serve_task: Mutex<Option<JoinHandle<()>>>,
    scheduler_task: Mutex<Option<JoinHandle<()>>>,
    lease_writer: Mutex<Option<JoinHandle<()>>>,
    shutdown_rx: watch::Receiver<bool>,
}

/// The device-identity bytes the secrets-file key is derived from.
#[must_use]
pub fn identity_material(identity: &DeviceIdentity) -> Vec<u8> {
    // The machine id is stable across hardware changes that the tolerant matcher forgives;
    // the fingerprint is the fallback where there is no machine id.
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let mut material = b"tessera-agent/identity/v1\0".to_vec();
    if machine_id.trim().is_empty() {
        material.extend_from_slice(identity.fingerprint.as_str().as_bytes());
    } else {
        material.extend_from_slice(machine_id.trim().as_bytes());
    }
    material
}

fn default_usage_id(identity: &DeviceIdentity) -> String {
    use sha2::Digest;
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default();
    let mut h = sha2::Sha256::new();
    h.update(b"tessera-usage-id/v1\0");
    h.update(user.as_bytes());
    h.update([0]);
    h.update(identity_material(identity));
    hex::encode(&h.finalize()[..16])
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StartError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StartError::Internal(e.to_string()))
}

impl Agent {
    /// Starts an agent: refuses when another serves the socket, opens secrets and state, loads
    /// products, binds the socket and starts serving (and scheduling, when automatic).
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn start(options: AgentOptions) -> Result<AgentHandle, StartError> {
        let AgentOptions {
            paths,
            settings,
            clock,
            scheduling,
            secrets,
            market,
            identity,
            identity_collector,
            credentials,
            delivery_token,
            log_control,
            log,
        } = options;
        let endpoint = Endpoint::at(paths.socket.clone());
        if tessera_ipc::probe_existing(&endpoint)
            .await
            .map_err(StartError::Endpoint)?
            == ProbeOutcome::Alive
        {
            return Err(StartError::AlreadyRunning(paths.socket.clone()));
        }
        crate::paths::create_private_dir(&paths.state_dir).map_err(|source| {
            StartError::StateDir {
                path: paths.state_dir.clone(),
                source,
            }
        })?;
        let settings = match settings {
            Some(s) => s,
            None => Settings::load(&paths.config_file())?,
        };
        let collector: IdentityCollector = match (identity_collector, &identity) {
            (Some(c), _) => c,
            (None, Some(fixed)) => {
                let fixed = fixed.clone();
                Arc::new(move || fixed.clone())
            }
            (None, None) => Arc::new(tessera_fingerprint::collect_local),
        };
        let identity_cache = {
            let c = collector.clone();
            Arc::new(IdentityCache::with_collector(
                move || c(),
                clock.clone(),
                IDENTITY_RECHECK,
            ))
        };
        // The cache's day starts now, with the identity in use.
        let collected = {
            let cache = identity_cache.clone();
            blocking(move || cache.refresh()).await?
        };
        let identity = identity.map_or(collected, Arc::new);
        let secrets = match secrets {
            Some(s) => s,
            None => {
                let choice = settings.secrets.store;
                let file = paths.secrets_file();
                let material = identity_material(&identity);
                blocking(move || Secrets::open(choice, &file, &material))
                    .await?
                    .map_err(StartError::Secrets)?
            }
        };
        tracing::info!(store = ?secrets.kind(), note = ?secrets.note(), "secrets store chosen");
        {
            let s = secrets.clone();
            blocking(move || -> Result<(), SecretsError> {
                if let Some((ak, sk)) = credentials {
                    s.set(secret_names::ACCESS_KEY, ak.as_bytes())?;
                    s.set(secret_names::SECRET_KEY, sk.as_bytes())?;
                }
                if let Some(token) = delivery_token {
                    s.set(secret_names::DELIVERY_TOKEN, token.as_bytes())?;
                }
                Ok(())
            })
            .await?
            .map_err(StartError::Secrets)?;
        }
        let mac_key = {
            let s = secrets.clone();
            blocking(move || s.get_or_create_random(secret_names::STATE_MAC_KEY, 32))
                .await?
                .map_err(StartError::Secrets)?
        };
        let db = Db::open(&paths.database(), mac_key)
            .await
            .map_err(StartError::Db)?;

        let mut dirs = Vec::new();
        if let Some(sys) = &paths.system_products_dir {
            dirs.push(sys.clone());
        }
        dirs.push(paths.user_products_dir());
        let mut catalog = Catalog::load(&dirs);
        let verifiers = Verifiers::build(&mut catalog);
        let descriptor_problems = catalog.problems.clone();

        let http = crate::market_http::http_client(settings.marketplace.ca_file.as_deref())
            .map_err(StartError::Market)?;
        let market: Option<Arc<dyn Marketplace>> = match market {
            Some(m) => Some(m),
            None => {
                let s = secrets.clone();
                let creds = blocking(move || -> Result<Option<Credentials>, SecretsError> {
                    let ak = s.get(secret_names::ACCESS_KEY)?;
                    let sk = s.get(secret_names::SECRET_KEY)?;
                    Ok(match (ak, sk) {
                        (Some(ak), Some(sk)) => Some(Credentials::new(
                            String::from_utf8_lossy(&ak).into_owned(),
                            String::from_utf8_lossy(&sk).into_owned(),
                        )),
                        _ => None,
                    })
                })
                .await?
                .map_err(StartError::Secrets)?;
                match creds {
                    Some(c) => Some(Arc::new(
                        KooMarket::from_settings(&settings.marketplace, c, clock.clone())
                            .map_err(StartError::Market)?,
                    )),
                    None => {
                        tracing::warn!(
                            "no marketplace credentials stored; authorization codes cannot be checked"
                        );
                        None
                    }
                }
            }
        };

        // State from the database; codes from the secrets store.
        let codes = db.codes().await.map_err(StartError::Db)?;
        let licenses = db.licenses().await.map_err(StartError::Db)?;
        let stored_time = db.trusted_time().await.map_err(StartError::Db)?;
        let stored_leases = db.leases().await.map_err(StartError::Db)?;
        let code_values = {
            let s = secrets.clone();
            let pids: Vec<String> = codes.iter().map(|c| c.product_id.clone()).collect();
            blocking(
                move || -> Result<HashMap<String, Zeroizing<String>>, SecretsError> {
                    let mut out = HashMap::new();
                    for pid in pids {
                        if let Some(v) = s.get(&format!("{}{pid}", secret_names::CODE_PREFIX))? {
                            out.insert(
                                pid,
                                Zeroizing::new(String::from_utf8_lossy(&v).into_owned()),
                            );
                        }
                    }
                    Ok(out)
                },
            )
            .await?
            .map_err(StartError::Secrets)?
        };
        let now = clock.now();
        let (trusted, time_row_forged) = match stored_time {
            Some((t, ok)) => {
                if !ok {
                    tracing::warn!(
                        "the trusted-time record failed its integrity check; offline grace withheld"
                    );
                }
                (t, !ok)
            }
            None => (TrustedTime::new(now), false),
        };
        let usage_id = settings
            .marketplace
            .usage_id
            .clone()
            .unwrap_or_else(|| default_usage_id(&identity));
        let state = CoreState {
            trusted,
            time_row_forged,
            persisted_high_water: trusted.high_water,
            codes: codes
                .into_iter()
                .map(|c| (c.product_id.clone(), c))
                .collect(),
            code_values,
            licenses: licenses
                .into_iter()
                .map(|l| (l.product_id.clone(), l))
                .collect::<BTreeMap<_, _>>(),
            snapshot: Snapshot::empty(now),
            leases: {
                // Expired ones go at the first pass; sessions that never come back let theirs run out.
                let mut table = LeaseTable::default();
                for lease in stored_leases {
                    table.restore(lease);
                }
                table
            },
            sessions: HashMap::new(),
            used: HashSet::new(),
            used_on: HashMap::new(),
            retry: HashMap::new(),
            upgrade_offers: HashMap::new(),
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let agent = Arc::new(Agent {
            core: Core {
                clock,
                catalog,
                settings,
                db,
                secrets,
                market,
                state: Mutex::new(state),
                server: OnceLock::new(),
                pass_lock: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
                leases_changed: Notify::new(),
                usage_id,
            },
            paths,
            identity: std::sync::RwLock::new(identity),
            identity_cache,
            verifiers,
            http,
            log_control,
            log_dir: log.as_ref().map(|(d, _)| d.clone()),
            log_filter: Mutex::new(log.map(|(_, f)| f)),
            shutdown_tx,
            shutdown_requested: Notify::new(),
            descriptor_problems,
        });
        agent.reverify_licenses().await;
        let to_persist = {
            let mut st = agent.core.lock();
            agent.core.observe_time(&mut st)
        };
        if let Some(t) = to_persist
            && let Err(e) = agent.core.db.put_trusted_time(&t).await
        {
            tracing::error!(error = %e, "could not persist trusted time");
        }
        agent.core.recompute();

        let server_config = ServerConfig {
            max_connections_per_user: agent.core.settings.ipc.max_connections,
            ..ServerConfig::default()
        };
        let server = IpcServer::bind(&endpoint, server_config)
            .await
            .map_err(|e| match e {
                EndpointError::AlreadyRunning(p) => StartError::AlreadyRunning(p),
                other => StartError::Endpoint(other),
            })?;
        let server_handle = server.handle();
        let _ = agent.core.server.set(server_handle.clone());
        let serve_task = tokio::spawn(server.serve(agent.clone()));
        let scheduler_task = (scheduling == Scheduling::Automatic).then(|| {
            let agent = agent.clone();
            tokio::spawn(async move { agent.run_scheduler().await })
        });
        let lease_writer = {
            let agent = agent.clone();
            tokio::spawn(async move { agent.run_lease_writer().await })
        };
        tracing::info!(socket = %agent.paths.socket.display(), version = env!("CARGO_PKG_VERSION"), "agent started");
        Ok(AgentHandle {
            agent,
            server: server_handle,
            serve_task: Mutex::new(Some(serve_task)),
            scheduler_task: Mutex::new(scheduler_task),
            lease_writer: Mutex::new(Some(lease_writer)),
            shutdown_rx,
        })
    }

    /// Writes the leases after each change, at most once per [`LEASE_WRITE_SPACING`], forever.
    /// Idle, it waits without waking.
    async fn run_lease_writer(&self) {
        loop {
            self.core.leases_changed.notified().await;
            self.core.persist_leases().await;
            // Checkout bursts coalesce into one write; a change meanwhile leaves a permit behind.
            tokio::time::sleep(LEASE_WRITE_SPACING).await;
        }
    }

    /// The device identity in use.
    pub(crate) fn identity(&self) -> Arc<DeviceIdentity> {
        self.identity
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Once a day (by the agent's clock) collects the identity again; when the fingerprint or
    /// the hardware id changed, takes the new one and re-verifies every License against it.
    pub(crate) async fn recheck_identity(&self) {
        let cache = self.identity_cache.clone();
        let Ok(fresh) = tokio::task::spawn_blocking(move || cache.get()).await else {
            tracing::error!("the identity re-check task failed");
            return;
        };
        let current = self.identity();
        if Arc::ptr_eq(&fresh, &current)
            || (fresh.fingerprint == current.fingerprint
                && fresh.hardware_id == current.hardware_id)
        {
            return;
        }
        tracing::warn!("the device identity changed; re-verifying Licenses");
        *self
            .identity
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        self.reverify_licenses().await;
        self.core.recompute();
    }

    /// Sleeps until the next due pass or an early wake, forever.
    async fn run_scheduler(&self) {
        loop {
            self.recheck_identity().await;
            let next = self.core.pass().await;
            let wait = {
                let st = self.core.lock();
                next - self.core.trusted_now(&st)
            };
            // A wall-clock wait, capped so a suspended machine or a clock step is noticed within
            // the hour; at least a second so a due-now loop cannot spin.
            let secs = wait.whole_seconds().clamp(1, 3600);
            let sleep = std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(3600));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.core.wake.notified() => {}
            }
        }
    }

    fn status(&self) -> AgentStatus {
        let st = self.core.lock();
        AgentStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            secrets_store: self.core.secrets.kind(),
            secrets_note: self.core.secrets.note().map(str::to_owned),
            descriptor_problems: self
                .descriptor_problems
                .iter()
                .map(ToString::to_string)
                .collect(),
            clock_tampered: st.trusted.tampered() || st.time_row_forged,
            integrity_failures: st
                .codes
                .values()
                .filter(|c| !c.integrity_ok)
                .map(|c| format!("code record of {}", c.product_id))
                .chain(st.time_row_forged.then(|| "trusted-time record".to_owned()))
                .collect(),
            socket: self.paths.socket.clone(),
            snapshot: Core::snapshot_of(&st),
        }
    }
}

impl Agent {
    /// Agent-level status, as `AgentInfo` answers it over IPC.
    pub(crate) fn agent_info(&self) -> tessera_ipc::AgentInfo {
        let status = self.status();
        let store = serde_json::to_value(status.secrets_store)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        tessera_ipc::AgentInfo {
            version: status.version,
            pid: std::process::id(),
            secrets_store: store,
            secrets_note: status.secrets_note,
            descriptor_problems: status.descriptor_problems,
            clock_tampered: status.clock_tampered,
            integrity_failures: status.integrity_failures,
            socket: status.socket,
            state_dir: self.paths.state_dir.clone(),
            log_dir: self.log_dir.clone(),
            log_filter: self
                .log_filter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

impl AgentHandle {
    /// The socket the agent listens on.
    #[must_use]
    pub fn socket(&self) -> &std::path::Path {
        &self.agent.paths.socket
    }

    /// Runs one scheduler pass now (identity re-check when a day old, heartbeats due, usage
    /// reports, lease expiry, state).
    pub async fn tick(&self) {
        self.agent.recheck_identity().await;
        self.agent.core.pass().await;
    }

    /// Every product's state now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.agent.core.snapshot()
    }

    /// Status: products plus secrets store, descriptor problems, tamper flags.
    #[must_use]
    pub fn status(&self) -> AgentStatus {
        self.agent.status()
    }

    /// Counters of the IPC server.
    #[must_use]
    pub fn ipc_stats(&self) -> tessera_ipc::ServerStats {
        self.server.stats()
    }

    /// Resolves when a client asked the agent to stop (`Shutdown` over IPC).
    pub async fn stop_requested(&self) {
        let mut rx = self.shutdown_rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// The user accepts the pending upgrade of `product_id` (as the CLI or tray would).
    ///
    /// # Errors
    /// When no upgrade is known for the product.
    pub async fn accept_update(&self, product_id: &str) -> Result<(), tessera_ipc::RemoteError> {
        self.agent.accept_update(product_id).await
    }

    /// Stops: tells every client with `EVENT_AGENT_CLOSING`, closes the sessions and the
    /// socket, and closes the database.
    pub async fn shutdown(&self, reason: &str, restarting: bool) {
        let event = Event::AgentClosing {
            reason: reason.to_owned(),
            restarting,
        };
        if let Err(e) = self.server.broadcast_event(&event, |_| true) {
            tracing::warn!(error = %e, "could not announce the shutdown");
        }
        let scheduler = self
            .scheduler_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = scheduler {
            t.abort();
        }
        self.server.shutdown(reason);
        let writer = self
            .lease_writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = writer {
            t.abort();
        }
        let serve = self
            .serve_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = serve {
            let _ = t.await;
        }
        // Sessions resume their leases with the next agent.
        self.agent.core.persist_leases().await;
        self.agent.core.db.close().await;
        tracing::info!("agent stopped");
    }
}
