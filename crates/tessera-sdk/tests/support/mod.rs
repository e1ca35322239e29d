//! A stand-in agent on `tessera-ipc`'s server, started in-process on a private socket, with
//! controls to change the product's state, push events, and stop or restart the agent.
//!
//! It keeps what a real agent keeps across a restart (the product state) in [`World`] and what
//! a real agent loses (sessions, leases) in each [`StandInAgent`] instance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tessera_ipc::proto::LicenseSource;
use tessera_ipc::{
    Call, Endpoint, ErrorCode, IpcServer, Lease, LeaseId, ReadLimits, RemoteError, Reply,
    ServerConfig, ServerHandle, SessionHandler, SessionInfo,
};
use tessera_types::events::{DeliveredLicense, DeliveryStatus, LicenseKind};
use tessera_types::state::{FeatureState, ProductModel};
use tessera_types::{Clock, Event, LicenseState, ManualClock, ProductState, Snapshot, StateReason};

pub const PRODUCT: &str = "foocad";
pub const LICENSE_STRING: &str = "TESSERA-LICENSE-STRING-FOR-TESTS";

/// What survives an agent restart.
#[derive(Debug)]
pub struct World {
    pub clock: ManualClock,
    pub product: Mutex<ProductState>,
    /// Calls the applications made, by op name, for assertions.
    pub calls: Mutex<Vec<String>>,
}

impl World {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            clock: ManualClock::at_unix(1_800_000_000),
            product: Mutex::new(product_state(LicenseState::Active, StateReason::Licensed)),
            calls: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

pub fn product_state(state: LicenseState, reason: StateReason) -> ProductState {
    ProductState {
        product_id: PRODUCT.into(),
        display_name: Some("FooCAD".into()),
        model: Some(ProductModel::LicenseFile),
        state,
        reason,
        message: (state == LicenseState::Blocked).then(|| "renew at KooGallery".to_owned()),
        deadline: None,
        expires_at: Some(time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()),
        last_verified_at: None,
        features: vec![
            FeatureState {
                name: "solver".into(),
                seats: Some(2),
                in_use: 0,
                version_ceiling: None,
            },
            FeatureState {
                name: "mesher".into(),
                seats: None,
                in_use: 0,
                version_ceiling: None,
            },
        ],
    }
}

/// One agent process's worth of state.
#[derive(Debug)]
pub struct StandInAgent {
    world: Arc<World>,
    handle: OnceLock<ServerHandle>,
    leases: Mutex<HashMap<String, (String, String)>>, // id → (session, feature)
    next: AtomicU64,
}

impl StandInAgent {
    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::empty(self.world.clock.now());
        snap.upsert(self.world.product.lock().unwrap().clone());
        snap
    }

    fn lease_for(&self, session: &SessionInfo, feature: String) -> Result<Reply, RemoteError> {
        let product = self.world.product.lock().unwrap().clone();
        if product.state == LicenseState::Blocked {
            return Err(RemoteError::new(
                ErrorCode::Blocked,
                "the product is blocked",
            ));
        }
        let Some(granted) = product.feature(&feature) else {
            return Err(RemoteError::new(
                ErrorCode::NotFound,
                format!("feature {feature} is not licensed"),
            ));
        };
        let mut leases = self.leases.lock().unwrap();
        let used = leases.values().filter(|(_, f)| *f == feature).count();
        if granted.seats.is_some_and(|s| used >= s as usize) {
            return Err(RemoteError::new(ErrorCode::NoSeat, "every seat is in use"));
        }
        let id = format!("L{}", self.next.fetch_add(1, Ordering::Relaxed));
        leases.insert(
            id.clone(),
            (session.session_id.to_string(), feature.clone()),
        );
        Ok(Reply::Lease(Lease {
            lease_id: LeaseId(id),
            product_id: PRODUCT.into(),
            feature,
            expires_at: self.world.clock.now() + time::Duration::minutes(15),
        }))
    }

    fn push(&self, session: &SessionInfo, event: &Event, request: u64) {
        if let Some(handle) = self.handle.get() {
            let payload = tessera_ipc::IscEvent::from_event(event).with_request_id(request);
            let msg = tessera_ipc::ServerMsg::Event(tessera_ipc::proto::EventFrame {
                kind: event.kind().code(),
                payload,
            });
            let _ = handle.send(session.session_id, &msg);
        }
    }
}

impl SessionHandler for StandInAgent {
    async fn hello(&self, _session: &SessionInfo) -> Result<Snapshot, RemoteError> {
        Ok(self.snapshot())
    }

