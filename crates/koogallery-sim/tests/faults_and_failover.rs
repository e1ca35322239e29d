//! Fault injection as a client sees it: host fallback, an untrusted certificate, clock skew,
//! MKT.0250, forced 5xx, dropped connections and latency.

mod common;

use std::time::Duration;

use common::{client, client_config, start};
use koogallery::client::{ApiCode, MarketClient, MarketError, ServedBy};
use koogallery::wire::order::OrderQuery;
use koogallery_sim::{FaultAction, FaultRule, HostFaults, HostRole};
use tessera_types::{ApigCode, MktCode};

fn mock_query() -> OrderQuery {
    OrderQuery {
        order_id: "MOCKPERIODYEARNEW".to_owned(),
        order_line_id: None,
    }
}

#[tokio::test]
async fn primary_down_moves_the_client_to_the_fallback_host() {
    let sim = start().await;
    let client = client(&sim);
    assert_eq!(
        client.query_order(&mock_query()).await.unwrap().served_by,
        ServedBy::Primary
    );
    sim.set_host_faults(HostFaults {
        primary_down: true,
        primary_untrusted_certificate: false,
    });
    // The outage also cuts the connection the client had pooled: the call in flight may fail
    // (retryably) before the client notices; the next one goes to the fallback host.
    match client.query_order(&mock_query()).await {
        Ok(answer) => assert_eq!(answer.served_by, ServedBy::Fallback),
        Err(e) => assert!(e.is_retryable(), "{e:?}"),
    }
    let answer = client.query_order(&mock_query()).await.unwrap();
    assert_eq!(answer.served_by, ServedBy::Fallback);
    assert_eq!(answer.data.order_id, "MOCKPERIODYEARNEW");
    let fresh = common::client(&sim)
        .query_order(&mock_query())
        .await
        .unwrap();
    assert_eq!(fresh.served_by, ServedBy::Fallback);

    let no_fallback = MarketClient::new(client_config(&sim, false)).unwrap();
    let e = no_fallback.query_order(&mock_query()).await.unwrap_err();
    assert!(matches!(e, MarketError::Transport { .. }), "{e:?}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_never_accepted() {
    let sim = start().await;
    sim.set_host_faults(HostFaults {
        primary_down: false,
        primary_untrusted_certificate: true,
    });
    let no_fallback = MarketClient::new(client_config(&sim, false)).unwrap();
    let e = no_fallback.query_order(&mock_query()).await.unwrap_err();
    let MarketError::Transport { source, .. } = &e else {
        panic!("expected a TLS failure, got {e:?}");
    };
    let chain = koogallery_sim::error_chain(source);
    assert!(
        chain.contains("certificate") || chain.contains("Certificate"),
        "{chain}"
    );
    // With a fallback the client goes on to the genuine host; the rogue one never answered.
    let answer = client(&sim).query_order(&mock_query()).await.unwrap();
    assert_eq!(answer.served_by, ServedBy::Fallback);
    // A client that trusts the rogue CA would get through: the fault really is the certificate.
    let rogue_ca = sim.dir.path().join("rogue-ca.pem");
    std::fs::write(&rogue_ca, sim.untrusted_ca_pem()).unwrap();
    let mut config = client_config(&sim, false);
    config.extra_ca_pem = Some(rogue_ca);
    let fooled = MarketClient::new(config).unwrap();
    assert_eq!(
        fooled.query_order(&mock_query()).await.unwrap().served_by,
        ServedBy::Primary
    );
}

#[tokio::test]
async fn a_skewed_sdk_date_is_refused_with_apig_0303() {
    let sim = start().await;
    let skewed = tessera_types::ManualClock::new(sim.now() + time::Duration::minutes(16));
    let mut config = client_config(&sim, true);
    config.clock = skewed.shared();
    let client = MarketClient::new(config).unwrap();
    let e = client.query_order(&mock_query()).await.unwrap_err();
    assert_eq!(e.code(), Some(&ApiCode::Apig(ApigCode::AppAuthIncorrect)));
    assert_eq!(e.http_status(), Some(401));
    assert!(!e.is_retryable());
    // Within 15 minutes it passes.
    skewed.advance(time::Duration::minutes(-2));
    client.query_order(&mock_query()).await.unwrap();
}

#[tokio::test]
async fn rate_limiting_and_5xx_are_retryable_errors() {
    let sim = start().await;
    let no_fallback = MarketClient::new(client_config(&sim, false)).unwrap();
    sim.add_fault(FaultRule::new("order.query", FaultAction::RateLimited).times(1))
        .unwrap();
    let e = no_fallback.query_order(&mock_query()).await.unwrap_err();
    assert_eq!(e.code(), Some(&ApiCode::Mkt(MktCode::RateLimited)));
    assert_eq!(e.http_status(), Some(406));
    assert!(e.is_retryable());
    // The rule applied once.
    no_fallback.query_order(&mock_query()).await.unwrap();

    let heartbeat = koogallery::wire::HeartbeatRequest {
        license: "PL1".to_owned(),
        heartbeat_info: None,
    };
    sim.add_fault(FaultRule::new("license.*", FaultAction::RateLimited).times(1))
        .unwrap();
    let e = no_fallback.heartbeat(&heartbeat).await.unwrap_err();
    assert_eq!(e.code(), Some(&ApiCode::Mkt(MktCode::RateLimited)));
    assert!(e.is_retryable());

    sim.add_fault(FaultRule::new(
        "order.query",
        FaultAction::Status {
            status: 503,
            body: None,
        },
    ))
    .unwrap();
    let e = no_fallback.query_order(&mock_query()).await.unwrap_err();
    assert_eq!(e.http_status(), Some(503));
    assert!(e.is_retryable());

    // The same 5xx only on the primary: the client answers from the fallback.
    sim.clear_faults();
    sim.add_fault(
        FaultRule::new(
            "*",
            FaultAction::Status {
                status: 502,
                body: Some("bad gateway".to_owned()),
            },
        )
        .on(HostRole::Primary),
    )
    .unwrap();
    let answer = client(&sim).query_order(&mock_query()).await.unwrap();
    assert_eq!(answer.served_by, ServedBy::Fallback);
}

#[tokio::test]
async fn dropped_connections_and_latency_surface_as_transport_errors() {
    let sim = start().await;
    let no_fallback = MarketClient::new(client_config(&sim, false)).unwrap();
    let id = sim
        .add_fault(FaultRule::new("order.query", FaultAction::DropConnection))
        .unwrap();
    let e = no_fallback.query_order(&mock_query()).await.unwrap_err();
    assert!(matches!(e, MarketError::Transport { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(sim.remove_fault(id));
    no_fallback.query_order(&mock_query()).await.unwrap();

    sim.add_fault(FaultRule::new(
        "order.query",
        FaultAction::Latency { millis: 1500 },
    ))
    .unwrap();
    let mut config = client_config(&sim, false);
    config.request_timeout = Duration::from_millis(300);
    let impatient = MarketClient::new(config).unwrap();
    let e = impatient.query_order(&mock_query()).await.unwrap_err();
    assert!(
        matches!(e, MarketError::Transport { ref source, .. } if source.is_timeout()),
        "{e:?}"
    );
}
