//! Talking to the agent: connecting, exit codes, and turning failures into messages that say
//! what to do next.

use std::fmt;
use std::time::Duration;

use tessera_ipc::{
    AppInfo, ClientConfig, ClientError, Endpoint, ErrorCode, IpcClient, RemoteError,
};
use tessera_types::state::ProductModel;
use tessera_types::{ProductState, Snapshot};

/// The exit codes of `tessera`. Stable: scripts rely on them.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Something failed that has no more specific code; `tessera doctor` found a problem.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// No agent answers on the socket.
    pub const AGENT_UNREACHABLE: u8 = 3;
    /// The agent refused the request: unknown product, invalid code or License, wrong state.
    pub const REFUSED: u8 = 4;
    /// The product is blocked, or the License or code was refused (expired, foreign device …).
    pub const BLOCKED: u8 = 5;
    /// The marketplace (or another dependency of the agent) is unavailable; retry later.
    pub const UNAVAILABLE: u8 = 6;
}

/// A failure with its exit code and what the user should do about it.
#[derive(Debug)]
pub struct Failure {
    /// One of [`exit`].
    pub code: u8,
    /// What failed and why.
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// The same failure with a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub(crate) const START_HINT: &str = "start the agent (`systemctl --user start tessera-agent`, or \
     `tessera-agent run` in a terminal); `tessera doctor` checks the whole setup";

/// The exit code and message for an error from the agent.
pub(crate) fn remote_failure(error: &RemoteError) -> Failure {
    let code = match error.code {
        ErrorCode::BadRequest
        | ErrorCode::NotFound
        | ErrorCode::Denied
        | ErrorCode::Unsupported => exit::REFUSED,
        ErrorCode::Blocked | ErrorCode::NoSeat => exit::BLOCKED,
        ErrorCode::Unavailable | ErrorCode::Busy | ErrorCode::ShuttingDown => exit::UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Unknown => exit::FAILURE,
    };
    let failure = Failure::new(code, format!("the agent refused: {}", error.message));
    match error.code {
        ErrorCode::Unavailable => failure
            .hint("retry later; `tessera doctor` checks whether the marketplace is reachable"),
        ErrorCode::NotFound => failure.hint(
            "`tessera status` lists the products this agent knows; a missing one needs its \
             descriptor in products.d (see `tessera doctor`)",
        ),
        ErrorCode::Unsupported => failure.hint("update the agent to the CLI's version"),
        ErrorCode::Internal => failure.hint("see the agent's log: `tessera logs`"),
        _ => failure,
    }
}

/// The exit code and message for a client-side failure.
pub(crate) fn client_failure(error: ClientError) -> Failure {
    match error {
        ClientError::Connect { endpoint, source } => Failure::new(
            exit::AGENT_UNREACHABLE,
            format!("no Tessera agent answers at {endpoint} ({source})"),
        )
        .hint(START_HINT),
        ClientError::Remote(remote) => remote_failure(&remote),
        ClientError::VersionMismatch { message, .. } => Failure::new(
            exit::AGENT_UNREACHABLE,
            format!("the agent speaks another protocol version: {message}"),
        )
        .hint("install matching versions of tessera and tessera-agent"),
        ClientError::Timeout(after) => Failure::new(
            exit::FAILURE,
            format!("the agent did not answer within {after:?}"),
        )
        .hint("it may be busy or stuck: see `tessera logs`, or restart it"),
        other => Failure::new(
            exit::FAILURE,
            format!("talking to the agent failed: {other}"),
        )
        .hint("see `tessera logs`; restart the agent if it keeps failing"),
    }
}

/// The endpoint from the environment (`TESSERA_SOCKET` or the per-user default).
pub(crate) fn endpoint() -> Result<Endpoint, Failure> {
    Endpoint::from_env().map_err(|e| {
        Failure::new(
            exit::AGENT_UNREACHABLE,
            format!("cannot locate the agent's socket: {e}"),
        )
        .hint("set TESSERA_SOCKET to the agent's socket path")
    })
}

