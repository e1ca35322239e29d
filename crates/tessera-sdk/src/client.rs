//! The Rust client under the C ABI: one handle, one IO thread with its own tokio runtime, one
//! events thread for callbacks.
//!
//! Application threads talk to the IO thread through a command channel and wait for the answer
//! on a one-shot channel; the IO thread owns the connection, the leases and the link status, and
//! publishes what checks need as an immutable [`View`] swapped atomically, so
//! [`Client::check`] never waits for it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tessera_ipc::proto::{AuthCode, LicenseSource, LicenseText};
use tessera_ipc::{
    AppInfo, Backoff, Call, ClientConfig, ClientError, ClientEvent, ConnectionState, Endpoint,
    ErrorCode, EventStream, IpcClient, Lease, LeaseId, RemoteError, Reply,
};
use tessera_types::events::LicenseKind;
use tessera_types::{Event, EventKind, LicenseState, ProductState, SharedClock, SystemClock};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::log::ForwardLayer;
use crate::result::tessera_result;
use crate::sinks::{EventSink, InsideCallback, LogSink, Sinks};
use crate::view::{LinkStatus, View, ViewCell};

/// Longest product id, application name, version, feature name or message accepted, in bytes.
pub const TESSERA_MAX_NAME_LEN: usize = 256;
/// Longest License content, code, path or device info accepted, in bytes (an IPC frame is 64 KiB).
pub const TESSERA_MAX_TEXT_LEN: usize = 48 * 1024;

/// How a [`Client`] is set up.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// KooGallery product id the application is licensed under.
    pub product_id: String,
    /// Application name (shown by the agent, `tessera status`).
    pub app_name: String,
    /// Application version.
    pub app_version: String,
    /// The agent's endpoint; `None`: `TESSERA_SOCKET` or the per-user default, read at connect.
    pub endpoint: Option<Endpoint>,
    /// Where time comes from (the lease and offline deadlines).
    pub clock: SharedClock,
    /// How long cached decisions hold after the agent is lost, when no lease lasts longer.
    pub offline_allowance: time::Duration,
    /// Time one request to the agent may take.
    pub request_timeout: Duration,
    /// Reconnect policy (full-jitter backoff between attempts).
    pub reconnect: Backoff,
    /// Events kept for the pull API when no callback is set; the oldest are dropped beyond it.
    pub event_queue: usize,
}

impl ClientOptions {
    /// Defaults for `product_id`, `app_name` and `app_version`.
    #[must_use]
    pub fn new(product_id: &str, app_name: &str, app_version: &str) -> Self {
        Self {
            product_id: product_id.to_owned(),
            app_name: app_name.to_owned(),
            app_version: app_version.to_owned(),
            endpoint: None,
            clock: SystemClock::shared(),
            // The agent's default lease length (ARCHITECTURE.md §3).
            offline_allowance: time::Duration::minutes(15),
            request_timeout: Duration::from_secs(10),
            // Short ceiling: an application must be back within 2 s of the agent returning.
            reconnect: Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(800),
            },
            event_queue: 256,
        }
    }
}

/// A failed call: the result code and a message saying what failed and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SdkError {
    code: tessera_result,
    message: String,
}

impl SdkError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: tessera_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The result code.
    #[must_use]
    pub fn code(&self) -> tessera_result {
        self.code
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    fn closed() -> Self {
        Self::new(
            tessera_result::TESSERA_CLOSED,
            "the client is shutting down",
        )
    }

    fn not_connected() -> Self {
        Self::new(
            tessera_result::TESSERA_NOT_CONNECTED,
            "not connected to the Tessera agent: call connect first",
        )
    }

    fn from_client(e: &ClientError, not_found: tessera_result) -> Self {
        let code = match e {
            ClientError::Connect { .. } | ClientError::Handshake | ClientError::Frame(_) => {
                tessera_result::TESSERA_AGENT_UNAVAILABLE
            }
            ClientError::Disconnected => tessera_result::TESSERA_AGENT_UNAVAILABLE,
            ClientError::VersionMismatch { .. } => tessera_result::TESSERA_PROTOCOL_MISMATCH,
            ClientError::Rejected { code, .. } => match code {
                tessera_ipc::proto::RejectCode::TooManyConnections => tessera_result::TESSERA_BUSY,
                tessera_ipc::proto::RejectCode::ShuttingDown => {
                    tessera_result::TESSERA_SHUTTING_DOWN
                }
                _ => tessera_result::TESSERA_REFUSED,
            },
            ClientError::Remote(remote) => remote_code(remote, not_found),
            ClientError::Timeout(_) => tessera_result::TESSERA_TIMEOUT,
            ClientError::Closed => tessera_result::TESSERA_CLOSED,
            ClientError::UnexpectedReply(_) => tessera_result::TESSERA_AGENT_ERROR,
        };
        Self::new(code, chain(e))
    }
}

