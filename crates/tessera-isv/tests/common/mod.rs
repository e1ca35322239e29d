//! Shared test harness: a database per test on SQLite or on a PostgreSQL server the harness
//! starts itself (one per test binary), a signing key, and an ISV started in-process.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use tessera_isv::config::IsvConfig;
use tessera_isv::market::Marketplace;
use tessera_isv::server::{self, ListenOverrides, RunningIsv};
use tessera_isv::service::{IsvService, JobHooks, NoHooks};
use tessera_isv::store::Store;
use tessera_license::SigningKey;
use tessera_types::SharedClock;

/// The two storage backends every scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A database URL plus whatever keeps it alive.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

struct PgServer {
    port: u16,
    // Held open for the process's lifetime: when the test process exits (however it exits) the
    // pipe closes, and the watchdog shell stops PostgreSQL and deletes its data directory.
    _watchdog: Mutex<Child>,
}

static PG: OnceLock<Result<PgServer, String>> = OnceLock::new();

fn skip_postgres() -> bool {
    std::env::var("TESSERA_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn as_postgres_user(cmd: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", cmd]);
        c
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start_postgres() -> Result<PgServer, String> {
    let initdb = Path::new(PG_BIN).join("initdb");
    if !initdb.exists() {
        return Err(format!(
            "PostgreSQL binaries not found in {PG_BIN}: install the Debian package `postgresql` \
             (or set TESSERA_SKIP_POSTGRES=1 to skip the PostgreSQL runs)"
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("tessera-isv-pg-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?
        .keep();
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("cannot chown the PostgreSQL data dir to the postgres user".into());
        }
    }
    let data = dir.join("data");
    let d = data.display();
    let out = as_postgres_user(&format!(
        "{PG_BIN}/initdb -D {d} -A trust -U postgres --no-sync -E UTF8 >{dir}/initdb.log 2>&1",
        dir = dir.display()
    ))
    .status()
    .map_err(|e| format!("initdb: {e}"))?;
    if !out.success() {
        let log = std::fs::read_to_string(dir.join("initdb.log")).unwrap_or_default();
        return Err(format!("initdb failed: {log}"));
    }
    let port = free_port();
    let script = format!(
        "{PG_BIN}/postgres -D {d} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c max_connections=200 >{dir}/pg.log 2>&1 & pg=$!; cat >/dev/null; kill -INT $pg; \
         wait $pg; rm -rf {dir}",
        dir = dir.display()
    );
    let child = as_postgres_user(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    // Wait for it to accept connections (start-up, not the passage of time, is awaited).
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(PgServer {
                port,
                _watchdog: Mutex::new(child),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("pg.log")).unwrap_or_default();
    Err(format!("PostgreSQL did not start: {log}"))
}

/// A fresh, empty database. `None` when PostgreSQL runs are skipped by the environment.
pub async fn test_db(db: Db) -> Option<TestDb> {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("isv.db").display());
            Some(TestDb {
                url,
                _dir: Some(dir),
            })
        }
        Db::Postgres => {
            if skip_postgres() {
                return None;
            }
            let server = PG.get_or_init(start_postgres);
            let port = match server {
                Ok(s) => s.port,
                Err(e) => panic!("{e}"),
            };
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            sqlx::any::install_default_drivers();
            let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            let pool = sqlx::AnyPool::connect(&admin)
                .await
                .expect("connect to test postgres");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .expect("create test database");
            pool.close().await;
            Some(TestDb {
                url: format!("postgres://postgres@127.0.0.1:{port}/{name}"),
                _dir: None,
            })
        }
    }
}

/// One signing key per test process (2048 bits: the format and code paths are the same as
/// for 3072, and generation stays well under a second).
pub fn signing_key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(SigningKey::generate_with_bits(2048).expect("keygen")))
        .clone()
}

pub const CALLBACK_KEY: &str = "ISV-CALLBACK-KEY-0123456789";
pub const CODE_KEY: &str = "ISV-CODE-KEY-0123456789";

/// A config for an in-process ISV on plain HTTP.
pub fn config(
    db_url: &str,
    market_urls: &[String],
    ca: Option<&Path>,
    ak: &str,
    sk: &str,
    delivery: &str,
) -> IsvConfig {
    let ca_line = ca.map_or_else(String::new, |p| {
        format!(
            "extra_ca_file = {:?}\ntrust_only_extra_ca = true\n",
            p.display().to_string()
        )
    });
    let urls: Vec<String> = market_urls.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        r#"
database_url = {db_url:?}

[server]
listen = "127.0.0.1:0"
plain_http = true
admin_listen = "127.0.0.1:0"

[access_keys]
basic = "{CALLBACK_KEY}"
license_code = "{CODE_KEY}"

[market]
access_key_id = {ak:?}
secret_access_key = {sk:?}
base_urls = [{urls}]
{ca_line}

[signing]
private_key = "/nonexistent/unused-in-tests.pem"

[jobs]
max_attempts = 3
lease_seconds = 5
poll_millis = 50
workers = 1

[[products]]
id = "*"
model = "B"
charging = "PERIOD"
delivery = "{delivery}"
features = {{ solver = 2, mesher = 1 }}
"#,
        urls = urls.join(", ")
    );
    IsvConfig::parse_str(&text).expect("test config parses")
}

/// An ISV running in-process.
pub struct Isv {
    pub service: IsvService,
    pub running: Option<RunningIsv>,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
}

impl Isv {
    pub fn url(&self) -> String {
        format!("http://{}/produce", self.addr)
    }

    pub fn kill(&mut self) {
        if let Some(r) = self.running.take() {
            r.kill();
        }
    }
}

impl Drop for Isv {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn start_isv(
    config: IsvConfig,
    clock: SharedClock,
    market: Arc<dyn Marketplace>,
    hooks: Option<Arc<dyn JobHooks>>,
) -> Isv {
    let store = Store::open(&config.database_url).await.expect("open store");
    let service = IsvService::new(
        store,
        clock,
        Arc::new(config),
        signing_key(),
        market,
        hooks.unwrap_or_else(|| Arc::new(NoHooks)),
    );
    let running = server::start(service.clone(), &ListenOverrides::default())
        .await
        .expect("start ISV");
    Isv {
        service,
        addr: running.addr,
        admin_addr: running.admin_addr,
        running: Some(running),
    }
}

/// Polls `check` (an async condition on state another task is producing) until it holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
