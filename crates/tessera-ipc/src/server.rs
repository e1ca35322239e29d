//! The agent's side: bind, accept, check the peer, run one task per connection, hand requests to
//! a [`SessionHandler`], push messages to sessions.
//!
//! Nothing a client does can block the agent: every session has a bounded outbound queue, and a
//! client that lets its queue fill is disconnected rather than waited for. Requests on one
//! connection run concurrently up to a cap; beyond it the client gets [`ErrorCode::Busy`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use tessera_types::{Event, Snapshot};

use crate::endpoint::{Endpoint, EndpointError, PeerIdentity, UserId, current_user};
use crate::event::IscEvent;
use crate::frame::{FrameError, ReadLimits, decode_body, encode_frame, read_frame, write_frame};
use crate::platform::{Listener, Stream};
use crate::proto::{
    AppInfo, Call, ClientMsg, ErrorCode, EventFrame, Hello, PROTOCOL_VERSION, RejectCode,
    Rejection, RemoteError, Reply, Request, ServerMsg, SessionId, Welcome,
};

/// Limits and identity of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Reported in `Welcome`.
    pub agent_version: String,
    /// Frame cap, frame deadline and idle timeout for reading client frames.
    pub read_limits: ReadLimits,
    /// Time a client has after connecting to complete its `Hello`.
    pub handshake_timeout: Duration,
    /// Open connections one user may have (each SDK handle, CLI and tray uses one).
    pub max_connections_per_user: usize,
    /// Frames queued for one session before it counts as too slow and is disconnected.
    pub outbound_queue: usize,
    /// Requests handled concurrently for one connection.
    pub max_in_flight: usize,
    /// Time sessions get to flush their last frames on close and shutdown.
    pub close_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            read_limits: ReadLimits {
                idle_timeout: None,
                ..ReadLimits::default()
            },
            handshake_timeout: Duration::from_secs(5),
            max_connections_per_user: 64,
            outbound_queue: 256,
            max_in_flight: 32,
            close_grace: Duration::from_secs(2),
        }
    }
}

/// A connected, greeted session as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session (the resumed one when `resumed`).
    pub session_id: SessionId,
    /// Kernel-reported identity of the peer.
    pub peer: PeerIdentity,
    /// What the client says it is.
    pub app: AppInfo,
    /// Whether the client re-attached a previous session.
    pub resumed: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client said `Goodbye`.
    Goodbye,
    /// The client closed the connection.
    PeerClosed,
    /// The client sent something that is not a valid frame or message.
    ProtocolError,
    /// The client did not read its messages fast enough.
    SlowClient,
    /// The agent disconnected it ([`ServerHandle::disconnect`]).
    Disconnected,
    /// The server is shutting down.
    Shutdown,
}

/// The agent's logic behind the socket.
///
/// Futures run on their own tasks, concurrently for one session; they should not hold locks
/// across awaits that other requests need.
pub trait SessionHandler: Send + Sync + 'static {
    /// A client completed its `Hello`; answer the snapshot for `Welcome`, or refuse the session.
    fn hello(
        &self,
        session: &SessionInfo,
    ) -> impl Future<Output = Result<Snapshot, RemoteError>> + Send;

    /// A request. `id` is the client's request id, for events that answer it later
    /// ([`IscEvent::with_request_id`]).
    fn request(
        &self,
        session: &SessionInfo,
        id: u64,
        call: Call,
    ) -> impl Future<Output = Result<Reply, RemoteError>> + Send;

    /// The session's connection ended. Leases stay until the agent decides (the client may
    /// resume the session).
    fn closed(&self, session: &SessionInfo, reason: CloseReason) {
        let _ = (session, reason);
    }
}