/// Connects as the CLI (no product), or as an application of `product_id` when a call acts on
/// the session's own product (upgrade checks, heartbeats).
pub(crate) async fn connect(product_id: &str) -> Result<IpcClient, Failure> {
    let app = AppInfo {
        product_id: product_id.to_owned(),
        name: "tessera-cli".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
    };
    let mut config = ClientConfig::new(endpoint()?, app);
    config.reconnect = None;
    config.handshake_timeout = Duration::from_secs(5);
    // Activation may retry the marketplace a few times before answering.
    config.request_timeout = Duration::from_secs(60);
    IpcClient::connect(config).await.map_err(client_failure)
}

/// A single-threaded runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

/// The product a command is about: the one named, else the only one of `model`.
pub(crate) fn pick_product(
    snapshot: &Snapshot,
    named: Option<&str>,
    model: Option<ProductModel>,
) -> Result<ProductState, Failure> {
    if let Some(name) = named {
        return snapshot.product(name).cloned().ok_or_else(|| {
            Failure::new(
                exit::REFUSED,
                format!("the agent knows no product {name:?}"),
            )
            .hint(known_products(snapshot))
        });
    }
    let candidates: Vec<&ProductState> = snapshot
        .products
        .iter()
        .filter(|p| model.is_none_or(|m| p.model.is_none_or(|pm| pm == m)))
        .collect();
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::new(
            exit::REFUSED,
            "the agent knows no product this command applies to",
        )
        .hint(
            "install the product's descriptor in products.d (`tessera doctor` shows where) and \
             restart the agent",
        )),
        _ => Err(Failure::new(
            exit::REFUSED,
            "several products fit; name one with --product",
        )
        .hint(known_products(snapshot))),
    }
}

fn known_products(snapshot: &Snapshot) -> String {
    if snapshot.products.is_empty() {
        return "the agent knows no products yet".to_owned();
    }
    let ids: Vec<&str> = snapshot
        .products
        .iter()
        .map(|p| p.product_id.as_str())
        .collect();
    format!("known products: {}", ids.join(", "))
}

/// RFC 3339, for people and scripts alike.
pub(crate) fn when(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::{LicenseState, StateReason};

    fn product(id: &str, model: ProductModel) -> ProductState {
        ProductState {
            product_id: id.to_owned(),
            display_name: None,
            model: Some(model),
            state: LicenseState::Blocked,
            reason: StateReason::NoLicense,
            message: None,
            deadline: None,
            expires_at: None,
            last_verified_at: None,
            features: Vec::new(),
        }
    }

    #[test]
    fn remote_errors_map_to_the_documented_exit_codes() {
        let code = |c| remote_failure(&RemoteError::new(c, "m")).code;
        assert_eq!(code(ErrorCode::BadRequest), exit::REFUSED);
        assert_eq!(code(ErrorCode::NotFound), exit::REFUSED);
        assert_eq!(code(ErrorCode::Blocked), exit::BLOCKED);
        assert_eq!(code(ErrorCode::NoSeat), exit::BLOCKED);
        assert_eq!(code(ErrorCode::Unavailable), exit::UNAVAILABLE);
        assert_eq!(code(ErrorCode::Internal), exit::FAILURE);
        let unavailable = remote_failure(&RemoteError::new(ErrorCode::Unavailable, "down"));
        assert!(unavailable.hint.unwrap().contains("tessera doctor"));
    }

    #[test]
    fn the_product_is_the_named_one_or_the_only_one_that_fits() {
        let t = time::OffsetDateTime::UNIX_EPOCH;
        let mut snap = Snapshot::empty(t);
        snap.upsert(product("cad", ProductModel::AuthorizationCode));
        snap.upsert(product("cae", ProductModel::LicenseFile));
        let pick = |named, model| pick_product(&snap, named, model).map(|p| p.product_id);
        assert_eq!(
            pick(None, Some(ProductModel::AuthorizationCode)).unwrap(),
            "cad"
        );
        assert_eq!(pick(None, Some(ProductModel::LicenseFile)).unwrap(), "cae");
        assert_eq!(pick(Some("cae"), None).unwrap(), "cae");
        let several = pick_product(&snap, None, None).unwrap_err();
        assert_eq!(several.code, exit::REFUSED);
        assert!(several.hint.unwrap().contains("cad, cae"));
        assert!(pick(Some("zz"), None).is_err());
        let empty = Snapshot::empty(t);
        assert!(pick_product(&empty, None, None).is_err());
    }
}
