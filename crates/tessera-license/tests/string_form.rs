//! The ≤ 1024-character string form: layout, exact fingerprint-hash binding, size refusal.

mod common;

use common::*;
use tessera_license::string_form::{MAX_STRING_LEN, StringFormError};
use tessera_license::{
    Binding, FingerprintHash, IssueError, LicenseForm, VerifyContext, VerifyError,
};

#[test]
fn issued_string_fits_and_verifies_with_the_fingerprint_hash() {
    let text = signer_a().sign_string(&license()).unwrap();
    assert!(text.len() <= MAX_STRING_LEN, "{}", text.len());
    assert!(text.starts_with(&format!("TL1.RSA-PSS-SHA256.{KEY_A_ID}.")));
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    );

    let dev = device(FINGERPRINT);
    let signed = verifier_a()
        .verify(
            text.as_bytes(),
            &VerifyContext::new(PRODUCT, at(NOT_BEFORE), dev.r()),
        )
        .unwrap();
    assert_eq!(signed.form, LicenseForm::String);
    let mut expected = license();
    expected.binding = Binding::FingerprintHash(FingerprintHash::of(FINGERPRINT));
    assert_eq!(signed.license, expected);
}

#[test]
fn string_binding_is_exact_on_the_normalised_fingerprint() {
    let text = signer_a().sign_string(&license()).unwrap();
    // Lower case and surrounding space normalise to the same fingerprint: accepted.
    let same = device(&format!("  {}  ", FINGERPRINT.to_lowercase()));
    assert!(
        verifier_a()
            .verify(
                text.as_bytes(),
                &VerifyContext::new(PRODUCT, at(NOT_BEFORE), same.r())
            )
            .is_ok()
    );
    // One disk swapped, which the file form tolerates: the hash differs, refused.
    let swapped = device("04:7C:16:5E:E3:5D|NEW-DISK-0001|BOARD-7781|BFEBFBFF00090672");
    match verifier_a().verify(
        text.as_bytes(),
        &VerifyContext::new(PRODUCT, at(NOT_BEFORE), swapped.r()),
    ) {
        Err(VerifyError::BindingMismatch { explanation }) => {
            assert!(explanation.contains("SHA-256"), "{explanation}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn string_form_validity_and_product_checks_match_the_file_form() {
    let mut lic = license();
    lic.trial = true;
    let text = signer_a().sign_string(&lic).unwrap();
    let dev = device(FINGERPRINT);
    let verify = |secs| {
        verifier_a().verify(
            text.as_bytes(),
            &VerifyContext::new(PRODUCT, at(secs), dev.r()),
        )
    };
    assert!(matches!(
        verify(NOT_BEFORE - 1),
        Err(VerifyError::NotYetValid { .. })
    ));
    assert!(matches!(
        verify(NOT_AFTER),
        Err(VerifyError::Expired { .. })
    ));
    assert!(verify(NOT_BEFORE).unwrap().license.trial);
    assert!(matches!(
        verifier_a().verify(
            text.as_bytes(),
            &VerifyContext::new("x", at(NOT_BEFORE), dev.r())
        ),
        Err(VerifyError::WrongProduct { .. })
    ));
}

#[test]
fn a_license_too_big_for_1024_characters_is_refused_with_the_sizes() {
    let mut lic = license();
    lic.instance_id = "i".repeat(128);
    lic.order_id = "o".repeat(128);
    lic.license_id = "l".repeat(128);
    match signer_a().sign_string(&lic) {
        Err(IssueError::String(StringFormError::TooLong {
            len,
            max,
            signature_chars,
            payload_bytes,
            ..
        })) => {
            assert!(len > max);
            assert_eq!(max, 1024);
            assert_eq!(signature_chars, 512);
            assert!(payload_bytes > 400);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The same License fits in a file.
    assert!(signer_a().sign_file(&lic).is_ok());
}

#[test]
fn string_form_parts_are_checked_by_name() {
    let text = signer_a().sign_string(&license()).unwrap();
    let dev = device(FINGERPRINT);
    let verify = |s: &str| {
        verifier_a().verify(
            s.as_bytes(),
            &VerifyContext::new(PRODUCT, at(NOT_BEFORE), dev.r()),
        )
    };
    assert!(matches!(
        verify(&format!("{text}.x")),
        Err(VerifyError::Malformed { .. })
    ));
    assert!(matches!(
        verify(&format!("{text}=")),
        Err(VerifyError::Malformed { .. })
    ));
    assert!(matches!(
        verify(&text.replace(KEY_A_ID, KEY_B_ID)),
        Err(VerifyError::UnknownKeyId(_))
    ));
    assert!(matches!(
        verify(&"A".repeat(1025)),
        Err(VerifyError::TooLarge { .. }) | Err(VerifyError::Malformed { .. })
    ));
    assert!(matches!(
        verify(&format!("TL1.{}", "A".repeat(1025))),
        Err(VerifyError::TooLarge { max: 1024, .. })
    ));
    // Whitespace around the string, as a copy-paste leaves it, is fine.
    assert!(verify(&format!("\n {text}\r\n")).is_ok());
}
