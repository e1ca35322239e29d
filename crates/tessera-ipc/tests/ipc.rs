//! Server and client together over real Unix sockets in temporary directories.

mod common;

use std::time::Duration;

use common::*;
use tessera_ipc::endpoint::{Endpoint, ProbeOutcome, probe_existing};
use tessera_ipc::frame::write_frame;
use tessera_ipc::proto::RejectCode;
use tessera_ipc::{
    Call, ClientError, ConnectionState, EndpointError, ErrorCode, IpcClient, IpcServer, IscEvent,
    PROTOCOL_VERSION, Reply, ServerMsg,
};
use tessera_types::events::{DeliveredLicense, DeliveryStatus};
use tessera_types::{Event, EventKind, LicenseState};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

fn temp_endpoint() -> (tempfile::TempDir, Endpoint) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::at(dir.path().join("tessera").join("agent.sock"));
    (dir, endpoint)
}

#[tokio::test]
async fn hello_welcome_requests_and_events_round_trip() {
    let (_dir, endpoint) = temp_endpoint();
    let agent = TestAgent::new();
    let server = start(&endpoint, agent.clone(), fast_config()).await;

    let client = IpcClient::connect(client_config(&endpoint, "FooCAD"))
        .await
        .unwrap();
    let session = client.session_id().expect("connected");
    assert_eq!(client.snapshot().products[0].state, LicenseState::Active);
    let hellos = agent.hellos();
    assert_eq!(hellos.len(), 1);
    assert_eq!(hellos[0].app.name, "FooCAD");
    assert_eq!(hellos[0].peer.pid, Some(std::process::id()));
    assert!(!hellos[0].resumed);

    let lease = client.checkout("solver").await.unwrap();
    assert_eq!(lease.lease_id.0, "L-1");
    assert_eq!(lease.product_id, "foocad");
    assert_eq!(lease.expires_at.unix_timestamp(), 1_800_000_000 + 15 * 60);
    client.release(lease.lease_id).await.unwrap();
    let err = client.checkout("mesher").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(e) if e.code == ErrorCode::NotFound),
        "{err:?}"
    );
    let snapshot = client.status().await.unwrap();
    assert_eq!(snapshot.products.len(), 1);

    // Events: one to this session, one broadcast that also updates the client's snapshot.
    let mut events = client.events();
    let verify = Event::LicenseVerify {
        status: DeliveryStatus::Success,
        license: DeliveredLicense::String("LICENSE-TEXT".into()),
        message: None,
    };
    server.handle.send_event(session, &verify).unwrap();
    let got = tokio::time::timeout(IO_BOUND, events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.kind(), Some(EventKind::LicenseVerify));
    assert_eq!(got.payload.operate, "LicenseVerify");
    assert_eq!(got.event().unwrap(), verify);

    let blocked = Event::LicenseState(product_state(LicenseState::Blocked));
    let sent = server
        .handle
        .broadcast_event(&blocked, |s| s.app.product_id == "foocad")
        .unwrap();
    assert_eq!(sent, 1);
    let got = tokio::time::timeout(IO_BOUND, events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.kind(), Some(EventKind::LicenseState));
    assert_eq!(client.snapshot().products[0].state, LicenseState::Blocked);
    assert!(!client.snapshot().may_check_out("foocad", "solver"));

    // Unsubscribed kinds are not broadcast to this session.
    assert_eq!(
        client
            .call(Call::Subscribe {
                kinds: vec![EventKind::Update.code()]
            })
            .await
            .unwrap(),
        Reply::Ack
    );
    let sent = server
        .handle
        .broadcast_event(&Event::UpgradeNotice { available: true }, |_| true)
        .unwrap();
    assert_eq!(sent, 0);

    client.close().await;
    server.stop().await;
    assert!(!endpoint.path().exists(), "socket removed on shutdown");
}

