//! A License file signed with the committed test key verifies, carries every field, and its keys
//! round-trip through PEM.

mod common;

use common::*;
use tessera_fingerprint::MatchPolicy;
use tessera_license::file::{FOOTER, HEADER, SIGNATURE_HEADER};
use tessera_license::{
    Algorithm, Binding, KeyId, LicenseForm, PublicKey, SigningKey, VerifyContext, payload,
};
use tessera_types::{Clock, ManualClock};

#[test]
fn issued_file_verifies_and_carries_every_field() {
    let signer = signer_a();
    let text = signer.sign_file(&license()).unwrap();
    let dev = device(FINGERPRINT);
    let clock = ManualClock::at_unix(NOT_BEFORE + 86_400);
    let ctx = VerifyContext::at_clock(PRODUCT, &clock, dev.r());
    let signed = verifier_a().verify(text.as_bytes(), &ctx).unwrap();
    assert_eq!(signed.license, license());
    assert_eq!(signed.key_id.as_str(), KEY_A_ID);
    assert_eq!(signed.form, LicenseForm::File);
    assert_eq!(clock.now().unix_timestamp(), NOT_BEFORE + 86_400);
}

#[test]
fn file_layout_is_header_payload_signature_block_footer() {
    let text = signer_a().sign_file(&license()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(*lines.last().unwrap(), FOOTER);
    let sig = lines.iter().position(|l| *l == SIGNATURE_HEADER).unwrap();
    assert_eq!(
        lines[sig + 1],
        format!("Algorithm: {}", Algorithm::RsaPssSha256)
    );
    assert_eq!(lines[sig + 2], format!("Key-Id: {KEY_A_ID}"));
    // 384 signature bytes = 512 base64 characters = 8 full lines.
    assert_eq!(lines.len() - 1 - (sig + 3), 8);
    assert!(lines[1..sig].iter().all(|l| l.len() <= 64));
    assert!(text.ends_with('\n'));
}

#[test]
fn payload_is_the_documented_canonical_json() {
    let bytes = payload::encode(&license()).unwrap();
    let expected = concat!(
        r#"{"binding":{"fingerprint":"04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.|BOARD-7781|BFEBFBFF00090672"},"#,
        r#""features":[{"count":4,"max_version":"2026.2","name":"solver"},{"count":1,"name":"mesher"}],"#,
        r#""format_version":1,"instance_id":"inst-20260101-000042","issued_at":1767222000,"#,
        r#""license_id":"lic-6f1c2e9a-3b7d-4c55-9a1e-0d2f8b7c6a51","nonce":"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","#,
        r#""not_after":1798761600,"not_before":1767225600,"order_id":"CS2601010000421","#,
        r#""product_id":"OFFER-cae-solver-pro","trial":false}"#
    );
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[test]
fn perpetual_trial_license_with_hardware_id_round_trips() {
    let mut lic = license();
    lic.not_after = None;
    lic.trial = true;
    let hw = hardware_id("machine-1", "board-1", "cpu-1", "disk-1");
    lic.binding = Binding::Device {
        fingerprint: FINGERPRINT.into(),
        hardware_id: Some(hw.clone()),
    };
    let text = signer_a().sign_file(&lic).unwrap();
    let dev = device_with(FINGERPRINT, hw);
    // Far in the future: a perpetual License does not expire.
    let ctx = VerifyContext::new(PRODUCT, at(NOT_AFTER * 4), dev.r());
    let signed = verifier_a().verify(text.as_bytes(), &ctx).unwrap();
    assert_eq!(signed.license, lic);
}

#[test]
fn crlf_line_endings_still_verify() {
    let text = signer_a()
        .sign_file(&license())
        .unwrap()
        .replace('\n', "\r\n");
    let dev = device(FINGERPRINT);
    let ctx = VerifyContext::new(PRODUCT, at(NOT_BEFORE), dev.r()).with_policy(MatchPolicy::Strict);
    assert!(verifier_a().verify(text.as_bytes(), &ctx).is_ok());
}

#[test]
fn committed_test_keys_have_the_documented_ids_and_pem_round_trips() {
    let a = signer_a();
    assert_eq!(a.key_id().as_str(), KEY_A_ID);
    assert_eq!(a.bits(), 3072);
    assert_eq!(signer_b().key_id().as_str(), KEY_B_ID);

    let public = PublicKey::from_spki_pem(KEY_A_PUBLIC).unwrap();
    assert_eq!(public.key_id(), a.key_id());
    assert_eq!(public.to_spki_pem().unwrap().trim(), KEY_A_PUBLIC.trim());
    assert_eq!(
        a.public_key().to_spki_pem().unwrap().trim(),
        KEY_A_PUBLIC.trim()
    );

    let again = SigningKey::from_pkcs8_pem(&a.to_pkcs8_pem().unwrap()).unwrap();
    assert_eq!(again.key_id(), a.key_id());
    assert_eq!(KeyId::parse(KEY_A_ID).as_ref(), Some(a.key_id()));
}

#[test]
fn keys_of_the_wrong_kind_or_size_are_refused() {
    assert!(PublicKey::from_spki_pem(KEY_A_PRIVATE).is_err());
    assert!(SigningKey::from_pkcs8_pem(KEY_A_PUBLIC).is_err());
    assert!(
        PublicKey::from_spki_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .is_err()
    );
    match SigningKey::generate_with_bits(1024) {
        Err(tessera_license::KeyError::UnsupportedSize { bits: 1024 }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn generated_keys_sign_licenses_their_public_half_verifies() {
    // 2048 bits keeps the test quick; the default size is covered by the committed keys.
    let key = SigningKey::generate_with_bits(2048).unwrap();
    let text = key.sign_file(&license()).unwrap();
    let verifier = tessera_license::Verifier::with_keys([key.public_key().clone()]);
    assert!(verifier.open(text.as_bytes()).is_ok());
    assert!(verifier_a().open(text.as_bytes()).is_err());
}
