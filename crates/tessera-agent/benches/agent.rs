//! The agent binary under load, each figure beside a baseline measured in the same run:
//!
//! 1. idle: RSS (target ≤ 15 MB) and wake-ups per minute (target ≤ 2), from
//!    `/proc/<pid>/task/*/status` context switches over a window; baseline: `sleep` idling in
//!    the same window;
//! 2. one request round trip (`checkout`) through the agent vs a raw Unix-socket echo of the
//!    same frame sizes (target ≤ 3× at the median, p99 ≤ 200 µs), plus a criterion group;
//! 3. 1,000 connected clients doing checkouts (and releases) for a few seconds: checkouts/s
//!    (target ≥ 20,000 on 2 cores) and the agent's RSS (target ≤ 40 MB); baseline: the same
//!    1,000 connections doing raw echoes of the same frames.
//!
//! The agent runs as its own process (`CARGO_BIN_EXE_tessera-agent`) with a Model B License,
//! so no marketplace is involved. Clients and baselines share the same 2 cores.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use tessera_ipc::frame::encode_frame;
use tessera_ipc::proto::{AppInfo, LicenseSource, LicenseText, Request};
use tessera_ipc::{Call, ClientConfig, ClientMsg, Endpoint, IpcClient, Reply, ServerMsg};
use tessera_license::{Binding, FORMAT_VERSION, Feature, License, Nonce, SigningKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Runtime;

const PRODUCT: &str = "BENCH-CAD";
const CLIENTS: usize = 1000;
const LOAD_WINDOW: Duration = Duration::from_secs(5);
const IDLE_WINDOW: Duration = Duration::from_secs(30);
const SAMPLES: usize = 5000;
const KEY_PRIVATE: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.pkcs8.pem");
const KEY_PUBLIC: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.spki.pem");

struct AgentProcess {
    child: Child,
    socket: std::path::PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a valid struct of this process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}

fn start_agent(root: &Path) -> AgentProcess {
    let config = root.join("config");
    std::fs::create_dir_all(config.join("products.d")).unwrap();
    std::fs::create_dir_all(root.join("system")).unwrap();
    std::fs::write(
        config.join("tessera.toml"),
        "[secrets]\nstore = \"file\"\n[log]\nfilter = \"warn\"\n[ipc]\nmax_connections = 1100\n",
    )
    .unwrap();
    std::fs::write(
        config.join("products.d/bench.toml"),
        format!(
            "product_id = \"{PRODUCT}\"\nname = \"Bench\"\nmodels = [\"license_file\"]\n\
             [[keys]]\nkey_id = \"f05d7a13b971fd09\"\npublic_key_pem = \"\"\"\n{KEY_PUBLIC}\"\"\"\n"
        ),
    )
    .unwrap();
    let socket = root.join("agent.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_tessera-agent"))
        .arg("run")
        .env("TESSERA_CONFIG_DIR", &config)
        .env("TESSERA_STATE_DIR", root.join("state"))
        .env("TESSERA_SOCKET", &socket)
        .env("TESSERA_SYSTEM_PRODUCTS_DIR", root.join("system"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    AgentProcess { child, socket }
}

async fn connect(socket: &Path, product: &str) -> IpcClient {
    let app = AppInfo {
        product_id: product.to_owned(),
        name: "bench".to_owned(),
        version: "1".to_owned(),
        pid: std::process::id(),
    };
    let started = Instant::now();
    loop {
        let mut config = ClientConfig::new(Endpoint::at(socket.to_path_buf()), app.clone());
        config.reconnect = None;
        match IpcClient::connect(config).await {
            Ok(c) => return c,
            Err(e) if started.elapsed() > Duration::from_secs(20) => {
                panic!("cannot connect to the agent: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn license() -> String {
    let here = tessera_fingerprint::collect_local()
        .fingerprint
        .as_str()
        .to_owned();
    let now = time::OffsetDateTime::now_utc();
    SigningKey::from_pkcs8_pem(KEY_PRIVATE)
        .unwrap()
        .sign_file(&License {
            format_version: FORMAT_VERSION,
            license_id: "bench".into(),
            product_id: PRODUCT.into(),
            instance_id: "bench".into(),
            order_id: "bench".into(),
            features: vec![Feature {
                name: "solver".into(),
                count: 100_000,
                max_version: None,
            }],
            binding: Binding::fingerprint(&here),
            issued_at: now,
            not_before: now - time::Duration::days(1),
            not_after: Some(now + time::Duration::days(30)),
            trial: false,
            nonce: Nonce([1; 16]),
        })
        .unwrap()
}

fn status_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kilobytes of resident memory of `pid`.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&status, "VmRSS:")
}

/// Context switches (voluntary and not) of every thread of `pid`, by thread id.
fn switches(pid: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            out.insert(
                t.file_name().to_string_lossy().into_owned(),
                status_field(&s, "voluntary_ctxt_switches:")
                    + status_field(&s, "nonvoluntary_ctxt_switches:"),
            );
        }
    }
    out
}

/// Switches between two readings: growth of surviving threads plus all of new threads (a
/// thread that ended meanwhile takes its last switches with it).
fn switches_between(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> u64 {
    after
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

fn mib(kb: u64) -> f64 {
    f64::from(u32::try_from(kb).unwrap_or(u32::MAX)) / 1024.0
}

fn per_minute(count: u64, window: Duration) -> f64 {
    f64::from(u32::try_from(count).unwrap_or(u32::MAX)) * 60.0 / window.as_secs_f64()
}

fn idle(agent: &AgentProcess) {
    let mut baseline = Command::new("sleep").arg("3600").spawn().unwrap();
    // Let start-up work (and the first client's session) settle first.
    std::thread::sleep(Duration::from_secs(3));
    let pid = agent.child.id();
    let (a0, b0) = (switches(pid), switches(baseline.id()));
    std::thread::sleep(IDLE_WINDOW);
    let (a1, b1) = (switches(pid), switches(baseline.id()));
    let (rss, base_rss) = (rss_kb(pid), rss_kb(baseline.id()));
    let _ = baseline.kill();
    let _ = baseline.wait();
    println!("idle agent over {IDLE_WINDOW:?}:");
    println!(
        "  RSS {:.1} MiB (target <= 15 MB); baseline `sleep` {:.1} MiB",
        mib(rss),
        mib(base_rss)
    );
    println!(
        "  wake-ups {:.1}/min (target <= 2), all threads' context switches; baseline `sleep` {:.1}/min",
        per_minute(switches_between(&a0, &a1), IDLE_WINDOW),
        per_minute(switches_between(&b0, &b1), IDLE_WINDOW)
    );
}

/// Frames of the same sizes as a checkout request and its reply.
fn checkout_frames() -> (Vec<u8>, Vec<u8>) {
    let request = encode_frame(
        &ClientMsg::Request(Request {
            id: 1_000_000,
            call: Call::Checkout {
                feature: "solver".into(),
                product_id: None,
            },
        }),
        65536,
    )
    .unwrap();
    let reply = encode_frame(
        &ServerMsg::Reply {
            re: 1_000_000,
            reply: Reply::Lease(tessera_ipc::Lease {
                lease_id: tessera_ipc::LeaseId("0123456789abcdef0123456789abcdef".into()),
                product_id: PRODUCT.into(),
                feature: "solver".into(),
                expires_at: time::OffsetDateTime::now_utc(),
            }),
        },
        65536,
    )
    .unwrap();
    (request, reply)
}

/// A raw echo server: answers every request-sized read with the reply bytes.
async fn echo_server(path: &Path, request_len: usize, reply: Vec<u8>) {
    let listener = UnixListener::bind(path).unwrap();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; request_len];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

async fn checkout_and_release(client: &IpcClient) {
    let lease = client.checkout("solver").await.unwrap();
    client.release(lease.lease_id).await.unwrap();
}

async fn raw_once(s: &mut UnixStream, request: &[u8], reply: &mut [u8]) {
    s.write_all(request).await.unwrap();
    s.read_exact(reply).await.unwrap();
}

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let last = sorted.len() - 1;
    sorted[(last * per_mille).div_ceil(1000).min(last)]
}

fn round_trip(rt: &Runtime, socket: &Path, echo: &Path, c: &mut Criterion) {
    let (request, reply) = checkout_frames();
    let (app, mut raw) = rt.block_on(async {
        (
            connect(socket, PRODUCT).await,
            UnixStream::connect(echo).await.unwrap(),
        )
    });
    let mut buf = vec![0u8; reply.len()];
    let (mut ipc_t, mut raw_t) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    rt.block_on(async {
        for _ in 0..500 {
            checkout_and_release(&app).await;
            raw_once(&mut raw, &request, &mut buf).await;
        }
        for _ in 0..SAMPLES {
            let t = Instant::now();
            let lease = app.checkout("solver").await.unwrap();
            ipc_t.push(t.elapsed());
            app.release(lease.lease_id).await.unwrap();
            let t = Instant::now();
            raw_once(&mut raw, &request, &mut buf).await;
            raw_t.push(t.elapsed());
        }
    });
    ipc_t.sort();
    raw_t.sort();
    let (i50, r50) = (percentile(&ipc_t, 500), percentile(&raw_t, 500));
    println!(
        "checkout round trip through the agent ({} + {} bytes, {SAMPLES} samples):",
        request.len(),
        reply.len()
    );
    println!(
        "  agent   median {i50:?}  p99 {:?}  (target p99 <= 200us)",
        percentile(&ipc_t, 990)
    );
    println!(
        "  raw echo median {r50:?}  p99 {:?}",
        percentile(&raw_t, 990)
    );
    println!(
        "  ratio agent/raw (median) {:.2}x  (target <= 3x)",
        i50.as_secs_f64() / r50.as_secs_f64()
    );

    let mut group = c.benchmark_group("agent_round_trip");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("checkout_and_release", |b| {
        b.iter(|| rt.block_on(checkout_and_release(&app)));
    });
    group.bench_function("raw_unix_echo_same_size", |b| {
        b.iter(|| rt.block_on(raw_once(&mut raw, &request, &mut buf)));
    });
    group.finish();
}

fn many_clients(rt: &Runtime, agent: &AgentProcess, echo: &Path) {
    let (request, reply) = checkout_frames();
    let clients: Vec<IpcClient> = rt.block_on(async {
        let mut v = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            v.push(connect(&agent.socket, PRODUCT).await);
        }
        v
    });
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut peak_rss = 0;
    let elapsed = rt.block_on(async {
        let mut tasks = Vec::new();
        for client in clients {
            let (done, count) = (done.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    checkout_and_release(&client).await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                client
            }));
        }
        let started = Instant::now();
        while started.elapsed() < LOAD_WINDOW {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak_rss = peak_rss.max(rss_kb(agent.child.id()));
        }
        done.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed();
        for t in tasks {
            t.await.unwrap();
        }
        elapsed
    });
    let checkouts = count.load(Ordering::Relaxed);

    let raw_count = Arc::new(AtomicU64::new(0));
    let raw_elapsed = rt.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let mut s = UnixStream::connect(echo).await.unwrap();
            let (done, raw_count, request) = (done.clone(), raw_count.clone(), request.clone());
            let mut buf = vec![0u8; reply.len()];
            tasks.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    // a checkout and a release: two round trips, as above
                    raw_once(&mut s, &request, &mut buf).await;
                    raw_once(&mut s, &request, &mut buf).await;
                    raw_count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let started = Instant::now();
        tokio::time::sleep(LOAD_WINDOW).await;
        done.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed();
        for t in tasks {
            t.await.unwrap();
        }
        elapsed
    });
    let rate = f64::from(u32::try_from(checkouts).unwrap_or(u32::MAX)) / elapsed.as_secs_f64();
    let raw_rate = f64::from(u32::try_from(raw_count.load(Ordering::Relaxed)).unwrap_or(u32::MAX))
        / raw_elapsed.as_secs_f64();
    println!("{CLIENTS} connected clients, checkout + release each, {LOAD_WINDOW:?}:");
    println!(
        "  agent    {rate:.0} checkouts/s (target >= 20000 on 2 cores); agent peak RSS {:.1} MiB (target <= 40 MB)",
        mib(peak_rss)
    );
    println!("  raw echo {raw_rate:.0} pairs/s over the same 1000 connections (baseline)");
    println!("  ratio agent/raw {:.2}", rate / raw_rate);
}

fn main() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cli = connect(&agent.socket, "").await;
        let reply = cli
            .call(Call::ImportLicense {
                product_id: Some(PRODUCT.into()),
                source: LicenseSource::Content {
                    content: LicenseText(license()),
                },
            })
            .await
            .unwrap();
        let Reply::ProductState(ps) = reply else {
            panic!("import failed: {reply:?}");
        };
        assert_eq!(ps.state, tessera_types::LicenseState::Active, "{ps:?}");
    });
    idle(&agent);

    let echo = dir.path().join("echo.sock");
    let (request, reply) = checkout_frames();
    rt.block_on(echo_server(&echo, request.len(), reply));
    let mut criterion = Criterion::default().configure_from_args();
    round_trip(&rt, &agent.socket, &echo, &mut criterion);
    many_clients(&rt, &agent, &echo);
    criterion.final_summary();
}
