//! MKT's side of the production interface against a tiny in-test ISV that verifies the §5.2
//! signature: lifecycle activities, the retry schedule on the compressed clock, the log, and
//! the License round trip through getLicenseAsync, the upload and the delivery channel.

mod common;

use std::collections::HashSet;

use common::{Script, client, control, https, isv, short, start_with, within};
use koogallery::wire::CallbackRequest;
use koogallery_sim::{
    CallbackOutcome, LicenseModel, LicenseRequest, NewOrder, RenewScene, Renewal,
};
use tessera_types::KooTime;
use time::Duration;

#[tokio::test]
async fn new_instance_is_signed_retried_on_schedule_and_registers_the_instance() {
    let sim = start_with(|_| {}).await;
    let receiver = isv(sim.clock(), Script::FailFirst(3)).await;
    sim.set_isv_endpoint(Some(receiver.endpoint())).unwrap();
    let mut req = NewOrder::yearly(LicenseModel::OnlineLicense, "P-B");
    req.test = true;
    let created = sim.create_order(&req).unwrap();
    let record = within(
        "newInstance",
        sim.callback_settled(created.callback_id.unwrap()),
    )
    .await
    .unwrap();

    assert_eq!(record.activity, "newInstance");
    assert_eq!(
        record.outcome,
        CallbackOutcome::Delivered {
            result_code: "000000".to_owned()
        }
    );
    let offsets: Vec<u64> = record
        .attempts
        .iter()
        .map(|a| a.nominal_offset_secs)
        .collect();
    assert_eq!(offsets, vec![0, 120, 240, 360]);
    assert_eq!(record.attempts[0].http_status, Some(500));
    assert!(!record.attempts[0].accepted && record.attempts[3].accepted);
    assert!(
        record.attempts[3]
            .answer
            .as_deref()
            .unwrap()
            .contains("instanceId")
    );

    let received = receiver.received();
    assert_eq!(received.len(), 4);
    assert!(
        received.iter().all(|r| r.verified),
        "every attempt carries a valid signature"
    );
    let nonces: HashSet<_> = received.iter().map(|r| r.query.clone()).collect();
    assert_eq!(
        nonces.len(),
        4,
        "fresh signature parameters on every attempt"
    );
    let business_ids: HashSet<String> = received
        .iter()
        .map(|r| match &r.request {
            Some(CallbackRequest::NewInstance(n)) => {
                assert_eq!(n.test_flag.as_deref(), Some("1"));
                n.business_id.clone()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(business_ids.len(), 4, "a fresh businessId on every attempt");
    // The body is sorted compact JSON, exactly what the log says was sent.
    let body = String::from_utf8(received[3].body.clone()).unwrap();
    assert!(body.starts_with(r#"{"activity":"newInstance","businessId":""#));
    assert_eq!(record.attempts[3].body, body);

    let instance = sim
        .instance(&format!("inst-{}", created.order.order_id))
        .unwrap();
    assert_eq!(instance.order_id, created.order.order_id);
}

#[tokio::test]
async fn replayed_new_instance_checks_the_isv_is_idempotent() {
    let sim = start_with(|_| {}).await;
    let receiver = isv(sim.clock(), Script::Accept).await;
    sim.set_isv_endpoint(Some(receiver.endpoint())).unwrap();
    let created = sim
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "P-B"))
        .unwrap();
    let first = created.callback_id.unwrap();
    within("newInstance", sim.callback_settled(first)).await;
    let replay = sim.replay_callback(first).unwrap();
    let record = within("replay", sim.callback_settled(replay))
        .await
        .unwrap();
    assert!(
        record.notes.is_empty(),
        "same instanceId: {:?}",
        record.notes
    );

    receiver.set_script(Script::NewIdEachTime);
    let (status, answer) = control(&sim, "POST", &format!("/callbacks/{first}/replay"), None).await;
    assert_eq!(status, 202);
    let replay = answer["id"].as_u64().unwrap();
    let record = within("replay", sim.callback_settled(replay))
        .await
        .unwrap();
    assert!(
        record.notes[0].contains("idempotency violation"),
        "{:?}",
        record.notes
    );
    // The first instance id stands.
    assert!(
        sim.instance(&format!("inst-{}", created.order.order_id))
            .is_some()
    );
    assert!(sim.replay_callback(9_999).is_none());
}

#[tokio::test]
async fn model_a_callbacks_give_up_after_sixty_attempts() {
    let sim = start_with(|_| {}).await;
    let receiver = isv(sim.clock(), Script::AlwaysFail).await;
    sim.set_isv_endpoint(Some(receiver.endpoint())).unwrap();
    let order = sim
        .create_order(&NewOrder::yearly(LicenseModel::AuthorizationCode, "P-A"))
        .unwrap();
    let code = sim.issue_code(&order.order.order_id, None).unwrap().code;
    let ids = sim.release_code(&code, true).unwrap().callback_ids;
    let record = within("releaseLicenseCode", sim.callback_settled(ids[0]))
        .await
        .unwrap();
    assert_eq!(record.activity, "releaseLicenseCode");
    assert_eq!(record.outcome, CallbackOutcome::GaveUp);
    assert_eq!(record.attempts.len(), 60);
    assert_eq!(
        record.attempts.last().unwrap().nominal_offset_secs,
        59 * 120
    );
    assert!(
        record
            .attempts
            .iter()
            .all(|a| a.result_code.as_deref() == Some("000005"))
    );
    assert_eq!(receiver.received().len(), 60);
    assert!(
        !record.subject.contains(&code),
        "codes are redacted in the log"
    );
}

#[tokio::test]
async fn an_undeliverable_new_instance_fails_the_order() {
    let sim = start_with(|c| c.model_b_schedule = short(5)).await;
    let receiver = isv(sim.clock(), Script::AlwaysFail).await;
    sim.set_isv_endpoint(Some(receiver.endpoint())).unwrap();
    let created = sim
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "P-B"))
        .unwrap();
    let record = within(
        "newInstance",
        sim.callback_settled(created.callback_id.unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(record.outcome, CallbackOutcome::GaveUp);
    assert_eq!(record.attempts.len(), 5);
    assert!(record.notes[0].contains("unsubscribed"));
    assert!(sim.order(&created.order.order_id).unwrap().failed);

    // Without any ISV the attempts are logged as transport failures.
    sim.set_isv_endpoint(None).unwrap();
    let created = sim
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "P-B"))
        .unwrap();
    let record = within(
        "newInstance",
        sim.callback_settled(created.callback_id.unwrap()),
    )
    .await
    .unwrap();
    assert!(
        record.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no ISV")
    );
}

#[tokio::test]
async fn lifecycle_operations_send_every_documented_activity() {
    let sim = start_with(|_| {}).await;
    let receiver = isv(sim.clock(), Script::Accept).await;
    sim.set_isv_endpoint(Some(receiver.endpoint())).unwrap();
    let later = |days| Renewal {
        expire_time: KooTime::new(sim.now() + Duration::days(days)),
        scene: Some(RenewScene::Renewal),
        product_id: None,
    };

    // Model B.
    let created = sim
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "P-B"))
        .unwrap();
    within(
        "newInstance",
        sim.callback_settled(created.callback_id.unwrap()),
    )
    .await;
    let inst = format!("inst-{}", created.order.order_id);
    sim.renew_instance(&inst, &later(800)).unwrap();
    sim.set_instance_frozen(&inst, true).unwrap();
    sim.set_instance_frozen(&inst, false).unwrap();
    sim.request_license(
        &inst,
        &LicenseRequest {
            device_fingerprint: "AA:BB|D||C".to_owned(),
            effective_time: None,
            expire_time: None,
        },
    )
    .unwrap();
    sim.release_instance(&inst, true).unwrap();

    // Model A.
    let order = sim
        .create_order(&NewOrder::yearly(LicenseModel::AuthorizationCode, "P-A"))
        .unwrap();
    let code = sim.issue_code(&order.order.order_id, None).unwrap().code;
    sim.accept_code(&code).unwrap();
    sim.freeze_code(&code).unwrap_err(); // not activated yet: state RECEIVED
    within("idle", sim.callbacks_idle()).await;
    koogallery::client::MarketClient::new(common::client_config(&sim, false))
        .unwrap()
        .activate(&koogallery::wire::ActivateRequest {
            license: code.clone(),
            real_effect_time: None,
        })
        .await
        .unwrap();
    sim.freeze_code(&code).unwrap();
    sim.renew_code(&code, &later(900)).unwrap();
    sim.release_code(&code, false).unwrap();
    within("idle", sim.callbacks_idle()).await;

    let log = sim.callbacks();
    assert!(
        log.iter()
            .all(|r| matches!(r.outcome, CallbackOutcome::Delivered { .. }))
    );
    let mut activities: Vec<&str> = log.iter().map(|r| r.activity.as_str()).collect();
    activities.sort_unstable();
    activities.dedup();
    assert_eq!(
        activities,
        CallbackRequest::ACTIVITIES
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let received = receiver.received();
    assert!(received.iter().all(|r| r.verified && r.request.is_some()));
    let get = received
        .iter()
        .find_map(|r| match &r.request {
            Some(CallbackRequest::GetLicenseAsync(g)) => Some(g.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(get.device_fingerprint.as_deref(), Some("AA:BB|D||C"));
    assert!(
        get.expire_time.is_some(),
        "periodic products carry an expiry"
    );
    let raw = received
        .iter()
        .find(|r| matches!(r.request, Some(CallbackRequest::GetLicenseAsync(_))))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&raw.body).contains(" z\""),
        "spaced time format"
    );
    // renew after freeze sends refreshLicenseCode then UNFREEZE.
    let code_calls: Vec<String> = received
        .iter()
        .filter_map(|r| match &r.request {
            Some(CallbackRequest::RefreshLicenseCode(_)) => Some("refresh".to_owned()),
            Some(CallbackRequest::UpdateLicenseCodeStatus(u)) => Some(u.status.to_string()),
            Some(CallbackRequest::ReleaseLicenseCode(_)) => Some("release".to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(code_calls, vec!["FREEZE", "refresh", "UNFREEZE", "release"]);
}

#[tokio::test]
async fn delivered_licenses_reach_the_buyer_through_the_delivery_channel() {
    let sim = start_with(|_| {}).await;
    let receiver = isv(sim.clock(), Script::Accept).await;
    sim.set_isv_endpoint(Some(receiver.endpoint())).unwrap();
    let mut req = NewOrder::yearly(LicenseModel::OnlineLicense, "P-B");
    req.customer_id = Some("acme".to_owned());
    let created = sim.create_order(&req).unwrap();
    within(
        "newInstance",
        sim.callback_settled(created.callback_id.unwrap()),
    )
    .await;
    let inst = format!("inst-{}", created.order.order_id);
    let http = https(&sim);
    let base = sim.primary_url();
    let token = created.buyer_token.clone();

    // The buyer asks for a License the way ISCDesk would.
    let answer: serde_json::Value = http
        .post(format!(
            "{base}/sim/delivery/instances/{inst}/license-requests"
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"device_fingerprint": "AA:BB|D||C"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event_id = answer["eventId"].as_str().unwrap().to_owned();
    let pending = http
        .get(format!("{base}/sim/delivery/instances/{inst}/license"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(pending.status().as_u16(), 404);
    within("getLicenseAsync", sim.callbacks_idle()).await;

    // The ISV uploads it.
    client(&sim)
        .upload_license_string(&event_id, "SIGNED-LICENSE")
        .await
        .unwrap();
    let delivered: serde_json::Value = http
        .get(format!("{base}/sim/delivery/instances/{inst}/license"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(delivered["kind"], "CHARACTERS");
    assert_eq!(delivered["content"], "SIGNED-LICENSE");
    assert_eq!(delivered["eventId"], event_id.as_str());

    // No token, or another buyer's token: refused, existence not confirmed.
    let none = http
        .get(format!("{base}/sim/delivery/instances/{inst}/license"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let other = sim.buyer_token("someone-else");
    let foreign = http
        .get(format!("{base}/sim/delivery/events/{event_id}"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 404);

    // The control API shows the same log.
    let (status, log) = control(&sim, "GET", "/callbacks?activity=getLicenseAsync", None).await;
    assert_eq!(status, 200);
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert!(log[0]["attempts"][0]["latency_ms"].is_u64());
}