/// Counters for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted from our user.
    pub accepted: u64,
    /// Connections refused because the peer is another user (or unidentifiable).
    pub refused_peers: u64,
    /// Connections refused because the user had too many open.
    pub refused_over_cap: u64,
    /// Connections closed for a bad frame or message.
    pub protocol_errors: u64,
    /// Sessions disconnected for not reading.
    pub slow_disconnects: u64,
    /// Sessions currently greeted.
    pub sessions: u64,
}

/// Why a message could not be pushed to a session.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// No live session has that id.
    #[error("no session {0}")]
    NoSession(SessionId),
    /// The message could not be framed.
    #[error("message cannot be sent")]
    Frame(#[source] FrameError),
}

type Frame = Arc<[u8]>;

#[derive(Debug)]
struct SessionEntry {
    info: SessionInfo,
    connection: u64,
    outbound: mpsc::Sender<Frame>,
    kill: watch::Sender<Option<CloseReason>>,
    // None: every kind (the default).
    subscriptions: Option<Vec<u32>>,
}

#[derive(Debug, Default)]
struct Registry {
    sessions: HashMap<SessionId, SessionEntry>,
    connections_per_user: HashMap<UserId, usize>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_peers: AtomicU64,
    refused_over_cap: AtomicU64,
    protocol_errors: AtomicU64,
    slow_disconnects: AtomicU64,
    next_connection: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    config: ServerConfig,
    registry: Mutex<Registry>,
    counters: Counters,
    shutdown: watch::Sender<Option<String>>,
    user: UserId,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough to
        // serve; refusing every later connection would be worse.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn kill(&self, entry: &SessionEntry, reason: CloseReason) {
        if reason == CloseReason::SlowClient {
            self.counters
                .slow_disconnects
                .fetch_add(1, Ordering::Relaxed);
            warn!(session = %entry.info.session_id, app = %entry.info.app.name,
                "disconnecting a client that does not read its messages");
        }
        entry.kill.send_replace(Some(reason));
    }

    fn push(&self, entry: &SessionEntry, frame: &Frame) {
        match entry.outbound.try_send(frame.clone()) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.kill(entry, CloseReason::SlowClient),
        }
    }
}

/// A bound endpoint, ready to [`serve`](IpcServer::serve).
#[derive(Debug)]
pub struct IpcServer {
    listener: Listener,
    shared: Arc<Shared>,
}

