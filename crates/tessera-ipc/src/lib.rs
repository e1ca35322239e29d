//! Local IPC between the Tessera agent and its clients (the SDK's Rust core, the CLI, the tray).
//!
//! - [`endpoint`]: where the agent listens (per-user socket file or named pipe, `TESSERA_SOCKET`
//!   override), the single-instance probe, the peer identity type;
//! - [`frame`]: u32 big-endian length + JSON frames, 64 KiB cap, read deadlines;
//! - [`proto`]: the [`ClientMsg`] / [`ServerMsg`] enums, `Hello`/`Welcome`, request ids;
//! - [`event`]: the ISCDesk event shape `{"operate","params","comeBackParams"}`;
//! - [`server`]: the agent's listener, peer checks, sessions, pushes, graceful shutdown;
//! - [`client`]: the typed client with request correlation, events and reconnect.
//!
//! Security model: the endpoint is private to the user (0700 directory, 0600 socket; a DACL for
//! the user's SID on Windows) and every accepted connection is checked against the kernel's
//! record of the peer's user, never against what the client says. Every byte from a peer is
//! untrusted: frames are capped before allocation, must complete within a deadline, and any bad
//! frame closes that connection only. See README.md for the full protocol.
//!
//! Platform code lives in `platform/unix.rs` and `platform/windows.rs` behind the same names;
//! only the Unix side is built and tested on the project's machines.

pub mod client;
pub mod endpoint;
pub mod event;
pub mod frame;
pub mod proto;
pub mod server;

#[cfg(unix)]
#[path = "platform/unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "platform/windows.rs"]
mod platform;

pub use client::{
    Backoff, ClientConfig, ClientError, ClientEvent, ConnectionState, EventStream, IpcClient,
};
pub use endpoint::{Endpoint, EndpointError, PeerIdentity, ProbeOutcome, UserId, probe_existing};
pub use event::{EventParseError, IscEvent};
pub use frame::{FrameError, MAX_FRAME_LEN, ReadLimits};
pub use proto::{
    AgentInfo, AppInfo, Call, ClientMsg, ErrorCode, Hello, Lease, LeaseId, PROTOCOL_VERSION,
    ProductCode, RemoteError, Reply, ServerMsg, SessionId, Welcome,
};
pub use server::{
    CloseReason, IpcServer, PushError, ServerConfig, ServerHandle, ServerStats, SessionHandler,
    SessionInfo,
};
