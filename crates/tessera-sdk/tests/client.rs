//! The Rust client against a stand-in agent: checks, leases, events, and surviving the agent.

mod support;

use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{AgentHarness, LICENSE_STRING, wait_until};
use tessera::{Client, ClientOptions, LinkStatus, tessera_result};
use tessera_types::events::LicenseKind;
use tessera_types::{Event, EventKind, LicenseState, StateReason};

const CONNECT: Duration = Duration::from_secs(5);

fn options(agent: &AgentHarness) -> ClientOptions {
    let mut options = ClientOptions::new(support::PRODUCT, "FooCAD", "2.0.0");
    options.endpoint = Some(agent.endpoint.clone());
    options.clock = agent.world.clock.shared();
    options
}

type Seen = Arc<Mutex<Vec<(u32, String)>>>;

fn recording(client: &Client) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    client
        .set_event_sink(Some(Box::new(move |kind: u32, json: &CString| {
            sink.lock()
                .unwrap()
                .push((kind, json.to_str().unwrap().to_owned()));
        })))
        .unwrap();
    seen
}

#[test]
fn checks_follow_the_license_and_leases_take_seats() {
    let agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    assert_eq!(
        client.check(b"solver"),
        tessera_result::TESSERA_NOT_CONNECTED
    );
    assert_eq!(
        client.checkout("solver").unwrap_err().code(),
        tessera_result::TESSERA_NOT_CONNECTED
    );
    client.connect(CONNECT).unwrap();
    assert_eq!(client.link(), LinkStatus::Connected);
    assert_eq!(client.check(b"solver"), tessera_result::TESSERA_OK);
    assert_eq!(client.check(b"mesher"), tessera_result::TESSERA_OK);
    assert_eq!(
        client.check(b"export.step"),
        tessera_result::TESSERA_FEATURE_NOT_LICENSED
    );

    let a = client.checkout("solver").unwrap();
    let b = client.checkout("solver").unwrap();
    assert_ne!(a, b);
    assert_eq!(
        client.checkout("solver").unwrap_err().code(),
        tessera_result::TESSERA_NO_SEAT
    );
    assert_eq!(
        client.checkout("export.step").unwrap_err().code(),
        tessera_result::TESSERA_FEATURE_NOT_LICENSED
    );
    client.release(a).unwrap();
    assert_eq!(
        client.release(a).unwrap_err().code(),
        tessera_result::TESSERA_LEASE_NOT_FOUND
    );
    wait_until("the release reaches the agent", || agent.lease_count() == 1);
    client.checkout("solver").unwrap();
}

#[test]
fn connect_without_an_agent_fails_then_succeeds_in_the_background() {
    let mut agent = AgentHarness::start();
    agent.down();
    let client = Client::new(options(&agent)).unwrap();
    let err = client.connect(Duration::from_millis(300)).unwrap_err();
    assert_eq!(
        err.code(),
        tessera_result::TESSERA_AGENT_UNAVAILABLE,
        "{err}"
    );
    assert!(err.message().contains("cannot connect"), "{err}");
    assert_eq!(
        client.check(b"solver"),
        tessera_result::TESSERA_NOT_CONNECTED
    );
    agent.up();
    wait_until("the background connection", || {
        client.check(b"solver") == tessera_result::TESSERA_OK
    });
    client.connect(Duration::ZERO).unwrap();
}

#[test]
fn state_changes_reach_checks_and_callbacks_but_held_leases_keep_working() {
    let agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    let seen = recording(&client);
    client.connect(CONNECT).unwrap();
    let lease = client.checkout("solver").unwrap();

    agent.set_state(LicenseState::Blocked, StateReason::Expired);
    wait_until("the blocked state", || {
        client.check(b"mesher") == tessera_result::TESSERA_LICENSE_EXPIRED
    });
    // Running work keeps its seat: blocking applies to new checkouts.
    assert_eq!(client.check(b"solver"), tessera_result::TESSERA_OK);
    assert_eq!(
        client.checkout("mesher").unwrap_err().code(),
        tessera_result::TESSERA_LICENSE_EXPIRED
    );
    let state = client.product_state().unwrap();
    assert_eq!(
        (state.state, state.reason),
        (LicenseState::Blocked, StateReason::Expired)
    );
    wait_until("the state event", || !seen.lock().unwrap().is_empty());
    let (kind, json) = seen.lock().unwrap()[0].clone();
    assert_eq!(kind, EventKind::LicenseState.code());
    let payload: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(payload["operate"], "LicenseState");
    assert_eq!(payload["params"]["state"], "Blocked");
    assert_eq!(payload["params"]["reason"], "expired");

    client.release(lease).unwrap();
    assert_eq!(
        client.check(b"solver"),
        tessera_result::TESSERA_LICENSE_EXPIRED
    );
    agent.set_state(LicenseState::Active, StateReason::Licensed);
    wait_until("the renewed state", || {
        client.check(b"solver") == tessera_result::TESSERA_OK
    });
}

