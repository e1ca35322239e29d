//! The messages: one [`ClientMsg`] enum for what clients send, one [`ServerMsg`] enum for what the
//! agent sends. Both are JSON objects tagged by `"type"`.
//!
//! Forward compatibility: a request `op` this build does not know decodes as
//! [`Call::Unsupported`] (the agent answers [`ErrorCode::Unsupported`] instead of dropping the
//! connection), an unknown server message as [`ServerMsg::Unknown`], an unknown reply as
//! [`Reply::Unknown`]; event kinds travel as numbers so a client skips kinds it does not know.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use tessera_types::events::LicenseKind;
use tessera_types::{ProductState, Snapshot};

use crate::event::IscEvent;

/// Version of this protocol. Bumped on any change an older peer would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// A client-to-agent message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First message on every connection.
    Hello(Hello),
    /// A request; the agent answers with a [`ServerMsg::Reply`] or [`ServerMsg::Error`] carrying
    /// `re` = this `id`.
    Request(Request),
    /// The client is closing the connection on purpose (its leases are released by the agent
    /// once the session is not resumed).
    Goodbye,
}

/// The handshake a client opens with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub protocol: u32,
    /// Who is connecting (as the client describes itself; the agent trusts only the peer
    /// credentials of the socket for access decisions).
    pub app: AppInfo,
    /// Session to re-attach after a reconnect (leases and subscriptions survive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_session: Option<SessionId>,
}

/// The application behind a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// KooGallery product id the application is licensed under (empty for the CLI and tray).
    pub product_id: String,
    /// Application name (e.g. `tessera-cli`, `FooCAD`).
    pub name: String,
    /// Application version.
    pub version: String,
    /// Process id, as the client reports it.
    pub pid: u32,
}

/// A session id, minted by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

impl SessionId {
    /// A fresh random id.
    #[must_use]
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A request: an id chosen by the client, unique on its connection, and the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Correlates the answer (`re`).
    pub id: u64,
    /// What is asked.
    pub call: Call,
}

