//! Issue throughput: Licenses built and signed per second with a 3072-bit key, in both forms
//! (tessera-license's `verify` bench covers the other side).

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_isv::config::DeliveryMode;
use tessera_isv::issuer::{LicenseTerms, sign_license};
use tessera_license::SigningKey;
use time::{Duration, OffsetDateTime};

fn issue(c: &mut Criterion) {
    let key = SigningKey::generate().expect("3072-bit key");
    let features: BTreeMap<String, u32> =
        [("solver".to_owned(), 4), ("mesher".to_owned(), 1)].into();
    let now = OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid time");
    let terms = LicenseTerms {
        product_id: "prod-cad",
        instance_id: "4ef28f-312d3d-gad335f-3132hkf",
        order_id: "CS2411210908XXXX",
        features: &features,
        fingerprint: "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672",
        issued_at: now,
        not_before: now,
        not_after: Some(now + Duration::days(365)),
        trial: false,
    };
    let mut group = c.benchmark_group("issue_rsa3072");
    group.throughput(Throughput::Elements(1));
    for (name, mode) in [
        ("file", DeliveryMode::File),
        ("string", DeliveryMode::String),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| sign_license(&key, &terms, mode).expect("signs"));
        });
    }
    group.finish();
}

criterion_group!(benches, issue);
criterion_main!(benches);