fn remote_code(e: &RemoteError, not_found: tessera_result) -> tessera_result {
    match e.code {
        ErrorCode::BadRequest => tessera_result::TESSERA_INVALID_PARAMETER,
        ErrorCode::Unsupported => tessera_result::TESSERA_UNSUPPORTED,
        ErrorCode::NotFound => not_found,
        ErrorCode::Blocked => tessera_result::TESSERA_LICENSE_BLOCKED,
        ErrorCode::NoSeat => tessera_result::TESSERA_NO_SEAT,
        ErrorCode::Denied => tessera_result::TESSERA_DENIED,
        ErrorCode::Busy => tessera_result::TESSERA_BUSY,
        ErrorCode::ShuttingDown => tessera_result::TESSERA_SHUTTING_DOWN,
        ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::Unknown => {
            tessera_result::TESSERA_AGENT_ERROR
        }
    }
}

/// The error and its sources on one line, for C callers who cannot walk a chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A seat held by this client, by its local handle.
pub type LeaseHandle = u64;

type Answer<T> = SyncSender<Result<T, SdkError>>;

enum Command {
    Connect(Answer<()>),
    Call {
        call: Call,
        not_found: tessera_result,
        answer: Answer<Reply>,
    },
    Checkout {
        feature: String,
        answer: Answer<LeaseHandle>,
    },
    Release {
        lease: LeaseHandle,
        answer: Answer<()>,
    },
    Refresh(Answer<()>),
}

enum Internal {
    Granted {
        feature: String,
        lease: Lease,
        answer: Answer<LeaseHandle>,
    },
    Renewed {
        handle: LeaseHandle,
        lease: Lease,
    },
    RenewFailed {
        handle: LeaseHandle,
        gone: bool,
    },
}

/// What the application threads and the IO thread share.
#[derive(Debug)]
struct Shared {
    view: ViewCell,
    sinks: Arc<Sinks>,
    connect_error: Mutex<Option<SdkError>>,
}

/// A client of the Tessera agent for one product.
///
/// Every method takes `&self` and may be called from any thread, including from inside the
/// event and log callbacks; dropping the client from inside a callback does not wait for the
/// client's threads (they end on their own).
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    shutdown: watch::Sender<bool>,
    io_thread: Option<JoinHandle<()>>,
}

