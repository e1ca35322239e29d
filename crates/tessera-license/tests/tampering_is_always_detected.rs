//! Any single-byte change to a valid License, file or string, is refused; no input panics.

mod common;

use common::*;
use proptest::prelude::*;
use std::sync::LazyLock;

use tessera_license::{SignedLicense, Verifier, VerifyContext, VerifyError};

// Signed once per test binary: thousands of cases share them.
static FILE: LazyLock<String> = LazyLock::new(|| signer_a().sign_file(&license()).unwrap());
static STRING: LazyLock<String> = LazyLock::new(|| signer_a().sign_string(&license()).unwrap());
static VERIFIER: LazyLock<Verifier> = LazyLock::new(verifier_a);
static DEVICE: LazyLock<Device> = LazyLock::new(|| device(FINGERPRINT));

fn issued_file() -> String {
    FILE.clone()
}

fn issued_string() -> String {
    STRING.clone()
}

fn check(verifier: &Verifier, input: &[u8]) -> Result<SignedLicense, VerifyError> {
    verifier.verify(
        input,
        &VerifyContext::new(PRODUCT, at(NOT_BEFORE), DEVICE.r()),
    )
}

/// Whether changing `input[at]` to `to` still yields an accepted License. Surrounding whitespace
/// of a string form is not part of the License, so a change that only grows or shrinks it is
/// ignored by the caller rather than here.
fn accepted_after(verifier: &Verifier, input: &[u8], at: usize, to: u8) -> bool {
    let mut changed = input.to_vec();
    changed[at] = to;
    check(verifier, &changed).is_ok()
}

#[test]
fn the_untouched_licenses_are_accepted() {
    let verifier = &*VERIFIER;
    assert!(check(verifier, issued_file().as_bytes()).is_ok());
    assert!(check(verifier, issued_string().as_bytes()).is_ok());
}

#[test]
fn flipping_any_bit_of_any_byte_of_a_file_is_refused() {
    let verifier = &*VERIFIER;
    let file = issued_file().into_bytes();
    for at in 0..file.len() {
        for bit in [0x01u8, 0x80] {
            assert!(
                !accepted_after(verifier, &file, at, file[at] ^ bit),
                "byte {at} ^ {bit:#04x} accepted"
            );
        }
    }
}

#[test]
fn flipping_any_bit_of_any_byte_of_a_string_is_refused() {
    let verifier = &*VERIFIER;
    let string = issued_string().into_bytes();
    for at in 0..string.len() {
        for bit in [0x01u8, 0x02, 0x20] {
            let to = string[at] ^ bit;
            // Turning the first or last character into whitespace only trims it away, which
            // still leaves a string that must be refused.
            assert!(
                !accepted_after(verifier, &string, at, to),
                "byte {at} -> {to:#04x} accepted"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_single_byte_replacement_in_a_file_is_refused(seed in any::<prop::sample::Index>(), to in any::<u8>()) {
        let verifier = &*VERIFIER;
        let file = issued_file().into_bytes();
        let at = seed.index(file.len());
        prop_assume!(file[at] != to);
        prop_assert!(!accepted_after(verifier, &file, at, to));
    }

    #[test]
    fn any_single_byte_replacement_in_a_string_is_refused(seed in any::<prop::sample::Index>(), to in any::<u8>()) {
        let verifier = &*VERIFIER;
        let string = issued_string().into_bytes();
        let at = seed.index(string.len());
        prop_assume!(string[at] != to);
        prop_assert!(!accepted_after(verifier, &string, at, to));
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..4096)) {
        let verifier = &*VERIFIER;
        let _ = check(verifier, &input);
        let _ = verifier.open_file(&input);
        let _ = verifier.open_string(&input);
        let _ = tessera_license::payload::decode(&input);
        let _ = tessera_license::string_form::decode_payload(&input);
    }

    #[test]
    fn arbitrary_text_behind_each_header_never_panics(body in "[ -~\n\r]{0,2048}", string in prop::bool::ANY) {
        let verifier = &*VERIFIER;
        let input = if string { format!("TL1.{body}") } else { format!("-----BEGIN TESSERA LICENSE-----\n{body}") };
        let _ = check(verifier, input.as_bytes());
    }

    #[test]
    fn cut_or_spliced_licenses_never_panic_and_are_refused(cut in any::<prop::sample::Index>(), extra in prop::collection::vec(any::<u8>(), 1..64)) {
        let verifier = &*VERIFIER;
        for valid in [issued_file().into_bytes(), issued_string().into_bytes()] {
            let at = cut.index(valid.len());
            let mut spliced = valid[..at].to_vec();
            spliced.extend_from_slice(&extra);
            spliced.extend_from_slice(&valid[at..]);
            let accepted = check(verifier, &spliced).is_ok();
            // Whitespace added around a string form or a line ending added at a file's end is
            // not a change of the License.
            let harmless = extra.iter().all(u8::is_ascii_whitespace) && (at == 0 || at == valid.len());
            prop_assert!(!accepted || harmless, "splice at {} accepted", at);
            let _ = check(verifier, &valid[..at]);
        }
    }

    #[test]
    fn payload_decoders_never_panic_on_arbitrary_json(value in arb_json()) {
        let bytes = tessera_license::canonical::to_vec(&value).unwrap();
        let _ = tessera_license::payload::decode(&bytes);
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z_0-9]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        let keys = prop_oneof![
            Just("format_version".to_owned()),
            Just("license_id".to_owned()),
            Just("features".to_owned()),
            Just("binding".to_owned()),
            Just("count".to_owned()),
            "[a-z_]{1,10}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
