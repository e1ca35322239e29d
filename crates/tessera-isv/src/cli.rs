//! The `tessera-isv` command line: `serve`, `keygen`, `issue`, `verify`, `status`, `retry-job`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use koogallery::apig::Credentials;
use koogallery::client::{CaMode, MarketClient, MarketConfig as ClientConfig};
use tessera_license::{FingerprintHash, PublicKey, SigningKey, Verifier};
use tessera_types::{KooTime, SharedClock, SystemClock};

use crate::config::{DeliveryMode, IsvConfig};
use crate::issuer::{self, LicenseTerms};
use crate::market::HttpMarketplace;
use crate::server::{self, ListenOverrides};
use crate::service::{IsvService, NoHooks};
use crate::status::StatusReport;
use crate::store::Store;

/// `tessera-isv`: KooGallery production interface and License issuer.
#[derive(Debug, Parser)]
#[command(name = "tessera-isv", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the production interface, the job workers and the admin listener.
    Serve {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Generate a signing key pair: DIR/signing-key.pem (0600) and DIR/public-key.pem.
    Keygen {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// RSA modulus size.
        #[arg(long, default_value_t = 3072)]
        bits: usize,
    },
    /// Issue a License offline (air-gapped customers), from a fingerprint string.
    Issue {
        /// PKCS#8 PEM signing key.
        #[arg(long)]
        key: PathBuf,
        /// KooGallery productId.
        #[arg(long)]
        product: String,
        /// Device fingerprint (`MAC|disk|board|CPU`).
        #[arg(long)]
        fingerprint: String,
        /// Start of validity, any KooGallery time format (default: now).
        #[arg(long)]
        not_before: Option<String>,
        /// End of validity, any KooGallery time format (default: perpetual).
        #[arg(long)]
        not_after: Option<String>,
        /// A feature grant `NAME=COUNT`; repeatable.
        #[arg(long = "feature", value_parser = parse_feature)]
        features: Vec<(String, u32)>,
        /// KooGallery instance id to record in the License.
        #[arg(long, default_value = "")]
        instance_id: String,
        /// KooGallery order id to record in the License.
        #[arg(long, default_value = "")]
        order_id: String,
        /// File form or the ≤1024-character string form.
        #[arg(long, value_enum, default_value_t = Form::File)]
        form: Form,
        /// Mark it a trial License.
        #[arg(long)]
        trial: bool,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a License file or string against a public key (and a fingerprint).
    Verify {
        /// The License file (or a file holding the string form).
        file: PathBuf,
        /// SPKI PEM public key.
        #[arg(long)]
        public_key: PathBuf,
        /// The fingerprint the License must be bound to.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Print instances, Licenses, the job queue and codes from the database.
    Status {
        /// The TOML config file (for `database_url`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Send a dead-lettered job back to the queue.
    RetryJob {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// Job id (from `status`).
        id: i64,
    },
}

/// License form for `issue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Form {
    /// The text file.
    File,
    /// The compact string.
    String,
}

fn parse_feature(s: &str) -> Result<(String, u32), String> {
    let (name, count) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=COUNT"))?;
    let count: u32 = count
        .parse()
        .map_err(|_| format!("{count:?} is not a seat count"))?;
    Ok((name.to_owned(), count))
}

fn parse_time(s: &str) -> anyhow::Result<time::OffsetDateTime> {
    Ok(KooTime::parse(s)
        .with_context(|| format!("{s:?} is not a time"))?
        .datetime())
}

/// Runs the command line.
///
/// # Errors
/// Whatever the command failed on, with context.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve(&config).await,
        Command::Keygen { out, bits } => keygen(&out, bits),
        Command::Issue {
            key,
            product,
            fingerprint,
            not_before,
            not_after,
            features,
            instance_id,
            order_id,
            form,
            trial,
            out,
        } => {
            let signer = issuer::load_signing_key(&key)?;
            let now = SystemClock.now_utc();
            let not_before = not_before
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or(now);
            let not_after = not_after.as_deref().map(parse_time).transpose()?;
            let features: BTreeMap<String, u32> = features.into_iter().collect();
            let terms = LicenseTerms {
                product_id: &product,
                instance_id: &instance_id,
                order_id: &order_id,
                features: &features,
                fingerprint: &fingerprint,
                issued_at: now,
                not_before,
                not_after,
                trial,
            };
            let mode = match form {
                Form::File => DeliveryMode::File,
                Form::String => DeliveryMode::String,
            };
            let signed = issuer::sign_license(&signer, &terms, mode)?;
            match out {
                Some(path) => {
                    write_atomically(&path, &signed.body, false)?;
                    eprintln!(
                        "License {} written to {}",
                        signed.license_id,
                        path.display()
                    );
                }
                None => println!("{}", String::from_utf8_lossy(&signed.body).trim_end()),
            }
            Ok(())
        }
        Command::Verify {
            file,
            public_key,
            fingerprint,
        } => verify(&file, &public_key, fingerprint.as_deref()),
        Command::Status { config } => {
            let config = IsvConfig::load(&config)?;
            let store = Store::open(&config.database_url).await?;
            let report = StatusReport::collect(&store).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::RetryJob { config, id } => {
            let config = IsvConfig::load(&config)?;
            let store = Store::open(&config.database_url).await?;
            let now = SystemClock.now_utc();
            let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
            if !store.revive_job(id, ms).await? {
                bail!("job {id} is not dead-lettered");
            }
            println!("job {id} re-queued");
            Ok(())
        }
    }
}

trait NowUtc {
    fn now_utc(&self) -> time::OffsetDateTime;
}

impl NowUtc for SystemClock {
    fn now_utc(&self) -> time::OffsetDateTime {
        tessera_types::Clock::now(self)
    }
}

/// Builds the production marketplace client from the config.
///
/// # Errors
/// When a base URL is invalid or the CA file cannot be used.
pub fn marketplace(config: &IsvConfig, clock: SharedClock) -> anyhow::Result<HttpMarketplace> {
    let m = &config.market;
    let credentials = Credentials::new(m.access_key_id.clone(), m.secret_access_key.expose());
    let mut c = ClientConfig::new(credentials, clock.clone());
    let mut urls = m.base_urls.iter();
    if let Some(primary) = urls.next() {
        c.primary = primary
            .parse()
            .with_context(|| format!("market.base_urls: {primary:?} is not a URL"))?;
    }
    c.fallback = urls
        .next()
        .map(|u| u.parse())
        .transpose()
        .context("market.base_urls: the fallback is not a URL")?;
    c.extra_ca_pem.clone_from(&m.extra_ca_file);
    c.ca_mode = if m.trust_only_extra_ca {
        CaMode::Only
    } else {
        CaMode::Merge
    };
    let client = MarketClient::new(c).context("cannot build the marketplace client")?;
    Ok(HttpMarketplace::new(client, clock))
}

async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Arc::new(IsvConfig::load(config_path)?);
    let clock = SystemClock::shared();
    let store = Store::open(&config.database_url).await?;
    let signer = Arc::new(issuer::load_signing_key(&config.signing.private_key)?);
    tracing::info!(key_id = %signer.key_id(), "signing key loaded");
    let market = Arc::new(marketplace(&config, clock.clone())?);
    let service = IsvService::new(store, clock, config, signer, market, Arc::new(NoHooks));
    let running = server::start(service, &ListenOverrides::default()).await?;
    eprintln!("tessera-isv listening on {}", running.addr);
    if let Some(admin) = running.admin_addr {
        eprintln!("admin status at http://{admin}/status");
    }
    tokio::select! {
        () = running.wait() => bail!("a server task stopped unexpectedly"),
        r = tokio::signal::ctrl_c() => {
            r.context("cannot listen for Ctrl-C")?;
            eprintln!("stopping");
            Ok(())
        }
    }
}

