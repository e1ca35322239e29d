//! The tray's connection to the agent, on a tokio runtime thread of its own (the icon's thread
//! owns `!Send` values and must not block). It connects, follows the agent's events and
//! reconnects when the agent restarts; it runs the user's commands and sends everything the UI
//! needs as [`LinkMsg`] values through a channel.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use tessera_ipc::proto::{AuthCode, LicenseSource};
use tessera_ipc::{
    AppInfo, Backoff, Call, ClientConfig, ClientError, ConnectionState, Endpoint, IpcClient, Reply,
};
use tessera_types::{Event, EventKind, ProductState, Snapshot};

use crate::model::{UpdateOffer, display_name};
use crate::notices::Notice;

/// Longest authorization code accepted from the clipboard (KooGallery codes are far shorter).
pub const MAX_CODE_LEN: usize = 256;
/// How long an update check waits for the agent's answer event per product.
const UPDATE_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the link tells the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkMsg {
    /// Connected (again); the latest state.
    Connected(Snapshot),
    /// The agent is gone or not started.
    Unreachable(String),
    /// The result of an update check: the offers now known, by product.
    Updates(BTreeMap<String, UpdateOffer>),
    /// An upgrade was accepted; its offer is consumed.
    UpdateAccepted(String),
    /// The device fingerprint, to be put on the clipboard.
    Fingerprint(String),
    /// Something to tell the user (result of a command).
    Notice(Notice),
}

/// Where the link delivers its messages (the UI thread's channel, wrapped by the caller).
#[derive(Clone)]
pub struct UiSink(Arc<dyn Fn(LinkMsg) + Send + Sync>);

impl UiSink {
    /// A sink calling `deliver` for every message.
    pub fn new(deliver: impl Fn(LinkMsg) + Send + Sync + 'static) -> Self {
        Self(Arc::new(deliver))
    }

    fn send(&self, msg: LinkMsg) {
        (self.0)(msg);
    }
}

impl std::fmt::Debug for UiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UiSink")
    }
}

/// What the UI asks the link to do.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// Fetch the KooGallery fingerprint.
    FetchFingerprint,
    /// Activate this authorization code for this product.
    ActivateCode {
        /// The product.
        product_id: String,
        /// The code (never logged).
        code: String,
    },
    /// Import the License file at this path.
    ImportLicense(PathBuf),
    /// Ask the agent about upgrades of these products.
    CheckUpdates(Vec<String>),
    /// Accept the upgrade of this product.
    AcceptUpdate(String),
}

// Codes stay out of logs even at debug level.
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::FetchFingerprint => f.write_str("FetchFingerprint"),
            Command::ActivateCode { product_id, code } => write!(
                f,
                "ActivateCode {{ product_id: {product_id:?}, code: <{} chars> }}",
                code.chars().count()
            ),
            Command::ImportLicense(p) => f.debug_tuple("ImportLicense").field(p).finish(),
            Command::CheckUpdates(p) => f.debug_tuple("CheckUpdates").field(p).finish(),
            Command::AcceptUpdate(p) => f.debug_tuple("AcceptUpdate").field(p).finish(),
        }
    }
}

/// How the link connects.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The agent's endpoint.
    pub endpoint: Endpoint,
    /// Wait between attempts while no agent answers (the client's own backoff takes over once
    /// connected).
    pub retry: Backoff,
    /// Time one request may take.
    pub request_timeout: Duration,
}

impl LinkConfig {
    /// Defaults for `endpoint`: retry within 2 s, so a started agent shows up quickly.
    #[must_use]
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            retry: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(2),
            },
            request_timeout: Duration::from_secs(60),
        }
    }

    fn client(&self, product_id: &str) -> ClientConfig {
        let app = AppInfo {
            product_id: product_id.to_owned(),
            name: "tessera-tray".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
        };
        let mut cfg = ClientConfig::new(self.endpoint.clone(), app);
        cfg.request_timeout = self.request_timeout;
        cfg.reconnect = Some(self.retry);
        cfg
    }
}

/// Checks an authorization code taken from the clipboard: trimmed, non-empty, bounded, and made of
/// the characters KooGallery codes use. Returns the cleaned code.
///
/// # Errors
/// A message, safe to show, saying what is wrong (never echoing the text).
pub fn clean_code(raw: &str) -> Result<String, &'static str> {
    let code = raw.trim();
    if code.is_empty() {
        return Err("The clipboard is empty: copy the authorization code from KooGallery first.");
    }
    if code.len() > MAX_CODE_LEN {
        return Err("The clipboard holds too much text to be an authorization code.");
    }
    if !code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(
            "The clipboard does not hold an authorization code (letters, digits and '-' only).",
        );
    }
    Ok(code.to_owned())
}