#[test]
fn iscdesk_requests_are_answered_by_events_on_the_pull_queue() {
    let agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    client.connect(CONNECT).unwrap();
    client
        .request_license(LicenseKind::String, None, "")
        .unwrap();
    wait_until("the license event", || client.peek_event().is_some());
    let (kind, json) = client.next_event().unwrap();
    assert_eq!(kind, EventKind::LicenseVerify.code());
    let payload: serde_json::Value = serde_json::from_str(json.to_str().unwrap()).unwrap();
    assert_eq!(payload["params"]["LicenseContent"], LICENSE_STRING);
    assert_eq!(payload["params"]["Status"], "success");

    client.check_new_versions().unwrap();
    wait_until("the upgrade notice", || client.peek_event().is_some());
    let (kind, json) = client.next_event().unwrap();
    assert_eq!(kind, EventKind::UpgradeNotice.code());
    assert!(json.to_str().unwrap().contains(r#""available":"true""#));

    client.verify_notify(true, "").unwrap();
    client.upgrade_notify(false).unwrap();
    client
        .trial_expired(LicenseKind::File, "dev", Some("foo.lic"))
        .unwrap();
    client.activate_code("PL0123456789").unwrap();
    assert_eq!(
        client.activate_code("XX").unwrap_err().code(),
        tessera_result::TESSERA_INVALID_PARAMETER
    );
    assert_eq!(
        client.activate_code("  ").unwrap_err().code(),
        tessera_result::TESSERA_INVALID_PARAMETER
    );
    client.import_license_string(LICENSE_STRING).unwrap();
    assert_eq!(
        client
            .import_license_file("/nonexistent/foo.lic")
            .unwrap_err()
            .code(),
        tessera_result::TESSERA_INVALID_PARAMETER
    );
    let calls = agent.world.calls();
    for op in [
        "request_license",
        "check_new_versions",
        "license_verify_notify",
        "upgrade_notify",
        "trial_expired",
        "activate_code",
        "import_license",
    ] {
        assert!(calls.iter().any(|c| c == op), "{op} not in {calls:?}");
    }
    assert!(client.next_event().is_none());
}

#[test]
fn leases_survive_an_agent_restart_and_the_client_reattaches_within_two_seconds() {
    let mut agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    client.connect(CONNECT).unwrap();
    client.checkout("solver").unwrap();
    assert_eq!(agent.lease_count(), 1);

    agent.down();
    wait_until("the client to notice", || {
        client.link() == LinkStatus::Offline
    });
    // Within the lease, cached decisions hold.
    assert_eq!(client.check(b"solver"), tessera_result::TESSERA_OK);
    assert_eq!(client.check(b"mesher"), tessera_result::TESSERA_OK);
    assert_eq!(
        client.checkout("mesher").unwrap_err().code(),
        tessera_result::TESSERA_AGENT_UNAVAILABLE
    );

    let back = Instant::now();
    agent.up();
    wait_until("re-attachment with the lease re-taken", || {
        client.link() == LinkStatus::Connected && agent.lease_count() == 1
    });
    let took = back.elapsed();
    assert!(took < Duration::from_secs(2), "re-attached after {took:?}");
    assert_eq!(client.check(b"solver"), tessera_result::TESSERA_OK);
}

#[test]
fn checks_fail_with_agent_lost_once_the_agent_is_gone_past_the_lease() {
    let mut agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    client.connect(CONNECT).unwrap();
    client.checkout("solver").unwrap();
    agent.down();
    wait_until("offline", || client.link() == LinkStatus::Offline);

    agent.world.clock.advance(time::Duration::minutes(14));
    client.refresh().unwrap();
    assert_eq!(client.check(b"solver"), tessera_result::TESSERA_OK);
    agent.world.clock.advance(time::Duration::minutes(2));
    client.refresh().unwrap();
    assert_eq!(client.link(), LinkStatus::Lost);
    assert_eq!(client.check(b"solver"), tessera_result::TESSERA_AGENT_LOST);
    assert_eq!(client.check(b"mesher"), tessera_result::TESSERA_AGENT_LOST);

    agent.up();
    wait_until("the agent back", || {
        client.check(b"mesher") == tessera_result::TESSERA_OK
    });
}

#[test]
fn two_clients_in_one_process_are_independent() {
    let agent = AgentHarness::start();
    let first = Client::new(options(&agent)).unwrap();
    let mut other = options(&agent);
    other.product_id = "barcae".into();
    let second = Client::new(other).unwrap();
    first.connect(CONNECT).unwrap();
    second.connect(CONNECT).unwrap();
    assert_eq!(agent.session_count(), 2);
    assert_eq!(first.check(b"solver"), tessera_result::TESSERA_OK);
    assert_eq!(
        second.check(b"solver"),
        tessera_result::TESSERA_UNKNOWN_PRODUCT
    );
    drop(first);
    wait_until("the first session to end", || agent.session_count() == 1);
    assert_eq!(
        second.check(b"solver"),
        tessera_result::TESSERA_UNKNOWN_PRODUCT
    );
}

#[test]
fn the_log_callback_receives_the_clients_lines() {
    struct Lines(Arc<Mutex<Vec<String>>>);
    impl tessera::LogSink for Lines {
        fn log(&self, _level: tracing::Level, message: &CString) {
            self.0
                .lock()
                .unwrap()
                .push(message.to_string_lossy().into_owned());
        }
    }
    let agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    client
        .set_log_sink(Some(Box::new(Lines(lines.clone()))), tracing::Level::INFO)
        .unwrap();
    client.connect(CONNECT).unwrap();
    wait_until("a log line", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("connected to the Tessera agent"))
    });
}

#[test]
fn the_state_reported_after_a_reconnect_is_announced_when_it_changed() {
    let mut agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    let seen = recording(&client);
    client.connect(CONNECT).unwrap();
    agent.down();
    wait_until("offline", || client.link() == LinkStatus::Offline);
    // Changed while the application could not hear about it.
    *agent.world.product.lock().unwrap() =
        support::product_state(LicenseState::Grace, StateReason::OfflineGrace);
    agent.up();
    wait_until("the announced state", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(k, json)| *k == EventKind::LicenseState.code() && json.contains("\"Grace\""))
    });
    let (_, json) = seen.lock().unwrap().last().cloned().unwrap();
    let isc: tessera_ipc::IscEvent = serde_json::from_str(&json).unwrap();
    assert!(
        matches!(isc.to_event().unwrap(), Event::LicenseState(s) if s.state == LicenseState::Grace)
    );
}