fn keygen(out: &Path, bits: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let key = SigningKey::generate_with_bits(bits).context("key generation failed")?;
    let private = key
        .to_pkcs8_pem()
        .context("cannot encode the private key")?;
    let public = key
        .public_key()
        .to_spki_pem()
        .context("cannot encode the public key")?;
    write_atomically(&out.join("signing-key.pem"), private.as_bytes(), true)?;
    write_atomically(&out.join("public-key.pem"), public.as_bytes(), false)?;
    println!("{}", key.key_id());
    Ok(())
}

fn verify(file: &Path, public_key: &Path, fingerprint: Option<&str>) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(public_key)
        .with_context(|| format!("cannot read {}", public_key.display()))?;
    let key = PublicKey::from_spki_pem(&pem).context("the public key is not usable")?;
    let input = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let verifier = Verifier::with_keys([key]);
    let signed = verifier
        .open(trim_ascii(&input))
        .context("the License does not verify")?;
    let l = &signed.license;
    if let Some(fp) = fingerprint
        && l.binding.fingerprint_hash() != FingerprintHash::of(fp)
    {
        bail!("the License is bound to another device");
    }
    let now = SystemClock.now_utc();
    let window = match (l.not_before <= now, l.not_after.is_none_or(|na| now < na)) {
        (true, true) => "valid now",
        (false, _) => "not yet valid",
        (true, false) => "expired",
    };
    println!(
        "License {} for product {} signed by key {}: {window}; not before {}, not after {}",
        l.license_id,
        l.product_id,
        signed.key_id,
        KooTime::new(l.not_before).format_compact(),
        l.not_after
            .map_or_else(|| "never".to_owned(), |t| KooTime::new(t).format_compact()),
    );
    if window != "valid now" {
        bail!("the License is {window}");
    }
    Ok(())
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Writes via a temporary file and rename, so a crash never leaves half a key or License.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.1
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .context("cannot restrict the key file's permissions")?;
    }
    #[cfg(not(unix))]
    let _ = private;
    tmp.1.write_all(bytes).context("cannot write")?;
    tmp.1.sync_all().context("cannot sync")?;
    std::fs::rename(&tmp.0, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn tempfile_in(dir: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let name = dir.join(format!(
        ".tessera-isv-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&name)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    Ok((name, f))
}
