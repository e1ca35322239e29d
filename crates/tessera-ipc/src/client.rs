//! The typed client the SDK, the CLI and the tray use.
//!
//! One background task owns the connection. Requests are correlated by id and time out on their
//! own; events go to every [`EventStream`]; the latest [`Snapshot`] is kept up to date from
//! `Welcome` and `EVENT_LICENSE_STATE`. When the connection drops the task reconnects with
//! capped full-jitter backoff and re-sends `Hello` with the same session id, so the agent can
//! re-attach the session and its leases. Requests in flight when the connection drops fail with
//! [`ClientError::Disconnected`] rather than being re-sent: a checkout is not idempotent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::WriteHalf;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use tessera_types::{Event, EventKind, Snapshot};

use crate::endpoint::Endpoint;
use crate::event::{EventParseError, IscEvent};
use crate::frame::{FrameError, ReadLimits, decode_body, encode_frame, read_frame, write_frame};
use crate::platform::{self, Stream};
use crate::proto::{
    AppInfo, Call, ClientMsg, Hello, LeaseId, PROTOCOL_VERSION, RejectCode, RemoteError, Reply,
    Request, ServerMsg, SessionId, Welcome,
};

/// Capped exponential backoff with full jitter: before attempt `n` (from 0) the client waits a
/// uniformly random time in `[0, min(max, initial · 2ⁿ)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first wait.
    pub initial: Duration,
    /// Upper bound of every wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The upper bound of the wait before attempt `attempt`.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A random wait before attempt `attempt`, drawn from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64(rng.gen_range(0.0..=1.0))
    }
}

/// How the client connects and behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The agent's endpoint.
    pub endpoint: Endpoint,
    /// Who we are, sent in `Hello`.
    pub app: AppInfo,
    /// Time one request may take, waiting for a reconnect included.
    pub request_timeout: Duration,
    /// Time to connect and get `Welcome`.
    pub handshake_timeout: Duration,
    /// Reconnect policy; `None` makes a dropped connection final.
    pub reconnect: Option<Backoff>,
    /// Events buffered per [`EventStream`] before the oldest are dropped for it.
    pub event_buffer: usize,
    /// Frame cap and deadline for the agent's frames.
    pub read_limits: ReadLimits,
}

impl ClientConfig {
    /// Defaults for `app` talking to the agent at `endpoint`.
    #[must_use]
    pub fn new(endpoint: Endpoint, app: AppInfo) -> Self {
        Self {
            endpoint,
            app,
            request_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            reconnect: Some(Backoff::default()),
            event_buffer: 256,
            read_limits: ReadLimits::default(),
        }
    }
}

/// Where the client's connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected and greeted.
    Connected {
        /// The session.
        session_id: SessionId,
        /// Whether the agent re-attached the previous session.
        resumed: bool,
    },
    /// Lost; reconnecting (attempt counts from 1).
    Reconnecting {
        /// Attempts made so far.
        attempt: u32,
        /// Why the last connection or attempt failed.
        reason: String,
    },
    /// Not connected and not going to be (closed, reconnect disabled, or refused by the agent).
    Closed {
        /// Why.
        reason: String,
    },
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent's endpoint could not be reached.
    #[error("cannot connect to the Tessera agent at {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: Endpoint,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Client and agent speak different protocol versions.
    #[error("protocol version mismatch: {message}")]
    VersionMismatch {
        /// Our version.
        client: u32,
        /// The agent's version.
        agent: u32,
        /// The agent's explanation (names both versions).
        message: String,
    },
    /// The agent refused the session.
    #[error("the agent refused the connection ({code:?}): {message}")]
    Rejected {
        /// Cause.
        code: RejectCode,
        /// Explanation.
        message: String,
    },
    /// The agent did not complete the handshake in time or answered something else.
    #[error("the agent did not answer Hello properly")]
    Handshake,
    /// A frame from the agent could not be read, or ours could not be sent.
    #[error("IPC frame error")]
    Frame(#[source] FrameError),
    /// The agent answered with an error.
    #[error("the agent refused the request")]
    Remote(#[source] RemoteError),
    /// No answer within the request timeout.
    #[error("no answer from the agent within {0:?}")]
    Timeout(Duration),
    /// The connection dropped before the answer arrived.
    #[error("the connection to the agent dropped before the answer arrived")]
    Disconnected,
    /// The client is closed.
    #[error("the IPC client is closed")]
    Closed,
    /// The agent answered with a reply of an unexpected kind.
    #[error("unexpected reply kind from the agent")]
    UnexpectedReply(Box<Reply>),
}

/// An event as received: its number, and the ISCDesk-shaped payload.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    /// The [`EventKind`] number.
    pub kind: u32,
    /// `{"operate","params","comeBackParams"}`.
    pub payload: IscEvent,
}

