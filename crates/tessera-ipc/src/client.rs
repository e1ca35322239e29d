//! The typed client the SDK, the CLI and the tray use.
//!
//! Callers write their request frames themselves; one background task reads the connection,
//! resolves answers by request id and fans out events, so a request crosses no middle task.
//! Requests time out on their own; events go to every [`EventStream`]; the latest [`Snapshot`]
//! is kept up to date from `Welcome` and `EVENT_LICENSE_STATE`. When the connection drops the
//! task reconnects with capped full-jitter backoff and re-sends `Hello` with the same session
//! id, so the agent can re-attach the session and its leases. Requests in flight when the
//! connection drops fail with [`ClientError::Disconnected`] rather than being re-sent: a checkout
//! is not idempotent. Requests made while reconnecting wait (within their timeout).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{broadcast, oneshot, watch};
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

/// State shared by the callers, the reader task and the reconnect task. Callers write their
/// request frames themselves and the reader resolves replies directly, so a request costs no
/// hop through a middle task.
#[derive(Debug)]
struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    // `None` while disconnected (and after a write was abandoned half-way).
    writer: tokio::sync::Mutex<Option<WriteHalf<Stream>>>,
    next_id: AtomicU64,
    state: watch::Sender<ConnectionState>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<ClientEvent>,
    max_len: usize,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        // The map holds only senders; a panic elsewhere cannot leave it inconsistent.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail_pending(&self) {
        for (_, pending) in self.pending().drain() {
            let _ = pending.send(Err(ClientError::Disconnected));
        }
    }
}

/// Removes a request from the pending map however the call ends (answer, timeout, drop).
struct PendingSlot<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(&self.id);
    }
}

/// A connection to the agent. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct IpcClient {
    shared: Arc<Shared>,
    state: watch::Receiver<ConnectionState>,
    request_timeout: Duration,
    driver: JoinHandle<()>,
}

