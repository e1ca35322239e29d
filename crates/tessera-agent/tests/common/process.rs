//! The real `tessera-agent` binary against an in-process emulator: its directories, its config,
//! spawning it, and waiting until it answers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use koogallery_sim::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Sim, SimConfig};
use tessera_ipc::{AppInfo, ClientConfig, Endpoint, IpcClient};

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera-agent");

/// One agent's directories under a temporary root.
pub struct BinAgent {
    pub root: PathBuf,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub system_products: PathBuf,
    pub socket: PathBuf,
}

impl BinAgent {
    pub fn under(root: &Path) -> Self {
        let a = Self {
            root: root.to_path_buf(),
            config_dir: root.join("config"),
            state_dir: root.join("state"),
            system_products: root.join("system-products"),
            socket: root.join("run").join("agent.sock"),
        };
        for d in [
            &a.config_dir.join("products.d"),
            &a.state_dir,
            &a.system_products,
            &a.socket.parent().unwrap().to_path_buf(),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        a
    }

    /// `tessera.toml` for the emulator, with the encrypted-file secrets store.
    pub fn configure(&self, sim: &Sim, extra: &str) {
        std::fs::write(
            self.config_dir.join("tessera.toml"),
            format!(
                "[marketplace]\nbase_url = \"{}\"\nfallback_url = \"{}\"\nca_file = \"{}\"\n\
                 trust_server_time = false\n{extra}\n[secrets]\nstore = \"file\"\n[log]\nfilter = \"info\"\n",
                sim.primary_url(),
                sim.fallback_url(),
                sim.ca_path().display()
            ),
        )
        .unwrap();
    }

    /// The agent's stderr, kept for the failure message.
    fn stderr_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("stderr.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.root.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    pub fn add_product(&self, file: &str, body: &str) {
        std::fs::write(self.config_dir.join("products.d").join(file), body).unwrap();
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("TESSERA_CONFIG_DIR", &self.config_dir)
            .env("TESSERA_STATE_DIR", &self.state_dir)
            .env("TESSERA_SOCKET", &self.socket)
            .env("TESSERA_SYSTEM_PRODUCTS_DIR", &self.system_products)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.stderr_file());
        c
    }

    /// Stores the emulator's AK/SK through `tessera-agent import-credentials`.
    pub fn import_credentials(&self, extra_line: Option<&str>) {
        use std::io::Write as _;
        let mut child = self
            .command()
            .arg("import-credentials")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = format!("{DEFAULT_ACCESS_KEY}\n{DEFAULT_SECRET_KEY}\n");
        if let Some(l) = extra_line {
            input.push_str(l);
            input.push('\n');
        }
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "import-credentials failed");
    }

    pub fn spawn(&self) -> AgentChild {
        AgentChild(self.command().arg("run").spawn().unwrap())
    }

    /// Connects as the CLI (no product) once the agent answers; panics after 15 s.
    pub async fn connect(&self, child: &mut Child) -> IpcClient {
        self.connect_as(child, "").await
    }

    pub async fn connect_as(&self, child: &mut Child, product: &str) -> IpcClient {
        let started = Instant::now();
        loop {
            let app = AppInfo {
                product_id: product.to_owned(),
                name: "tessera-test".to_owned(),
                version: "1".to_owned(),
                pid: std::process::id(),
            };
            let mut config = ClientConfig::new(Endpoint::at(self.socket.clone()), app);
            config.reconnect = None;
            if let Ok(c) = IpcClient::connect(config).await {
                return c;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the agent exited before answering: {status}\n{}",
                    self.stderr_tail()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the agent did not answer within 15 s\n{}",
                self.stderr_tail()
            );
            // Polling a process that is starting up; no test time depends on this.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A running agent process, killed when dropped so a failing test leaves nothing behind.
pub struct AgentChild(Child);

impl std::ops::Deref for AgentChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for AgentChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn kill9(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    child.wait().unwrap();
}

pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    child.wait().unwrap()
}

/// An emulator on real time (the binary signs with the system clock).
pub async fn real_time_sim(dir: &Path) -> Sim {
    let mut config = SimConfig::new(dir.join("sim"));
    config.manifest_key = koogallery_sim::ManifestKeySource::Pem(super::FIXTURE_KEY.to_owned());
    Sim::start(config).await.unwrap()
}

/// A Model A descriptor.
pub fn code_product(id: &str) -> String {
    format!("product_id = \"{id}\"\nname = \"{id}\"\nmodels = [\"authorization_code\"]\n")
}
