//! The real agent (`tessera-agent`) and the marketplace emulator (`koogallery-sim`) started
//! in-process on one manual clock, as the agent's own tests start them: product "foocad" uses
//! both models, holds an imported License (features "solver" with 2 seats and "mesher", valid
//! until 1 900 000 000) and has an issued, accepted authorization code ready to activate and a
//! published update manifest newer than the installed version.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use koogallery_sim::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LicenseModel, ManifestKeySource, ManifestSpec,
    NewOrder, Sim, SimConfig,
};
use tessera_agent::config::Settings;
use tessera_agent::secrets::{Secrets, StoreKind};
use tessera_agent::{Agent, AgentHandle, AgentOptions, Paths, Scheduling};
use tessera_ipc::proto::{LicenseSource, LicenseText};
use tessera_ipc::{AppInfo, Call, ClientConfig, Endpoint, IpcClient, Reply};
use tessera_license::{Binding, FORMAT_VERSION, Feature, License, Nonce, SigningKey};
use tessera_types::{Clock as _, LicenseState, ManualClock, ProductState};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

pub const PRODUCT: &str = "foocad";
/// When the License the harness imports ends (what the C programs expect in `expires_at`).
pub const EXPIRES_AT: i64 = 1_900_000_000;
const MANIFEST_KEY: &str =
    include_str!("../../../koogallery-sim/tests/fixtures/manifest-key-2048.pem");
const KEY_PRIVATE: &str = include_str!("../../../tessera-license/tests/keys/test-isv-a.pkcs8.pem");
const KEY_PUBLIC: &str = include_str!("../../../tessera-license/tests/keys/test-isv-a.spki.pem");
const KEY_ID: &str = "f05d7a13b971fd09";

/// The emulator and one running agent on their own runtime, in a private temporary directory.
pub struct RealAgent {
    pub clock: ManualClock,
    /// The License string imported at start (what `RequestLicense` delivers as a string).
    pub license: String,
    /// An authorization code issued and accepted on the emulator, not yet activated.
    pub code: String,
    sim: Option<Sim>,
    agent: Option<AgentHandle>,
    paths: Paths,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn descriptor(sim: &Sim) -> String {
    format!(
        "product_id = \"{PRODUCT}\"\nname = \"FooCAD\"\n\
         models = [\"authorization_code\", \"license_file\"]\n\
         update_manifest_url = \"{}/sim/updates/{PRODUCT}/manifest\"\ncurrent_version = \"1.0.0\"\n\
         update_manifest_key_pem = \"\"\"\n{}\"\"\"\n\
         [[keys]]\nkey_id = \"{KEY_ID}\"\npublic_key_pem = \"\"\"\n{KEY_PUBLIC}\"\"\"\n\
         [[features]]\nname = \"solver\"\nseats = 2\n\
         [[features]]\nname = \"mesher\"\nseats = 64\n",
        sim.primary_url(),
        sim.manifest_public_key_pem(),
    )
}

fn settings_for(sim: &Sim) -> Settings {
    let mut settings = Settings::default();
    settings.marketplace.base_url = sim.primary_url();
    settings.marketplace.fallback_url = Some(sim.fallback_url());
    settings.marketplace.ca_file = Some(sim.ca_path());
    // The emulator's HTTP `Date` is real time, not its simulated time.
    settings.marketplace.trust_server_time = false;
    settings
}

/// A License for this device, signed with the test ISV key, in its string form.
fn license_string(not_before: OffsetDateTime, not_after: OffsetDateTime) -> String {
    let here = tessera_fingerprint::collect_local()
        .fingerprint
        .as_str()
        .to_owned();
    let license = License {
        format_version: FORMAT_VERSION,
        license_id: "lic-c-abi".into(),
        product_id: PRODUCT.into(),
        instance_id: "inst-1".into(),
        order_id: "CS1".into(),
        features: vec![
            Feature {
                name: "solver".into(),
                count: 2,
                max_version: None,
            },
            Feature {
                name: "mesher".into(),
                count: 64,
                max_version: None,
            },
        ],
        binding: Binding::fingerprint(&here),
        issued_at: not_before,
        not_before,
        not_after: Some(not_after),
        trial: false,
        nonce: Nonce([7; 16]),
    };
    SigningKey::from_pkcs8_pem(KEY_PRIVATE)
        .unwrap()
        .sign_string(&license)
        .unwrap()
}

impl RealAgent {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_unix(1_750_000_000);
        let root = dir.path().to_owned();
        let sim_clock = clock.clone();
        let sim = runtime.block_on(async move {
            let mut config = SimConfig::new(root.join("sim"));
            config.clock = sim_clock.shared();
            config.time_scale = 120_000.0;
            config.manifest_key = ManifestKeySource::Pem(MANIFEST_KEY.to_owned());
            Sim::start(config).await.unwrap()
        });
        let paths = Paths::under(&dir.path().join("agent"));
        std::fs::create_dir_all(paths.user_products_dir()).unwrap();
        std::fs::write(
            paths.user_products_dir().join("foocad.toml"),
            descriptor(&sim),
        )
        .unwrap();

