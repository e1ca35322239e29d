//! Feeds arbitrary bytes to every parser of untrusted License input. Any panic, overflow or
//! runaway allocation is a bug. The verifier trusts the committed test key, so inputs that
//! reach the payload decoders after a valid signature are exercised too (seed the corpus with
//! a License signed by it, see README.md "Fuzzing").
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_license::{PublicKey, Verifier, file, payload, string_form};

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let key = PublicKey::from_spki_pem(include_str!("../../tests/keys/test-isv-a.spki.pem"))
        .expect("committed test key");
    Verifier::with_keys([key])
});

fuzz_target!(|data: &[u8]| {
    let _ = VERIFIER.open(data);
    let _ = file::decode(data);
    let _ = string_form::decode(data);
    let _ = payload::decode(data);
    let _ = string_form::decode_payload(data);
});