/// Every call the agent serves. Tagged by `"op"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Call {
    /// The current [`Snapshot`] → [`Reply::Snapshot`].
    Status,
    /// Activate a KooGallery authorization code (Model A) → [`Reply::ProductState`].
    ActivateCode {
        /// Product; defaults to the session's product.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_id: Option<String>,
        /// The code.
        code: AuthCode,
    },
    /// Activate several authorization codes at once, one per product (Model A; the agent uses
    /// the marketplace's v2 batch activation) → [`Reply::Snapshot`]. At most
    /// [`MAX_BATCH_CODES`] codes.
    ActivateCodes {
        /// The codes with their products.
        codes: Vec<ProductCode>,
    },
    /// Agent-level status for `status` / `doctor` → [`Reply::AgentInfo`].
    AgentInfo,
    /// Import a License file or string (Model B) → [`Reply::ProductState`].
    ImportLicense {
        /// Product; defaults to the one the License names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_id: Option<String>,
        /// Where the License is.
        source: LicenseSource,
    },
    /// ISCDesk `GetLicenseFileRequest` / `GetLicenseStringRequest` → [`Reply::Ack`], then an
    /// `EVENT_LICENSE_VERIFY` event.
    RequestLicense {
        /// File or string.
        kind: LicenseKind,
        /// Requested file name (file kind).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_name: Option<String>,
        /// Device info the application adds to the request (may be empty).
        #[serde(default)]
        dev_info: String,
    },
    /// ISCDesk `LicenseVerifyNotify`: the application's own verification result → [`Reply::Ack`].
    LicenseVerifyNotify {
        /// Whether the application accepted the License.
        ok: bool,
        /// Its error message, if any.
        #[serde(default)]
        message: String,
    },
    /// ISCDesk `TrialExpirationAndGetLicense` → [`Reply::Ack`].
    TrialExpired {
        /// File or string.
        kind: LicenseKind,
        /// Device info for the License application.
        #[serde(default)]
        dev_info: String,
        /// Requested file name (file kind).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_name: Option<String>,
    },
    /// ISCDesk `CheckNewVersions` → [`Reply::Ack`], then `EVENT_UPGRADENOTICE`.
    CheckNewVersions,
    /// ISCDesk `UpgradeNotify(bUpgrade)`: the application's answer to an optional upgrade.
    UpgradeNotify {
        /// Upgrade after the application exits.
        accept: bool,
    },
    /// From the CLI or tray: the user accepts the pending upgrade of a product → [`Reply::Ack`],
    /// then `EVENT_UPDATE` to that product's applications.
    AcceptUpdate {
        /// Product; defaults to the session's product.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_id: Option<String>,
    },
    /// Take a seat of a feature → [`Reply::Lease`].
    Checkout {
        /// Feature name.
        feature: String,
        /// Product; defaults to the session's product.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_id: Option<String>,
    },
    /// Extend a lease → [`Reply::Lease`].
    RenewLease {
        /// The lease.
        lease_id: LeaseId,
    },
    /// Give a seat back → [`Reply::Ack`].
    Release {
        /// The lease.
        lease_id: LeaseId,
    },
    /// The device fingerprint → [`Reply::Fingerprint`].
    Fingerprint,
    /// Change the agent's log filter (a `tracing` env-filter directive) → [`Reply::Ack`].
    SetLogLevel {
        /// e.g. `info,tessera_agent=debug`.
        filter: String,
    },
    /// Choose which event kinds this session receives (empty: all, the default) →
    /// [`Reply::Ack`]. Numbers, so a newer client can name kinds an older agent ignores.
    Subscribe {
        /// [`tessera_types::EventKind`] numbers.
        kinds: Vec<u32>,
    },
    /// Ask the agent to stop (CLI) → [`Reply::Ack`], then `EVENT_AGENT_CLOSING` to everyone.
    Shutdown,
    /// An `op` this build does not know.
    #[serde(other)]
    Unsupported,
}

/// Most codes one [`Call::ActivateCodes`] may carry (the marketplace's batch limit).
pub const MAX_BATCH_CODES: usize = 100;

/// An authorization code and the product it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCode {
    /// Product (KooGallery product id of a descriptor).
    pub product_id: String,
    /// The code.
    pub code: AuthCode,
}

/// Where a License to import comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum LicenseSource {
    /// A file the agent reads (it must be readable by the agent's user).
    Path {
        /// Absolute path.
        path: PathBuf,
    },
    /// The License text itself.
    Content {
        /// File content or License string.
        content: LicenseText,
    },
}

/// A KooGallery authorization code. `Debug` shows only a prefix, so codes stay out of logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthCode(pub String);

impl fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.0.chars().take(4).collect();
        write!(f, "AuthCode({prefix}…, {} chars)", self.0.chars().count())
    }
}

/// License text. `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LicenseText(pub String);

impl fmt::Debug for LicenseText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseText(<{} bytes>)", self.0.len())
    }
}

/// A lease id, minted by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub String);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent-to-client message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Handshake accepted.
    Welcome(Welcome),
    /// Handshake refused; the agent closes the connection after sending it.
    Rejected(Rejection),
    /// Successful answer to request `re`.
    Reply {
        /// The request's id.
        re: u64,
        /// The answer.
        reply: Reply,
    },
    /// Failed answer to request `re`.
    Error {
        /// The request's id.
        re: u64,
        /// What went wrong.
        error: RemoteError,
    },
    /// A pushed event.
    Event(EventFrame),
    /// The agent is closing this connection; `reason` is safe to show.
    Goodbye {
        /// Why.
        reason: String,
    },
    /// A message type this build does not know.
    #[serde(other)]
    Unknown,
}

