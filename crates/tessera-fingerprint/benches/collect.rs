//! Collection time. Targets: cold (every source read again) ≤ 50 ms, warm (cached) ≤ 1 µs.
//!
//! `cargo bench -p tessera-fingerprint --bench collect`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera_fingerprint::{CollectOptions, FsProbe, IdentityCache, collect, collect_local};
use tessera_types::SystemClock;

fn bench(c: &mut Criterion) {
    c.bench_function("cold: collect_local (this machine)", |b| {
        b.iter(|| black_box(collect_local()));
    });

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/workstation");
    let probe = FsProbe::new(fixture);
    c.bench_function("cold: collect (workstation fixture)", |b| {
        b.iter(|| black_box(collect(&probe)));
    });

    let cache = IdentityCache::local(
        CollectOptions::default(),
        SystemClock::shared(),
        time::Duration::minutes(10),
    );
    cache.refresh();
    c.bench_function("warm: IdentityCache::get", |b| {
        b.iter(|| black_box(Arc::clone(&cache.get())));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
