//! Model A open APIs through `koogallery::client::MarketClient`: every success and error path of
//! activate, heartbeat and usage, and the gateway checks a well-behaved client cannot trigger.

mod common;

use common::{client, signed, start};
use koogallery::client::{ApiCode, MarketError};
use koogallery::wire::{
    ActivateBatchRequest, ActivateRequest, CodeStatus, HeartbeatBatchRequest, HeartbeatRequest,
    SoftwareUsage, UsageEntry, UsageInfoRequest,
};
use koogallery_sim::{LicenseModel, NewOrder};
use serde_json::json;
use tessera_types::LicenseApiCode;
use time::Duration;

fn code_of(e: &MarketError) -> LicenseApiCode {
    match e.code() {
        Some(ApiCode::License(c)) => *c,
        other => panic!("expected a License API code, got {other:?} ({e})"),
    }
}

fn new_code(sim: &common::TestSim) -> String {
    let order = sim
        .create_order(&NewOrder::yearly(LicenseModel::AuthorizationCode, "P-CAD"))
        .unwrap();
    sim.issue_code(&order.order.order_id, None).unwrap().code
}

fn activate(code: &str) -> ActivateRequest {
    ActivateRequest {
        license: code.to_owned(),
        real_effect_time: None,
    }
}

fn heartbeat(code: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        license: code.to_owned(),
        heartbeat_info: None,
    }
}

#[tokio::test]
async fn activation_follows_the_code_lifecycle() {
    let sim = start().await;
    let client = client(&sim);
    let code = new_code(&sim);

    let e = client
        .activate(&activate("PLDOESNOTEXIST"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), LicenseApiCode::NotExist);
    assert!(!e.is_retryable());

    let e = client.activate(&activate(&code)).await.unwrap_err();
    assert_eq!(code_of(&e), LicenseApiCode::NotReceived);

    sim.accept_code(&code).unwrap();
    let ok = client.activate(&activate(&code)).await.unwrap();
    let info = ok.data.info().unwrap();
    assert_eq!(info.status, CodeStatus::Alive);
    assert_eq!(info.product_id.as_deref(), Some("P-CAD"));
    assert_eq!(info.amount, Some(1));
    assert!(info.expire_time.is_some());
    assert_eq!(
        ok.server_date.map(|d| d.unix_timestamp()),
        Some(sim.now().unix_timestamp()),
        "Date comes from the emulator's clock"
    );

    let e = client.activate(&activate(&code)).await.unwrap_err();
    assert_eq!(code_of(&e), LicenseApiCode::IllegalState);
}

#[tokio::test]
async fn heartbeat_reports_alive_expired_and_released() {
    let sim = start().await;
    let client = client(&sim);
    let code = new_code(&sim);

    let e = client.heartbeat(&heartbeat(&code)).await.unwrap_err();
    assert_eq!(code_of(&e), LicenseApiCode::NotActivated);
    let e = client.heartbeat(&heartbeat("PLUNKNOWN")).await.unwrap_err();
    assert_eq!(code_of(&e), LicenseApiCode::NotExist);

    sim.accept_code(&code).unwrap();
    client.activate(&activate(&code)).await.unwrap();
    sim.set_heartbeat_extra(json!({"seller_note": "x"}).as_object().unwrap().clone());
    let alive = client.heartbeat(&heartbeat(&code)).await.unwrap().data;
    assert_eq!(alive.status, CodeStatus::Alive);
    assert_eq!(alive.license_code, code);
    assert!(alive.activate_time.is_some());
    assert_eq!(alive.product_id.as_deref(), Some("P-CAD"));
    assert_eq!(alive.extra.get("seller_note"), Some(&json!("x")));

    // Past the yearly expiry on the emulator's clock (the client shares it, so APIG still passes).
    sim.advance_time(Duration::days(366));
    let expired = client.heartbeat(&heartbeat(&code)).await.unwrap().data;
    assert_eq!(expired.status, CodeStatus::Expired);

    sim.release_code(&code, false).unwrap();
    let released = client.heartbeat(&heartbeat(&code)).await.unwrap().data;
    assert_eq!(released.status, CodeStatus::Released);
}

