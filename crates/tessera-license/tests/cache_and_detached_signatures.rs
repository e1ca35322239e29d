//! The verification cache keyed by file hash, and detached signatures for identity overrides.

mod common;

use common::*;
use tessera_fingerprint::{OverrideFile, Signature};
use tessera_license::{SignatureError, VerificationCache, VerifyContext, VerifyError};

#[test]
fn cache_skips_the_signature_but_rechecks_time_product_and_binding() {
    let text = signer_a().sign_file(&license()).unwrap();
    let mut verifier = verifier_a();
    let mut cache = VerificationCache::new(2);
    let dev = device(FINGERPRINT);

    let first = verifier
        .verify_cached(
            &mut cache,
            text.as_bytes(),
            &VerifyContext::new(PRODUCT, at(NOT_BEFORE), dev.r()),
        )
        .unwrap();
    assert_eq!(cache.len(), 1);
    let again = verifier
        .verify_cached(
            &mut cache,
            text.as_bytes(),
            &VerifyContext::new(PRODUCT, at(NOT_BEFORE + 1), dev.r()),
        )
        .unwrap();
    assert_eq!(first, again);
    assert!(matches!(
        verifier.verify_cached(
            &mut cache,
            text.as_bytes(),
            &VerifyContext::new(PRODUCT, at(NOT_AFTER), dev.r())
        ),
        Err(VerifyError::Expired { .. })
    ));
    let elsewhere = device("AA:BB:CC:DD:EE:FF|X|Y|Z");
    assert!(matches!(
        verifier.verify_cached(
            &mut cache,
            text.as_bytes(),
            &VerifyContext::new(PRODUCT, at(NOT_BEFORE), elsewhere.r())
        ),
        Err(VerifyError::BindingMismatch { .. })
    ));

    // A key no longer trusted is not rescued by the cache.
    verifier.remove_key(&signer_a().key_id().clone());
    assert!(matches!(
        verifier.verify_cached(
            &mut cache,
            text.as_bytes(),
            &VerifyContext::new(PRODUCT, at(NOT_BEFORE), dev.r())
        ),
        Err(VerifyError::UnknownKeyId(_))
    ));
}

#[test]
fn cache_keeps_at_most_its_capacity_and_forgets_the_oldest() {
    let verifier = verifier_a();
    let dev = device(FINGERPRINT);
    let ctx = VerifyContext::new(PRODUCT, at(NOT_BEFORE), dev.r());
    let mut cache = VerificationCache::new(2);
    let texts: Vec<String> = (0..3u8)
        .map(|i| {
            let mut lic = license();
            lic.nonce = tessera_license::Nonce([i; 16]);
            signer_a().sign_file(&lic).unwrap()
        })
        .collect();
    for t in &texts {
        verifier
            .verify_cached(&mut cache, t.as_bytes(), &ctx)
            .unwrap();
    }
    assert_eq!(cache.len(), 2);
    // Failures are not cached.
    assert!(
        verifier
            .verify_cached(&mut cache, b"garbage", &ctx)
            .is_err()
    );
    assert_eq!(cache.len(), 2);
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn identity_override_signed_by_the_isv_verifies_detached() {
    let payload = br#"{"device_id":"build-farm-17","reason":"CI fleet","issued_for":"ACME","issued_at":"20261122103015"}"#;
    let key = signer_a();
    let text = OverrideFile::encode(
        payload,
        &Signature {
            algorithm: "RSA-PSS-SHA256".into(),
            key_id: key.key_id().to_string(),
            value: key.sign_detached(payload),
        },
    );
    let file = OverrideFile::parse(text.as_bytes()).unwrap();
    let verifier = verifier_a();
    let sig = &file.signature;
    assert_eq!(
        verifier.verify_detached(&sig.key_id, &sig.algorithm, &file.signed_bytes, &sig.value),
        Ok(key.key_id().clone())
    );
    let mut tampered = file.signed_bytes.clone();
    tampered[3] ^= 1;
    assert!(matches!(
        verifier.verify_detached(&sig.key_id, &sig.algorithm, &tampered, &sig.value),
        Err(SignatureError::BadSignature(_))
    ));
    assert!(matches!(
        verifier.verify_detached(KEY_B_ID, &sig.algorithm, &file.signed_bytes, &sig.value),
        Err(SignatureError::UnknownKeyId(_))
    ));
    assert!(matches!(
        verifier.verify_detached(
            "acme-2026-01",
            &sig.algorithm,
            &file.signed_bytes,
            &sig.value
        ),
        Err(SignatureError::UnknownKeyId(_))
    ));
    assert!(matches!(
        verifier.verify_detached(&sig.key_id, "SM2", &file.signed_bytes, &sig.value),
        Err(SignatureError::UnsupportedAlgorithm(_))
    ));
    assert!(matches!(
        verifier.verify_detached(
            &sig.key_id,
            &sig.algorithm,
            &file.signed_bytes,
            &sig.value[1..]
        ),
        Err(SignatureError::BadSignature(_))
    ));
}

#[test]
fn a_license_signature_is_not_valid_as_a_detached_signature_of_its_payload() {
    // Licenses sign a context-prefixed message, so the payload alone does not verify.
    let key = signer_a();
    let payload = tessera_license::payload::encode(&license()).unwrap();
    let signature = key.sign_detached(&tessera_license::file::signed_message(&payload));
    assert!(
        verifier_a()
            .verify_detached(KEY_A_ID, "RSA-PSS-SHA256", &payload, &signature)
            .is_err()
    );
}
