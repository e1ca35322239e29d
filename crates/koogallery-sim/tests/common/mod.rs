//! Shared test scaffolding: an in-process emulator on ephemeral loopback ports, a
//! `MarketClient` pointed at it, raw signed requests, and a tiny ISV receiver that verifies the
//! §5.2 callback signature.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::post;
use koogallery::apig::{self, Credentials, SigningRequest};
use koogallery::callback_sig::{AccessKey, SignatureParams, verify_signature};
use koogallery::client::{CaMode, MarketClient, MarketConfig};
use koogallery::wire::CallbackRequest;
use koogallery_sim::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, IsvEndpoint, ManifestKeySource, RetrySchedule, Sim,
    SimConfig,
};
use serde_json::{Value, json};
use tessera_types::ManualClock;

pub const FIXTURE_KEY: &str = include_str!("../fixtures/manifest-key-2048.pem");
pub const ISV_KEY: &str = "isv-production-access-key";
/// 2 min nominal → 1 ms real.
pub const FAST: f64 = 120_000.0;

pub struct TestSim {
    pub sim: Sim,
    pub base: ManualClock,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestSim {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

pub fn config(dir: &std::path::Path, base: &ManualClock) -> SimConfig {
    let mut config = SimConfig::new(dir);
    config.clock = base.shared();
    config.time_scale = FAST;
    config.manifest_key = ManifestKeySource::Pem(FIXTURE_KEY.to_owned());
    config.callback_timeout = Duration::from_secs(5);
    config
}

pub async fn start_with(edit: impl FnOnce(&mut SimConfig)) -> TestSim {
    let dir = tempfile::tempdir().unwrap();
    let base = ManualClock::at_unix(1_750_000_000);
    let mut config = config(dir.path(), &base);
    edit(&mut config);
    let sim = Sim::start(config).await.unwrap();
    TestSim { sim, base, dir }
}

pub async fn start() -> TestSim {
    start_with(|_| {}).await
}

pub fn client_config(sim: &TestSim, fallback: bool) -> MarketConfig {
    let mut config = MarketConfig::new(
        Credentials::new(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
        sim.clock(),
    );
    config.primary = sim.primary_url().parse().unwrap();
    config.fallback = fallback.then(|| sim.fallback_url().parse().unwrap());
    config.extra_ca_pem = Some(sim.ca_path());
    config.ca_mode = CaMode::Only;
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(10);
    config
}

pub fn client(sim: &TestSim) -> MarketClient {
    MarketClient::new(client_config(sim, true)).unwrap()
}

/// A plain reqwest client trusting only the emulator's CA.
pub fn https(sim: &TestSim) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap()
}

/// Sends an APIG-signed request built by hand (for what `MarketClient` refuses to send).
pub async fn signed(
    sim: &TestSim,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let base: url::Url = sim.primary_url().parse().unwrap();
    let host = format!("{}:{}", base.host_str().unwrap(), base.port().unwrap());
    let req = SigningRequest::new(method, &host, path)
        .header("Content-Type", content_type)
        .body(&body);
    let signed = apig::sign(
        &Credentials::new(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
        &req,
        sim.now(),
    );
    let mut request = https(sim).request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{path}", sim.primary_url()),
    );
    for (name, value) in &signed.headers {
        if !name.eq_ignore_ascii_case("host") {
            request = request.header(name, value);
        }
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Calls the control API.
pub async fn control(sim: &TestSim, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = https(sim).request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}/sim/control{path}", sim.primary_url()),
    );
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// How the test ISV answers.
#[derive(Debug, Clone)]
pub enum Script {
    /// `000000` (with an instanceId for newInstance).
    Accept,
    /// HTTP 500 for the first `n` calls, then accept.
    FailFirst(usize),
    /// `000005` forever.
    AlwaysFail,
    /// Accept, but answer newInstance with a new instanceId every time (not idempotent).
    NewIdEachTime,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub query: String,
    pub body: Vec<u8>,
    pub verified: bool,
    pub request: Option<CallbackRequest>,
}

#[derive(Clone)]
pub struct Isv {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    clock: tessera_types::SharedClock,
}

impl Isv {
    pub fn url(&self) -> String {
        format!("http://{}/produce", self.addr)
    }

    pub fn endpoint(&self) -> IsvEndpoint {
        IsvEndpoint {
            url: self.url(),
            access_key: ISV_KEY.to_owned(),
            extra_ca_pem: None,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn set_script(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }
}

async fn produce(
    State(isv): State<Isv>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> axum::response::Response {
    let query = query.unwrap_or_default();
    let verified = SignatureParams::from_query(&query).is_ok_and(|params| {
        verify_signature(&AccessKey::new(ISV_KEY), &body, &params, isv.clock.now()).is_ok()
    });
    let request = CallbackRequest::parse(&body).ok();
    let n = {
        let mut received = isv.received.lock().unwrap();
        received.push(Received {
            query,
            body: body.to_vec(),
            verified,
            request: request.clone(),
        });
        received.len()
    };
    let script = isv.script.lock().unwrap().clone();
    let fail = match script {
        Script::Accept => false,
        Script::FailFirst(k) => n <= k,
        Script::AlwaysFail => true,
        Script::NewIdEachTime => false,
    };
    if !verified {
        return axum::Json(json!({"resultCode": "000001", "resultMsg": "bad signature"}))
            .into_response();
    }
    if fail {
        return match script {
            Script::AlwaysFail => {
                axum::Json(json!({"resultCode": "000005", "resultMsg": "internal"})).into_response()
            }
            _ => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        };
    }
    match request {
        Some(CallbackRequest::NewInstance(r)) => {
            let instance_id = match script {
                Script::NewIdEachTime => format!("inst-{n}"),
                _ => format!("inst-{}", r.order_id),
            };
            axum::Json(json!({
                "resultCode": "000000", "resultMsg": "success.", "instanceId": instance_id,
            }))
            .into_response()
        }
        Some(CallbackRequest::GetLicenseAsync(_)) => {
            axum::Json(json!({"resultCode": "000004", "resultMsg": "processing"})).into_response()
        }
        _ => axum::Json(json!({"resultCode": "000000", "resultMsg": "success"})).into_response(),
    }
}

use axum::response::IntoResponse;

/// Starts a receiver whose signature checks use `clock` (the emulator's, so a moved emulator
/// clock does not make callbacks stale).
pub async fn isv(clock: tessera_types::SharedClock, script: Script) -> Isv {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let isv = Isv {
        addr: listener.local_addr().unwrap(),
        received: Arc::new(Mutex::new(Vec::new())),
        script: Arc::new(Mutex::new(script)),
        clock,
    };
    let app = axum::Router::new()
        .route("/produce", post(produce))
        .with_state(isv.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    isv
}

/// Shorter schedules for tests that exhaust them.
pub fn short(max_attempts: u32) -> RetrySchedule {
    RetrySchedule {
        interval: Duration::from_secs(120),
        max_attempts,
    }
}

/// Bounds a wait that should finish quickly (a hang fails the test instead of blocking CI).
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