    async fn request(
        &self,
        session: &SessionInfo,
        id: u64,
        call: Call,
    ) -> Result<Reply, RemoteError> {
        let op = serde_json::to_value(&call)
            .ok()
            .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_owned))
            .unwrap_or_default();
        self.world.calls.lock().unwrap().push(op);
        match call {
            Call::Status => Ok(Reply::Snapshot(self.snapshot())),
            Call::Checkout { feature, .. } => self.lease_for(session, feature),
            Call::RenewLease { lease_id } => {
                let leases = self.leases.lock().unwrap();
                match leases.get(&lease_id.0) {
                    Some((_, feature)) => Ok(Reply::Lease(Lease {
                        lease_id: lease_id.clone(),
                        product_id: PRODUCT.into(),
                        feature: feature.clone(),
                        expires_at: self.world.clock.now() + time::Duration::minutes(15),
                    })),
                    None => Err(RemoteError::new(ErrorCode::NotFound, "no such lease")),
                }
            }
            Call::Release { lease_id } => match self.leases.lock().unwrap().remove(&lease_id.0) {
                Some(_) => Ok(Reply::Ack),
                None => Err(RemoteError::new(ErrorCode::NotFound, "no such lease")),
            },
            Call::RequestLicense { kind, .. } => {
                let license = match kind {
                    LicenseKind::String => DeliveredLicense::String(LICENSE_STRING.into()),
                    LicenseKind::File => DeliveredLicense::File("/tmp/foocad.lic".into()),
                };
                self.push(
                    session,
                    &Event::LicenseVerify {
                        status: DeliveryStatus::Success,
                        license,
                        message: None,
                    },
                    id,
                );
                Ok(Reply::Ack)
            }
            Call::CheckNewVersions => {
                self.push(session, &Event::UpgradeNotice { available: true }, id);
                Ok(Reply::Ack)
            }
            Call::LicenseVerifyNotify { .. }
            | Call::TrialExpired { .. }
            | Call::UpgradeNotify { .. } => Ok(Reply::Ack),
            Call::ActivateCode { code, .. } if code.0.starts_with("PL") => Ok(Reply::ProductState(
                self.world.product.lock().unwrap().clone(),
            )),
            Call::ActivateCode { .. } => Err(RemoteError::new(
                ErrorCode::BadRequest,
                "the marketplace does not know this code",
            )),
            Call::ImportLicense { source, .. } => match source {
                LicenseSource::Content { content } if content.0 == LICENSE_STRING => Ok(
                    Reply::ProductState(self.world.product.lock().unwrap().clone()),
                ),
                LicenseSource::Path { path } if path.exists() => Ok(Reply::ProductState(
                    self.world.product.lock().unwrap().clone(),
                )),
                _ => Err(RemoteError::new(
                    ErrorCode::BadRequest,
                    "not a valid License",
                )),
            },
            _ => Err(RemoteError::new(
                ErrorCode::Unsupported,
                "not in the stand-in agent",
            )),
        }
    }
}

fn server_config() -> ServerConfig {
    ServerConfig {
        agent_version: "0.0.0-stand-in".into(),
        read_limits: ReadLimits {
            idle_timeout: None,
            ..ReadLimits::default()
        },
        close_grace: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}

/// A stand-in agent on its own runtime thread, on a socket in a private temporary directory.
#[derive(Debug)]
pub struct AgentHarness {
    pub world: Arc<World>,
    pub endpoint: Endpoint,
    runtime: tokio::runtime::Runtime,
    running: Option<(Arc<StandInAgent>, ServerHandle, tokio::task::JoinHandle<()>)>,
    _dir: tempfile::TempDir,
}

impl AgentHarness {
    /// Starts an agent.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::at(dir.path().join("run").join("agent.sock"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut harness = Self {
            world: World::new(),
            endpoint,
            runtime,
            running: None,
            _dir: dir,
        };
        harness.up();
        harness
    }

    pub fn socket_path(&self) -> PathBuf {
        self.endpoint.path().to_owned()
    }

    /// Starts a fresh agent instance (no sessions, no leases) on the same socket.
    pub fn up(&mut self) {
        assert!(self.running.is_none(), "already up");
        let agent = Arc::new(StandInAgent {
            world: self.world.clone(),
            handle: OnceLock::new(),
            leases: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let endpoint = self.endpoint.clone();
        let served = agent.clone();
        let (handle, task) = self.runtime.block_on(async move {
            let server = IpcServer::bind(&endpoint, server_config()).await.unwrap();
            let handle = server.handle();
            (handle.clone(), tokio::spawn(server.serve(served)))
        });
        let _ = agent.handle.set(handle.clone());
        self.running = Some((agent, handle, task));
    }

    /// Stops the agent (says goodbye to every session).
    pub fn down(&mut self) {
        if let Some((_, handle, task)) = self.running.take() {
            handle.shutdown("stand-in agent stopping");
            self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("the agent stops")
                    .unwrap();
            });
        }
    }

    /// Leases the current agent instance holds.
    pub fn lease_count(&self) -> usize {
        self.running
            .as_ref()
            .map_or(0, |(agent, _, _)| agent.leases.lock().unwrap().len())
    }

    /// Sessions connected to the current agent instance.
    pub fn session_count(&self) -> usize {
        self.running
            .as_ref()
            .map_or(0, |(_, handle, _)| handle.sessions().len())
    }

    /// Changes the product's state and tells every session, as the real agent does.
    pub fn set_state(&self, state: LicenseState, reason: StateReason) {
        let new = product_state(state, reason);
        *self.world.product.lock().unwrap() = new.clone();
        self.broadcast(&Event::LicenseState(new));
    }

    /// Pushes `event` to every session.
    pub fn broadcast(&self, event: &Event) {
        if let Some((_, handle, _)) = &self.running {
            handle.broadcast_event(event, |_| true).unwrap();
        }
    }
}

impl Drop for AgentHarness {
    fn drop(&mut self) {
        self.down();
    }
}

/// Polls `f` until it holds, failing the test after a generous bound (real I/O is involved).
pub fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