impl Drop for IpcClient {
    fn drop(&mut self) {
        self.driver.abort();
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
        let (stream, welcome) = open(&config, None).await?;
        let (state_tx, state) = watch::channel(ConnectionState::Connected {
            session_id: welcome.session_id,
            resumed: welcome.resumed,
        });
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let (rd, wr) = tokio::io::split(stream);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            writer: tokio::sync::Mutex::new(Some(wr)),
            next_id: AtomicU64::new(1),
            state: state_tx,
            snapshot: watch::channel(Arc::new(welcome.snapshot)).0,
            events,
            max_len: config.read_limits.max_len,
        });
        let request_timeout = config.request_timeout;
        let driver = tokio::spawn(drive(shared.clone(), config, welcome.session_id, rd));
        Ok(Self {
            shared,
            state,
            request_timeout,
            driver,
        })
    }

    /// Sends `call` and waits for its answer. While the client is reconnecting the request waits
    /// (within the request timeout) and is sent once the connection is back.
    ///
    /// # Errors
    /// [`ClientError::Remote`] when the agent answers with an error, [`ClientError::Timeout`],
    /// [`ClientError::Disconnected`], [`ClientError::Closed`].
    pub async fn call(&self, call: Call) -> Result<Reply, ClientError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(
            &ClientMsg::Request(Request { id, call }),
            self.shared.max_len,
        )
        .map_err(ClientError::Frame)?;
        tokio::time::timeout(self.request_timeout, self.exchange(id, &frame))
            .await
            .map_err(|_| ClientError::Timeout(self.request_timeout))?
    }

    async fn exchange(&self, id: u64, frame: &[u8]) -> Result<Reply, ClientError> {
        let shared = &*self.shared;
        let mut state = self.state.clone();
        loop {
            let closed = state
                .wait_for(|s| !matches!(s, ConnectionState::Reconnecting { .. }))
                .await
                .map_or(true, |s| matches!(*s, ConnectionState::Closed { .. }));
            if closed {
                return Err(ClientError::Closed);
            }
            let (reply, answer) = oneshot::channel();
            shared.pending().insert(id, reply);
            let slot = PendingSlot { shared, id };
            let mut writer = shared.writer.lock().await;
            // Taken out while writing: if this future is dropped half-way (timeout), the writer
            // goes with it rather than leaving a partial frame for the next caller; the agent
            // then closes the connection at its frame deadline and the client reconnects.
            let Some(mut wr) = writer.take() else {
                // The connection is being torn down; wait for the state to move on.
                drop(writer);
                drop(slot);
                state.borrow_and_update();
                if state.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
                continue;
            };
            let written = write_frame(&mut wr, frame).await;
            if written.is_ok() {
                *writer = Some(wr);
            }
            drop(writer);
            if written.is_err() {
                return Err(ClientError::Disconnected);
            }
            let answer = answer.await.unwrap_or(Err(ClientError::Disconnected));
            drop(slot);
            return answer;
        }
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

    /// Agent-level status (secrets store, descriptor problems, tamper flags, paths, version).
    ///
    /// # Errors
    /// As [`IpcClient::call`].
    pub async fn agent_info(&self) -> Result<crate::proto::AgentInfo, ClientError> {
        match self.call(Call::AgentInfo).await? {
            Reply::AgentInfo(info) => Ok(info),
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
            rx: self.shared.events.subscribe(),
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
        self.shared.snapshot.borrow().clone()
    }

    /// Says `Goodbye` and stops the background task.
    pub async fn close(self) {
        self.driver.abort();
        let goodbye = encode_frame(&ClientMsg::Goodbye, self.shared.max_len);
        if let (Ok(frame), Ok(mut writer)) = (goodbye, self.shared.writer.try_lock())
            && let Some(wr) = writer.as_mut()
        {
            let _ = tokio::time::timeout(Duration::from_millis(500), write_frame(wr, &frame)).await;
            writer.take();
        }
        self.shared.state.send_replace(ConnectionState::Closed {
            reason: "closed by the application".into(),
        });
        self.shared.fail_pending();
    }
}

async fn open(
    config: &ClientConfig,
    resume: Option<SessionId>,
) -> Result<(Stream, Welcome), ClientError> {
    let handshake = async {
        let mut stream = platform::connect(config.endpoint.path())
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: config.endpoint.clone(),
                source,
            })?;
        let hello = ClientMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            app: config.app.clone(),
            resume_session: resume,
        });
        let frame = encode_frame(&hello, config.read_limits.max_len).map_err(ClientError::Frame)?;
        write_frame(&mut stream, &frame)
            .await
            .map_err(ClientError::Frame)?;
        let body = read_frame(&mut stream, &config.read_limits)
            .await
            .map_err(ClientError::Frame)?
            .ok_or(ClientError::Handshake)?;
        match decode_body::<ServerMsg>(&body).map_err(ClientError::Frame)? {
            ServerMsg::Welcome(welcome) => Ok((stream, welcome)),
            ServerMsg::Rejected(r) if r.code == RejectCode::VersionMismatch => {
                Err(ClientError::VersionMismatch {
                    client: PROTOCOL_VERSION,
                    agent: r.agent_protocol,
                    message: r.message,
                })
            }
            ServerMsg::Rejected(r) => Err(ClientError::Rejected {
                code: r.code,
                message: r.message,
            }),
            _ => Err(ClientError::Handshake),
        }
    };
    tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| ClientError::Handshake)?
}

