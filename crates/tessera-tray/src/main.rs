//! `tessera-tray`: the Tessera system-tray icon. A thin wrapper over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use tessera_ipc::Endpoint;
use tessera_tray::link::LinkConfig;
use tessera_tray::platform::{self, LockError};
use tessera_tray::{TrayOptions, run};
use tessera_types::SystemClock;

/// Shows the state of your KooGallery software Licenses in the system tray and offers the
/// actions around them. Talks only to the local Tessera agent; one tray runs per user.
#[derive(Parser)]
#[command(name = "tessera-tray", version, about, long_about = None)]
struct Cli {
    /// The agent's socket (default: TESSERA_SOCKET, else the per-user runtime dir).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The page "Renew on KooGallery" opens.
    #[arg(long, env = platform::ENV_RENEW_URL, default_value = platform::DEFAULT_RENEW_URL)]
    renew_url: String,
    /// Do not send desktop notifications.
    #[arg(long)]
    no_notifications: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(LockError::AlreadyRunning(_)) = e.downcast_ref::<LockError>() {
                // Started twice (autostart and by hand): the running tray is the one to use.
                eprintln!("tessera-tray: {e}");
                return ExitCode::SUCCESS;
            }
            eprintln!("tessera-tray: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var_os(k);
    let lock = platform::acquire_instance_lock(&platform::lock_path(&env))?;
    tracing::debug!(lock = %lock.path().display(), "single-instance lock taken");
    let endpoint = match cli.socket {
        Some(path) => Endpoint::at(path),
        None => Endpoint::from_env().context("cannot determine the agent's socket")?,
    };
    let options = TrayOptions {
        link: LinkConfig::new(endpoint),
        renew_url: cli.renew_url,
        log_dir: platform::log_dir(&env),
        clock: SystemClock::shared(),
        tick: Duration::from_secs(60),
        notifications: !cli.no_notifications,
    };
    run(options)?;
    drop(lock);
    Ok(())
}
