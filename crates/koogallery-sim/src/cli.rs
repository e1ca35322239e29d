//! The `koogallery-sim` command line: `serve` (the default) and `call`, which signs a request with
//! the APIG algorithm and sends it, so a person can talk to the emulator without an SDK.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use koogallery::apig::{self, Credentials, SigningRequest};

use crate::callbacks::IsvEndpoint;
use crate::sim::{ApiCredential, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Sim, SimConfig};

/// KooGallery marketplace emulator.
#[derive(Debug, Parser)]
#[command(name = "koogallery-sim", version, about)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the emulator (the default).
    Serve(ServeArgs),
    /// Sign a request with AK/SK and send it to a running emulator; prints status and body.
    Call(CallArgs),
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Primary host listener (`mkt.myhuaweicloud.com`).
    #[arg(long, env = "KOOGALLERY_SIM_PRIMARY", default_value = "127.0.0.1:8443")]
    pub primary: SocketAddr,
    /// Fallback host listener (`mkt.myhuaweicloud.cn`).
    #[arg(
        long,
        env = "KOOGALLERY_SIM_FALLBACK",
        default_value = "127.0.0.1:8444"
    )]
    pub fallback: SocketAddr,
    /// State directory: test CA, server certificate, manifest signing key.
    #[arg(
        long,
        env = "KOOGALLERY_SIM_STATE_DIR",
        default_value = "koogallery-sim-state"
    )]
    pub state_dir: PathBuf,
    /// Extra certificate names besides localhost/127.0.0.1/::1 (repeatable).
    #[arg(long = "name", env = "KOOGALLERY_SIM_NAMES", value_delimiter = ',',
          default_values_t = crate::sim::DEFAULT_EXTRA_NAMES.map(String::from))]
    pub names: Vec<String>,
    /// Access key (AK) the open APIs accept.
    #[arg(long, env = "KOOGALLERY_SIM_AK", default_value = DEFAULT_ACCESS_KEY)]
    pub ak: String,
    /// Secret key (SK) the open APIs accept.
    #[arg(long, env = "KOOGALLERY_SIM_SK", default_value = DEFAULT_SECRET_KEY, hide_default_value = true)]
    pub sk: String,
    /// The ISV production URL callbacks are sent to.
    #[arg(long, env = "KOOGALLERY_SIM_ISV_URL")]
    pub isv_url: Option<String>,
    /// The access key callbacks are signed with.
    #[arg(long, env = "KOOGALLERY_SIM_ISV_ACCESS_KEY")]
    pub isv_access_key: Option<String>,
    /// A PEM file with an extra CA to trust for the ISV production URL.
    #[arg(long, env = "KOOGALLERY_SIM_ISV_CA")]
    pub isv_ca: Option<PathBuf>,
    /// Nominal seconds per real second for callback retries (60 = a 2-minute retry every 2 s).
    #[arg(long, env = "KOOGALLERY_SIM_TIME_SCALE", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Do not serve the nine documented mock orders.
    #[arg(long)]
    pub no_mock_orders: bool,
}

/// Options of `call`.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// HTTP method.
    pub method: String,
    /// Path and query, e.g. `/api/mkp-openapi-public/global/v1/order/query?orderId=MOCKONDEMAND`.
    pub path: String,
    /// JSON body.
    #[arg(long)]
    pub body: Option<String>,
    /// Base URL of the emulator.
    #[arg(
        long,
        env = "KOOGALLERY_SIM_URL",
        default_value = "https://127.0.0.1:8443"
    )]
    pub url: String,
    /// CA to trust (default: `<state-dir>/ca.pem`).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// State directory (to find `ca.pem`).
    #[arg(
        long,
        env = "KOOGALLERY_SIM_STATE_DIR",
        default_value = "koogallery-sim-state"
    )]
    pub state_dir: PathBuf,
    /// Access key to sign with.
    #[arg(long, env = "KOOGALLERY_SIM_AK", default_value = DEFAULT_ACCESS_KEY)]
    pub ak: String,
    /// Secret key to sign with.
    #[arg(long, env = "KOOGALLERY_SIM_SK", default_value = DEFAULT_SECRET_KEY, hide_default_value = true)]
    pub sk: String,
}

