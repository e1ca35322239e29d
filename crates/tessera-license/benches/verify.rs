//! License verification against a bare RSA-PSS verify of the same bytes, and issue throughput.
//!
//! `cargo bench -p tessera-license --bench verify` prints criterion's figures, then one summary
//! line per form: License verification, the bare `rsa` verification of the same message and
//! signature, and their ratio (target: within 1.2x, under 1 ms).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use sha2::Sha256;
use tessera_fingerprint::{ComponentKind, HardwareId, HardwareIdSalt, KooGalleryFingerprint};
use tessera_license::{
    Binding, DeviceRef, FORMAT_VERSION, Feature, License, Nonce, PublicKey, SigningKey, Verifier,
    VerifyContext, file, string_form,
};
use time::OffsetDateTime;

const KEY_PRIVATE: &str = include_str!("../tests/keys/test-isv-a.pkcs8.pem");
const KEY_PUBLIC: &str = include_str!("../tests/keys/test-isv-a.spki.pem");
const FINGERPRINT: &str = "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.|BOARD-7781|BFEBFBFF00090672";
const PRODUCT: &str = "OFFER-cae-solver-pro";

struct Fixture {
    signer: SigningKey,
    verifier: Verifier,
    bare: rsa::pss::VerifyingKey<Sha256>,
    file: String,
    string: String,
    fingerprint: KooGalleryFingerprint,
    hardware_id: HardwareId,
    license: License,
}

fn fixture() -> Fixture {
    let signer = SigningKey::from_pkcs8_pem(KEY_PRIVATE).expect("bench key");
    let at = |s| OffsetDateTime::from_unix_timestamp(s).expect("time");
    let license = License {
        format_version: FORMAT_VERSION,
        license_id: "lic-6f1c2e9a-3b7d-4c55-9a1e-0d2f8b7c6a51".into(),
        product_id: PRODUCT.into(),
        instance_id: "inst-20260101-000042".into(),
        order_id: "CS2601010000421".into(),
        features: vec![Feature {
            name: "solver".into(),
            count: 4,
            max_version: Some("2026.2".into()),
        }],
        binding: Binding::fingerprint(FINGERPRINT),
        issued_at: at(1_767_222_000),
        not_before: at(1_767_225_600),
        not_after: Some(at(1_798_761_600)),
        trial: false,
        nonce: Nonce([0x5a; 16]),
    };
    let hardware_id = HardwareId::from_values(
        [
            (ComponentKind::MachineId, "machine-1"),
            (ComponentKind::CpuId, "cpu-1"),
        ],
        &HardwareIdSalt::new(b"bench".to_vec()),
    );
    Fixture {
        file: signer.sign_file(&license).expect("sign file"),
        string: signer.sign_string(&license).expect("sign string"),
        verifier: Verifier::with_keys([PublicKey::from_spki_pem(KEY_PUBLIC).expect("public key")]),
        bare: rsa::pss::VerifyingKey::new(
            rsa::RsaPublicKey::from_public_key_pem(KEY_PUBLIC).expect("rsa key"),
        ),
        fingerprint: KooGalleryFingerprint::parse(FINGERPRINT).expect("fingerprint"),
        hardware_id,
        signer,
        license,
    }
}

impl Fixture {
    fn ctx(&self) -> VerifyContext<'_> {
        let device = DeviceRef {
            fingerprint: &self.fingerprint,
            hardware_id: Some(&self.hardware_id),
        };
        VerifyContext::new(PRODUCT, self.license.not_before, device)
    }

    fn verify_file(&self) {
        self.verifier
            .verify(self.file.as_bytes(), &self.ctx())
            .expect("valid file");
    }

    fn verify_string(&self) {
        self.verifier
            .verify(self.string.as_bytes(), &self.ctx())
            .expect("valid string");
    }

    /// The message and signature the file form's verification checks, extracted once.
    fn bare_file_inputs(&self) -> (Vec<u8>, rsa::pss::Signature) {
        let envelope = file::decode(self.file.as_bytes()).expect("envelope");
        let signature = rsa::pss::Signature::try_from(envelope.signature.as_slice()).expect("sig");
        (envelope.signed_message(), signature)
    }

    fn bare_string_inputs(&self) -> (Vec<u8>, rsa::pss::Signature) {
        let parts = string_form::decode(self.string.as_bytes()).expect("parts");
        let signature = rsa::pss::Signature::try_from(parts.signature.as_slice()).expect("sig");
        (string_form::signed_message(&parts.payload), signature)
    }
}

fn benches(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("verify");
    let (file_message, file_signature) = f.bare_file_inputs();
    group.bench_function("license_file", |b| b.iter(|| f.verify_file()));
    group.bench_function("bare_rsa_pss_file_message", |b| {
        b.iter(|| {
            f.bare
                .verify(black_box(&file_message), &file_signature)
                .expect("bare");
        });
    });
    group.bench_function("license_string", |b| b.iter(|| f.verify_string()));
    group.finish();

    let mut group = c.benchmark_group("issue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign_file_3072", |b| {
        b.iter(|| f.signer.sign_file(black_box(&f.license)).expect("sign"));
    });
    group.bench_function("sign_string_3072", |b| {
        b.iter(|| f.signer.sign_string(black_box(&f.license)).expect("sign"));
    });
    group.finish();
}

/// Median of `rounds` timings of `batch` calls each, per call.
fn median_per_call(rounds: usize, batch: u32, mut op: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            start.elapsed() / batch
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn report(f: &Fixture) {
    // Interleaved rounds, so both sides see the same machine load on shared cores.
    let mut lines = Vec::new();
    for (form, verify, (message, signature)) in [
        (
            "file",
            &(|| f.verify_file()) as &dyn Fn(),
            f.bare_file_inputs(),
        ),
        (
            "string",
            &(|| f.verify_string()) as &dyn Fn(),
            f.bare_string_inputs(),
        ),
    ] {
        let mut license = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..15 {
            license.push(median_per_call(1, 50, verify));
            bare.push(median_per_call(1, 50, || {
                f.bare.verify(&message, &signature).expect("bare");
            }));
        }
        license.sort();
        bare.sort();
        let (l, b) = (license[license.len() / 2], bare[bare.len() / 2]);
        lines.push(format!(
            "License {form} verify: {:.1} us; bare rsa PSS verify of the same bytes: {:.1} us; ratio {:.2}x",
            l.as_secs_f64() * 1e6,
            b.as_secs_f64() * 1e6,
            l.as_secs_f64() / b.as_secs_f64()
        ));
    }
    let sign = median_per_call(5, 10, || {
        f.signer.sign_file(&f.license).expect("sign");
    });
    lines.push(format!(
        "issue (sign_file, RSA-3072): {:.2} ms each, {:.0} Licenses/s on one core",
        sign.as_secs_f64() * 1e3,
        1.0 / sign.as_secs_f64()
    ));
    for line in lines {
        println!("{line}");
    }
}

fn main() {
    let f = fixture();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &f);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` only smoke-runs the benchmarks.
    if std::env::args().any(|a| a == "--bench") {
        report(&f);
    }
}