impl ClientEvent {
    /// The kind, if this build knows the number.
    #[must_use]
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_code(self.kind)
    }

    /// The typed event.
    ///
    /// # Errors
    /// [`EventParseError`] when the payload is not a known event.
    pub fn event(&self) -> Result<Event, EventParseError> {
        self.payload.to_event()
    }
}

/// A stream of pushed events. Events that arrive while it is not read are buffered up to the
/// configured size; past that the oldest are dropped (and counted in a warning).
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<ClientEvent>,
}

impl EventStream {
    /// The next event, or `None` once the client is gone.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(dropped = n, "event stream reader too slow; events dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

type Pending = oneshot::Sender<Result<Reply, ClientError>>;

enum Command {
    Call { call: Call, reply: Pending },
    Close { done: oneshot::Sender<()> },
}

/// A connection to the agent. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct IpcClient {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Sender<ClientEvent>,
    request_timeout: Duration,
    driver: JoinHandle<()>,
}

impl Drop for IpcClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

struct Link {
    writer: WriteHalf<Stream>,
    inbound: mpsc::Receiver<Result<ServerMsg, FrameError>>,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl IpcClient {
    /// Connects, says `Hello`, waits for `Welcome`, and starts the background task.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when no agent listens, [`ClientError::VersionMismatch`] or
    /// [`ClientError::Rejected`] when it refuses us, [`ClientError::Handshake`] when it does not
    /// answer properly.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let (link, welcome) = open(&config, None).await?;
        let (state_tx, state) = watch::channel(ConnectionState::Connected {
            session_id: welcome.session_id,
            resumed: welcome.resumed,
        });
        let (snapshot_tx, snapshot) = watch::channel(Arc::new(welcome.snapshot));
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let (commands, commands_rx) = mpsc::channel(64);
        let request_timeout = config.request_timeout;
        let driver = Driver {
            config,
            session: welcome.session_id,
            state: state_tx,
            snapshot: snapshot_tx,
            events: events.clone(),
            commands: commands_rx,
            pending: HashMap::new(),
            next_id: 1,
        };
        let driver = tokio::spawn(driver.run(link));
        Ok(Self {
            commands,
            state,
            snapshot,
            events,
            request_timeout,
            driver,
        })
    }