/// The agent's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The agent's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The agent's version.
    pub agent_version: String,
    /// The session (the resumed one when the resume was accepted).
    pub session_id: SessionId,
    /// Whether `resume_session` was honoured.
    #[serde(default)]
    pub resumed: bool,
    /// The state of every product now.
    pub snapshot: Snapshot,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Machine-readable cause.
    pub code: RejectCode,
    /// Human-readable cause.
    pub message: String,
    /// The agent's protocol version.
    pub agent_protocol: u32,
}

/// Machine-readable cause of a [`Rejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The client's protocol version is not the agent's.
    VersionMismatch,
    /// The user already has the maximum number of connections open.
    TooManyConnections,
    /// The first message was not a valid `Hello`.
    BadHello,
    /// The agent's handler refused the session.
    Refused,
    /// The agent is shutting down.
    ShuttingDown,
    /// A cause this build does not know.
    #[serde(other)]
    Unknown,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// Done; nothing to return (or the result comes as an event).
    Ack,
    /// Every product's state.
    Snapshot(Snapshot),
    /// One product's state after an activation or import.
    ProductState(ProductState),
    /// A granted or renewed lease.
    Lease(Lease),
    /// The device fingerprint.
    Fingerprint(FingerprintInfo),
    /// Agent-level status.
    AgentInfo(AgentInfo),
    /// A reply this build does not know.
    #[serde(other)]
    Unknown,
}

/// A seat of a feature held by a session until `expires_at` unless renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease.
    pub lease_id: LeaseId,
    /// Product.
    pub product_id: String,
    /// Feature.
    pub feature: String,
    /// When the seat returns to the pool unless renewed.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Agent-level status: what `tessera status` / `tessera doctor` show beside the products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent's version.
    pub version: String,
    /// The agent's process id.
    pub pid: u32,
    /// The secrets store in use (`secret_service`, `encrypted_file`, `native`, `memory`).
    pub secrets_store: String,
    /// Why that store was chosen, when it is a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_note: Option<String>,
    /// Product descriptors skipped, with why.
    #[serde(default)]
    pub descriptor_problems: Vec<String>,
    /// Whether the clock was found set back (offline grace withheld until an online check).
    #[serde(default)]
    pub clock_tampered: bool,
    /// Stored records that failed their integrity check.
    #[serde(default)]
    pub integrity_failures: Vec<String>,
    /// The socket the agent listens on.
    pub socket: PathBuf,
    /// The state directory (database, encrypted secrets file).
    pub state_dir: PathBuf,
    /// The directory of the agent's daily-rotated log files, when it writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    /// The current log filter, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_filter: Option<String>,
}

/// The device identity, as the agent computed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerprintInfo {
    /// KooGallery fingerprint string `MAC|disk|board|CPU` (PROTOCOL.md §4.4).
    pub koogallery: String,
    /// The ≤ 1024-character form sent with `getLicenseAsync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_form: Option<String>,
    /// Tessera's tolerant hardware id, when available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
}

/// A failed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RemoteError {
    /// Machine-readable cause.
    pub code: ErrorCode,
    /// Human-readable cause, safe to show.
    pub message: String,
}

impl RemoteError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Machine-readable cause of a [`RemoteError`]. Append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or its arguments are invalid.
    BadRequest,
    /// The agent does not serve this call.
    Unsupported,
    /// Unknown product, feature or lease.
    NotFound,
    /// The product is blocked; the message says why.
    Blocked,
    /// Every seat of the feature is taken.
    NoSeat,
    /// This session may not do that (e.g. an application asking for another product).
    Denied,
    /// Too many requests in flight on this connection.
    Busy,
    /// A dependency (marketplace, keyring) is unavailable; retrying later may help.
    Unavailable,
    /// The agent is shutting down.
    ShuttingDown,
    /// An unexpected failure inside the agent.
    Internal,
    /// A code this build does not know.
    #[serde(other)]
    Unknown,
}