/// Cloneable control of a running server: push messages, list and drop sessions, shut down.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl IpcServer {
    /// Binds `endpoint`: creates its directory private to the user, takes the single-instance
    /// lock, removes a stale socket, binds and restricts the socket to the user.
    ///
    /// # Errors
    /// [`EndpointError::AlreadyRunning`] when another agent serves the endpoint; other
    /// [`EndpointError`]s when the directory is unsafe or the OS refuses.
    pub async fn bind(endpoint: &Endpoint, config: ServerConfig) -> Result<Self, EndpointError> {
        let listener = Listener::bind(endpoint.path()).await?;
        let (shutdown, _) = watch::channel(None);
        info!(endpoint = %endpoint, "agent IPC listening");
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                config,
                registry: Mutex::new(Registry::default()),
                counters: Counters::default(),
                shutdown,
                user: current_user()?,
            }),
        })
    }

    /// A handle to control the server once it runs.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Accepts and serves connections until [`ServerHandle::shutdown`], then says `Goodbye` to
    /// every session, waits up to the close grace for them to finish, and removes the socket.
    pub async fn serve<H: SessionHandler>(self, handler: Arc<H>) {
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(&mut connections, &handler, stream, peer),
                    Err(e) => {
                        // Typically EMFILE: keep serving the sessions we have, retry shortly.
                        warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = shutting_down(&mut shutdown) => break,
            }
        }
        drop(self.listener);
        let grace = self.shared.config.close_grace;
        let drained = tokio::time::timeout(grace * 2, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
        }
        info!("agent IPC stopped");
    }

    fn admit<H: SessionHandler>(
        &self,
        connections: &mut JoinSet<()>,
        handler: &Arc<H>,
        stream: Stream,
        peer: std::io::Result<PeerIdentity>,
    ) {
        let shared = &self.shared;
        let peer = match peer {
            Ok(peer) if peer.user == shared.user => peer,
            Ok(peer) => {
                shared
                    .counters
                    .refused_peers
                    .fetch_add(1, Ordering::Relaxed);
                warn!(peer_user = %peer.user, peer_pid = ?peer.pid,
                    "refused IPC connection from another user");
                return;
            }
            Err(e) => {
                shared
                    .counters
                    .refused_peers
                    .fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "refused IPC connection: peer credentials unavailable");
                return;
            }
        };
        let over_cap = {
            let mut reg = shared.registry();
            let open = reg
                .connections_per_user
                .entry(peer.user.clone())
                .or_insert(0);
            if *open >= shared.config.max_connections_per_user {
                true
            } else {
                *open += 1;
                false
            }
        };
        if over_cap {
            shared
                .counters
                .refused_over_cap
                .fetch_add(1, Ordering::Relaxed);
            warn!(peer_user = %peer.user, peer_pid = ?peer.pid,
                cap = shared.config.max_connections_per_user,
                "refused IPC connection: too many connections for this user");
            let rejection = rejected(
                RejectCode::TooManyConnections,
                format!(
                    "at most {} connections per user",
                    shared.config.max_connections_per_user
                ),
            );
            let grace = shared.config.close_grace;
            connections.spawn(async move {
                let (_, mut wr) = tokio::io::split(stream);
                if let Ok(frame) = encode_frame(&rejection, crate::MAX_FRAME_LEN) {
                    let _ = tokio::time::timeout(grace, write_frame(&mut wr, &frame)).await;
                }
            });
            return;
        }
        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let connection = shared
            .counters
            .next_connection
            .fetch_add(1, Ordering::Relaxed);
        let guard = ConnectionSlot {
            shared: shared.clone(),
            user: peer.user.clone(),
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let conn = Connection {
                shared: guard.shared.clone(),
                peer,
                connection,
            };
            conn.run(handler, stream).await;
            drop(guard);
        });
    }
}

/// Releases the user's connection slot however the connection task ends.
struct ConnectionSlot {
    shared: Arc<Shared>,
    user: UserId,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut reg = self.shared.registry();
        if let Some(open) = reg.connections_per_user.get_mut(&self.user) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                reg.connections_per_user.remove(&self.user);
            }
        }
    }
}

fn rejected(code: RejectCode, message: String) -> ServerMsg {
    ServerMsg::Rejected(Rejection {
        code,
        message,
        agent_protocol: PROTOCOL_VERSION,
    })
}

struct Connection {
    shared: Arc<Shared>,
    peer: PeerIdentity,
    connection: u64,
}

enum Inbound {
    Msg(ClientMsg),
    Closed,
    Failed(FrameError),
}

impl Connection {
    async fn run<H: SessionHandler>(self, handler: Arc<H>, stream: Stream) {
        let (rd, wr) = tokio::io::split(stream);
        let config = &self.shared.config;
        let (outbound, outbound_rx) = mpsc::channel::<Frame>(config.outbound_queue.max(2));
        let mut writer = tokio::spawn(write_loop(wr, outbound_rx));
        let (inbound_tx, mut inbound) = mpsc::channel(1);
        let reader = tokio::spawn(read_loop(rd, config.read_limits, inbound_tx));

        let session = self.handshake(&handler, &outbound, &mut inbound).await;
        let reason = match session {
            Some((info, kill_rx)) => {
                let reason = self
                    .serve_session(&handler, &info, &outbound, &mut inbound, kill_rx)
                    .await;
                {
                    let mut reg = self.shared.registry();
                    if reg
                        .sessions
                        .get(&info.session_id)
                        .is_some_and(|e| e.connection == self.connection)
                    {
                        reg.sessions.remove(&info.session_id);
                    }
                }
                debug!(session = %info.session_id, ?reason, "session closed");
                handler.closed(&info, reason);
                Some(reason)
            }
            None => None,
        };
        if reason == Some(CloseReason::Shutdown) {
            let reason = self.shared.shutdown.borrow().clone().unwrap_or_default();
            self.send(&outbound, &ServerMsg::Goodbye { reason });
        }
        reader.abort();
        drop(outbound);
        // Let the last frames (Rejected, Goodbye) out, unless the client is the problem.
        if reason == Some(CloseReason::SlowClient)
            || tokio::time::timeout(config.close_grace, &mut writer)
                .await
                .is_err()
        {
            writer.abort();
        }
    }

