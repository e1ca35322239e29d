//! The sandbox's world: koogallery-sim, tessera-isv and tessera-agent started in-process on
//! loopback, with fresh keys, a fresh test CA and all state in one temporary directory, sharing
//! one clock the story moves forward.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use koogallery_sim::clock::SimClock;
use koogallery_sim::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, IsvEndpoint, ManifestKeySource, Sim, SimConfig,
};
use tessera_agent::config::Settings;
use tessera_agent::secrets::StoreChoice;
use tessera_agent::{Agent, AgentHandle, AgentOptions, Paths, Scheduling};
use tessera_isv::config::IsvConfig;
use tessera_isv::server::{ListenOverrides, RunningIsv};
use tessera_isv::service::{IsvService, NoHooks};
use tessera_isv::store::Store;
use tessera_license::SigningKey;
use tessera_types::{SharedClock, SystemClock};
use zeroize::Zeroizing;

use crate::SandboxError;

/// The Model B product: a License file issued by tessera-isv, bound to this device.
pub const PRODUCT_FILE: &str = "SBX-CAE-SOLVER";
/// The Model A product: an authorization code activated and kept alive by heartbeats.
pub const PRODUCT_CODE: &str = "SBX-CAD-MODELER";
/// The version the demo app says it is; the published manifest offers a newer one.
pub const INSTALLED_VERSION: &str = "2026.1.0";
/// The version the sandbox publishes in the update manifest.
pub const NEWER_VERSION: &str = "2026.2.0";

/// The callback access key the sim signs with and the ISV verifies (a sandbox-only value).
const CALLBACK_KEY: &str = "SANDBOX-CALLBACK-KEY-0123456789";

/// How the world is built.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// RSA size of the ISV's License signing key and of the manifest signing key.
    pub key_bits: usize,
    /// Nominal seconds per real second for the sim's callback retries.
    pub callback_time_scale: f64,
}

/// How often `--stay` runs the agent's scheduler pass (the world's agent is driven by hand so
/// the story never moves the clock while a request is in flight).
pub const STAY_TICK: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            key_bits: tessera_license::DEFAULT_RSA_BITS,
            callback_time_scale: 3600.0,
        }
    }
}

/// Everything running, and where it keeps its files.
pub struct World {
    /// The story clock: real time plus the jumps the story makes. Sim, ISV, agent and demo
    /// apps all read it, so a jump is seen by everyone at once.
    pub clock: SimClock,
    /// The marketplace emulator.
    pub sim: Sim,
    /// The ISV service (its store and config).
    pub isv: IsvService,
    isv_running: Option<RunningIsv>,
    /// The ISV's production URL.
    pub isv_url: String,
    /// The ISV's public key, as the product descriptor trusts it.
    pub isv_key: tessera_license::PublicKey,
    /// The agent.
    pub agent: AgentHandle,
    /// The agent's directories and socket.
    pub agent_paths: Paths,
    /// The buyer's delivery-channel token (the default sim buyer's).
    pub buyer_token: String,
    // Kept last so it is removed after everything that writes into it has stopped.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("dir", &self.dir.path())
            .field("isv_url", &self.isv_url)
            .field("socket", &self.agent_paths.socket)
            .finish_non_exhaustive()
    }
}