/// A pushed event: its [`tessera_types::EventKind`] number and the ISCDesk-shaped payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    /// [`tessera_types::EventKind`] number (kept raw so unknown kinds can be skipped).
    pub kind: u32,
    /// `{"operate","params","comeBackParams"}`.
    pub payload: IscEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes_are_the_documented_ones() {
        let hello = ClientMsg::Hello(Hello {
            protocol: 1,
            app: AppInfo {
                product_id: "p".into(),
                name: "FooCAD".into(),
                version: "2.0".into(),
                pid: 42,
            },
            resume_session: None,
        });
        assert_eq!(
            serde_json::to_string(&hello).unwrap(),
            r#"{"type":"hello","protocol":1,"app":{"product_id":"p","name":"FooCAD","version":"2.0","pid":42}}"#
        );
        let req = ClientMsg::Request(Request {
            id: 7,
            call: Call::Checkout {
                feature: "solver".into(),
                product_id: None,
            },
        });
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"type":"request","id":7,"call":{"op":"checkout","feature":"solver"}}"#
        );
        assert_eq!(serde_json::from_str::<ClientMsg>(&json).unwrap(), req);
        let reply = ServerMsg::Error {
            re: 7,
            error: RemoteError::new(ErrorCode::NoSeat, "all 2 seats in use"),
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"type":"error","re":7,"error":{"code":"no_seat","message":"all 2 seats in use"}}"#
        );
    }

    #[test]
    fn unknown_parts_from_newer_peers_decode() {
        let call: ClientMsg = serde_json::from_str(
            r#"{"type":"request","id":1,"call":{"op":"teleport","to":"mars"}}"#,
        )
        .unwrap();
        assert_eq!(
            call,
            ClientMsg::Request(Request {
                id: 1,
                call: Call::Unsupported
            })
        );
        let msg: ServerMsg = serde_json::from_str(r#"{"type":"hologram"}"#).unwrap();
        assert_eq!(msg, ServerMsg::Unknown);
        let msg: ServerMsg = serde_json::from_str(
            r#"{"type":"error","re":2,"error":{"code":"quota","message":"m"}}"#,
        )
        .unwrap();
        assert!(matches!(msg, ServerMsg::Error { error, .. } if error.code == ErrorCode::Unknown));
    }

    #[test]
    fn batch_activation_and_agent_info_have_stable_shapes() {
        let call = Call::ActivateCodes {
            codes: vec![ProductCode {
                product_id: "p".into(),
                code: AuthCode("PLCODE".into()),
            }],
        };
        let json = serde_json::to_string(&call).unwrap();
        assert_eq!(
            json,
            r#"{"op":"activate_codes","codes":[{"product_id":"p","code":"PLCODE"}]}"#
        );
        assert_eq!(serde_json::from_str::<Call>(&json).unwrap(), call);
        assert!(!format!("{call:?}").contains("PLCODE"));
        assert_eq!(
            serde_json::to_string(&Call::AgentInfo).unwrap(),
            r#"{"op":"agent_info"}"#
        );
        let info = Reply::AgentInfo(AgentInfo {
            version: "0.1.0".into(),
            pid: 7,
            secrets_store: "encrypted_file".into(),
            secrets_note: None,
            descriptor_problems: vec!["bad.toml: missing product_id".into()],
            clock_tampered: true,
            integrity_failures: Vec::new(),
            socket: "/run/user/1000/tessera/agent.sock".into(),
            state_dir: "/home/u/.local/state/tessera".into(),
            log_dir: None,
            log_filter: Some("info".into()),
        });
        let json = serde_json::to_string(&info).unwrap();
        assert!(
            json.starts_with(r#"{"kind":"agent_info","version":"0.1.0""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Reply>(&json).unwrap(), info);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let call = Call::ActivateCode {
            product_id: None,
            code: AuthCode("PLSECRETCODE123456".into()),
        };
        let shown = format!("{call:?}");
        assert!(!shown.contains("SECRETCODE"), "{shown}");
        let src = LicenseSource::Content {
            content: LicenseText("BEGIN LICENSE abc".into()),
        };
        assert!(!format!("{src:?}").contains("abc"));
    }
}