        let now = clock.now();
        sim.publish_manifest(
            PRODUCT,
            ManifestSpec {
                latest_version: "2.0.0".into(),
                min_supported_version: "1.0.0".into(),
                forced: true,
                released_at: now,
                download_url: "https://example.invalid/pkg".into(),
                sha256: "00".repeat(32),
                notes: String::new(),
                valid_until: now + Duration::days(3650),
            },
        )
        .unwrap();
        let order = sim
            .create_order(&NewOrder::yearly(LicenseModel::AuthorizationCode, PRODUCT))
            .unwrap();
        let code = sim.issue_code(&order.order.order_id, None).unwrap().code;
        sim.accept_code(&code).unwrap();

        let mut options = AgentOptions::new(paths.clone(), clock.shared());
        options.settings = Some(settings_for(&sim));
        options.scheduling = Scheduling::Manual;
        options.secrets = Some(Secrets::with_store(
            keyring_core::mock::Store::new().unwrap(),
            StoreKind::Memory,
        ));
        options.identity = Some(tessera_fingerprint::collect_local());
        options.credentials = Some((
            DEFAULT_ACCESS_KEY.to_owned(),
            Zeroizing::new(DEFAULT_SECRET_KEY.to_owned()),
        ));
        let agent = runtime.block_on(Agent::start(options)).unwrap();

        let license = license_string(
            now - Duration::days(1),
            OffsetDateTime::from_unix_timestamp(EXPIRES_AT).unwrap(),
        );
        let harness = Self {
            clock,
            license: license.clone(),
            code,
            sim: Some(sim),
            agent: Some(agent),
            paths,
            runtime,
            _dir: dir,
        };
        let ps = harness.import(&license);
        assert_eq!(
            (ps.state, ps.expires_at.map(OffsetDateTime::unix_timestamp)),
            (LicenseState::Active, Some(EXPIRES_AT)),
            "the harness License is not in use: {ps:?}"
        );
        harness
    }

    pub fn socket_path(&self) -> PathBuf {
        self.agent.as_ref().unwrap().socket().to_owned()
    }

    fn agent(&self) -> &AgentHandle {
        self.agent.as_ref().unwrap()
    }

    /// Imports `license` for the product through IPC, as `tessera license import` does.
    pub fn import(&self, license: &str) -> ProductState {
        let socket = self.socket_path();
        let text = license.to_owned();
        self.runtime.block_on(async move {
            let app = AppInfo {
                product_id: String::new(),
                name: "c-abi-harness".to_owned(),
                version: "1.0".to_owned(),
                pid: std::process::id(),
            };
            let mut config = ClientConfig::new(Endpoint::at(socket), app);
            config.reconnect = None;
            let client = IpcClient::connect(config).await.unwrap();
            let reply = client
                .call(Call::ImportLicense {
                    product_id: Some(PRODUCT.to_owned()),
                    source: LicenseSource::Content {
                        content: LicenseText(text),
                    },
                })
                .await
                .unwrap();
            match reply {
                Reply::ProductState(ps) => ps,
                other => panic!("unexpected reply {other:?}"),
            }
        })
    }

    /// Moves the shared clock and lets the agent re-decide (a manual scheduler tick).
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.runtime.block_on(self.agent().tick());
    }

    /// Imports a fresh License valid for another `days` from now.
    pub fn renew(&self, days: i64) -> ProductState {
        let now = self.clock.now();
        self.import(&license_string(
            now - Duration::days(1),
            now + Duration::days(days),
        ))
    }

    /// The product as the agent sees it.
    pub fn state(&self) -> ProductState {
        self.agent().snapshot().product(PRODUCT).cloned().unwrap()
    }

    /// Accepts the published (forced) update for the product, which tells its applications.
    pub fn accept_update(&self) {
        self.runtime
            .block_on(self.agent().accept_update(PRODUCT))
            .unwrap();
    }
}

impl Drop for RealAgent {
    fn drop(&mut self) {
        let agent = self.agent.take();
        let sim = self.sim.take();
        self.runtime.block_on(async move {
            if let Some(agent) = agent {
                let _ = tokio::time::timeout(
                    StdDuration::from_secs(10),
                    agent.shutdown("test over", false),
                )
                .await;
            }
            if let Some(sim) = sim {
                sim.shutdown().await;
            }
        });
    }
}