#[tokio::test]
async fn protocol_mismatch_is_refused_naming_both_versions() {
    let (_dir, endpoint) = temp_endpoint();
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;

    let mut stream = UnixStream::connect(endpoint.path()).await.unwrap();
    write_frame(&mut stream, &hello_frame(PROTOCOL_VERSION + 41))
        .await
        .unwrap();
    match next_msg(&mut stream).await {
        Some(ServerMsg::Rejected(r)) => {
            assert_eq!(r.code, RejectCode::VersionMismatch);
            assert_eq!(r.agent_protocol, PROTOCOL_VERSION);
            let client_v = (PROTOCOL_VERSION + 41).to_string();
            assert!(r.message.contains(&client_v), "{}", r.message);
            assert!(r.message.contains("9.9.9-test"), "{}", r.message);
            assert!(
                r.message.contains(&format!("protocol {PROTOCOL_VERSION}")),
                "{}",
                r.message
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_closed_by_server(&mut stream).await;
    assert_eq!(server.handle.stats().sessions, 0);
    server.stop().await;
}

#[tokio::test]
async fn handler_can_refuse_a_session() {
    let (_dir, endpoint) = temp_endpoint();
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;
    let err = IpcClient::connect(client_config(&endpoint, "unwelcome"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected { code: RejectCode::Refused, message } if message == "not today"),
        "{err:?}"
    );
    server.stop().await;
}

/// Each bad input closes its own connection; a client on another connection keeps working.
#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let (_dir, endpoint) = temp_endpoint();
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;
    let good = IpcClient::connect(client_config(&endpoint, "good"))
        .await
        .unwrap();

    let oversized = (u32::try_from(tessera_ipc::MAX_FRAME_LEN).unwrap() + 1)
        .to_be_bytes()
        .to_vec();
    let mut malformed = 9u32.to_be_bytes().to_vec();
    malformed.extend_from_slice(b"{not json");
    let mut wrong_shape = 13u32.to_be_bytes().to_vec();
    wrong_shape.extend_from_slice(br#"{"type":"x"} "#);
    let cases: [(&str, Vec<u8>); 3] = [
        ("oversized", oversized),
        ("malformed", malformed),
        ("wrong shape", wrong_shape),
    ];
    for (i, (name, bytes)) in cases.into_iter().enumerate() {
        let (mut stream, welcome) = raw_session(&endpoint).await;
        assert!(matches!(welcome, ServerMsg::Welcome(_)), "{name}");
        stream.write_all(&bytes).await.unwrap();
        assert_closed_by_server(&mut stream).await;
        assert_eq!(
            server.handle.stats().protocol_errors,
            i as u64 + 1,
            "{name}"
        );
        assert_eq!(
            good.status().await.unwrap().products.len(),
            1,
            "after {name}"
        );
    }

    // Truncated: half a frame, then the peer closes its side.
    let (mut stream, _) = raw_session(&endpoint).await;
    stream.write_all(&[0, 0, 0, 50, b'{', b'"']).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_closed_by_server(&mut stream).await;
    assert_eq!(server.handle.stats().protocol_errors, 4);

    // Stalled: half a frame, then silence past the frame deadline (300 ms here).
    let (mut stream, _) = raw_session(&endpoint).await;
    stream.write_all(&[0, 0, 0, 50, b'{']).await.unwrap();
    assert_closed_by_server(&mut stream).await;
    assert_eq!(server.handle.stats().protocol_errors, 5);

    // A request before Hello.
    let mut stream = UnixStream::connect(endpoint.path()).await.unwrap();
    let frame = tessera_ipc::frame::encode_frame(
        &tessera_ipc::ClientMsg::Request(tessera_ipc::proto::Request {
            id: 1,
            call: Call::Status,
        }),
        1024,
    )
    .unwrap();
    write_frame(&mut stream, &frame).await.unwrap();
    assert!(matches!(
        next_msg(&mut stream).await,
        Some(ServerMsg::Rejected(r)) if r.code == RejectCode::BadHello
    ));
    assert_closed_by_server(&mut stream).await;

    assert_eq!(good.status().await.unwrap().products.len(), 1);
    assert_eq!(server.handle.stats().sessions, 1);
    server.stop().await;
}

#[tokio::test]
async fn unknown_calls_are_answered_not_fatal() {
    let (_dir, endpoint) = temp_endpoint();
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;
    let (mut stream, _) = raw_session(&endpoint).await;
    let body = br#"{"type":"request","id":77,"call":{"op":"teleport"}}"#;
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    write_frame(&mut stream, &frame).await.unwrap();
    match next_msg(&mut stream).await {
        Some(ServerMsg::Error { re: 77, error }) => assert_eq!(error.code, ErrorCode::Unsupported),
        other => panic!("expected an error reply, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_per_user_are_capped() {
    let (_dir, endpoint) = temp_endpoint();
    let mut config = fast_config();
    config.max_connections_per_user = 2;
    let server = start(&endpoint, TestAgent::new(), config).await;

    let first = IpcClient::connect(client_config(&endpoint, "one"))
        .await
        .unwrap();
    let (second, _) = raw_session(&endpoint).await;
    let err = IpcClient::connect(client_config(&endpoint, "three"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Rejected {
                code: RejectCode::TooManyConnections,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.handle.stats().refused_over_cap, 1);

    // Closing one frees its slot (the server notices the close asynchronously).
    drop(second);
    let reconnected = tokio::time::timeout(IO_BOUND, async {
        loop {
            match IpcClient::connect(client_config(&endpoint, "three")).await {
                Ok(client) => return client,
                Err(ClientError::Rejected { .. }) => tokio::task::yield_now().await,
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await
    .expect("a slot frees up");
    assert!(reconnected.status().await.is_ok());
    assert!(first.status().await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_without_blocking_others() {
    let (_dir, endpoint) = temp_endpoint();
    let mut config = fast_config();
    config.outbound_queue = 2;
    let server = start(&endpoint, TestAgent::new(), config).await;
    let good = IpcClient::connect(client_config(&endpoint, "good"))
        .await
        .unwrap();
    let mut good_events = good.events();
    let (mut lazy, _) = raw_session(&endpoint).await;
    assert_eq!(server.handle.stats().sessions, 2);

    // ~60 KiB events: the lazy peer's socket buffer fills within a few, then its queue.
    let big = Event::LicenseVerify {
        status: DeliveryStatus::Success,
        license: DeliveredLicense::String("x".repeat(60_000)),
        message: None,
    };
    let payload = IscEvent::from_event(&big);
    let pushed = tokio::time::timeout(IO_BOUND, async {
        let mut received = 0;
        for _ in 0..200 {
            server
                .handle
                .broadcast(EventKind::LicenseVerify.code(), payload.clone(), |_| true)
                .unwrap();
            // The good client keeps up.
            good_events.next().await.unwrap();
            received += 1;
            if server.handle.stats().slow_disconnects == 1 {
                break;
            }
        }
        received
    })
    .await
    .expect("broadcasting never blocks");
    assert!(pushed < 200, "slow client was never disconnected");
    assert_eq!(server.handle.stats().slow_disconnects, 1);
    assert_closed_by_server(&mut lazy).await;
    assert!(good.status().await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn client_reconnects_after_agent_restart_and_resumes_its_session() {
    let (_dir, endpoint) = temp_endpoint();
    let first_agent = TestAgent::new();
    let server = start(&endpoint, first_agent.clone(), fast_config()).await;
    let client = IpcClient::connect(client_config(&endpoint, "FooCAD"))
        .await
        .unwrap();
    let session = client.session_id().unwrap();
    let mut state = client.state();

    server.stop().await;
    tokio::time::timeout(
        IO_BOUND,
        state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(client.session_id(), None);
    let second_agent = TestAgent::new();
    let server = start(&endpoint, second_agent.clone(), fast_config()).await;
    tokio::time::timeout(
        IO_BOUND,
        state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        *state.borrow(),
        ConnectionState::Connected {
            session_id: session,
            resumed: true
        }
    );
    let hellos = second_agent.hellos();
    assert_eq!(hellos.len(), 1);
    assert_eq!(hellos[0].session_id, session);
    assert!(hellos[0].resumed);
    assert_eq!(client.checkout("solver").await.unwrap().lease_id.0, "L-1");
    assert_eq!(first_agent.closed.lock().unwrap()[0].0, session);
    server.stop().await;
}

#[tokio::test]
async fn requests_time_out_and_goodbye_ends_the_session() {
    let (_dir, endpoint) = temp_endpoint();
    let agent = TestAgent::new();
    let server = start(&endpoint, agent.clone(), fast_config()).await;
    let mut config = client_config(&endpoint, "FooCAD");
    config.request_timeout = Duration::from_millis(200);
    let client = IpcClient::connect(config).await.unwrap();
    let session = client.session_id().unwrap();
    let err = client.call(Call::Fingerprint).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    // The connection stays usable after a timed-out request.
    assert!(client.status().await.is_ok());

    client.close().await;
    tokio::time::timeout(IO_BOUND, async {
        while agent.closed.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        agent.closed.lock().unwrap()[0],
        (session, tessera_ipc::CloseReason::Goodbye)
    );
    server.stop().await;
}

#[tokio::test]
async fn single_instance_probe_and_bind() {
    let (_dir, endpoint) = temp_endpoint();
    assert_eq!(
        probe_existing(&endpoint).await.unwrap(),
        ProbeOutcome::Absent
    );
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;
    assert_eq!(
        probe_existing(&endpoint).await.unwrap(),
        ProbeOutcome::Alive
    );
    let second = IpcServer::bind(&endpoint, fast_config()).await;
    assert!(matches!(second, Err(EndpointError::AlreadyRunning(_))));
    server.stop().await;
    assert_eq!(
        probe_existing(&endpoint).await.unwrap(),
        ProbeOutcome::Absent
    );

    // A socket left by a crashed agent is replaced.
    let stale = std::os::unix::net::UnixListener::bind(endpoint.path()).unwrap();
    drop(stale);
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;
    let client = IpcClient::connect(client_config(&endpoint, "after-crash"))
        .await
        .unwrap();
    assert!(client.status().await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_and_client_without_reconnect_closes() {
    let (_dir, endpoint) = temp_endpoint();
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;
    let mut config = client_config(&endpoint, "cli");
    config.reconnect = None;
    let client = IpcClient::connect(config).await.unwrap();
    let mut state = client.state();
    server.stop().await;
    let closed = tokio::time::timeout(
        IO_BOUND,
        state.wait_for(|s| matches!(s, ConnectionState::Closed { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    match closed {
        ConnectionState::Closed { reason } => assert!(reason.contains("test over"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.status().await.unwrap_err(),
        ClientError::Closed
    ));
}
