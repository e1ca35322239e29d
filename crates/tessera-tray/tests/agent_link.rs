//! The tray's agent link against a small agent served by `tessera-ipc` on a temporary socket:
//! unreachable until an agent listens, the snapshot on connect, state events, commands, and
//! reconnecting after the agent restarts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use tessera_ipc::proto::FingerprintInfo;
use tessera_ipc::{
    Call, Endpoint, ErrorCode, IpcServer, RemoteError, Reply, ServerConfig, ServerHandle,
    SessionHandler, SessionInfo,
};
use tessera_tray::link::{self, Command, LinkConfig, LinkMsg, UiSink};
use tessera_tray::notices::Urgency;
use tessera_types::state::ProductModel;
use tessera_types::{Event, LicenseState, ProductState, Snapshot, StateReason};
use time::OffsetDateTime;

/// Bound on every wait for real I/O; reaching it means the test failed.
const IO_BOUND: Duration = Duration::from_secs(10);
const FINGERPRINT: &str = "00:11:22:33:44:55|DISK-1|BOARD-1|CPU-1";
const GOOD_CODE: &str = "PL0123456789ABCDEF";

fn product(state: LicenseState) -> ProductState {
    ProductState {
        product_id: "foocad".into(),
        display_name: Some("FooCAD".into()),
        model: Some(ProductModel::AuthorizationCode),
        state,
        reason: if state == LicenseState::Blocked {
            StateReason::NoLicense
        } else {
            StateReason::Licensed
        },
        message: None,
        deadline: None,
        expires_at: None,
        last_verified_at: None,
        features: Vec::new(),
    }
}

#[derive(Debug)]
struct FakeAgent {
    state: Mutex<LicenseState>,
    codes_seen: Mutex<Vec<String>>,
    update_checks: Mutex<Vec<String>>,
    updates_accepted: Mutex<Vec<String>>,
    server: Mutex<Option<ServerHandle>>,
}

impl FakeAgent {
    fn new(state: LicenseState) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            codes_seen: Mutex::new(Vec::new()),
            update_checks: Mutex::new(Vec::new()),
            updates_accepted: Mutex::new(Vec::new()),
            server: Mutex::new(None),
        })
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::empty(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
        s.upsert(product(*self.state.lock().unwrap()));
        s
    }
}

impl SessionHandler for FakeAgent {
    async fn hello(&self, _session: &SessionInfo) -> Result<Snapshot, RemoteError> {
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
            Call::Fingerprint => Ok(Reply::Fingerprint(FingerprintInfo {
                koogallery: FINGERPRINT.into(),
                short_form: None,
                hardware_id: None,
            })),
            Call::ActivateCode { product_id, code } => {
                assert_eq!(product_id.as_deref(), Some("foocad"));
                self.codes_seen.lock().unwrap().push(code.0.clone());
                if code.0 != GOOD_CODE {
                    return Err(RemoteError::new(
                        ErrorCode::BadRequest,
                        "the code is not known to KooGallery",
                    ));
                }
                *self.state.lock().unwrap() = LicenseState::Active;
                let ps = product(LicenseState::Active);
                if let Some(server) = self.server.lock().unwrap().as_ref() {
                    server
                        .broadcast_event(&Event::LicenseState(ps.clone()), |_| true)
                        .unwrap();
                }
                Ok(Reply::ProductState(ps))
            }
            // Answered for the session's own product, with an event on that session.
            Call::CheckNewVersions => {
                self.update_checks
                    .lock()
                    .unwrap()
                    .push(session.app.product_id.clone());
                if let Some(server) = self.server.lock().unwrap().as_ref() {
                    server
                        .send_event(
                            session.session_id,
                            &Event::UpgradeNotice { available: true },
                        )
                        .unwrap();
                }
                Ok(Reply::Ack)
            }
            Call::AcceptUpdate { product_id } => {
                self.updates_accepted
                    .lock()
                    .unwrap()
                    .push(product_id.unwrap_or_default());
                Ok(Reply::Ack)
            }
            _ => Err(RemoteError::new(ErrorCode::Unsupported, "not in this test")),
        }
    }
}

async fn start(
    endpoint: &Endpoint,
    agent: &Arc<FakeAgent>,
) -> (ServerHandle, tokio::task::JoinHandle<()>) {
    let server = IpcServer::bind(endpoint, ServerConfig::default())
        .await
        .unwrap();
    let handle = server.handle();
    *agent.server.lock().unwrap() = Some(handle.clone());
    let task = tokio::spawn(server.serve(agent.clone()));
    (handle, task)
}

struct Ui {
    rx: mpsc::UnboundedReceiver<LinkMsg>,
}