fn validate(what: &str, value: &str, max: usize) -> Result<(), SdkError> {
    if value.len() > max {
        return Err(SdkError::new(
            tessera_result::TESSERA_INVALID_PARAMETER,
            format!("{what} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

impl Client {
    /// Creates a client and starts its threads. Does not connect: see [`Client::connect`].
    ///
    /// # Errors
    /// `TESSERA_INVALID_PARAMETER` when a name is empty or too long; `TESSERA_AGENT_ERROR` when
    /// the threads cannot be started.
    pub fn new(options: ClientOptions) -> Result<Self, SdkError> {
        if options.product_id.is_empty() {
            return Err(SdkError::new(
                tessera_result::TESSERA_INVALID_PARAMETER,
                "the product id is empty",
            ));
        }
        validate("the product id", &options.product_id, TESSERA_MAX_NAME_LEN)?;
        validate(
            "the application name",
            &options.app_name,
            TESSERA_MAX_NAME_LEN,
        )?;
        validate(
            "the application version",
            &options.app_version,
            TESSERA_MAX_NAME_LEN,
        )?;
        let spawn_failed = |e: std::io::Error| {
            SdkError::new(
                tessera_result::TESSERA_AGENT_ERROR,
                format!("cannot start the client's threads: {e}"),
            )
        };
        let sinks = Sinks::start(options.event_queue).map_err(spawn_failed)?;
        let shared = Arc::new(Shared {
            view: ViewCell::new(),
            sinks: sinks.clone(),
            connect_error: Mutex::new(None),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(spawn_failed)?;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let io = Io::new(options.clone(), shared.clone(), commands_rx, shutdown_rx);
        let io_thread = std::thread::Builder::new()
            .name("tessera-io".into())
            .spawn(move || {
                let subscriber = tracing_subscriber::registry().with(ForwardLayer::new(sinks));
                let _logs = tracing::subscriber::set_default(subscriber);
                runtime.block_on(io.run());
            })
            .map_err(spawn_failed)?;
        Ok(Self {
            options,
            shared,
            commands,
            shutdown,
            io_thread: Some(io_thread),
        })
    }

    /// The product this client is for.
    #[must_use]
    pub fn product_id(&self) -> &str {
        &self.options.product_id
    }

    /// Starts connecting (once; later calls only wait) and waits up to `timeout` (at least
    /// 50 ms, for the IO thread's answer) for the first connection. The client keeps trying in the background whatever this returns, and
    /// reconnects by itself after a connection is lost.
    ///
    /// # Errors
    /// The last connection failure (`TESSERA_AGENT_UNAVAILABLE`, `TESSERA_PROTOCOL_MISMATCH`,
    /// `TESSERA_REFUSED`, …) when not connected within `timeout`.
    pub fn connect(&self, timeout: Duration) -> Result<(), SdkError> {
        if self.link() == LinkStatus::Connected {
            return Ok(());
        }
        let (answer, rx) = sync_channel(1);
        self.commands
            .send(Command::Connect(answer))
            .map_err(|_| SdkError::closed())?;
        // Even with a zero timeout, give the IO thread a moment to say "already connected".
        match rx.recv_timeout(timeout.max(Duration::from_millis(50))) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(self
                .shared
                .connect_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| {
                    SdkError::new(
                        tessera_result::TESSERA_AGENT_UNAVAILABLE,
                        format!("not connected to the Tessera agent within {timeout:?}"),
                    )
                })),
            Err(RecvTimeoutError::Disconnected) => Err(SdkError::closed()),
        }
    }

    /// Whether `feature` may be used now. Reads the in-process view: no syscall, no allocation,
    /// no lock shared with the IO thread.
    #[inline]
    #[must_use]
    pub fn check(&self, feature: &[u8]) -> tessera_result {
        self.shared.view.check(feature)
    }

    /// The link status as checks see it.
    #[must_use]
    pub fn link(&self) -> LinkStatus {
        self.shared.view.load().link
    }

    /// The product's state as the agent last told it.
    #[must_use]
    pub fn product_state(&self) -> Option<Arc<ProductState>> {
        self.shared.view.load().product.clone()
    }

    /// Takes a seat of `feature`; it is renewed in the background and survives agent restarts
    /// until released.
    ///
    /// # Errors
    /// `TESSERA_FEATURE_NOT_LICENSED`, `TESSERA_NO_SEAT`, a blocking reason, or a link error.
    pub fn checkout(&self, feature: &str) -> Result<LeaseHandle, SdkError> {
        validate("the feature name", feature, TESSERA_MAX_NAME_LEN)?;
        let result = self.ask(|answer| Command::Checkout {
            feature: feature.to_owned(),
            answer,
        });
        // The agent says only "blocked"; the view knows why.
        result.map_err(|e| match (e.code(), self.product_state()) {
            (tessera_result::TESSERA_LICENSE_BLOCKED, Some(p))
                if p.state == LicenseState::Blocked =>
            {
                SdkError::new(tessera_result::for_blocked(p.reason), e.message)
            }
            _ => e,
        })
    }

    /// Gives a seat back.
    ///
    /// # Errors
    /// `TESSERA_LEASE_NOT_FOUND` for a handle this client does not hold.
    pub fn release(&self, lease: LeaseHandle) -> Result<(), SdkError> {
        self.ask(|answer| Command::Release { lease, answer })
    }

    /// ISCDesk `GetLicenseFileRequest` / `GetLicenseStringRequest`: the License arrives as
    /// `EVENT_LICENSE_VERIFY`.
    ///
    /// # Errors
    /// A link error or the agent's refusal.
    pub fn request_license(
        &self,
        kind: LicenseKind,
        file_name: Option<&str>,
        dev_info: &str,
    ) -> Result<(), SdkError> {
        validate("the device info", dev_info, TESSERA_MAX_TEXT_LEN)?;
        validate(
            "the file name",
            file_name.unwrap_or(""),
            TESSERA_MAX_TEXT_LEN,
        )?;
        self.ack(Call::RequestLicense {
            kind,
            file_name: file_name.map(str::to_owned),
            dev_info: dev_info.to_owned(),
        })
    }

    /// Imports a License file the agent can read.
    ///
    /// # Errors
    /// A link error or the agent's refusal (an invalid License: `TESSERA_INVALID_PARAMETER`).
    pub fn import_license_file(&self, path: &str) -> Result<(), SdkError> {
        validate("the path", path, TESSERA_MAX_TEXT_LEN)?;
        self.ack(Call::ImportLicense {
            product_id: Some(self.options.product_id.clone()),
            source: LicenseSource::Path {
                path: PathBuf::from(path),
            },
        })
    }

    /// Imports a License file's content or a License string.
    ///
    /// # Errors
    /// As [`Client::import_license_file`].
    pub fn import_license_string(&self, content: &str) -> Result<(), SdkError> {
        validate("the License", content, TESSERA_MAX_TEXT_LEN)?;
        self.ack(Call::ImportLicense {
            product_id: Some(self.options.product_id.clone()),
            source: LicenseSource::Content {
                content: LicenseText(content.to_owned()),
            },
        })
    }

    /// ISCDesk `LicenseVerifyNotify`: the application's own verification result.
    ///
    /// # Errors
    /// A link error or the agent's refusal.
    pub fn verify_notify(&self, ok: bool, message: &str) -> Result<(), SdkError> {
        validate("the message", message, TESSERA_MAX_TEXT_LEN)?;
        self.ack(Call::LicenseVerifyNotify {
            ok,
            message: message.to_owned(),
        })
    }

    /// ISCDesk `TrialExpirationAndGetLicense`.
    ///
    /// # Errors
    /// A link error or the agent's refusal.
    pub fn trial_expired(
        &self,
        kind: LicenseKind,
        dev_info: &str,
        file_name: Option<&str>,
    ) -> Result<(), SdkError> {
        validate("the device info", dev_info, TESSERA_MAX_TEXT_LEN)?;
        validate(
            "the file name",
            file_name.unwrap_or(""),
            TESSERA_MAX_TEXT_LEN,
        )?;
        self.ack(Call::TrialExpired {
            kind,
            dev_info: dev_info.to_owned(),
            file_name: file_name.map(str::to_owned),
        })
    }

    /// ISCDesk `CheckNewVersions`: the answer arrives as `EVENT_UPGRADENOTICE`.
    ///
    /// # Errors
    /// A link error or the agent's refusal.
    pub fn check_new_versions(&self) -> Result<(), SdkError> {
        self.ack(Call::CheckNewVersions)
    }

    /// ISCDesk `UpgradeNotify(bUpgrade)`.
    ///
    /// # Errors
    /// A link error or the agent's refusal.
    pub fn upgrade_notify(&self, accept: bool) -> Result<(), SdkError> {
        self.ack(Call::UpgradeNotify { accept })
    }

    /// Activates a KooGallery authorization code for this product.
    ///
    /// # Errors
    /// A link error or the agent's refusal.
    pub fn activate_code(&self, code: &str) -> Result<(), SdkError> {
        validate("the code", code, TESSERA_MAX_NAME_LEN)?;
        if code.trim().is_empty() {
            return Err(SdkError::new(
                tessera_result::TESSERA_INVALID_PARAMETER,
                "the authorization code is empty",
            ));
        }
        self.ack(Call::ActivateCode {
            product_id: Some(self.options.product_id.clone()),
            code: AuthCode(code.trim().to_owned()),
        })
    }

    /// Re-evaluates leases and the offline deadline against the clock now, instead of at the IO
    /// thread's next tick (useful after a long suspend, and for tests with a manual clock).
    ///
    /// # Errors
    /// `TESSERA_CLOSED` when the client is shutting down.
    pub fn refresh(&self) -> Result<(), SdkError> {
        self.ask(Command::Refresh)
    }

    /// Sets (or with `None` removes) the event callback. Events arrive on the client's
    /// `tessera-events` thread; without a callback they wait for [`Client::next_event`].
    ///
    /// # Errors
    /// `TESSERA_CALLED_FROM_CALLBACK` from inside a callback.
    pub fn set_event_sink(&self, sink: Option<Box<dyn EventSink>>) -> Result<(), SdkError> {
        self.shared.sinks.set_event_sink(sink).map_err(inside)
    }

    /// Sets (or removes) the log callback and the most verbose level it receives.
    ///
    /// # Errors
    /// `TESSERA_CALLED_FROM_CALLBACK` from inside a callback.
    pub fn set_log_sink(
        &self,
        sink: Option<Box<dyn LogSink>>,
        max_level: tracing::Level,
    ) -> Result<(), SdkError> {
        self.shared
            .sinks
            .set_log_sink(sink, max_level)
            .map_err(inside)
    }

    /// The oldest queued event's kind and its JSON size including the terminating NUL.
    #[must_use]
    pub fn peek_event(&self) -> Option<(u32, usize)> {
        self.shared.sinks.peek()
    }

    /// Takes the oldest queued event (kind number, ISCDesk-shaped JSON).
    #[must_use]
    pub fn next_event(&self) -> Option<(u32, CString)> {
        self.shared.sinks.pop()
    }

    /// Takes the oldest queued event if its JSON and NUL fit in `room` bytes.
    ///
    /// # Errors
    /// The size needed when it does not fit (the event stays queued).
    pub fn next_event_fitting(&self, room: usize) -> Result<Option<(u32, CString)>, usize> {
        self.shared.sinks.pop_fitting(room)
    }

    /// Whether the calling thread is this client's callback thread.
    #[must_use]
    pub fn in_callback(&self) -> bool {
        self.shared.sinks.on_callback_thread()
    }

    fn ack(&self, call: Call) -> Result<(), SdkError> {
        let reply = self.ask(|answer| Command::Call {
            call,
            not_found: tessera_result::TESSERA_UNKNOWN_PRODUCT,
            answer,
        })?;
        match reply {
            Reply::Ack | Reply::ProductState(_) | Reply::Snapshot(_) => Ok(()),
            other => Err(SdkError::new(
                tessera_result::TESSERA_AGENT_ERROR,
                format!("unexpected reply from the agent: {other:?}"),
            )),
        }
    }

    fn ask<T>(&self, make: impl FnOnce(Answer<T>) -> Command) -> Result<T, SdkError> {
        let (answer, rx) = sync_channel(1);
        self.commands
            .send(make(answer))
            .map_err(|_| SdkError::closed())?;
        // The IO thread bounds every request by the request timeout; the margin covers queueing.
        match rx.recv_timeout(self.options.request_timeout + Duration::from_secs(1)) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(SdkError::new(
                tessera_result::TESSERA_TIMEOUT,
                "the client's IO thread did not answer in time",
            )),
            Err(RecvTimeoutError::Disconnected) => Err(SdkError::closed()),
        }
    }
}

fn inside(_: InsideCallback) -> SdkError {
    SdkError::new(
        tessera_result::TESSERA_CALLED_FROM_CALLBACK,
        "callbacks cannot be replaced, nor the client freed, from inside a callback",
    )
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.view.store(View {
            link: LinkStatus::Closed,
            ..View::initial()
        });
        self.shutdown.send_replace(true);
        let inside_callback = self.shared.sinks.on_callback_thread();
        if let Some(io) = self.io_thread.take()
            && !inside_callback
        {
            let _ = io.join();
        }
        self.shared.sinks.stop();
    }
}

struct HeldLease {
    feature: String,
    agent_id: LeaseId,
    granted_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    busy: bool,
}

/// The IO thread's state.
struct Io {
    options: ClientOptions,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    shutdown: watch::Receiver<bool>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal: mpsc::UnboundedReceiver<Internal>,
    tasks: JoinSet<()>,
    ipc: Option<Arc<IpcClient>>,
    events: Option<EventStream>,
    conn: Option<watch::Receiver<ConnectionState>>,
    connecting: Option<tokio::task::JoinHandle<IpcClient>>,
    waiters: Vec<Answer<()>>,
    link: LinkStatus,
    offline_since: Option<OffsetDateTime>,
    product: Option<Arc<ProductState>>,
    leases: BTreeMap<LeaseHandle, HeldLease>,
    next_handle: LeaseHandle,
}

const TICK: Duration = Duration::from_millis(200);

impl Io {
    fn new(
        options: ClientOptions,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (internal_tx, internal) = mpsc::unbounded_channel();
        Self {
            options,
            shared,
            commands,
            shutdown,
            internal_tx,
            internal,
            tasks: JoinSet::new(),
            ipc: None,
            events: None,
            conn: None,
            connecting: None,
            waiters: Vec::new(),
            link: LinkStatus::NotConnected,
            offline_since: None,
            product: None,
            leases: BTreeMap::new(),
            next_handle: 1,
        }
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        break;
                    }
                }
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some(internal) = self.internal.recv() => self.on_internal(internal),
                connected = wait_connecting(&mut self.connecting) => self.on_connected(connected),
                event = next_event(&mut self.events) => match event {
                    Some(event) => self.on_event(&event),
                    None => self.events = None,
                },
                changed = state_changed(&mut self.conn) => {
                    if changed { self.on_link_change(); } else { self.conn = None; }
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = tick.tick() => self.on_tick(),
            }
        }
        self.close().await;
    }

    async fn close(mut self) {
        self.tasks.shutdown().await;
        if let Some(connecting) = self.connecting.take() {
            connecting.abort();
        }
        self.events = None;
        self.conn = None;
        if let Some(ipc) = self.ipc.take() {
            match Arc::try_unwrap(ipc) {
                Ok(ipc) => ipc.close().await,
                Err(ipc) => drop(ipc),
            }
        }
        info!("Tessera client closed");
    }

    fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    fn connected_ipc(&self) -> Result<Arc<IpcClient>, SdkError> {
        match (&self.ipc, self.link) {
            (Some(ipc), LinkStatus::Connected) => Ok(ipc.clone()),
            (_, LinkStatus::NotConnected) if self.connecting.is_none() => {
                Err(SdkError::not_connected())
            }
            _ => Err(SdkError::new(
                tessera_result::TESSERA_AGENT_UNAVAILABLE,
                "the Tessera agent is not reachable right now; the client keeps trying",
            )),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Connect(answer) => {
                if self.ipc.is_some() {
                    let _ = answer.try_send(Ok(()));
                } else {
                    self.waiters.push(answer);
                    self.start_connecting();
                }
            }
            Command::Call {
                call,
                not_found,
                answer,
            } => match self.connected_ipc() {
                Ok(ipc) => self.spawn(async move {
                    let result = ipc
                        .call(call)
                        .await
                        .map_err(|e| SdkError::from_client(&e, not_found));
                    let _ = answer.try_send(result);
                }),
                Err(e) => {
                    let _ = answer.try_send(Err(e));
                }
            },
            Command::Checkout { feature, answer } => match self.connected_ipc() {
                Ok(ipc) => {
                    let internal = self.internal_tx.clone();
                    self.spawn(async move {
                        match ipc.checkout(&feature).await {
                            Ok(lease) => {
                                let _ = internal.send(Internal::Granted {
                                    feature,
                                    lease,
                                    answer,
                                });
                            }
                            Err(e) => {
                                let e = SdkError::from_client(
                                    &e,
                                    tessera_result::TESSERA_FEATURE_NOT_LICENSED,
                                );
                                let _ = answer.try_send(Err(e));
                            }
                        }
                    });
                }
                Err(e) => {
                    let _ = answer.try_send(Err(e));
                }
            },
            Command::Release { lease, answer } => {
                let Some(held) = self.leases.remove(&lease) else {
                    let _ = answer.try_send(Err(SdkError::new(
                        tessera_result::TESSERA_LEASE_NOT_FOUND,
                        format!("this client holds no lease {lease}"),
                    )));
                    return;
                };
                self.publish();
                match self.connected_ipc() {
                    Ok(ipc) => self.spawn(async move {
                        // The seat is ours no more whatever the agent answers: an unknown lease
                        // there has already ended.
                        if let Err(e) = ipc.release(held.agent_id).await {
                            debug!(error = %e, "the agent did not confirm a release");
                        }
                        let _ = answer.try_send(Ok(()));
                    }),
                    // Offline: the agent lets the lease lapse on its own.
                    Err(_) => {
                        let _ = answer.try_send(Ok(()));
                    }
                }
            }
            Command::Refresh(answer) => {
                self.on_tick();
                let _ = answer.try_send(Ok(()));
            }
        }
    }

    fn start_connecting(&mut self) {
        if self.connecting.is_some() || self.ipc.is_some() {
            return;
        }
        let endpoint = match &self.options.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => match Endpoint::from_env() {
                Ok(endpoint) => endpoint,
                Err(e) => {
                    let e = SdkError::new(
                        tessera_result::TESSERA_AGENT_UNAVAILABLE,
                        format!("cannot find the Tessera agent's endpoint: {}", chain(&e)),
                    );
                    self.set_connect_error(e.clone());
                    for waiter in self.waiters.drain(..) {
                        let _ = waiter.try_send(Err(e.clone()));
                    }
                    return;
                }
            },
        };
        let mut config = ClientConfig::new(
            endpoint,
            AppInfo {
                product_id: self.options.product_id.clone(),
                name: self.options.app_name.clone(),
                version: self.options.app_version.clone(),
                pid: std::process::id(),
            },
        );
        config.request_timeout = self.options.request_timeout;
        config.handshake_timeout = Duration::from_secs(2);
        config.reconnect = Some(self.options.reconnect);
        let backoff = self.options.reconnect;
        let shared = self.shared.clone();
        self.connecting = Some(tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                match IpcClient::connect(config.clone()).await {
                    Ok(ipc) => return ipc,
                    Err(e) => {
                        debug!(error = %e, attempt, "connecting to the Tessera agent failed");
                        let not_found = tessera_result::TESSERA_AGENT_ERROR;
                        *shared
                            .connect_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) =
                            Some(SdkError::from_client(&e, not_found));
                    }
                }
                let delay = backoff.delay(attempt, &mut rand::thread_rng());
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(delay).await;
            }
        }));
    }

    fn set_connect_error(&self, e: SdkError) {
        *self
            .shared
            .connect_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e);
    }

    fn on_connected(&mut self, ipc: Result<IpcClient, tokio::task::JoinError>) {
        self.connecting = None;
        let ipc = match ipc {
            Ok(ipc) => Arc::new(ipc),
            Err(e) => {
                warn!(error = %e, "the connect task ended unexpectedly; retrying");
                self.start_connecting();
                return;
            }
        };
        info!(product = %self.options.product_id, "connected to the Tessera agent");
        self.events = Some(ipc.events());
        let mut conn = ipc.state();
        conn.mark_unchanged();
        self.conn = Some(conn);
        let was_offline = self.link != LinkStatus::NotConnected;
        self.ipc = Some(ipc.clone());
        self.link = LinkStatus::Connected;
        self.offline_since = None;
        self.adopt_snapshot(&ipc, was_offline);
        for waiter in self.waiters.drain(..) {
            let _ = waiter.try_send(Ok(()));
        }
        // Leases held across a full reconnect (the old client gave up) are re-taken.
        let handles: Vec<LeaseHandle> = self.leases.keys().copied().collect();
        for handle in handles {
            self.renew(handle);
        }
    }

    fn adopt_snapshot(&mut self, ipc: &IpcClient, announce: bool) {
        let product = ipc
            .snapshot()
            .product(&self.options.product_id)
            .cloned()
            .map(Arc::new);
        if announce
            && product != self.product
            && let Some(state) = &product
        {
            // The state changed while we were away and no event said so: tell the application.
            let event = Event::LicenseState((**state).clone());
            let json = tessera_ipc::IscEvent::from_event(&event).to_json_string();
            if let Ok(json) = CString::new(json) {
                self.shared
                    .sinks
                    .event(EventKind::LicenseState.code(), json);
            }
        }
        self.product = product;
        self.publish();
    }

    fn on_link_change(&mut self) {
        let Some(state) = self.conn.as_ref().map(|c| c.borrow().clone()) else {
            return;
        };
        match state {
            ConnectionState::Connected { resumed, .. } => {
                info!(resumed, "re-attached to the Tessera agent");
                self.link = LinkStatus::Connected;
                self.offline_since = None;
                if let Some(ipc) = self.ipc.clone() {
                    self.adopt_snapshot(&ipc, true);
                }
                // Even a resumed session may come from a restarted agent that has forgotten our
                // leases: renew each now, and take a new seat where the agent no longer knows it.
                let handles: Vec<LeaseHandle> = self.leases.keys().copied().collect();
                for handle in handles {
                    if let Some(held) = self.leases.get_mut(&handle) {
                        held.busy = false;
                    }
                    self.renew(handle);
                }
            }
            ConnectionState::Reconnecting { reason, .. } => {
                if self.link == LinkStatus::Connected {
                    warn!(reason = %reason, "lost the Tessera agent; reconnecting");
                    self.go_offline();
                }
            }
            ConnectionState::Closed { reason } => {
                warn!(reason = %reason, "the connection to the Tessera agent closed; reconnecting");
                self.events = None;
                self.conn = None;
                self.ipc = None;
                self.go_offline();
                self.start_connecting();
            }
        }
    }

    fn go_offline(&mut self) {
        if matches!(self.link, LinkStatus::Connected) {
            self.link = LinkStatus::Offline;
            self.offline_since = Some(self.options.clock.now());
        }
        self.on_tick();
        self.publish();
    }

    fn on_event(&mut self, event: &ClientEvent) {
        if event.kind == EventKind::LicenseState.code() {
            match event.event() {
                Ok(Event::LicenseState(state)) if state.product_id == self.options.product_id => {
                    self.product = Some(Arc::new(state));
                    self.publish();
                }
                // Another product's state is not this application's business.
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, "ignoring an unreadable license state event");
                    return;
                }
            }
        }
        match CString::new(event.payload.to_json_string()) {
            Ok(json) => self.shared.sinks.event(event.kind, json),
            Err(_) => warn!(
                kind = event.kind,
                "dropping an event with a NUL in its JSON"
            ),
        }
    }

    fn on_internal(&mut self, internal: Internal) {
        let now = self.options.clock.now();
        match internal {
            Internal::Granted {
                feature,
                lease,
                answer,
            } => {
                let handle = self.next_handle;
                self.next_handle += 1;
                self.leases.insert(
                    handle,
                    HeldLease {
                        feature,
                        agent_id: lease.lease_id,
                        granted_at: now,
                        expires_at: lease.expires_at,
                        busy: false,
                    },
                );
                self.publish();
                if answer.try_send(Ok(handle)).is_err() {
                    // The caller gave up waiting: nobody will release it, so give it back now.
                    if let Some(held) = self.leases.remove(&handle) {
                        self.publish();
                        if let Ok(ipc) = self.connected_ipc() {
                            self.spawn(async move {
                                let _ = ipc.release(held.agent_id).await;
                            });
                        }
                    }
                }
            }
            Internal::Renewed { handle, lease } => {
                if let Some(held) = self.leases.get_mut(&handle) {
                    held.agent_id = lease.lease_id;
                    held.granted_at = now;
                    held.expires_at = lease.expires_at;
                    held.busy = false;
                }
            }
            Internal::RenewFailed { handle, gone } => {
                if gone {
                    if let Some(held) = self.leases.remove(&handle) {
                        warn!(feature = %held.feature, "a lease could not be kept; the feature now follows the License state");
                    }
                    self.publish();
                } else if let Some(held) = self.leases.get_mut(&handle) {
                    held.busy = false;
                }
            }
        }
    }

    /// Renews a lease; if the agent no longer knows it (restarted), takes a new seat.
    fn renew(&mut self, handle: LeaseHandle) {
        let Ok(ipc) = self.connected_ipc() else {
            return;
        };
        let Some(held) = self.leases.get_mut(&handle) else {
            return;
        };
        if held.busy {
            return;
        }
        held.busy = true;
        let (lease_id, feature) = (held.agent_id.clone(), held.feature.clone());
        let internal = self.internal_tx.clone();
        self.spawn(async move {
            let outcome = match ipc.call(Call::RenewLease { lease_id }).await {
                Ok(Reply::Lease(lease)) => Ok(lease),
                Err(ClientError::Remote(e)) if e.code == ErrorCode::NotFound => {
                    ipc.checkout(&feature).await.map_err(|e| {
                        warn!(error = %e, feature = %feature, "re-taking a lease after an agent restart failed");
                        !matches!(e, ClientError::Disconnected | ClientError::Timeout(_))
                    })
                }
                Ok(_) => Err(false),
                Err(e) => {
                    debug!(error = %e, "renewing a lease failed; retrying at the next tick");
                    Err(false)
                }
            };
            let _ = internal.send(match outcome {
                Ok(lease) => Internal::Renewed { handle, lease },
                Err(gone) => Internal::RenewFailed { handle, gone },
            });
        });
    }

    fn on_tick(&mut self) {
        let now = self.options.clock.now();
        match self.link {
            LinkStatus::Connected => {
                let due: Vec<LeaseHandle> = self
                    .leases
                    .iter()
                    .filter(|(_, l)| {
                        !l.busy && now >= l.granted_at + (l.expires_at - l.granted_at) / 2
                    })
                    .map(|(h, _)| *h)
                    .collect();
                for handle in due {
                    self.renew(handle);
                }
            }
            LinkStatus::Offline => {
                let before = self.leases.len();
                let latest = self.leases.values().map(|l| l.expires_at).max();
                self.leases.retain(|_, l| l.expires_at > now);
                let since = self.offline_since.unwrap_or(now);
                let deadline = latest.map_or(since + self.options.offline_allowance, |l| {
                    l.max(since + self.options.offline_allowance)
                });
                if now >= deadline {
                    warn!("the Tessera agent has been unreachable past the lease; checks now fail");
                    self.link = LinkStatus::Lost;
                    self.publish();
                } else if self.leases.len() != before {
                    self.publish();
                }
            }
            LinkStatus::NotConnected | LinkStatus::Lost | LinkStatus::Closed => {}
        }
    }

    fn publish(&self) {
        let held: Vec<Box<str>> = self
            .leases
            .values()
            .map(|l| Box::from(l.feature.as_str()))
            .collect();
        self.shared.view.store(View {
            link: self.link,
            product: self.product.clone(),
            held: held.into_boxed_slice(),
        });
    }
}

async fn wait_connecting(
    connecting: &mut Option<tokio::task::JoinHandle<IpcClient>>,
) -> Result<IpcClient, tokio::task::JoinError> {
    match connecting {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

async fn next_event(events: &mut Option<EventStream>) -> Option<ClientEvent> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn state_changed(conn: &mut Option<watch::Receiver<ConnectionState>>) -> bool {
    match conn {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}
