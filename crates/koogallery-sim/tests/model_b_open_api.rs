//! Model B open APIs through `MarketClient`: order query (mock and created orders, unknown ones)
//! and the market-event upload (FILE, sha256 mismatch, CHARACTERS, unknown event).

mod common;

use common::{Script, client, isv, signed, start_with, within};
use koogallery::client::{ApiCode, MarketError, upload_body};
use koogallery::wire::order::OrderQuery;
use koogallery::wire::{ChargingMode, IsvUpdateFileReq, OrderType};
use koogallery_sim::{LicenseModel, LicenseRequest, NewOrder};
use tessera_types::{LicenseApiCode, MktCode};

fn query(order: &str, line: Option<&str>) -> OrderQuery {
    OrderQuery {
        order_id: order.to_owned(),
        order_line_id: line.map(str::to_owned),
    }
}

#[tokio::test]
async fn every_mock_order_is_served_and_unknown_orders_are_refused() {
    let sim = start_with(|_| {}).await;
    let client = client(&sim);
    for (id, kind) in [
        ("MOCKPERIODYEARNEW", OrderType::New),
        ("MOCKONETIMENEW", OrderType::New),
        ("MOCKONDEMAND", OrderType::New),
        ("MOCKONDEMANDPKG", OrderType::New),
        ("MOCKPERIODDAYTRIAL", OrderType::Trial),
        ("MOCKMONTYTRIALTOFORMAL", OrderType::TrialToFormal),
        ("MOCKMONTYUNSUBSCRIBE", OrderType::Unsubscribe),
        ("MOCKMONTYRENEW", OrderType::Renew),
        ("MOCKMONTYCHANGE", OrderType::Change),
    ] {
        let line = format!("{id}-000001");
        let info = client
            .query_order(&query(id, Some(&line)))
            .await
            .unwrap()
            .data;
        assert_eq!(info.order_id, id);
        assert_eq!(info.order_type, kind, "{id}");
        assert_eq!(info.order_line.len(), 1);
        assert_eq!(info.order_line[0].order_line_id, line);
        assert_eq!(info.order_line[0].product_info[0].linear_value, Some(5));
    }
    let year = client
        .query_order(&query("MOCKPERIODYEARNEW", None))
        .await
        .unwrap()
        .data;
    assert_eq!(year.order_line[0].charging_mode, ChargingMode::Period);
    assert_eq!(year.order_line[0].period_type.as_deref(), Some("year"));
    assert!(year.order_line[0].expire_time.is_some());
    let once = client
        .query_order(&query("MOCKONETIMENEW", None))
        .await
        .unwrap()
        .data;
    assert!(once.order_line[0].expire_time.is_none());

    let e = client
        .query_order(&query("NOSUCHORDER", None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ApiCode::Mkt(MktCode::InputFailure)));
    assert!(!e.is_retryable());
    let e = client
        .query_order(&query("MOCKONDEMAND", Some("MOCKONDEMAND-000009")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ApiCode::Mkt(MktCode::InputFailure)));

    let (status, answer) = signed(
        &sim,
        "GET",
        "/api/mkp-openapi-public/global/v1/order/query",
        "application/json;charset=UTF-8",
        Vec::new(),
    )
    .await;
    // A hand-signed request without the query string: orderId is missing.
    assert_eq!(
        (status, answer["resultCode"].as_str()),
        (400, Some("MKT.0101"))
    );
}

#[tokio::test]
async fn created_orders_are_queryable_with_buyer_and_product() {
    let sim = start_with(|_| {}).await;
    let mut req = NewOrder::yearly(LicenseModel::OnlineLicense, "P-CAE");
    req.quantity = Some(25);
    req.customer_id = Some("acme".to_owned());
    let created = sim.create_order(&req).unwrap();
    let info = client(&sim)
        .query_order(&query(&created.order.order_id, None))
        .await
        .unwrap()
        .data;
    let line = &info.order_line[0];
    assert_eq!(line.product_info[0].product_id.as_deref(), Some("P-CAE"));
    assert_eq!(line.product_info[0].linear_value, Some(25));
    assert_eq!(
        info.buyer_info.unwrap().customer_id.as_deref(),
        Some("acme")
    );
}

#[tokio::test]
async fn license_uploads_are_checked_and_delivered() {
    let sim = start_with(|_| {}).await;
    let receiver = isv(sim.clock(), Script::Accept).await;
    sim.set_isv_endpoint(Some(receiver.endpoint())).unwrap();
    let created = sim
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "P-B"))
        .unwrap();
    within(
        "newInstance",
        sim.callback_settled(created.callback_id.unwrap()),
    )
    .await;
    let instance_id = format!("inst-{}", created.order.order_id);
    assert!(sim.instance(&instance_id).is_some());
    let event = sim
        .request_license(
            &instance_id,
            &LicenseRequest {
                device_fingerprint: "04:7C:16:5E:E3:5D|DISK1||BFEBFBFF00090672".to_owned(),
                effective_time: None,
                expire_time: None,
            },
        )
        .unwrap()
        .result;
    let client = client(&sim);

    // FILE with a matching sha256.
    client
        .upload_license_file(&event.event_id, "license.lic", b"LICENSE-FILE-BYTES")
        .await
        .unwrap();
    let delivered = sim.delivered_license(&instance_id).unwrap();
    assert_eq!(delivered.event_id, event.event_id);
    assert!(matches!(
        delivered.delivery.unwrap().payload,
        koogallery_sim::LicensePayload::File { ref file_name, ref bytes }
            if file_name == "license.lic" && bytes == b"LICENSE-FILE-BYTES"
    ));

    // FILE whose declared sha256 is another file's: refused, nothing replaced.
    let descriptor = IsvUpdateFileReq::file("license.lic", b"some other bytes");
    let koogallery::client::RequestBody::Multipart {
        bytes,
        content_type,
    } = upload_body("b0undary", &descriptor, Some(b"TAMPERED")).unwrap()
    else {
        panic!("upload bodies are multipart");
    };
    let path = koogallery::client::upload_path(&event.event_id);
    let (status, answer) = signed(&sim, "POST", &path, &content_type, bytes).await;
    assert_eq!(status, 200);
    assert_eq!(answer["error_code"], "92020002");
    assert_eq!(sim.event(&event.event_id).unwrap().uploads, 1);
    assert!(!sim.event(&event.event_id).unwrap().content_changed);

    // CHARACTERS replaces it.
    client
        .upload_license_string(&event.event_id, "TESSERA-LICENSE-STRING")
        .await
        .unwrap();
    let delivered = sim
        .delivered_license(&instance_id)
        .unwrap()
        .delivery
        .unwrap();
    assert_eq!(
        delivered.payload,
        koogallery_sim::LicensePayload::Characters {
            text: "TESSERA-LICENSE-STRING".to_owned()
        }
    );

    // Longer than 1024 characters: the client refuses, the emulator too.
    assert!(matches!(
        client
            .upload_license_string(&event.event_id, &"x".repeat(1025))
            .await,
        Err(MarketError::InvalidRequest(_))
    ));
    let mut long = IsvUpdateFileReq::characters("x");
    long.characters = Some("x".repeat(1025));
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"isvUpdateFileReq\"\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--\r\n",
        serde_json::to_string(&long).unwrap()
    );
    let (status, answer) = signed(
        &sim,
        "POST",
        &path,
        "multipart/form-data; boundary=b",
        body.into_bytes(),
    )
    .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (400, Some("95000001"))
    );

    // Unknown event.
    let e = client
        .upload_license_string("EVNOSUCHEVENT", "L")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&ApiCode::License(LicenseApiCode::InvalidParam))
    );
}
