//! Every way verification refuses a License, each as its own typed error.

mod common;

use common::*;
use tessera_fingerprint::MatchPolicy;
use tessera_license::{
    Location, PublicKey, SignedLicense, Verifier, VerifyContext, VerifyError, file,
};

fn ctx_at(dev: &Device, secs: i64) -> VerifyContext<'_> {
    VerifyContext::new(PRODUCT, at(secs), dev.r())
}

fn verify(text: &str, secs: i64) -> Result<SignedLicense, VerifyError> {
    let dev = device(FINGERPRINT);
    verifier_a().verify(text.as_bytes(), &ctx_at(&dev, secs))
}

/// Signs `payload` bytes as they are, bypassing the issuer's own encoding.
fn sign_raw_payload(payload: &[u8]) -> String {
    let key = signer_a();
    let signature = key.sign_detached(&file::signed_message(payload));
    file::encode(payload, "RSA-PSS-SHA256", KEY_A_ID, &signature)
}

#[test]
fn validity_window_is_not_before_inclusive_to_not_after_exclusive() {
    let text = signer_a().sign_file(&license()).unwrap();
    match verify(&text, NOT_BEFORE - 1) {
        Err(VerifyError::NotYetValid { not_before }) => assert_eq!(not_before, at(NOT_BEFORE)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(verify(&text, NOT_BEFORE).is_ok());
    assert!(verify(&text, NOT_AFTER - 1).is_ok());
    match verify(&text, NOT_AFTER) {
        Err(e @ VerifyError::Expired { .. }) => {
            assert!(matches!(e, VerifyError::Expired { not_after } if not_after == at(NOT_AFTER)));
            assert!(e.to_string().contains("2027-01-01"), "{e}");
            assert!(!e.is_integrity_failure());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn another_product_is_refused_by_name() {
    let text = signer_a().sign_file(&license()).unwrap();
    let dev = device(FINGERPRINT);
    let ctx = VerifyContext::new("OFFER-other", at(NOT_BEFORE), dev.r());
    match verifier_a().verify(text.as_bytes(), &ctx) {
        Err(VerifyError::WrongProduct { expected, found }) => {
            assert_eq!(expected, "OFFER-other");
            assert_eq!(found, PRODUCT);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn binding_tolerates_one_changed_component_and_explains_two() {
    let text = signer_a().sign_file(&license()).unwrap();
    let one_disk_swapped = "04:7C:16:5E:E3:5D|NEW-DISK-0001|BOARD-7781|BFEBFBFF00090672";
    let dev = device(one_disk_swapped);
    assert!(
        verifier_a()
            .verify(text.as_bytes(), &ctx_at(&dev, NOT_BEFORE))
            .is_ok()
    );
    let strict = ctx_at(&dev, NOT_BEFORE).with_policy(MatchPolicy::Strict);
    assert!(matches!(
        verifier_a().verify(text.as_bytes(), &strict),
        Err(VerifyError::BindingMismatch { .. })
    ));

    let two_changed = "04:7C:16:5E:E3:5D|NEW-DISK-0001|OTHER-BOARD|BFEBFBFF00090672";
    let dev = device(two_changed);
    match verifier_a().verify(text.as_bytes(), &ctx_at(&dev, NOT_BEFORE)) {
        Err(VerifyError::BindingMismatch { explanation }) => {
            assert!(explanation.contains("no match"), "{explanation}");
            assert!(explanation.contains("OTHER-BOARD"), "{explanation}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn hardware_id_in_the_license_decides_the_binding() {
    let mut lic = license();
    lic.binding = tessera_license::Binding::Device {
        fingerprint: FINGERPRINT.into(),
        hardware_id: Some(hardware_id("machine-1", "board-1", "cpu-1", "disk-1")),
    };
    let text = signer_a().sign_file(&lic).unwrap();
    // Same fingerprint, but a different machine by hardware id: refused.
    let other = device_with(
        FINGERPRINT,
        hardware_id("machine-9", "board-9", "cpu-1", "disk-1"),
    );
    assert!(matches!(
        verifier_a().verify(text.as_bytes(), &ctx_at(&other, NOT_BEFORE)),
        Err(VerifyError::BindingMismatch { .. })
    ));
    // One component replaced: accepted under the default policy.
    let repaired = device_with(
        FINGERPRINT,
        hardware_id("machine-1", "board-1", "cpu-1", "disk-2"),
    );
    assert!(
        verifier_a()
            .verify(text.as_bytes(), &ctx_at(&repaired, NOT_BEFORE))
            .is_ok()
    );
}

#[test]
fn signature_by_another_key_under_this_key_id_is_a_bad_signature() {
    let text = signer_b()
        .sign_file(&license())
        .unwrap()
        .replace(KEY_B_ID, KEY_A_ID);
    match verify(&text, NOT_BEFORE) {
        Err(VerifyError::BadSignature { key_id }) => assert_eq!(key_id.as_str(), KEY_A_ID),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn key_rotation_trusts_every_listed_key_and_nothing_else() {
    let by_a = signer_a().sign_file(&license()).unwrap();
    let by_b = signer_b().sign_file(&license()).unwrap();
    assert!(
        matches!(verify(&by_b, NOT_BEFORE), Err(VerifyError::UnknownKeyId(id)) if id.as_str() == KEY_B_ID)
    );

    let mut both = Verifier::with_keys([
        PublicKey::from_spki_pem(KEY_A_PUBLIC).unwrap(),
        PublicKey::from_spki_pem(KEY_B_PUBLIC).unwrap(),
    ]);
    let dev = device(FINGERPRINT);
    let ctx = ctx_at(&dev, NOT_BEFORE);
    assert_eq!(
        both.verify(by_a.as_bytes(), &ctx).unwrap().key_id.as_str(),
        KEY_A_ID
    );
    assert_eq!(
        both.verify(by_b.as_bytes(), &ctx).unwrap().key_id.as_str(),
        KEY_B_ID
    );

    let retired = both.remove_key(&signer_a().key_id().clone()).unwrap();
    assert_eq!(retired.key_id().as_str(), KEY_A_ID);
    assert!(matches!(
        both.verify(by_a.as_bytes(), &ctx),
        Err(VerifyError::UnknownKeyId(_))
    ));
}

#[test]
fn unsupported_algorithm_is_named() {
    let text = signer_a()
        .sign_file(&license())
        .unwrap()
        .replace("Algorithm: RSA-PSS-SHA256", "Algorithm: ED25519");
    assert!(
        matches!(verify(&text, NOT_BEFORE), Err(VerifyError::UnsupportedAlgorithm(a)) if a == "ED25519")
    );
}

#[test]
fn malformed_envelope_names_the_line() {
    let text = signer_a().sign_file(&license()).unwrap();
    let broken = text.replacen(file::SIGNATURE_HEADER, "-----BEGIN SIGNATURE-----", 1);
    match verify(&broken, NOT_BEFORE) {
        Err(VerifyError::Malformed {
            location: Location::Line(n),
            reason,
        }) => {
            assert!(n > 1, "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    match verify("", NOT_BEFORE) {
        Err(VerifyError::Malformed {
            location: Location::InputByte(0),
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn signed_but_non_canonical_payload_is_refused_at_its_byte() {
    let canonical = tessera_license::payload::encode(&license()).unwrap();
    let mut spaced = b"{ ".to_vec();
    spaced.extend_from_slice(&canonical[1..]);
    match verify(&sign_raw_payload(&spaced), NOT_BEFORE) {
        Err(VerifyError::Malformed {
            location: Location::PayloadByte(1),
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn future_format_version_is_reported_as_such() {
    let payload = br#"{"format_version":2,"something":"new"}"#;
    match verify(&sign_raw_payload(payload), NOT_BEFORE) {
        Err(
            e @ VerifyError::UnsupportedFormatVersion {
                found: 2,
                supported: 1,
            },
        ) => {
            assert!(e.to_string().contains("version 2"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_and_invalid_fields_are_refused_by_path() {
    let canonical =
        String::from_utf8(tessera_license::payload::encode(&license()).unwrap()).unwrap();
    let cases = [
        (
            canonical.replace(r#""trial":false"#, r#""trial":false,"zzz":1"#),
            "zzz",
        ),
        (
            canonical.replace(r#""count":4"#, r#""count":0"#),
            "features[0].count",
        ),
        (
            canonical.replace(r#""count":4"#, r#""count":4294967296"#),
            "features[0].count",
        ),
        (
            canonical.replace(r#""nonce":"5a5a"#, r#""nonce":"5A5a"#),
            "nonce",
        ),
        (
            canonical.replace(r#""not_after":1798761600"#, r#""not_after":1767225600"#),
            "not_after",
        ),
        (
            canonical.replace(
                r#""product_id":"OFFER-cae-solver-pro""#,
                r#""product_id":"""#,
            ),
            "product_id",
        ),
        (
            canonical.replace(r#""binding":{"fingerprint""#, r#""binding":{"fingerprinT""#),
            "binding.fingerprint",
        ),
    ];
    for (payload, field) in cases {
        match verify(&sign_raw_payload(payload.as_bytes()), NOT_BEFORE) {
            Err(VerifyError::Malformed {
                location: Location::Field(f),
                ..
            }) => assert_eq!(f, field, "{payload}"),
            other => panic!("{field}: unexpected {other:?}"),
        }
    }
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let mut text = signer_a().sign_file(&license()).unwrap();
    text.push_str(&" ".repeat(file::MAX_FILE_LEN));
    assert!(
        matches!(verify(&text, NOT_BEFORE), Err(VerifyError::TooLarge { max, .. }) if max == file::MAX_FILE_LEN)
    );
}