/// Runs the command line.
///
/// # Errors
/// Whatever stops the chosen command, with context.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Call(args)) => call(args).await,
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = SimConfig::new(&args.state_dir);
    config.primary_addr = args.primary;
    config.fallback_addr = args.fallback;
    config.server_names.clone_from(&args.names);
    config.credentials = vec![ApiCredential {
        access_key: args.ak.clone(),
        secret_key: args.sk.clone(),
    }];
    config.time_scale = args.time_scale;
    config.seed_mock_orders = !args.no_mock_orders;
    config.isv =
        match (&args.isv_url, &args.isv_access_key) {
            (Some(url), Some(key)) => Some(IsvEndpoint {
                url: url.clone(),
                access_key: key.clone(),
                extra_ca_pem: match &args.isv_ca {
                    Some(path) => Some(std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read the ISV CA file {}", path.display())
                    })?),
                    None => None,
                },
            }),
            (None, None) => None,
            _ => bail!("--isv-url and --isv-access-key go together"),
        };
    let sim = Sim::start(config)
        .await
        .context("cannot start the emulator")?;
    let ca = sim.ca_path();
    let ca = ca.canonicalize().unwrap_or(ca);
    let sk_note = if args.sk == DEFAULT_SECRET_KEY {
        format!("SK {DEFAULT_SECRET_KEY} (the documented default)")
    } else {
        "SK as configured".to_owned()
    };
    println!("koogallery-sim is up");
    println!("  primary   {}", sim.primary_url());
    println!("  fallback  {}", sim.fallback_url());
    println!(
        "  CA        {}  (trust this file; see README)",
        ca.display()
    );
    println!("  AK        {}", args.ak);
    println!("  {sk_note}");
    println!("  control   {}/sim/control/info", sim.primary_url());
    println!(
        "  ISV       {}",
        args.isv_url
            .as_deref()
            .unwrap_or("(none: callbacks are logged as failed)")
    );
    println!("try, from another shell:");
    println!(
        "  koogallery-sim call --url {} --ca {} GET '/api/mkp-openapi-public/global/v1/order/query?orderId=MOCKPERIODYEARNEW'",
        sim.primary_url(),
        ca.display()
    );
    println!(
        "  curl --cacert {} {}/sim/control/orders -H 'content-type: application/json' -d '{{\"model\":\"authorization_code\",\"product_id\":\"P1\"}}'",
        ca.display(),
        sim.primary_url()
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

async fn call(args: CallArgs) -> anyhow::Result<()> {
    let base =
        url::Url::parse(&args.url).with_context(|| format!("{:?} is not a URL", args.url))?;
    let full = base
        .join(&args.path)
        .with_context(|| format!("{:?} is not a path", args.path))?;
    let host = match (full.host_str(), full.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => bail!("{full} has no host"),
    };
    let method = args.method.to_ascii_uppercase();
    let body = args.body.clone().unwrap_or_default();
    let content_type = if method == "GET" {
        "application/json;charset=UTF-8"
    } else {
        "application/json"
    };
    let mut signing = SigningRequest::new(&method, &host, full.path())
        .header("Content-Type", content_type)
        .body(body.as_bytes());
    for (k, v) in full.query_pairs() {
        signing = signing.query(&k, &v);
    }
    let signed = apig::sign(
        &Credentials::new(args.ak.clone(), args.sk.clone()),
        &signing,
        time::OffsetDateTime::now_utc(),
    );
    let ca_path = args.ca.unwrap_or_else(|| args.state_dir.join("ca.pem"));
    let ca = std::fs::read(&ca_path)
        .with_context(|| format!("cannot read the CA file {}", ca_path.display()))?;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).context("the CA file is not PEM")?])
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).context("bad HTTP method")?;
    let mut request = client.request(method, full.clone());
    for (name, value) in &signed.headers {
        // reqwest derives Host from the URL (HTTP/2 sends it as :authority).
        if !name.eq_ignore_ascii_case("host") {
            request = request.header(name, value);
        }
    }
    let response = request
        .body(body)
        .send()
        .await
        .with_context(|| format!("request to {full} failed"))?;
    let status = response.status();
    let text = response.text().await.context("cannot read the answer")?;
    println!("HTTP {status}");
    println!("{text}");
    Ok(())
}