/// Runs the link until `commands` closes (the UI quit). Reconnects forever meanwhile.
pub async fn run(config: LinkConfig, mut commands: mpsc::Receiver<Command>, ui: UiSink) {
    let mut attempt = 0u32;
    loop {
        let client = match IpcClient::connect(config.client("")).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                if attempt == 0 {
                    tracing::info!(error = %e, "the agent is not reachable; retrying");
                }
                ui.send(LinkMsg::Unreachable(unreachable_text(&e)));
                let wait = config.retry.delay(attempt, &mut rand::thread_rng());
                attempt = attempt.saturating_add(1);
                // Commands while the agent is away are answered at once, not queued.
                let sleep = tokio::time::sleep(wait.max(Duration::from_millis(50)));
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        cmd = commands.recv() => match cmd {
                            Some(_) => {
                                ui.send(LinkMsg::Notice(Notice::critical(
                                    "The Tessera agent is not running",
                                    "Choose \"Start agent\" in the Tessera menu, then try again.",
                                )));
                            }
                            None => return,
                        },
                    }
                }
                continue;
            }
        };
        attempt = 0;
        tracing::info!("connected to the agent");
        if !serve(&config, &client, &mut commands, &ui).await {
            return;
        }
    }
}

fn unreachable_text(e: &ClientError) -> String {
    match e {
        ClientError::Connect { endpoint, .. } => format!("No agent answers at {endpoint}"),
        other => format!("The agent did not accept the tray: {other}"),
    }
}

/// Serves one connection; `false` when the UI is gone.
async fn serve(
    config: &LinkConfig,
    client: &Arc<IpcClient>,
    commands: &mut mpsc::Receiver<Command>,
    ui: &UiSink,
) -> bool {
    let mut events = client.events();
    let mut state = client.state();
    let mut snapshot = client.snapshot().as_ref().clone();
    ui.send(LinkMsg::Connected(snapshot.clone()));
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return true };
                match event.event() {
                    Ok(Event::LicenseState(ps)) => {
                        snapshot.upsert(ps);
                        ui.send(LinkMsg::Connected(snapshot.clone()));
                    }
                    Ok(Event::AgentClosing { reason, .. }) => {
                        tracing::info!(reason = %reason, "the agent is closing");
                        ui.send(LinkMsg::Unreachable(format!("The agent stopped: {reason}")));
                    }
                    Ok(other) => tracing::debug!(kind = ?other.kind(), "event ignored by the tray"),
                    Err(e) => tracing::debug!(error = %e, kind = event.kind, "unreadable event skipped"),
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return true;
                }
                let now = state.borrow_and_update().clone();
                match now {
                    ConnectionState::Connected { .. } => {
                        // Re-read everything: events sent while we were away are lost.
                        match client.status().await {
                            Ok(s) => snapshot = s,
                            Err(e) => tracing::warn!(error = %e, "cannot read the agent's state after reconnecting"),
                        }
                        ui.send(LinkMsg::Connected(snapshot.clone()));
                    }
                    ConnectionState::Reconnecting { reason, .. } => {
                        ui.send(LinkMsg::Unreachable(format!("Reconnecting to the agent ({reason})")));
                    }
                    ConnectionState::Closed { reason } => {
                        tracing::info!(reason = %reason, "the connection to the agent is closed");
                        return true;
                    }
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return false };
                // Each command runs on its own so a slow marketplace call never holds up events.
                tokio::spawn(execute(config.clone(), client.clone(), cmd, ui.clone()));
            }
        }
    }
}