/// Reads the connection until it ends, then reconnects; forever, until aborted or refused.
async fn drive(
    shared: Arc<Shared>,
    config: ClientConfig,
    mut session: SessionId,
    mut rd: ReadHalf<Stream>,
) {
    loop {
        let reason = read_until_lost(&shared, &config, &mut rd).await;
        info!(reason = %reason, "connection to the agent lost");
        // State first, then the writer: a caller that finds no writer sees the state moved on.
        let Some(backoff) = config.reconnect else {
            shared
                .state
                .send_replace(ConnectionState::Closed { reason });
            shared.writer.lock().await.take();
            shared.fail_pending();
            return;
        };
        shared.state.send_replace(ConnectionState::Reconnecting {
            attempt: 0,
            reason: reason.clone(),
        });
        shared.writer.lock().await.take();
        shared.fail_pending();
        match reconnect(&shared, &config, backoff, session, reason).await {
            Some((stream, welcome)) => {
                session = welcome.session_id;
                let (next_rd, wr) = tokio::io::split(stream);
                rd = next_rd;
                *shared.writer.lock().await = Some(wr);
                shared.snapshot.send_replace(Arc::new(welcome.snapshot));
                shared.state.send_replace(ConnectionState::Connected {
                    session_id: welcome.session_id,
                    resumed: welcome.resumed,
                });
            }
            None => {
                shared.fail_pending();
                return;
            }
        }
    }
}

async fn read_until_lost(
    shared: &Shared,
    config: &ClientConfig,
    rd: &mut ReadHalf<Stream>,
) -> String {
    loop {
        let msg = match read_frame(rd, &config.read_limits).await {
            Ok(Some(body)) => match decode_body::<ServerMsg>(&body) {
                Ok(msg) => msg,
                Err(e) => return format!("bad message from agent: {e}"),
            },
            Ok(None) => return "agent closed the connection".into(),
            Err(e) => return format!("bad frame from agent: {e}"),
        };
        match msg {
            ServerMsg::Reply { re, reply } => {
                if let Some(p) = shared.pending().remove(&re) {
                    let _ = p.send(Ok(reply));
                }
            }
            ServerMsg::Error { re, error } => {
                if let Some(p) = shared.pending().remove(&re) {
                    let _ = p.send(Err(ClientError::Remote(error)));
                }
            }
            ServerMsg::Event(frame) => {
                if frame.kind == EventKind::LicenseState.code()
                    && let Ok(Event::LicenseState(state)) = frame.payload.to_event()
                {
                    shared
                        .snapshot
                        .send_modify(|snap| Arc::make_mut(snap).upsert(state));
                }
                let _ = shared.events.send(ClientEvent {
                    kind: frame.kind,
                    payload: frame.payload,
                });
            }
            ServerMsg::Goodbye { reason } => return format!("agent said goodbye: {reason}"),
            ServerMsg::Welcome(_) | ServerMsg::Rejected(_) => {
                return "unexpected handshake message".into();
            }
            ServerMsg::Unknown => debug!("ignoring a message type this build does not know"),
        }
    }
}

async fn reconnect(
    shared: &Shared,
    config: &ClientConfig,
    backoff: Backoff,
    session: SessionId,
    mut reason: String,
) -> Option<(Stream, Welcome)> {
    let mut attempt = 0u32;
    loop {
        shared.state.send_replace(ConnectionState::Reconnecting {
            attempt,
            reason: reason.clone(),
        });
        let delay = backoff.delay(attempt, &mut rand::thread_rng());
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(delay).await;
        match open(config, Some(session)).await {
            Ok((stream, welcome)) => {
                info!(session = %welcome.session_id, resumed = welcome.resumed, attempt,
                    "reconnected to the agent");
                return Some((stream, welcome));
            }
            Err(
                e @ (ClientError::VersionMismatch { .. }
                | ClientError::Rejected {
                    code: RejectCode::Refused | RejectCode::BadHello | RejectCode::Unknown,
                    ..
                }),
            ) => {
                warn!(error = %e, "the agent refused the reconnection; giving up");
                shared.state.send_replace(ConnectionState::Closed {
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_capped_ceiling() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let ceilings: Vec<u128> = (0..7).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(2));

        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..2000).map(|_| backoff.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)));
        // Full jitter spreads over the whole range rather than clustering at the ceiling.
        assert!(delays.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(700)));
    }
}
