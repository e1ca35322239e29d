//! Shared scaffolding: the emulator and an in-process agent on one manual clock, and IPC clients.

#![allow(dead_code)]

pub mod process;

use std::sync::Arc;

use koogallery_sim::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LicenseModel, ManifestKeySource, NewOrder, Sim,
    SimConfig,
};
use tessera_agent::config::Settings;
use tessera_agent::secrets::{Secrets, StoreKind};
use tessera_agent::{Agent, AgentHandle, AgentOptions, Paths, Scheduling};
use tessera_ipc::proto::AuthCode;
use tessera_ipc::{AppInfo, Call, ClientConfig, Endpoint, IpcClient, Reply};
use tessera_types::{ManualClock, ProductState};
use zeroize::Zeroizing;

pub const PRODUCT: &str = "P-CAD";
pub const FIXTURE_KEY: &str =
    include_str!("../../../koogallery-sim/tests/fixtures/manifest-key-2048.pem");

pub struct Env {
    pub sim: Sim,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    pub paths: Paths,
    pub settings: Settings,
    /// One store for every agent this env starts, as the OS keyring would be.
    pub secrets: Secrets,
    /// Collects the identity for the daily re-check (default: the identity given at start).
    pub identity_collector: Option<tessera_agent::agent::IdentityCollector>,
    pub agent: Option<AgentHandle>,
}

pub fn descriptor(policy: &str) -> String {
    format!(
        "product_id = \"{PRODUCT}\"\nname = \"FooCAD\"\nmodels = [\"authorization_code\"]\n[policy]\n{policy}\n"
    )
}

pub async fn start_sim(dir: &std::path::Path, clock: &ManualClock) -> Sim {
    let mut config = SimConfig::new(dir.join("sim"));
    config.clock = clock.shared();
    config.time_scale = 120_000.0;
    config.manifest_key = ManifestKeySource::Pem(FIXTURE_KEY.to_owned());
    Sim::start(config).await.unwrap()
}

pub fn settings_for(sim: &Sim) -> Settings {
    let mut settings = Settings::default();
    settings.marketplace.base_url = sim.primary_url();
    settings.marketplace.fallback_url = Some(sim.fallback_url());
    settings.marketplace.ca_file = Some(sim.ca_path());
    // The emulator's HTTP `Date` is real time, not its simulated time.
    settings.marketplace.trust_server_time = false;
    settings
}

pub async fn env(policy: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_unix(1_750_000_000);
    let sim = start_sim(dir.path(), &clock).await;
    let paths = Paths::under(&dir.path().join("agent"));
    std::fs::create_dir_all(paths.user_products_dir()).unwrap();
    std::fs::write(
        paths.user_products_dir().join("cad.toml"),
        descriptor(policy),
    )
    .unwrap();
    let settings = settings_for(&sim);
    let mut env = Env {
        sim,
        clock,
        dir,
        paths,
        settings,
        secrets: Secrets::with_store(keyring_core::mock::Store::new().unwrap(), StoreKind::Memory),
        identity_collector: None,
        agent: None,
    };
    env.agent = Some(env.start_agent().await);
    env
}

impl Env {
    pub async fn start_agent(&self) -> AgentHandle {
        let mut options = AgentOptions::new(self.paths.clone(), self.clock.shared());
        options.settings = Some(self.settings.clone());
        options.scheduling = Scheduling::Manual;
        options.secrets = Some(self.secrets.clone());
        options.identity = Some(tessera_fingerprint::collect_local());
        options
            .identity_collector
            .clone_from(&self.identity_collector);
        options.credentials = Some((
            DEFAULT_ACCESS_KEY.to_owned(),
            Zeroizing::new(DEFAULT_SECRET_KEY.to_owned()),
        ));
        Agent::start(options).await.unwrap()
    }

    pub fn agent(&self) -> &AgentHandle {
        self.agent.as_ref().unwrap()
    }

    /// An issued and accepted code.
    pub fn new_code(&self) -> String {
        let order = self
            .sim
            .create_order(&NewOrder::yearly(LicenseModel::AuthorizationCode, PRODUCT))
            .unwrap();
        let code = self
            .sim
            .issue_code(&order.order.order_id, None)
            .unwrap()
            .code;
        self.sim.accept_code(&code).unwrap();
        code
    }

    pub async fn client(&self, product: &str) -> IpcClient {
        self.client_with(product, false).await
    }

    /// A client that reconnects (and resumes its session) when the agent goes away.
    pub async fn reconnecting_client(&self, product: &str) -> IpcClient {
        self.client_with(product, true).await
    }

    async fn client_with(&self, product: &str, reconnect: bool) -> IpcClient {
        let app = AppInfo {
            product_id: product.to_owned(),
            name: "test-app".to_owned(),
            version: "1.0".to_owned(),
            pid: std::process::id(),
        };
        let mut config = ClientConfig::new(Endpoint::at(self.paths.socket.clone()), app);
        if !reconnect {
            config.reconnect = None;
        }
        IpcClient::connect(config).await.unwrap()
    }

    pub async fn activate(&self, client: &IpcClient, code: &str) -> ProductState {
        match client
            .call(Call::ActivateCode {
                product_id: Some(PRODUCT.to_owned()),
                code: AuthCode(code.to_owned()),
            })
            .await
            .unwrap()
        {
            Reply::ProductState(ps) => ps,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub fn state(&self) -> ProductState {
        self.agent().snapshot().product(PRODUCT).cloned().unwrap()
    }

    pub fn offline(&self) -> u64 {
        self.sim
            .add_fault(koogallery_sim::FaultRule::new(
                "license.*",
                koogallery_sim::FaultAction::DropConnection,
            ))
            .unwrap()
    }
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