async fn execute(config: LinkConfig, client: Arc<IpcClient>, cmd: Command, ui: UiSink) {
    tracing::debug!(command = ?cmd, "running a tray command");
    let msg = match cmd {
        Command::FetchFingerprint => match client.call(Call::Fingerprint).await {
            Ok(Reply::Fingerprint(f)) => LinkMsg::Fingerprint(f.koogallery),
            other => failed("Cannot read the device fingerprint", other),
        },
        Command::ActivateCode { product_id, code } => {
            let call = Call::ActivateCode {
                product_id: Some(product_id),
                code: AuthCode(code),
            };
            match client.call(call).await {
                Ok(Reply::ProductState(ps)) => {
                    LinkMsg::Notice(outcome("Authorization code activated", &ps))
                }
                other => failed("The authorization code was not activated", other),
            }
        }
        Command::ImportLicense(path) => {
            let call = Call::ImportLicense {
                product_id: None,
                source: LicenseSource::Path { path },
            };
            match client.call(call).await {
                Ok(Reply::ProductState(ps)) => LinkMsg::Notice(outcome("License imported", &ps)),
                other => failed("The License was not imported", other),
            }
        }
        Command::CheckUpdates(products) => {
            let mut offers = BTreeMap::new();
            let mut failed = 0usize;
            for pid in products {
                match check_updates(&config, &pid).await {
                    Ok(Some(offer)) => {
                        offers.insert(pid, offer);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(product_id = %pid, error = %e, "update check failed");
                    }
                }
            }
            if failed > 0 {
                ui.send(LinkMsg::Notice(Notice::critical(
                    "Could not check for updates",
                    format!("{failed} product(s) could not be checked; see the agent's log."),
                )));
            } else if offers.is_empty() {
                ui.send(LinkMsg::Notice(Notice::info(
                    "No updates available",
                    "Every product is up to date.",
                )));
            }
            LinkMsg::Updates(offers)
        }
        Command::AcceptUpdate(product_id) => {
            let call = Call::AcceptUpdate {
                product_id: Some(product_id.clone()),
            };
            match client.call(call).await {
                Ok(Reply::Ack) => {
                    ui.send(LinkMsg::Notice(Notice::info(
                        "Update accepted",
                        "The application was asked to save your work and exit so the update can be installed.",
                    )));
                    LinkMsg::UpdateAccepted(product_id)
                }
                other => failed("The update was not started", other),
            }
        }
    };
    ui.send(msg);
}

/// `CheckNewVersions` is answered for the session's own product, so the check runs on a short
/// session opened for that product; the agent answers with `EVENT_UPGRADENOTICE` on it.
async fn check_updates(
    config: &LinkConfig,
    product_id: &str,
) -> Result<Option<UpdateOffer>, ClientError> {
    let mut cfg = config.client(product_id);
    cfg.reconnect = None;
    let client = IpcClient::connect(cfg).await?;
    let mut events = client.events();
    let answer = async {
        client.call(Call::CheckNewVersions).await?;
        loop {
            let Some(ev) = events.next().await else {
                return Err(ClientError::Disconnected);
            };
            if ev.kind() == Some(EventKind::UpgradeNotice)
                && let Ok(Event::UpgradeNotice { available }) = ev.event()
            {
                return Ok(available.then_some(UpdateOffer { forced: false }));
            }
        }
    };
    let result = match tokio::time::timeout(UPDATE_ANSWER_TIMEOUT, answer).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(UPDATE_ANSWER_TIMEOUT)),
    };
    client.close().await;
    result
}

fn outcome(title: &str, ps: &ProductState) -> Notice {
    let state = match ps.state {
        tessera_types::LicenseState::Active => "active",
        tessera_types::LicenseState::Grace => "in grace",
        tessera_types::LicenseState::Blocked => "blocked",
    };
    let body = format!("{} is now {state}.", display_name(ps));
    if ps.state == tessera_types::LicenseState::Blocked {
        Notice::critical(title, body)
    } else {
        Notice::info(title, body)
    }
}

fn failed(title: &str, result: Result<Reply, ClientError>) -> LinkMsg {
    let body = match result {
        Ok(_) => "The agent answered something unexpected.".to_owned(),
        Err(ClientError::Remote(e)) => e.message.chars().take(300).collect(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(what = title, why = %body, "tray command failed");
    LinkMsg::Notice(Notice::critical(title, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_the_clipboard_are_checked_and_never_shown() {
        assert_eq!(
            clean_code("  PL1234-abcd_9\n"),
            Ok("PL1234-abcd_9".to_owned())
        );
        assert!(clean_code(" \n").is_err());
        assert!(clean_code(&"A".repeat(MAX_CODE_LEN + 1)).is_err());
        let e = clean_code("PLSECRET; rm -rf").unwrap_err();
        assert!(!e.contains("SECRET"));
        let cmd = Command::ActivateCode {
            product_id: "p".into(),
            code: "PLSECRETCODE".into(),
        };
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("12 chars"));
    }
}
