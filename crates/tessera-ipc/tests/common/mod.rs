//! A small agent behind the IPC server, and helpers to start it on a temporary socket.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_ipc::endpoint::Endpoint;
use tessera_ipc::frame::{ReadLimits, decode_body, encode_frame, read_frame, write_frame};
use tessera_ipc::proto::{AppInfo, Hello};
use tessera_ipc::{
    Backoff, Call, ClientConfig, ClientMsg, CloseReason, ErrorCode, IpcServer, Lease, LeaseId,
    PROTOCOL_VERSION, RemoteError, Reply, ServerConfig, ServerHandle, ServerMsg, SessionHandler,
    SessionId, SessionInfo,
};
use tessera_types::state::{FeatureState, ProductModel};
use tessera_types::{Clock, LicenseState, ManualClock, ProductState, Snapshot, StateReason};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// Bound on every wait for real I/O in these tests; reaching it means the test failed.
pub const IO_BOUND: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct TestAgent {
    pub clock: ManualClock,
    pub hellos: Mutex<Vec<SessionInfo>>,
    pub closed: Mutex<Vec<(SessionId, CloseReason)>>,
    leases: AtomicU64,
}

impl TestAgent {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            clock: ManualClock::at_unix(1_800_000_000),
            hellos: Mutex::new(Vec::new()),
            closed: Mutex::new(Vec::new()),
            leases: AtomicU64::new(0),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::empty(self.clock.now());
        snap.upsert(product_state(LicenseState::Active));
        snap
    }

    pub fn hellos(&self) -> Vec<SessionInfo> {
        self.hellos.lock().unwrap().clone()
    }
}

pub fn product_state(state: LicenseState) -> ProductState {
    ProductState {
        product_id: "foocad".into(),
        display_name: Some("FooCAD".into()),
        model: Some(ProductModel::LicenseFile),
        state,
        reason: if state == LicenseState::Blocked {
            StateReason::Expired
        } else {
            StateReason::Licensed
        },
        message: None,
        deadline: None,
        expires_at: None,
        last_verified_at: None,
        features: vec![FeatureState {
            name: "solver".into(),
            seats: Some(2),
            in_use: 0,
            version_ceiling: None,
        }],
    }
}

impl SessionHandler for TestAgent {
    async fn hello(&self, session: &SessionInfo) -> Result<Snapshot, RemoteError> {
        self.hellos.lock().unwrap().push(session.clone());
        if session.app.name == "unwelcome" {
            return Err(RemoteError::new(ErrorCode::Denied, "not today"));
        }
        Ok(self.snapshot())
    }

    async fn request(
        &self,
        session: &SessionInfo,
        _id: u64,
        call: Call,
    ) -> Result<Reply, RemoteError> {
        match call {
            Call::Status => Ok(Reply::Snapshot(self.snapshot())),
            Call::Checkout { feature, .. } if feature == "solver" => {
                let n = self.leases.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(Reply::Lease(Lease {
                    lease_id: LeaseId(format!("L-{n}")),
                    product_id: session.app.product_id.clone(),
                    feature,
                    expires_at: self.clock.now() + time::Duration::minutes(15),
                }))
            }
            Call::Checkout { feature, .. } => Err(RemoteError::new(
                ErrorCode::NotFound,
                format!("feature {feature} is not licensed"),
            )),
            Call::Release { .. } => Ok(Reply::Ack),
            // Never answers: lets tests see the client's request timeout.
            Call::Fingerprint => std::future::pending().await,
            _ => Err(RemoteError::new(
                ErrorCode::Unsupported,
                "not in this test agent",
            )),
        }
    }

    fn closed(&self, session: &SessionInfo, reason: CloseReason) {
        self.closed
            .lock()
            .unwrap()
            .push((session.session_id, reason));
    }
}

pub fn fast_config() -> ServerConfig {
    ServerConfig {
        agent_version: "9.9.9-test".into(),
        read_limits: ReadLimits {
            frame_deadline: Duration::from_millis(300),
            ..ReadLimits::default()
        },
        handshake_timeout: Duration::from_secs(2),
        max_connections_per_user: 8,
        outbound_queue: 16,
        max_in_flight: 4,
        close_grace: Duration::from_millis(500),
    }
}

pub struct Running {
    pub handle: ServerHandle,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.handle.shutdown("test over");
        tokio::time::timeout(IO_BOUND, self.task)
            .await
            .expect("server stops within the bound")
            .unwrap();
    }
}

pub async fn start(endpoint: &Endpoint, agent: Arc<TestAgent>, config: ServerConfig) -> Running {
    let server = IpcServer::bind(endpoint, config).await.expect("bind");
    let handle = server.handle();
    let task = tokio::spawn(server.serve(agent));
    Running { handle, task }
}

pub fn app(name: &str) -> AppInfo {
    AppInfo {
        product_id: "foocad".into(),
        name: name.into(),
        version: "1.0".into(),
        pid: std::process::id(),
    }
}

pub fn client_config(endpoint: &Endpoint, name: &str) -> ClientConfig {
    let mut config = ClientConfig::new(endpoint.clone(), app(name));
    config.request_timeout = Duration::from_secs(5);
    config.reconnect = Some(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    });
    config
}

pub fn hello_frame(protocol: u32) -> Vec<u8> {
    encode_frame(
        &ClientMsg::Hello(Hello {
            protocol,
            app: app("raw"),
            resume_session: None,
        }),
        tessera_ipc::MAX_FRAME_LEN,
    )
    .unwrap()
}

/// Connects a raw socket and completes the handshake; returns the stream and the Welcome.
pub async fn raw_session(endpoint: &Endpoint) -> (UnixStream, ServerMsg) {
    let mut stream = UnixStream::connect(endpoint.path()).await.unwrap();
    write_frame(&mut stream, &hello_frame(PROTOCOL_VERSION))
        .await
        .unwrap();
    let welcome = next_msg(&mut stream).await.expect("welcome");
    (stream, welcome)
}

/// The next message from the server, or `None` when it closed the connection.
pub async fn next_msg(stream: &mut UnixStream) -> Option<ServerMsg> {
    let limits = ReadLimits::default();
    let body = tokio::time::timeout(IO_BOUND, read_frame(stream, &limits))
        .await
        .expect("server answers or closes within the bound")
        .ok()??;
    Some(decode_body(&body).unwrap())
}

/// Waits until the server closed `stream` (reads until end of stream or reset).
pub async fn assert_closed_by_server(stream: &mut UnixStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(IO_BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "server did not close the connection");
}