#[tokio::test]
async fn batch_calls_are_all_or_nothing_and_limited_to_100() {
    let sim = start().await;
    let client = client(&sim);
    let a = new_code(&sim);
    let b = new_code(&sim);
    sim.accept_code(&a).unwrap();
    sim.accept_code(&b).unwrap();

    let with_unknown = ActivateBatchRequest {
        license_list: vec![a.clone(), "PLNOPE".to_owned()],
        real_effect_time: None,
    };
    let e = client.activate_batch(&with_unknown).await.unwrap_err();
    assert_eq!(code_of(&e), LicenseApiCode::InvalidCodeInBatch);
    assert_eq!(
        sim.code(&a).unwrap().state,
        koogallery_sim::CodeState::Received
    );

    let both = ActivateBatchRequest {
        license_list: vec![a.clone(), b.clone()],
        real_effect_time: None,
    };
    client.activate_batch(&both).await.unwrap();
    let data = client
        .heartbeat_batch(&HeartbeatBatchRequest {
            license_list: vec![a.clone(), b.clone()],
        })
        .await
        .unwrap()
        .data;
    assert_eq!(data.license_info_list.len(), 2);
    assert!(
        data.license_info_list
            .iter()
            .all(|i| i.status == CodeStatus::Alive)
    );

    // The client refuses to send 101 codes; the emulator refuses them too.
    let list: Vec<String> = (0..101).map(|i| format!("PL{i:04}")).collect();
    let too_many = ActivateBatchRequest {
        license_list: list.clone(),
        real_effect_time: None,
    };
    assert!(matches!(
        client.activate_batch(&too_many).await,
        Err(MarketError::InvalidRequest(_))
    ));
    for path in [
        "/api/mkp-openapi-public/global/v2/license/activate",
        "/api/mkp-openapi-public/global/v2/license/heartbeat",
    ] {
        let body = serde_json::to_vec(&json!({"license_list": list})).unwrap();
        let (status, answer) = signed(&sim, "POST", path, "application/json", body).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(answer["error_code"], "95000001", "{path}");
    }
}

#[tokio::test]
async fn usage_reports_are_stored_and_unknown_codes_listed() {
    let sim = start().await;
    let client = client(&sim);
    let code = new_code(&sim);
    sim.accept_code(&code).unwrap();
    client.activate(&activate(&code)).await.unwrap();

    let req = UsageInfoRequest {
        usage_info: vec![
            UsageEntry {
                license: code.clone(),
                software_usage_info: vec![
                    SoftwareUsage::login("alice"),
                    SoftwareUsage::active_count(3),
                ],
            },
            UsageEntry {
                license: "PLUNKNOWN".to_owned(),
                software_usage_info: vec![SoftwareUsage::login("bob")],
            },
        ],
    };
    let data = client.software_usage_info(&req).await.unwrap().data;
    assert!(data.has_failures());
    assert_eq!(data.fields["check_fail_license_list"], json!(["PLUNKNOWN"]));
    let stored = sim.usage(&code);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].entries[0].id.as_deref(), Some("alice"));
    assert_eq!(stored[0].entries[1].active_num, Some(3));
}

#[tokio::test]
async fn gateway_checks_method_content_type_json_and_fields() {
    let sim = start().await;
    let path = "/api/mkp-openapi-public/global/v1/license/heartbeat";
    let body = br#"{"license":"PL1"}"#.to_vec();

    let (status, answer) = signed(&sim, "POST", path, "text/plain", body.clone()).await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (415, Some("95000003"))
    );

    let (status, answer) = signed(
        &sim,
        "POST",
        path,
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (400, Some("95000004"))
    );

    let (status, answer) = signed(&sim, "PUT", path, "application/json", body.clone()).await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (405, Some("95000002"))
    );

    let long = serde_json::to_vec(&json!({"license": "P".repeat(65)})).unwrap();
    let (status, answer) = signed(&sim, "POST", path, "application/json", long).await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (400, Some("95000001"))
    );

    let (status, answer) = signed(
        &sim,
        "POST",
        "/api/mkp-openapi-public/global/v9/nothing",
        "application/json",
        body,
    )
    .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (404, Some("APIG.0101"))
    );
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_requests_get_apig_0303() {
    let sim = start().await;
    let url = format!(
        "{}/api/mkp-openapi-public/global/v1/license/heartbeat",
        sim.primary_url()
    );
    let response = common::https(&sim)
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"license":"PL1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error_code"], "APIG.0303");

    // Signed with a secret the emulator does not know.
    let mut config = common::client_config(&sim, false);
    config.credentials =
        koogallery::apig::Credentials::new(koogallery_sim::DEFAULT_ACCESS_KEY, "wrong");
    let wrong = koogallery::client::MarketClient::new(config).unwrap();
    let e = wrong.heartbeat(&heartbeat("PL1")).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&ApiCode::Apig(tessera_types::ApigCode::AppAuthIncorrect))
    );
    assert_eq!(e.http_status(), Some(401));
}
