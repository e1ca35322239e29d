//! Signing cost per request: APIG `SDK-HMAC-SHA256` over a 1 KiB JSON body, and the callback
//! body signature (sign and verify). Target: < 20 µs each. Besides criterion's own report, the
//! bench prints one line per case with the mean cost in µs.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use koogallery::apig::{self, Credentials, SigningRequest};
use koogallery::callback_sig::{self, AccessKey, SignatureParams};
use time::OffsetDateTime;

const TARGET_MICROS: f64 = 20.0;

fn body_1k() -> Vec<u8> {
    let mut body = br#"{"license":""#.to_vec();
    body.resize(1024 - 2, b'A');
    body.extend_from_slice(br#""}"#);
    body
}

fn apig_sign(creds: &Credentials, body: &[u8], now: OffsetDateTime) -> String {
    let req = SigningRequest::new(
        "POST",
        "mkt.myhuaweicloud.com",
        "/api/mkp-openapi-public/global/v1/license/heartbeat",
    )
    .header("Content-Type", "application/json")
    .header("x-stage", "RELEASE")
    .body(body);
    apig::sign(creds, &req, now).authorization
}

fn benches(c: &mut Criterion) {
    let creds = Credentials::new("MYAK", "MYSK");
    let key = AccessKey::new("TESTACCESSKEY");
    let body = body_1k();
    let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time");
    let params = SignatureParams::sign(&key, &body, now, "0123456789abcdef0123456789abcdef");

    c.bench_function("apig_sign_1KiB", |b| {
        b.iter(|| apig_sign(&creds, black_box(&body), now));
    });
    c.bench_function("callback_sign_1KiB", |b| {
        b.iter(|| callback_sig::sign(&key, black_box(&body), "1700000000000", "nonce"));
    });
    c.bench_function("callback_verify_1KiB", |b| {
        b.iter(|| callback_sig::verify_signature(&key, black_box(&body), &params, now));
    });
}

fn mean_micros(iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}

fn print_figures() {
    let creds = Credentials::new("MYAK", "MYSK");
    let key = AccessKey::new("TESTACCESSKEY");
    let body = body_1k();
    let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time");
    let params = SignatureParams::sign(&key, &body, now, "0123456789abcdef0123456789abcdef");
    let figures = [
        (
            "APIG sign, 1 KiB body",
            mean_micros(20_000, || {
                black_box(apig_sign(&creds, black_box(&body), now));
            }),
        ),
        (
            "callback sign, 1 KiB body",
            mean_micros(20_000, || {
                black_box(callback_sig::sign(
                    &key,
                    black_box(&body),
                    "1700000000000",
                    "n",
                ));
            }),
        ),
        (
            "callback verify, 1 KiB body",
            mean_micros(20_000, || {
                let _ = black_box(callback_sig::verify_signature(
                    &key,
                    black_box(&body),
                    &params,
                    now,
                ));
            }),
        ),
    ];
    for (name, micros) in figures {
        let verdict = if micros < TARGET_MICROS {
            "meets"
        } else {
            "MISSES"
        };
        println!("{name}: {micros:.2} µs per request ({verdict} the {TARGET_MICROS} µs target)");
    }
}

criterion_group!(signing, benches);

fn main() {
    signing();
    print_figures();
    Criterion::default().configure_from_args().final_summary();
}