    fn send(&self, outbound: &mpsc::Sender<Frame>, msg: &ServerMsg) -> bool {
        match encode_frame(msg, self.shared.config.read_limits.max_len) {
            Ok(frame) => outbound.try_send(frame.into()).is_ok(),
            Err(e) => {
                warn!(error = %e, "dropping an outbound message that cannot be framed");
                false
            }
        }
    }

    fn protocol_error(&self, what: &str, error: Option<&FrameError>) {
        self.shared
            .counters
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        match error {
            Some(e) => warn!(peer_pid = ?self.peer.pid, error = %e,
                source = ?std::error::Error::source(e).map(ToString::to_string),
                "closing IPC connection: {what}"),
            None => warn!(peer_pid = ?self.peer.pid, "closing IPC connection: {what}"),
        }
    }

    async fn handshake<H: SessionHandler>(
        &self,
        handler: &Arc<H>,
        outbound: &mpsc::Sender<Frame>,
        inbound: &mut mpsc::Receiver<Inbound>,
    ) -> Option<(SessionInfo, watch::Receiver<Option<CloseReason>>)> {
        let config = &self.shared.config;
        let mut shutdown = self.shared.shutdown.subscribe();
        let first = tokio::select! {
            first = tokio::time::timeout(config.handshake_timeout, inbound.recv()) => first,
            () = shutting_down(&mut shutdown) => {
                self.send(outbound, &rejected(RejectCode::ShuttingDown, "the agent is stopping".into()));
                return None;
            }
        };
        let hello = match first {
            Ok(Some(Inbound::Msg(ClientMsg::Hello(hello)))) => hello,
            Ok(Some(Inbound::Closed) | None) => return None,
            Ok(Some(Inbound::Failed(e))) => {
                self.protocol_error("bad first frame", Some(&e));
                return None;
            }
            Ok(Some(Inbound::Msg(_))) => {
                self.protocol_error("first message is not Hello", None);
                self.send(
                    outbound,
                    &rejected(
                        RejectCode::BadHello,
                        "the first message must be Hello".into(),
                    ),
                );
                return None;
            }
            Err(_) => {
                self.protocol_error("no Hello within the handshake timeout", None);
                return None;
            }
        };
        if hello.protocol != PROTOCOL_VERSION {
            warn!(client_protocol = hello.protocol, agent_protocol = PROTOCOL_VERSION,
                app = %hello.app.name, "refusing client with another protocol version");
            self.send(
                outbound,
                &rejected(
                    RejectCode::VersionMismatch,
                    format!(
                        "client speaks protocol {}, agent {} speaks protocol {}",
                        hello.protocol, config.agent_version, PROTOCOL_VERSION
                    ),
                ),
            );
            return None;
        }
        let info = self.new_session(hello);
        let snapshot = match handler.hello(&info).await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                info!(app = %info.app.name, error = %e, "handler refused session");
                self.send(outbound, &rejected(RejectCode::Refused, e.message));
                return None;
            }
        };
        let (kill, kill_rx) = watch::channel(None);
        {
            let mut reg = self.shared.registry();
            if reg.sessions.contains_key(&info.session_id) {
                // Another connection resumed the same session meanwhile; first one wins.
                drop(reg);
                self.send(
                    outbound,
                    &rejected(RejectCode::Refused, "session is already attached".into()),
                );
                return None;
            }
            reg.sessions.insert(
                info.session_id,
                SessionEntry {
                    info: info.clone(),
                    connection: self.connection,
                    outbound: outbound.clone(),
                    kill,
                    subscriptions: None,
                },
            );
        }
        info!(session = %info.session_id, app = %info.app.name, app_version = %info.app.version,
            product = %info.app.product_id, peer_pid = ?self.peer.pid, resumed = info.resumed,
            "client connected");
        self.send(
            outbound,
            &ServerMsg::Welcome(Welcome {
                protocol: PROTOCOL_VERSION,
                agent_version: config.agent_version.clone(),
                session_id: info.session_id,
                resumed: info.resumed,
                snapshot,
            }),
        );
        Some((info, kill_rx))
    }

    fn new_session(&self, hello: Hello) -> SessionInfo {
        // A resume is honoured when no live connection holds the id: ids are random v4 UUIDs
        // that only the client that was given one knows, and every peer is already our user.
        let reg = self.shared.registry();
        let (session_id, resumed) = match hello.resume_session {
            Some(id) if !reg.sessions.contains_key(&id) => (id, true),
            _ => (SessionId::new_random(), false),
        };
        SessionInfo {
            session_id,
            peer: self.peer.clone(),
            app: hello.app,
            resumed,
        }
    }

    async fn serve_session<H: SessionHandler>(
        &self,
        handler: &Arc<H>,
        info: &SessionInfo,
        outbound: &mpsc::Sender<Frame>,
        inbound: &mut mpsc::Receiver<Inbound>,
        mut kill: watch::Receiver<Option<CloseReason>>,
    ) -> CloseReason {
        let mut shutdown = self.shared.shutdown.subscribe();
        let in_flight = Arc::new(Semaphore::new(self.shared.config.max_in_flight.max(1)));
        let mut requests = JoinSet::new();
        let reason = loop {
            tokio::select! {
                msg = inbound.recv() => match msg {
                    Some(Inbound::Msg(ClientMsg::Request(request))) => {
                        self.dispatch(handler, info, outbound, &in_flight, &mut requests, request);
                    }
                    Some(Inbound::Msg(ClientMsg::Goodbye)) => break CloseReason::Goodbye,
                    Some(Inbound::Msg(ClientMsg::Hello(_))) => {
                        self.protocol_error("Hello sent twice", None);
                        break CloseReason::ProtocolError;
                    }
                    Some(Inbound::Failed(e)) => {
                        self.protocol_error("bad frame", Some(&e));
                        break CloseReason::ProtocolError;
                    }
                    Some(Inbound::Closed) | None => break CloseReason::PeerClosed,
                },
                Some(_) = requests.join_next(), if !requests.is_empty() => {}
                reason = killed(&mut kill) => break reason,
                () = shutting_down(&mut shutdown) => break CloseReason::Shutdown,
            }
        };
        requests.abort_all();
        reason
    }

    fn dispatch<H: SessionHandler>(
        &self,
        handler: &Arc<H>,
        info: &SessionInfo,
        outbound: &mpsc::Sender<Frame>,
        in_flight: &Arc<Semaphore>,
        requests: &mut JoinSet<()>,
        Request { id, call }: Request,
    ) {
        if let Call::Subscribe { kinds } = &call {
            let mut reg = self.shared.registry();
            if let Some(entry) = reg.sessions.get_mut(&info.session_id) {
                entry.subscriptions = (!kinds.is_empty()).then(|| kinds.clone());
            }
            drop(reg);
            self.reply(
                info,
                outbound,
                ServerMsg::Reply {
                    re: id,
                    reply: Reply::Ack,
                },
            );
            return;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let error = RemoteError::new(ErrorCode::Busy, "too many requests in flight");
            self.reply(info, outbound, ServerMsg::Error { re: id, error });
            return;
        };
        let handler = handler.clone();
        let session = info.clone();
        let mut work = Box::pin(async move { handler.request(&session, id, call).await });
        // Most answers are ready at once (the agent answers from memory): answering inline
        // saves a task spawn and a wake-up on the hot path. Anything that waits moves to its
        // own task, which polls it again with a real waker.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(result) = work.as_mut().poll(&mut cx) {
            drop(permit);
            self.reply(info, outbound, answer(id, result));
            return;
        }
        let info = info.clone();
        let outbound = outbound.clone();
        let shared = self.shared.clone();
        requests.spawn(async move {
            let result = work.await;
            drop(permit);
            reply_to(&shared, &info, &outbound, &answer(id, result));
        });
    }

    fn reply(&self, info: &SessionInfo, outbound: &mpsc::Sender<Frame>, msg: ServerMsg) {
        reply_to(&self.shared, info, outbound, &msg);
    }
}

