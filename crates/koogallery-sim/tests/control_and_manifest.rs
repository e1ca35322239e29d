//! The control API over HTTPS, the signed update manifest, and the `call` subcommand.

mod common;

use base64::Engine;
use common::{control, https, start};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use serde_json::json;

#[tokio::test]
async fn control_api_drives_a_code_through_its_lifecycle() {
    let sim = start().await;
    let (status, created) = control(
        &sim,
        "POST",
        "/orders",
        Some(json!({"model": "authorization_code", "product_id": "P1", "quantity": 3})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let order_id = created["order"]["order_id"].as_str().unwrap().to_owned();
    let (status, code) = control(&sim, "POST", &format!("/orders/{order_id}/codes"), None).await;
    assert_eq!(status, 201);
    let code = code["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("PL"));
    let (status, accepted) = control(&sim, "POST", &format!("/codes/{code}/accept"), None).await;
    assert_eq!(
        (status, accepted["state"].as_str()),
        (200, Some("RECEIVED"))
    );
    let (status, again) = control(&sim, "POST", &format!("/codes/{code}/accept"), None).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("not_allowed"))
    );
    let (status, _) = control(&sim, "POST", "/codes/PLNOPE/accept", None).await;
    assert_eq!(status, 404);
    let (status, bad) = control(&sim, "POST", "/orders", Some(json!({"model": "x"}))).await;
    assert_eq!((status, bad["error"].as_str()), (400, Some("invalid_json")));

    let (status, clock) = control(
        &sim,
        "POST",
        "/clock/advance",
        Some(json!({"seconds": 3600})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(clock["offsetSeconds"], 3600);
    let (status, clock) = control(
        &sim,
        "PUT",
        "/clock",
        Some(json!({"now": "20300101000000"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(clock["now"], "20300101000000");

    let (status, fault) = control(
        &sim,
        "POST",
        "/faults",
        Some(json!({"route": "order.query", "action": {"kind": "rate_limited"}, "remaining": 2})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, faults) = control(&sim, "GET", "/faults", None).await;
    assert_eq!(faults["rules"][0]["id"], fault["id"]);
    let (status, _) = control(&sim, "DELETE", &format!("/faults/{}", fault["id"]), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn update_manifests_verify_with_the_published_key() {
    let sim = start().await;
    let spec = json!({
        "latest_version": "2.1.0", "min_supported_version": "1.4.0", "forced": true,
        "released_at": "2026-01-02T03:04:05Z", "download_url": "https://example.invalid/p1.zip",
        "sha256": "ab".repeat(32), "notes": "solver fixes", "valid_until": "2026-02-01T00:00:00Z",
    });
    let (status, _) = control(&sim, "PUT", "/updates/P1", Some(spec.clone())).await;
    assert_eq!(status, 200);
    control(&sim, "PUT", "/updates/P1", Some(spec)).await;

    let http = https(&sim);
    let base = sim.primary_url();
    let key_response = http
        .get(format!("{base}/sim/updates/public-key.pem"))
        .send()
        .await
        .unwrap();
    let key_id = key_response.headers()["x-key-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let pem = key_response.text().await.unwrap();
    let public = RsaPublicKey::from_public_key_pem(&pem).unwrap();
    let envelope: koogallery_sim::SignedManifest = http
        .get(format!("{base}/sim/updates/P1/manifest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(envelope.key_id, key_id);
    let payload = koogallery_sim::manifest::verify(&envelope, &public).unwrap();
    assert_eq!(payload.product_id, "P1");
    assert_eq!(payload.sequence, 2, "the second publication");
    assert!(payload.spec.forced);

    // One flipped byte of the payload breaks the signature.
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(&envelope.payload).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    let mut tampered = envelope.clone();
    tampered.payload = engine.encode(bytes);
    assert!(koogallery_sim::manifest::verify(&tampered, &public).is_err());

    let missing = http
        .get(format!("{base}/sim/updates/P2/manifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn the_call_subcommand_signs_a_request_that_the_emulator_accepts() {
    let sim = start().await;
    let bin = env!("CARGO_BIN_EXE_koogallery-sim");
    let sim_now = sim.now();
    // `call` signs with the wall clock; keep the emulator's clock there for this test.
    sim.set_time(time::OffsetDateTime::now_utc());
    let url = sim.primary_url();
    let ca = sim.ca_path();
    // The emulator runs on this test's runtime: wait for the child off the async workers.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["call", "--url", &url, "--ca"])
            .arg(ca)
            .args([
                "GET",
                "/api/mkp-openapi-public/global/v1/order/query?orderId=MOCKONDEMAND",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("HTTP 200"), "{stdout}");
    assert!(stdout.contains(r#""orderId":"MOCKONDEMAND""#), "{stdout}");
    sim.set_time(sim_now);
}
