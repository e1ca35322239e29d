//! `tessera-agent`: the per-user License agent. A thin wrapper over the library.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

use tessera_agent::{Agent, AgentOptions, Paths, Settings};
use tessera_types::SystemClock;

#[derive(Parser)]
#[command(
    name = "tessera-agent",
    version,
    about = "Tessera per-user License agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground until SIGTERM, Ctrl-C or a Shutdown request.
    Run,
    /// Store the marketplace AK/SK in the secrets store: two lines on stdin, AK then SK
    /// (and optionally a third line: the delivery-channel buyer token).
    ImportCredentials,
    /// Print where the agent keeps its files.
    Paths,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("tessera-agent")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let paths = Paths::from_env().context("cannot determine the agent's directories")?;
    match cli.command {
        Command::Paths => {
            println!("config dir:   {}", paths.config_dir.display());
            println!("state dir:    {}", paths.state_dir.display());
            println!("socket:       {}", paths.socket.display());
            if let Some(sys) = &paths.system_products_dir {
                println!("system products: {}", sys.display());
            }
            Ok(())
        }
        Command::ImportCredentials => import_credentials(paths).await,
        Command::Run => serve(paths).await,
    }
}

async fn import_credentials(paths: Paths) -> anyhow::Result<()> {
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .context("cannot read stdin")?;
    let mut lines = input.lines().map(str::trim).filter(|l| !l.is_empty());
    let (Some(ak), Some(sk)) = (lines.next(), lines.next()) else {
        anyhow::bail!("expected two lines on stdin: the access key, then the secret key");
    };
    let token = lines.next().map(|t| Zeroizing::new(t.to_owned()));
    let settings = Settings::load(&paths.config_file())?;
    let file = paths.secrets_file();
    tessera_agent::paths::create_private_dir(&paths.state_dir)
        .with_context(|| format!("cannot create {}", paths.state_dir.display()))?;
    let identity = tokio::task::spawn_blocking(tessera_fingerprint::collect_local).await?;
    let material = tessera_agent::agent::identity_material(&identity);
    let secrets = tessera_agent::secrets::Secrets::open(settings.secrets.store, &file, &material)?;
    secrets.set(
        tessera_agent::agent::secret_names::ACCESS_KEY,
        ak.as_bytes(),
    )?;
    secrets.set(
        tessera_agent::agent::secret_names::SECRET_KEY,
        sk.as_bytes(),
    )?;
    if let Some(t) = token {
        secrets.set(
            tessera_agent::agent::secret_names::DELIVERY_TOKEN,
            t.as_bytes(),
        )?;
    }
    println!("credentials stored in {:?}", secrets.kind());
    Ok(())
}

async fn serve(paths: Paths) -> anyhow::Result<()> {
    let settings = Settings::load(&paths.config_file())?;
    let (_guard, control) = tessera_agent::logging::init(&paths.log_dir(), &settings.log.filter)?;
    let log = (paths.log_dir(), settings.log.filter.clone());
    let mut options = AgentOptions::new(paths, SystemClock::shared());
    options.settings = Some(settings);
    options.log_control = Some(control);
    options.log = Some(log);
    let handle = Agent::start(options).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    let reason = tokio::select! {
        _ = term.recv() => "the agent received SIGTERM",
        _ = tokio::signal::ctrl_c() => "the agent was interrupted",
        () = handle.stop_requested() => "shutdown requested",
    };
    tracing::info!(reason, "stopping");
    handle.shutdown(reason, false).await;
    Ok(())
}