impl Ui {
    /// The next message matching `want`, skipping others (repeated "unreachable" while waiting).
    async fn until(&mut self, what: &str, want: impl Fn(&LinkMsg) -> bool) -> LinkMsg {
        let found = tokio::time::timeout(IO_BOUND, async {
            loop {
                let msg = self.rx.recv().await.expect("the link ended");
                if want(&msg) {
                    return msg;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} within {IO_BOUND:?}"))
    }
}

fn state_of(msg: &LinkMsg) -> Option<LicenseState> {
    match msg {
        LinkMsg::Connected(s) => s.product("foocad").map(|p| p.state),
        _ => None,
    }
}

#[tokio::test]
async fn link_follows_the_agent_through_commands_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::at(dir.path().join("agent.sock"));
    let (tx, rx) = mpsc::unbounded_channel();
    let mut ui = Ui { rx };
    let (commands, command_rx) = mpsc::channel(8);
    let link = tokio::spawn(link::run(
        LinkConfig::new(endpoint.clone()),
        command_rx,
        UiSink::new(move |m| {
            let _ = tx.send(m);
        }),
    ));

    // No agent yet: unreachable, and commands are answered, not queued.
    ui.until("unreachable", |m| matches!(m, LinkMsg::Unreachable(_)))
        .await;
    commands.send(Command::FetchFingerprint).await.unwrap();
    let refused = ui
        .until("notice", |m| matches!(m, LinkMsg::Notice(_)))
        .await;
    assert!(matches!(refused, LinkMsg::Notice(n) if n.summary.contains("not running")));

    // The agent starts: the tray gets its state.
    let agent = FakeAgent::new(LicenseState::Blocked);
    let (server, task) = start(&endpoint, &agent).await;
    let msg = ui
        .until("connected", |m| matches!(m, LinkMsg::Connected(_)))
        .await;
    assert_eq!(state_of(&msg), Some(LicenseState::Blocked));

    commands.send(Command::FetchFingerprint).await.unwrap();
    let fp = ui
        .until("fingerprint", |m| matches!(m, LinkMsg::Fingerprint(_)))
        .await;
    assert_eq!(fp, LinkMsg::Fingerprint(FINGERPRINT.into()));

    // A refused code is reported, with the agent's reason.
    commands
        .send(Command::ActivateCode {
            product_id: "foocad".into(),
            code: "PLWRONG".into(),
        })
        .await
        .unwrap();
    let msg = ui
        .until("notice", |m| matches!(m, LinkMsg::Notice(_)))
        .await;
    let LinkMsg::Notice(n) = msg else {
        unreachable!()
    };
    assert_eq!(n.urgency, Urgency::Critical);
    assert!(n.body.contains("not known to KooGallery"), "{n:?}");

    // A good one: the outcome, and the state event turns the product Active.
    commands
        .send(Command::ActivateCode {
            product_id: "foocad".into(),
            code: GOOD_CODE.into(),
        })
        .await
        .unwrap();
    // The event and the answer travel separately: take them in either order.
    let (mut active, mut outcome) = (false, None);
    while !active || outcome.is_none() {
        let msg = ui
            .until("state or notice", |m| {
                matches!(m, LinkMsg::Notice(_)) || state_of(m).is_some()
            })
            .await;
        match msg {
            LinkMsg::Notice(n) => outcome = Some(n),
            m => active |= state_of(&m) == Some(LicenseState::Active),
        }
    }
    let n = outcome.unwrap();
    assert_eq!(n.summary, "Authorization code activated");
    assert_eq!(n.body, "FooCAD is now active.");
    assert_eq!(
        *agent.codes_seen.lock().unwrap(),
        vec!["PLWRONG".to_owned(), GOOD_CODE.to_owned()]
    );

    // Updates: checked on a session of the product, offered, accepted.
    commands
        .send(Command::CheckUpdates(vec!["foocad".into()]))
        .await
        .unwrap();
    let msg = ui
        .until("updates", |m| matches!(m, LinkMsg::Updates(_)))
        .await;
    let LinkMsg::Updates(offers) = msg else {
        unreachable!()
    };
    assert_eq!(offers.keys().collect::<Vec<_>>(), vec!["foocad"]);
    assert_eq!(
        *agent.update_checks.lock().unwrap(),
        vec!["foocad".to_owned()]
    );
    commands
        .send(Command::AcceptUpdate("foocad".into()))
        .await
        .unwrap();
    ui.until("update accepted", |m| {
        *m == LinkMsg::UpdateAccepted("foocad".into())
    })
    .await;
    assert_eq!(
        *agent.updates_accepted.lock().unwrap(),
        vec!["foocad".to_owned()]
    );

    // The agent goes away and comes back: unreachable, then connected again by itself.
    server.shutdown("restarting");
    task.await.unwrap();
    ui.until("unreachable", |m| matches!(m, LinkMsg::Unreachable(_)))
        .await;
    let (server, task) = start(&endpoint, &agent).await;
    let msg = ui
        .until("reconnected", |m| matches!(m, LinkMsg::Connected(_)))
        .await;
    assert_eq!(state_of(&msg), Some(LicenseState::Active));

    // The UI quitting ends the link.
    drop(commands);
    tokio::time::timeout(IO_BOUND, link)
        .await
        .expect("the link did not end when the UI quit")
        .unwrap();
    server.shutdown("done");
    task.await.unwrap();
}
