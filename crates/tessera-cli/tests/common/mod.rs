//! An in-process marketplace (koogallery-sim) and agent on one clock, and the `tessera` binary
//! run against them as a user would run it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use koogallery_sim::clock::SimClock;
use koogallery_sim::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LicenseModel, ManifestKeySource, NewOrder, Sim,
    SimConfig,
};
use tessera_agent::config::Settings;
use tessera_agent::secrets::StoreChoice;
use tessera_agent::{Agent, AgentHandle, AgentOptions, Paths, Scheduling};
use tessera_types::SystemClock;
use zeroize::Zeroizing;

pub const CODE_PRODUCT: &str = "P-CAD";
pub const FILE_PRODUCT: &str = "P-CAE";
pub const KEY_PRIVATE: &str =
    include_str!("../../../tessera-license/tests/keys/test-isv-a.pkcs8.pem");
const KEY_PUBLIC: &str = include_str!("../../../tessera-license/tests/keys/test-isv-a.spki.pem");
const MANIFEST_KEY: &str =
    include_str!("../../../koogallery-sim/tests/fixtures/manifest-key-2048.pem");

pub struct Env {
    pub clock: SimClock,
    pub sim: Sim,
    pub paths: Paths,
    pub system_products: PathBuf,
    pub agent: Option<AgentHandle>,
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = SimClock::new(SystemClock::shared());
    let mut config = SimConfig::new(dir.path().join("sim"));
    config.clock = clock.shared();
    config.time_scale = 3600.0;
    config.manifest_key = ManifestKeySource::Pem(MANIFEST_KEY.to_owned());
    let sim = Sim::start(config).await.unwrap();

    let paths = Paths::under(&dir.path().join("agent"));
    let products = paths.user_products_dir();
    std::fs::create_dir_all(&products).unwrap();
    std::fs::write(
        products.join("cad.toml"),
        format!(
            "product_id = \"{CODE_PRODUCT}\"\nname = \"FooCAD\"\nmodels = [\"authorization_code\"]\n\
             [[features]]\nname = \"modeler\"\nseats = 1\n"
        ),
    )
    .unwrap();
    std::fs::write(
        products.join("cae.toml"),
        format!(
            "product_id = \"{FILE_PRODUCT}\"\nname = \"FooCAE\"\nmodels = [\"license_file\"]\n\
             update_manifest_url = {}\ncurrent_version = \"1.0.0\"\n\
             update_manifest_key_pem = \"\"\"\n{}\"\"\"\n\
             [[keys]]\nkey_id = \"f05d7a13b971fd09\"\npublic_key_pem = \"\"\"\n{KEY_PUBLIC}\"\"\"\n",
            toml_str(&format!("{}/sim/updates/{FILE_PRODUCT}/manifest", sim.primary_url())),
            sim.manifest_public_key_pem(),
        ),
    )
    .unwrap();
    std::fs::write(
        paths.config_file(),
        format!(
            "[marketplace]\nbase_url = {}\nfallback_url = {}\nca_file = {}\ntrust_server_time = false\n\
             [secrets]\nstore = \"file\"\n",
            toml_str(&sim.primary_url()),
            toml_str(&sim.fallback_url()),
            toml_str(&sim.ca_path().display().to_string()),
        ),
    )
    .unwrap();
    let system_products = dir.path().join("system-products");
    std::fs::create_dir_all(&system_products).unwrap();
    let mut env = Env {
        clock,
        sim,
        paths,
        system_products,
        agent: None,
        dir,
    };
    env.agent = Some(env.start_agent().await);
    env
}

impl Env {
    pub async fn start_agent(&self) -> AgentHandle {
        let mut settings = Settings::default();
        settings.marketplace.base_url = self.sim.primary_url();
        settings.marketplace.fallback_url = Some(self.sim.fallback_url());
        settings.marketplace.ca_file = Some(self.sim.ca_path());
        settings.marketplace.trust_server_time = false;
        settings.secrets.store = StoreChoice::File;
        let mut options = AgentOptions::new(self.paths.clone(), self.clock.shared());
        options.settings = Some(settings);
        options.scheduling = Scheduling::Automatic;
        options.credentials = Some((
            DEFAULT_ACCESS_KEY.to_owned(),
            Zeroizing::new(DEFAULT_SECRET_KEY.to_owned()),
        ));
        Agent::start(options).await.unwrap()
    }

    pub fn agent(&self) -> &AgentHandle {
        self.agent.as_ref().unwrap()
    }

    /// A code bought and accepted in the marketplace.
    pub fn new_code(&self) -> String {
        let order = self
            .sim
            .create_order(&NewOrder::yearly(
                LicenseModel::AuthorizationCode,
                CODE_PRODUCT,
            ))
            .unwrap();
        let code = self
            .sim
            .issue_code(&order.order.order_id, None)
            .unwrap()
            .code;
        self.sim.accept_code(&code).unwrap();
        code
    }

    pub fn tessera_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
        c.args(args)
            .env("TESSERA_SOCKET", &self.paths.socket)
            .env("TESSERA_CONFIG_DIR", &self.paths.config_dir)
            .env("TESSERA_STATE_DIR", &self.paths.state_dir)
            .env("TESSERA_SYSTEM_PRODUCTS_DIR", &self.system_products);
        c
    }

    /// Runs `tessera ARGS` off the async workers (the agent runs on them).
    pub async fn tessera(&self, args: &[&str]) -> Run {
        self.tessera_with_stdin(args, None).await
    }

    pub async fn tessera_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = self.tessera_command(args);
        let input = stdin.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = command.spawn().unwrap();
            let mut pipe = child.stdin.take().unwrap();
            if let Some(text) = input {
                pipe.write_all(text.as_bytes()).unwrap();
            }
            drop(pipe);
            Run::from(child.wait_with_output().unwrap())
        })
        .await
        .unwrap()
    }
}