fn answer(re: u64, result: Result<Reply, RemoteError>) -> ServerMsg {
    match result {
        Ok(reply) => ServerMsg::Reply { re, reply },
        Err(error) => ServerMsg::Error { re, error },
    }
}

fn reply_to(shared: &Shared, info: &SessionInfo, outbound: &mpsc::Sender<Frame>, msg: &ServerMsg) {
    let frame = match encode_frame(msg, shared.config.read_limits.max_len) {
        Ok(frame) => frame,
        Err(e) => {
            warn!(session = %info.session_id, error = %e, "reply cannot be framed");
            let re = match msg {
                ServerMsg::Reply { re, .. } | ServerMsg::Error { re, .. } => *re,
                _ => return,
            };
            let error = RemoteError::new(ErrorCode::Internal, "reply too large for one frame");
            match encode_frame(
                &ServerMsg::Error { re, error },
                shared.config.read_limits.max_len,
            ) {
                Ok(frame) => frame,
                Err(_) => return,
            }
        }
    };
    if let Err(mpsc::error::TrySendError::Full(_)) = outbound.try_send(frame.into()) {
        let reg = shared.registry();
        if let Some(entry) = reg.sessions.get(&info.session_id) {
            shared.kill(entry, CloseReason::SlowClient);
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    limits: ReadLimits,
    inbound: mpsc::Sender<Inbound>,
) {
    loop {
        let item = match read_frame(&mut rd, &limits).await {
            Ok(Some(body)) => match decode_body::<ClientMsg>(&body) {
                Ok(msg) => Inbound::Msg(msg),
                Err(e) => Inbound::Failed(e),
            },
            Ok(None) => Inbound::Closed,
            Err(e) => Inbound::Failed(e),
        };
        let last = !matches!(item, Inbound::Msg(_));
        if inbound.send(item).await.is_err() || last {
            return;
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut outbound: mpsc::Receiver<Frame>) {
    while let Some(frame) = outbound.recv().await {
        if let Err(e) = write_frame(&mut wr, &frame).await {
            debug!(error = %e, "IPC write failed");
            return;
        }
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
}

impl ServerHandle {
    /// Sends `msg` to one session.
    ///
    /// # Errors
    /// [`PushError::NoSession`] when the session is not connected; [`PushError::Frame`] when the
    /// message does not fit a frame. A session whose queue is full is disconnected (and the send
    /// counts as done).
    pub fn send(&self, session: SessionId, msg: &ServerMsg) -> Result<(), PushError> {
        let frame: Frame = encode_frame(msg, self.shared.config.read_limits.max_len)
            .map_err(PushError::Frame)?
            .into();
        let reg = self.shared.registry();
        let entry = reg
            .sessions
            .get(&session)
            .ok_or(PushError::NoSession(session))?;
        self.shared.push(entry, &frame);
        Ok(())
    }

    /// Sends `event` to one session, whatever its subscriptions (it answers something the
    /// session asked for).
    ///
    /// # Errors
    /// As [`ServerHandle::send`].
    pub fn send_event(&self, session: SessionId, event: &Event) -> Result<(), PushError> {
        self.send(
            session,
            &event_msg(event.kind().code(), IscEvent::from_event(event)),
        )
    }

    /// Sends an ISCDesk-shaped event to every session that subscribes to `kind` and for which
    /// `filter` holds (e.g. only the sessions of one product). Returns how many got it.
    ///
    /// # Errors
    /// [`PushError::Frame`] when the event does not fit a frame.
    pub fn broadcast(
        &self,
        kind: u32,
        payload: IscEvent,
        filter: impl Fn(&SessionInfo) -> bool,
    ) -> Result<usize, PushError> {
        let frame: Frame = encode_frame(
            &event_msg(kind, payload),
            self.shared.config.read_limits.max_len,
        )
        .map_err(PushError::Frame)?
        .into();
        let reg = self.shared.registry();
        let mut sent = 0;
        for entry in reg.sessions.values() {
            let wanted = entry
                .subscriptions
                .as_ref()
                .is_none_or(|kinds| kinds.contains(&kind));
            if wanted && filter(&entry.info) {
                self.shared.push(entry, &frame);
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// [`broadcast`](Self::broadcast) of a typed event.
    ///
    /// # Errors
    /// [`PushError::Frame`] when the event does not fit a frame.
    pub fn broadcast_event(
        &self,
        event: &Event,
        filter: impl Fn(&SessionInfo) -> bool,
    ) -> Result<usize, PushError> {
        self.broadcast(event.kind().code(), IscEvent::from_event(event), filter)
    }

    /// The greeted sessions.
    #[must_use]
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let reg = self.shared.registry();
        reg.sessions.values().map(|e| e.info.clone()).collect()
    }

    /// Closes one session's connection. Returns whether it was connected.
    pub fn disconnect(&self, session: SessionId) -> bool {
        let reg = self.shared.registry();
        reg.sessions
            .get(&session)
            .map(|entry| self.shared.kill(entry, CloseReason::Disconnected))
            .is_some()
    }

    /// Stops accepting, sends `Goodbye { reason }` to every session and closes them;
    /// [`IpcServer::serve`] returns once they are gone (or the close grace ran out).
    pub fn shutdown(&self, reason: impl Into<String>) {
        self.shared.shutdown.send_replace(Some(reason.into()));
    }

    /// Counters since the server was bound.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        let sessions = self.shared.registry().sessions.len();
        ServerStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            refused_peers: c.refused_peers.load(Ordering::Relaxed),
            refused_over_cap: c.refused_over_cap.load(Ordering::Relaxed),
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
            slow_disconnects: c.slow_disconnects.load(Ordering::Relaxed),
            sessions: u64::try_from(sessions).unwrap_or(u64::MAX),
        }
    }
}

/// Resolves once shutdown is requested. (The watch guard must not live across the select, it is
/// not `Send`.)
async fn shutting_down(rx: &mut watch::Receiver<Option<String>>) {
    let gone = rx.wait_for(Option::is_some).await.is_err();
    if gone {
        // The sender lives as long as the server; without it there is nothing to wait for.
        std::future::pending::<()>().await;
    }
}

async fn killed(rx: &mut watch::Receiver<Option<CloseReason>>) -> CloseReason {
    let reason = rx
        .wait_for(Option::is_some)
        .await
        .map(|reason| reason.unwrap_or(CloseReason::Disconnected));
    match reason {
        Ok(reason) => reason,
        Err(_) => std::future::pending().await,
    }
}

fn event_msg(kind: u32, payload: IscEvent) -> ServerMsg {
    ServerMsg::Event(EventFrame { kind, payload })
}