fn start_err(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> SandboxError {
    move |source| SandboxError::Start { what, source }
}

async fn generate_key(bits: usize) -> Result<SigningKey, SandboxError> {
    tokio::task::spawn_blocking(move || SigningKey::generate_with_bits(bits))
        .await
        .map_err(|e| start_err("key generation")(Box::new(e)))?
        .map_err(|e| start_err("key generation")(Box::new(e)))
}

impl World {
    /// Starts sim, ISV and agent in a fresh temporary directory.
    ///
    /// # Errors
    /// [`SandboxError::Start`] naming the component that could not start.
    pub async fn start(options: &WorldOptions) -> Result<Self, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("tessera-sandbox-")
            .tempdir()
            .map_err(|e| start_err("the temporary directory")(Box::new(e)))?;
        let clock = SimClock::new(SystemClock::shared());
        let shared: SharedClock = clock.shared();

        // Both keys at once: RSA key generation dominates start-up.
        let (isv_key, manifest_key) = tokio::join!(
            generate_key(options.key_bits),
            generate_key(options.key_bits)
        );
        let isv_key = Arc::new(isv_key?);
        let manifest_pem = manifest_key?
            .to_pkcs8_pem()
            .map_err(|e| start_err("the manifest key")(Box::new(e)))?;

        let mut sim_config = SimConfig::new(dir.path().join("sim"));
        sim_config.clock = shared.clone();
        sim_config.time_scale = options.callback_time_scale;
        sim_config.manifest_key = ManifestKeySource::Pem(manifest_pem.to_string());
        let sim = Sim::start(sim_config)
            .await
            .map_err(|e| start_err("koogallery-sim")(Box::new(e)))?;

        let (isv, isv_running) = start_isv(dir.path(), &sim, &isv_key, shared.clone()).await?;
        let wired = async {
            let isv_url = format!("http://{}/produce", isv_running.addr);
            sim.set_isv_endpoint(Some(IsvEndpoint {
                url: isv_url.clone(),
                access_key: CALLBACK_KEY.to_owned(),
                extra_ca_pem: None,
            }))
            .map_err(|e| start_err("the sim's ISV endpoint")(Box::new(e)))?;

            let agent_paths = Paths::under(&dir.path().join("agent"));
            let descriptors = agent_paths.user_products_dir();
            std::fs::create_dir_all(&descriptors)
                .map_err(|e| start_err("the product descriptor directory")(Box::new(e)))?;
            let public_pem = isv_key
                .public_key()
                .to_spki_pem()
                .map_err(|e| start_err("the ISV public key")(Box::new(e)))?;
            write_file(
                &descriptors.join("cae-solver.toml"),
                &file_product_descriptor(&sim, isv_key.key_id().as_str(), &public_pem),
            )?;
            write_file(
                &descriptors.join("cad-modeler.toml"),
                &code_product_descriptor(),
            )?;
            let mut settings = Settings::default();
            settings.marketplace.base_url = sim.primary_url();
            settings.marketplace.fallback_url = Some(sim.fallback_url());
            settings.marketplace.ca_file = Some(sim.ca_path());
            settings.marketplace.delivery_url = Some(sim.primary_url());
            // The sim's HTTP `Date` is real time, not the story clock.
            settings.marketplace.trust_server_time = false;
            // A sandbox must never write into the user's real keyring.
            settings.secrets.store = StoreChoice::File;
            write_file(
                &agent_paths.config_file(),
                &agent_config_toml(&settings, &sim),
            )?;
            let buyer_token = sim.buyer_token("sim-buyer");
            let mut agent_options = AgentOptions::new(agent_paths.clone(), shared);
            agent_options.settings = Some(settings);
            // Passes run only when the story (or `--stay`'s ticker) asks: a pass signing a request
            // just before a clock jump would be refused by the sim as 15 minutes off.
            agent_options.scheduling = Scheduling::Manual;
            agent_options.credentials = Some((
                DEFAULT_ACCESS_KEY.to_owned(),
                Zeroizing::new(DEFAULT_SECRET_KEY.to_owned()),
            ));
            agent_options.delivery_token = Some(Zeroizing::new(buyer_token.clone()));
            let agent = Agent::start(agent_options)
                .await
                .map_err(|e| start_err("tessera-agent")(Box::new(e)))?;
            Ok::<_, SandboxError>((isv_url, agent_paths, buyer_token, agent))
        }
        .await;
        let (isv_url, agent_paths, buyer_token, agent) = match wired {
            Ok(v) => v,
            Err(e) => {
                // The ISV's workers are plain tasks: stop them rather than leave them polling.
                isv_running.kill();
                return Err(e);
            }
        };

        Ok(Self {
            clock,
            sim,
            isv_key: isv_key.public_key().clone(),
            isv,
            isv_running: Some(isv_running),
            isv_url,
            agent,
            agent_paths,
            buyer_token,
            dir,
        })
    }

    /// The temporary directory holding every component's state.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Lines of `export NAME=value` that point the CLI and the tray at this agent.
    #[must_use]
    pub fn env_lines(&self) -> Vec<String> {
        let p = &self.agent_paths;
        vec![
            format!("export TESSERA_SOCKET={}", shell_quote(&p.socket)),
            format!("export TESSERA_CONFIG_DIR={}", shell_quote(&p.config_dir)),
            format!("export TESSERA_STATE_DIR={}", shell_quote(&p.state_dir)),
        ]
    }

    /// Stops the agent (telling its clients), the ISV and the sim.
    pub async fn shutdown(mut self) {
        self.agent.shutdown("the sandbox is stopping", false).await;
        if let Some(isv) = self.isv_running.take() {
            isv.kill();
        }
        self.isv.store().close().await;
        self.sim.shutdown().await;
    }
}

fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), SandboxError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| start_err("a configuration directory")(Box::new(e)))?;
    }
    std::fs::write(path, text).map_err(|e| start_err("a configuration file")(Box::new(e)))
}