    /// Sends `call` and waits for its answer.
    ///
    /// # Errors
    /// [`ClientError::Remote`] when the agent answers with an error, [`ClientError::Timeout`],
    /// [`ClientError::Disconnected`], [`ClientError::Closed`].
    pub async fn call(&self, call: Call) -> Result<Reply, ClientError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(Command::Call { call, reply })
                .await
                .map_err(|_| ClientError::Closed)?;
            answer.await.map_err(|_| ClientError::Closed)?
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.request_timeout))?
    }

    /// The agent's current [`Snapshot`].
    ///
    /// # Errors
    /// As [`IpcClient::call`].
    pub async fn status(&self) -> Result<Snapshot, ClientError> {
        match self.call(Call::Status).await? {
            Reply::Snapshot(s) => Ok(s),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    /// Checks out a seat of `feature` of this application's product.
    ///
    /// # Errors
    /// As [`IpcClient::call`].
    pub async fn checkout(&self, feature: &str) -> Result<crate::proto::Lease, ClientError> {
        let call = Call::Checkout {
            feature: feature.to_owned(),
            product_id: None,
        };
        match self.call(call).await? {
            Reply::Lease(lease) => Ok(lease),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    /// Gives a seat back.
    ///
    /// # Errors
    /// As [`IpcClient::call`].
    pub async fn release(&self, lease_id: LeaseId) -> Result<(), ClientError> {
        match self.call(Call::Release { lease_id }).await? {
            Reply::Ack => Ok(()),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    /// A new stream of the events pushed from now on.
    #[must_use]
    pub fn events(&self) -> EventStream {
        EventStream {
            rx: self.events.subscribe(),
        }
    }

    /// Connection state notifications.
    #[must_use]
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// The session id, while connected.
    #[must_use]
    pub fn session_id(&self) -> Option<SessionId> {
        match &*self.state.borrow() {
            ConnectionState::Connected { session_id, .. } => Some(*session_id),
            _ => None,
        }
    }

    /// The latest snapshot (from `Welcome`, updated by `EVENT_LICENSE_STATE`). No I/O.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Says `Goodbye` and stops the background task.
    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close { done }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
        }
    }
}

async fn open(
    config: &ClientConfig,
    resume: Option<SessionId>,
) -> Result<(Link, Welcome), ClientError> {
    let handshake = async {
        let stream = platform::connect(config.endpoint.path())
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: config.endpoint.clone(),
                source,
            })?;
        let (mut rd, mut writer) = tokio::io::split(stream);
        let hello = ClientMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            app: config.app.clone(),
            resume_session: resume,
        });
        let frame = encode_frame(&hello, config.read_limits.max_len).map_err(ClientError::Frame)?;
        write_frame(&mut writer, &frame)
            .await
            .map_err(ClientError::Frame)?;
        let body = read_frame(&mut rd, &config.read_limits)
            .await
            .map_err(ClientError::Frame)?
            .ok_or(ClientError::Handshake)?;
        let welcome = match decode_body::<ServerMsg>(&body).map_err(ClientError::Frame)? {
            ServerMsg::Welcome(welcome) => welcome,
            ServerMsg::Rejected(r) if r.code == RejectCode::VersionMismatch => {
                return Err(ClientError::VersionMismatch {
                    client: PROTOCOL_VERSION,
                    agent: r.agent_protocol,
                    message: r.message,
                });
            }
            ServerMsg::Rejected(r) => {
                return Err(ClientError::Rejected {
                    code: r.code,
                    message: r.message,
                });
            }
            _ => return Err(ClientError::Handshake),
        };
        let (tx, inbound) = mpsc::channel(64);
        let limits = config.read_limits;
        let reader = tokio::spawn(async move {
            loop {
                let msg = match read_frame(&mut rd, &limits).await {
                    Ok(Some(body)) => decode_body::<ServerMsg>(&body),
                    Ok(None) => return,
                    Err(e) => Err(e),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok((
            Link {
                writer,
                inbound,
                reader,
            },
            welcome,
        ))
    };
    tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| ClientError::Handshake)?
}

struct Driver {
    config: ClientConfig,
    session: SessionId,
    state: watch::Sender<ConnectionState>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<ClientEvent>,
    commands: mpsc::Receiver<Command>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
}

enum LinkEnd {
    Lost(String),
    Close(Option<oneshot::Sender<()>>),
}

impl Driver {
    async fn run(mut self, mut link: Link) {
        loop {
            let end = self.serve(&mut link).await;
            for (_, pending) in self.pending.drain() {
                let _ = pending.send(Err(ClientError::Disconnected));
            }
            let reason = match end {
                LinkEnd::Close(done) => {
                    if let Ok(frame) =
                        encode_frame(&ClientMsg::Goodbye, self.config.read_limits.max_len)
                    {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(500),
                            write_frame(&mut link.writer, &frame),
                        )
                        .await;
                    }
                    self.state.send_replace(ConnectionState::Closed {
                        reason: "closed by the application".into(),
                    });
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                LinkEnd::Lost(reason) => reason,
            };
            drop(link);
            info!(reason = %reason, "connection to the agent lost");
            match self.reconnect(reason).await {
                Some(next) => link = next,
                None => return,
            }
        }
    }

    async fn serve(&mut self, link: &mut Link) -> LinkEnd {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Call { call, reply }) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        let msg = ClientMsg::Request(Request { id, call });
                        let frame = match encode_frame(&msg, self.config.read_limits.max_len) {
                            Ok(frame) => frame,
                            Err(e) => {
                                let _ = reply.send(Err(ClientError::Frame(e)));
                                continue;
                            }
                        };
                        self.pending.retain(|_, p| !p.is_closed());
                        self.pending.insert(id, reply);
                        let write = tokio::time::timeout(
                            self.config.request_timeout,
                            write_frame(&mut link.writer, &frame),
                        );
                        match write.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return LinkEnd::Lost(format!("write failed: {e}")),
                            Err(_) => return LinkEnd::Lost("agent stopped reading".into()),
                        }
                    }
                    Some(Command::Close { done }) => return LinkEnd::Close(Some(done)),
                    None => return LinkEnd::Close(None),
                },
                msg = link.inbound.recv() => match msg {
                    Some(Ok(msg)) => {
                        if let Some(end) = self.on_message(msg) {
                            return end;
                        }
                    }
                    Some(Err(e)) => return LinkEnd::Lost(format!("bad frame from agent: {e}")),
                    None => return LinkEnd::Lost("agent closed the connection".into()),
                },
            }
        }
    }

    fn on_message(&mut self, msg: ServerMsg) -> Option<LinkEnd> {
        match msg {
            ServerMsg::Reply { re, reply } => {
                if let Some(p) = self.pending.remove(&re) {
                    let _ = p.send(Ok(reply));
                }
            }
            ServerMsg::Error { re, error } => {
                if let Some(p) = self.pending.remove(&re) {
                    let _ = p.send(Err(ClientError::Remote(error)));
                }
            }
            ServerMsg::Event(frame) => {
                if frame.kind == EventKind::LicenseState.code()
                    && let Ok(Event::LicenseState(state)) = frame.payload.to_event()
                {
                    self.snapshot
                        .send_modify(|snap| Arc::make_mut(snap).upsert(state));
                }
                let _ = self.events.send(ClientEvent {
                    kind: frame.kind,
                    payload: frame.payload,
                });
            }
            ServerMsg::Goodbye { reason } => {
                return Some(LinkEnd::Lost(format!("agent said goodbye: {reason}")));
            }
            ServerMsg::Welcome(_) | ServerMsg::Rejected(_) => {
                return Some(LinkEnd::Lost("unexpected handshake message".into()));
            }
            ServerMsg::Unknown => debug!("ignoring a message type this build does not know"),
        }
        None
    }

    async fn reconnect(&mut self, mut reason: String) -> Option<Link> {
        let Some(backoff) = self.config.reconnect else {
            self.state.send_replace(ConnectionState::Closed { reason });
            return None;
        };
        let mut attempt = 0u32;
        loop {
            self.state.send_replace(ConnectionState::Reconnecting {
                attempt,
                reason: reason.clone(),
            });
            let delay = backoff.delay(attempt, &mut rand::thread_rng());
            attempt = attempt.saturating_add(1);
            // Commands wait in the channel meanwhile; only a close (or every handle gone) stops us.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.state.closed() => return None,
            }
            match open(&self.config, Some(self.session)).await {
                Ok((link, welcome)) => {
                    info!(session = %welcome.session_id, resumed = welcome.resumed, attempt,
                        "reconnected to the agent");
                    self.session = welcome.session_id;
                    self.snapshot.send_replace(Arc::new(welcome.snapshot));
                    self.state.send_replace(ConnectionState::Connected {
                        session_id: welcome.session_id,
                        resumed: welcome.resumed,
                    });
                    return Some(link);
                }
                Err(e @ (ClientError::VersionMismatch { .. } | ClientError::Rejected { .. }))
                    if !matches!(
                        e,
                        ClientError::Rejected {
                            code: RejectCode::TooManyConnections | RejectCode::ShuttingDown,
                            ..
                        }
                    ) =>
                {
                    warn!(error = %e, "the agent refused the reconnection; giving up");
                    self.state.send_replace(ConnectionState::Closed {
                        reason: e.to_string(),
                    });
                    return None;
                }
                Err(e) => {
                    debug!(error = %e, attempt, "reconnect attempt failed");
                    reason = e.to_string();
                }
            }
        }
    }
}
