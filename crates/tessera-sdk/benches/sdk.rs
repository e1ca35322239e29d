//! SDK speed, with the baselines measured in the same run:
//! - `check/*`: `tessera_client_check` (through the C ABI, and the Rust call under it) against a
//!   bare atomic load; targets p50 ≤ 50 ns and ≤ 10× the baseline;
//! - `connect/*`: create + connect + first check against a stand-in agent; target ≤ 5 ms;
//! - `reattach/*`: from the agent coming back to the client re-attached with its lease re-taken;
//!   target ≤ 2 s.
//!
//! Each group also prints its median and p99 directly (criterion reports means).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use support::AgentHarness;
use tessera::{Client, ClientOptions, LinkStatus, tessera_result};

fn options(agent: &AgentHarness) -> ClientOptions {
    let mut options = ClientOptions::new(support::PRODUCT, "bench", "1");
    options.endpoint = Some(agent.endpoint.clone());
    options
}

/// Median and 99th percentile, in nanoseconds per call, of `samples` runs of `f`, each timed
/// over `batch` calls.
fn percentiles(samples: usize, batch: u32, mut f: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[samples / 2], times[samples * 99 / 100])
}

fn check(c: &mut Criterion) {
    let agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    client.connect(Duration::from_secs(5)).unwrap();
    assert_eq!(client.check(b"solver"), tessera_result::TESSERA_OK);
    let mut raw = std::ptr::null_mut();
    // SAFETY: valid C strings and out-pointer; freed below.
    unsafe {
        std::env::set_var("TESSERA_SOCKET", agent.socket_path());
        tessera::ffi::tessera_client_new(
            c"foocad".as_ptr(),
            c"bench".as_ptr(),
            c"1".as_ptr(),
            &raw mut raw,
        );
        assert_eq!(
            tessera::ffi::tessera_client_connect(raw, 5000),
            tessera_result::TESSERA_OK
        );
    }
    let baseline = AtomicU64::new(7);

    let mut group = c.benchmark_group("check");
    group.bench_function("bare_atomic_load", |b| {
        b.iter(|| black_box(&baseline).load(Ordering::Acquire));
    });
    group.bench_function("rust_check", |b| {
        b.iter(|| black_box(&client).check(black_box(b"solver")));
    });
    group.bench_function("tessera_client_check", |b| {
        // SAFETY: a live client and a NUL-terminated name.
        b.iter(|| unsafe {
            tessera::ffi::tessera_client_check(black_box(raw), black_box(c"solver".as_ptr()))
        });
    });
    group.finish();

    let (base_p50, base_p99) = percentiles(2000, 1000, || {
        black_box(black_box(&baseline).load(Ordering::Acquire));
    });
    let (check_p50, check_p99) = percentiles(2000, 1000, || {
        // SAFETY: as above.
        black_box(unsafe {
            tessera::ffi::tessera_client_check(black_box(raw), c"solver".as_ptr())
        });
    });
    println!(
        "check: tessera_client_check p50 {check_p50:.2} ns p99 {check_p99:.2} ns; bare atomic \
         load p50 {base_p50:.2} ns p99 {base_p99:.2} ns; ratio p50 {:.1}x (targets: p50 <= 50 ns, \
         <= 10x)",
        check_p50 / base_p50.max(1e-3)
    );
    // SAFETY: created above, not used afterwards.
    unsafe { tessera::ffi::tessera_client_free(raw) };
}

fn connect(c: &mut Criterion) {
    let agent = AgentHarness::start();
    let once = || {
        let client = Client::new(options(&agent)).unwrap();
        client.connect(Duration::from_secs(5)).unwrap();
        assert_eq!(client.check(b"solver"), tessera_result::TESSERA_OK);
        client
    };
    let mut group = c.benchmark_group("connect");
    group.sample_size(20);
    group.bench_function("create_connect_first_check", |b| {
        // Clients are dropped outside the timed part (and one at a time: the agent caps
        // connections per user).
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let start = Instant::now();
                    let client = once();
                    let took = start.elapsed();
                    drop(client);
                    took
                })
                .sum()
        });
    });
    group.finish();
    let mut times: Vec<Duration> = (0..30)
        .map(|_| {
            let start = Instant::now();
            let client = once();
            let took = start.elapsed();
            drop(client);
            took
        })
        .collect();
    times.sort();
    println!(
        "connect: create+connect+first check p50 {:?} max {:?} (target <= 5 ms)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

fn reattach(c: &mut Criterion) {
    let mut agent = AgentHarness::start();
    let client = Client::new(options(&agent)).unwrap();
    client.connect(Duration::from_secs(5)).unwrap();
    client.checkout("solver").unwrap();
    let mut restart = || {
        agent.down();
        support::wait_until("offline", || client.link() == LinkStatus::Offline);
        let back = Instant::now();
        agent.up();
        support::wait_until("re-attached", || {
            client.link() == LinkStatus::Connected && agent.lease_count() == 1
        });
        back.elapsed()
    };
    let mut times: Vec<Duration> = (0..10).map(|_| restart()).collect();
    times.sort();
    println!(
        "reattach: agent back -> client re-attached with its lease p50 {:?} max {:?} (target <= 2 s)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    let mut group = c.benchmark_group("reattach");
    group.sample_size(10);
    group.bench_function("agent_restart_to_reattached", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| restart()).sum());
    });
    group.finish();
}

criterion_group!(benches, check, connect, reattach);
criterion_main!(benches);
