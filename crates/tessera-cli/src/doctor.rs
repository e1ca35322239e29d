//! `tessera doctor`: checks the agent, its socket, the secrets store, the clock, the
//! marketplace and the product descriptors, and says what to do about each problem.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tessera_types::{Snapshot, StateReason};

use crate::agent::{Failure, START_HINT, client_failure, connect, exit, runtime};

/// How far the agent's trusted time may be from this computer's clock before it matters.
const CLOCK_TOLERANCE: time::Duration = time::Duration::minutes(5);
/// How long one network probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Arguments of `tessera doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Skip the network probe of the marketplace.
    #[arg(long)]
    pub offline: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works, but worth knowing.
    Warn,
    /// Broken; the fix says what to do.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The outcome.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check and prints them; exits 1 when any failed.
///
/// # Errors
/// [`Failure`] with [`exit::FAILURE`] when a check failed.
pub fn run(args: &DoctorArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut checks = Vec::new();
    let endpoint = crate::agent::endpoint();
    checks.push(match &endpoint {
        Ok(e) => socket_check(e.path()),
        Err(f) => Check::fail("socket", f.message.clone(), "set TESSERA_SOCKET"),
    });
    let snapshot = match endpoint {
        Ok(_) => runtime()?.block_on(async {
            let client = connect("").await?;
            let s = client.status().await.map_err(client_failure)?;
            client.close().await;
            Ok::<_, Failure>(s)
        }),
        Err(f) => Err(f),
    };
    checks.push(match &snapshot {
        Ok(s) => Check::ok(
            "agent",
            format!("the agent answers ({} products)", s.products.len()),
        ),
        Err(f) => Check::fail(
            "agent",
            f.message.clone(),
            f.hint.clone().unwrap_or_else(|| START_HINT.to_owned()),
        ),
    });
    let config = read_config();
    checks.push(secrets_check(&config));
    checks.push(clock_check(snapshot.as_ref().ok()));
    if !args.offline {
        checks.push(marketplace_check(&config));
    }
    checks.push(descriptor_check(snapshot.as_ref().ok()));

    if args.json {
        serde_json::to_writer_pretty(&mut *out, &checks)?;
        writeln!(out)?;
    } else {
        for c in &checks {
            let mark = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            writeln!(out, "[{mark}] {:<12} {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "       {:<12} → {fix}", "")?;
            }
        }
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed > 0 {
        return Err(
            Failure::new(exit::FAILURE, format!("{failed} check(s) failed"))
                .hint("fix the items marked FAIL above, then run `tessera doctor` again")
                .into(),
        );
    }
    Ok(())
}

fn socket_check(path: &Path) -> Check {
    const NAME: &str = "socket";
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => {
            return Check::fail(
                NAME,
                format!("{} does not exist", path.display()),
                START_HINT,
            );
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        if !meta.file_type().is_socket() {
            return Check::fail(
                NAME,
                format!("{} exists but is not a socket", path.display()),
                "remove it (the agent never creates anything else there) and restart the agent",
            );
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Check::warn(
                NAME,
                format!("{} is accessible to others (mode {mode:o})", path.display()),
                "restart the agent; it recreates the socket with mode 600",
            );
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Check::ok(NAME, path.display().to_string())
}

/// The agent's `tessera.toml`, as far as the doctor needs it.
#[derive(Debug, Default)]
struct AgentConfig {
    path: Option<PathBuf>,
    base_url: Option<String>,
    fallback_url: Option<String>,
    store: Option<String>,
    problem: Option<String>,
}

fn read_config() -> AgentConfig {
    let Some(path) = crate::dirs::config_dir().map(|d| d.join("tessera.toml")) else {
        return AgentConfig::default();
    };
    let mut config = AgentConfig {
        path: Some(path.clone()),
        ..AgentConfig::default()
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return config;
    };
    match text.parse::<toml::Table>() {
        Ok(table) => {
            let get = |section: &str, key: &str| {
                table
                    .get(section)
                    .and_then(|s| s.get(key))
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned)
            };
            config.base_url = get("marketplace", "base_url");
            config.fallback_url = get("marketplace", "fallback_url");
            config.store = get("secrets", "store");
        }
        Err(e) => config.problem = Some(format!("{} is not valid TOML: {e}", path.display())),
    }
    config
}

fn secrets_check(config: &AgentConfig) -> Check {
    const NAME: &str = "keyring";
    // The agent does not report its store over IPC; this reads the same signals it decides by.
    let file = crate::dirs::state_dir().map(|d| d.join("secrets.enc"));
    let file_exists = file.as_ref().is_some_and(|f| f.exists());
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
    let file_note = "the encrypted file is bound to this machine but is no secret from your own \
                     user account";
    if config.store.as_deref() == Some("file") || (file_exists && !bus) {
        return Check::warn(
            NAME,
            format!(
                "secrets are kept in the encrypted file {}",
                file.map_or_else(|| "secrets.enc".to_owned(), |f| f.display().to_string())
            ),
            format!(
                "{file_note}; for the OS keyring run the agent in a desktop session and set \
                 [secrets] store = \"auto\""
            ),
        );
    }
    if cfg!(target_os = "linux") && !bus {
        return Check::warn(
            NAME,
            "no D-Bus session bus: the Secret Service keyring is unreachable, so the agent falls \
             back to the encrypted file",
            format!("{file_note}; run the agent inside your desktop session to use the keyring"),
        );
    }
    if file_exists {
        return Check::warn(
            NAME,
            "a keyring is reachable, but an encrypted secrets file also exists (the agent used \
             it when the keyring was unusable)",
            "check `journalctl --user -u tessera-agent` or `tessera logs` for \"secrets store chosen\"",
        );
    }
    Check::ok(
        NAME,
        "the OS keyring is reachable (Secret Service / native store)",
    )
}

fn clock_check(snapshot: Option<&Snapshot>) -> Check {
    const NAME: &str = "clock";
    let Some(s) = snapshot else {
        return Check::warn(
            NAME,
            "cannot compare with the agent's trusted time (agent unreachable)",
            "fix the agent first",
        );
    };
    if s.products
        .iter()
        .any(|p| p.reason == StateReason::ClockTampered)
    {
        return Check::fail(
            NAME,
            "the agent found the clock set back: offline grace is withheld",
            "set the clock right (enable NTP), then run `tessera heartbeat` while online",
        );
    }
    let now = time::OffsetDateTime::now_utc();
    let drift = s.taken_at - now;
    if drift.abs() > CLOCK_TOLERANCE {
        return Check::warn(
            NAME,
            format!(
                "the agent's trusted time differs from this clock by {} s",
                drift.whole_seconds()
            ),
            "set the clock right (enable NTP); the agent keeps the latest time it has seen",
        );
    }
    Check::ok(NAME, "this clock agrees with the agent's trusted time")
}

fn marketplace_check(config: &AgentConfig) -> Check {
    const NAME: &str = "marketplace";
    if let Some(p) = &config.problem {
        return Check::fail(NAME, p.clone(), "correct the file and restart the agent");
    }
    let primary = config
        .base_url
        .clone()
        .unwrap_or_else(|| "https://mkt.myhuaweicloud.com".to_owned());
    let fallback = config.fallback_url.clone().or_else(|| {
        config
            .base_url
            .is_none()
            .then(|| "https://mkt.myhuaweicloud.cn".to_owned())
    });
    let source = match (&config.path, &config.base_url) {
        (_, Some(_)) => "configured".to_owned(),
        (Some(p), None) => format!("the default; {} sets no base_url", p.display()),
        (None, None) => "the default".to_owned(),
    };
    let mut tried = Vec::new();
    for url in std::iter::once(primary).chain(fallback) {
        match probe(&url) {
            Ok(()) => return Check::ok(NAME, format!("{url} ({source}) is reachable")),
            Err(why) => tried.push(format!("{url}: {why}")),
        }
    }
    Check::fail(
        NAME,
        format!("unreachable: {}", tried.join("; ")),
        "check the network, proxy and firewall (HTTPS to the marketplace); the agent keeps \
         working offline for the grace period",
    )
}

fn probe(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| "not an https:// URL".to_owned())?;
    let authority = rest.split('/').next().unwrap_or_default();
    let hostport = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    let addrs: Vec<_> = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve ({e})"))?
        .collect();
    let mut last = "no address".to_owned();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn descriptor_check(snapshot: Option<&Snapshot>) -> Check {
    const NAME: &str = "products";
    let dirs: Vec<PathBuf> = crate::dirs::system_products_dir()
        .into_iter()
        .chain(crate::dirs::config_dir().map(|d| d.join("products.d")))
        .collect();
    let mut ids = Vec::new();
    let mut broken = Vec::new();
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| t.parse::<toml::Table>().map_err(|e| e.to_string()));
            match parsed {
                Ok(t) => match t.get("product_id").and_then(toml::Value::as_str) {
                    Some(id) => ids.push(id.to_owned()),
                    None => broken.push(format!("{}: no product_id", path.display())),
                },
                Err(why) => broken.push(format!("{}: {why}", path.display())),
            }
        }
    }
    let where_ = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    if !broken.is_empty() {
        return Check::fail(
            NAME,
            format!("unreadable descriptors: {}", broken.join("; ")),
            "fix or remove them (the agent skips them), then restart the agent",
        );
    }
    if ids.is_empty() {
        return Check::fail(
            NAME,
            format!("no product descriptors in {where_}"),
            "install your application's descriptor (its installer ships one) and restart the agent",
        );
    }
    if let Some(s) = snapshot {
        let missing: Vec<&String> = ids.iter().filter(|id| s.product(id).is_none()).collect();
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Check::warn(
                NAME,
                format!("the agent has not loaded: {}", missing.join(", ")),
                "restart the agent to load new descriptors; `tessera logs` says why one was skipped",
            );
        }
    }
    Check::ok(
        NAME,
        format!("{} descriptor(s): {}", ids.len(), ids.join(", ")),
    )
}