async fn start_isv(
    dir: &Path,
    sim: &Sim,
    key: &Arc<SigningKey>,
    clock: SharedClock,
) -> Result<(IsvService, RunningIsv), SandboxError> {
    let isv_dir = dir.join("isv");
    std::fs::create_dir_all(&isv_dir).map_err(|e| start_err("tessera-isv")(Box::new(e)))?;
    let key_path = isv_dir.join("signing-key.pem");
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| start_err("the ISV signing key")(Box::new(e)))?;
    write_file(&key_path, &pem)?;
    let credential = sim
        .credentials()
        .first()
        .cloned()
        .ok_or_else(|| start_err("tessera-isv")("the sim has no API credentials".into()))?;
    let config_text = isv_config_toml(
        &isv_dir.join("isv.db"),
        &key_path,
        &[sim.primary_url(), sim.fallback_url()],
        &sim.ca_path(),
        &credential.access_key,
        &credential.secret_key,
    );
    write_file(&isv_dir.join("isv.toml"), &config_text)?;
    let config =
        IsvConfig::parse_str(&config_text).map_err(|e| start_err("tessera-isv")(Box::new(e)))?;
    let store = Store::open(&config.database_url)
        .await
        .map_err(|e| start_err("tessera-isv's store")(Box::new(e)))?;
    let market = tessera_isv::cli::marketplace(&config, clock.clone())
        .map_err(|e| start_err("tessera-isv's marketplace client")(e.into()))?;
    let service = IsvService::new(
        store,
        clock,
        Arc::new(config),
        key.clone(),
        Arc::new(market),
        Arc::new(NoHooks),
    );
    let running = tessera_isv::server::start(service.clone(), &ListenOverrides::default())
        .await
        .map_err(|e| start_err("tessera-isv")(Box::new(e)))?;
    Ok((service, running))
}

fn toml_str(s: &str) -> String {
    // TOML basic strings share JSON's escapes for everything a path or key contains.
    serde_json::Value::String(s.to_owned()).to_string()
}

fn isv_config_toml(
    db: &Path,
    key: &Path,
    market_urls: &[String],
    ca: &Path,
    access_key: &str,
    secret_key: &str,
) -> String {
    let urls: Vec<String> = market_urls.iter().map(|u| toml_str(u)).collect();
    format!(
        r#"database_url = {db}

[server]
listen = "127.0.0.1:0"
plain_http = true

[access_keys]
basic = {callback}
license_code = {callback}

[market]
access_key_id = {ak}
secret_access_key = {sk}
base_urls = [{urls}]
extra_ca_file = {ca}
trust_only_extra_ca = true

[signing]
private_key = {key}

[jobs]
max_attempts = 5
lease_seconds = 5
poll_millis = 50
workers = 1

[[products]]
id = {file_product}
model = "B"
charging = "PERIOD"
delivery = "file"
features = {{ solver = 2, mesher = 1 }}

[[products]]
id = {code_product}
model = "A"
charging = "PERIOD"
"#,
        db = toml_str(&format!("sqlite://{}", db.display())),
        callback = toml_str(CALLBACK_KEY),
        ak = toml_str(access_key),
        sk = toml_str(secret_key),
        urls = urls.join(", "),
        ca = toml_str(&ca.display().to_string()),
        key = toml_str(&key.display().to_string()),
        file_product = toml_str(PRODUCT_FILE),
        code_product = toml_str(PRODUCT_CODE),
    )
}

fn file_product_descriptor(sim: &Sim, key_id: &str, public_pem: &str) -> String {
    format!(
        r#"product_id = {pid}
name = "Sandbox CAE Solver"
models = ["license_file"]
update_manifest_url = {manifest}
current_version = {version}
update_manifest_key_pem = """
{manifest_key}"""

[[keys]]
key_id = {key_id}
public_key_pem = """
{public_pem}"""
"#,
        pid = toml_str(PRODUCT_FILE),
        manifest = toml_str(&format!(
            "{}/sim/updates/{PRODUCT_FILE}/manifest",
            sim.primary_url()
        )),
        version = toml_str(INSTALLED_VERSION),
        manifest_key = sim.manifest_public_key_pem(),
        key_id = toml_str(key_id),
    )
}

fn code_product_descriptor() -> String {
    format!(
        r#"product_id = {pid}
name = "Sandbox CAD Modeler"
models = ["authorization_code"]

[[features]]
name = "modeler"
seats = 1

[policy]
offline_grace_days = 14
"#,
        pid = toml_str(PRODUCT_CODE),
    )
}

/// The agent's `tessera.toml`, written so `tessera doctor` and a restarted agent see what the
/// in-process agent was given.
fn agent_config_toml(settings: &Settings, sim: &Sim) -> String {
    let ca: PathBuf = sim.ca_path();
    format!(
        r#"[marketplace]
base_url = {base}
fallback_url = {fallback}
ca_file = {ca}
delivery_url = {delivery}
trust_server_time = false

[secrets]
store = "file"
"#,
        base = toml_str(&settings.marketplace.base_url),
        fallback = toml_str(&sim.fallback_url()),
        ca = toml_str(&ca.display().to_string()),
        delivery = toml_str(&sim.primary_url()),
    )
}
