//! IPC request round trip (typed client → server → handler → reply) against a raw Unix-socket
//! echo of the same byte sizes, measured in the same run. Prints both medians, their ratio
//! (target ≤ 3×) and the IPC p99 (target ≤ 200 µs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tessera_ipc::endpoint::Endpoint;
use tessera_ipc::frame::encode_frame;
use tessera_ipc::proto::{AppInfo, Request};
use tessera_ipc::{
    Call, ClientConfig, ClientMsg, IpcClient, IpcServer, Lease, LeaseId, RemoteError, Reply,
    ServerConfig, ServerMsg, SessionHandler, SessionInfo,
};
use tessera_types::Snapshot;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Runtime;

#[derive(Debug)]
struct LeaseAgent;

impl SessionHandler for LeaseAgent {
    async fn hello(&self, _: &SessionInfo) -> Result<Snapshot, RemoteError> {
        Ok(Snapshot::empty(OffsetDateTime::UNIX_EPOCH))
    }
    async fn request(&self, s: &SessionInfo, _: u64, call: Call) -> Result<Reply, RemoteError> {
        let Call::Checkout { feature, .. } = call else {
            return Ok(Reply::Ack);
        };
        Ok(Reply::Lease(lease(&s.app.product_id, feature)))
    }
}

fn lease(product: &str, feature: String) -> Lease {
    Lease {
        lease_id: LeaseId("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
        product_id: product.to_owned(),
        feature,
        expires_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
    }
}

fn checkout() -> Call {
    Call::Checkout {
        feature: "solver.nonlinear".into(),
        product_id: None,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    client: IpcClient,
    echo: UnixStream,
    request: Vec<u8>,
    reply_len: usize,
}

fn fixture(rt: &Runtime) -> Fixture {
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::at(dir.path().join("agent.sock"));
        let server = IpcServer::bind(&endpoint, ServerConfig::default())
            .await
            .unwrap();
        tokio::spawn(server.serve(Arc::new(LeaseAgent)));
        let app = AppInfo {
            product_id: "foocad".into(),
            name: "bench".into(),
            version: "1".into(),
            pid: std::process::id(),
        };
        let client = IpcClient::connect(ClientConfig::new(endpoint, app))
            .await
            .unwrap();

        // The same bytes the IPC path moves: one request frame out, one reply frame back.
        let request = encode_frame(
            &ClientMsg::Request(Request {
                id: 1_000_000,
                call: checkout(),
            }),
            65536,
        )
        .unwrap();
        let reply = encode_frame(
            &ServerMsg::Reply {
                re: 1_000_000,
                reply: Reply::Lease(lease("foocad", "solver.nonlinear".into())),
            },
            65536,
        )
        .unwrap();
        let reply_len = reply.len();

        let echo_path = dir.path().join("echo.sock");
        let listener = UnixListener::bind(&echo_path).unwrap();
        let request_len = request.len();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut inbuf = vec![0u8; request_len];
            loop {
                if s.read_exact(&mut inbuf).await.is_err() {
                    return;
                }
                if s.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
        let echo = UnixStream::connect(&echo_path).await.unwrap();
        Fixture {
            _dir: dir,
            client,
            echo,
            request,
            reply_len,
        }
    })
}

async fn raw_round_trip(f: &mut Fixture, buf: &mut [u8]) {
    f.echo.write_all(&f.request).await.unwrap();
    f.echo.read_exact(&mut buf[..f.reply_len]).await.unwrap();
}

async fn ipc_round_trip(f: &Fixture) {
    let reply = f.client.call(checkout()).await.unwrap();
    assert!(matches!(reply, Reply::Lease(_)));
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut f = fixture(&rt);
    let mut buf = vec![0u8; 65536];
    let mut group = c.benchmark_group("roundtrip");
    group.bench_function("ipc_checkout", |b| {
        b.iter(|| rt.block_on(ipc_round_trip(&f)));
    });
    group.bench_function("raw_unix_echo_same_size", |b| {
        b.iter(|| rt.block_on(raw_round_trip(&mut f, &mut buf)));
    });
    group.finish();
}

/// The `per_mille`-th per-mille of a sorted, non-empty sample.
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let last = sorted.len() - 1;
    sorted[(last * per_mille).div_ceil(1000).min(last)]
}

/// Interleaved samples of both paths, so machine noise hits both alike.
fn summary() {
    const SAMPLES: usize = 5000;
    let rt = runtime();
    let mut f = fixture(&rt);
    let mut buf = vec![0u8; 65536];
    let (mut ipc, mut raw) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    rt.block_on(async {
        for _ in 0..500 {
            ipc_round_trip(&f).await;
            raw_round_trip(&mut f, &mut buf).await;
        }
        for _ in 0..SAMPLES {
            let t = Instant::now();
            ipc_round_trip(&f).await;
            ipc.push(t.elapsed());
            let t = Instant::now();
            raw_round_trip(&mut f, &mut buf).await;
            raw.push(t.elapsed());
        }
    });
    ipc.sort();
    raw.sort();
    let (ipc50, raw50) = (percentile(&ipc, 500), percentile(&raw, 500));
    let ratio = ipc50.as_secs_f64() / raw50.as_secs_f64();
    println!(
        "tessera-ipc round trip ({} request + {} reply bytes, {SAMPLES} samples):",
        f.request.len(),
        f.reply_len
    );
    println!(
        "  ipc checkout  median {ipc50:?}  p99 {:?}  (target p99 <= 200us)",
        percentile(&ipc, 990)
    );
    println!(
        "  raw unix echo median {raw50:?}  p99 {:?}",
        percentile(&raw, 990)
    );
    println!("  ratio ipc/raw (median) {ratio:.2}x  (target <= 3x)");
}

criterion_group!(benches, bench);

fn main() {
    benches();
    summary();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
