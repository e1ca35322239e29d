//! `tessera status [--json]`: every product's state as the agent decides it.

use std::io::Write;

use clap::Args;
use tessera_types::state::{FeatureState, ProductModel};
use tessera_types::{LicenseState, ProductState, Snapshot};

use crate::agent::{Failure, connect, runtime, when};

/// Arguments of `tessera status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the agent's snapshot as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only this product.
    #[arg(long, value_name = "PRODUCT_ID")]
    pub product: Option<String>,
}

/// Asks the agent for its snapshot and prints it.
///
/// # Errors
/// [`Failure`] when the agent cannot be reached or the product is unknown.
pub fn run(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut snapshot = runtime()?.block_on(async {
        let client = connect("").await?;
        let snapshot = client
            .status()
            .await
            .map_err(crate::agent::client_failure)?;
        client.close().await;
        Ok::<_, Failure>(snapshot)
    })?;
    if let Some(pid) = &args.product {
        let p = crate::agent::pick_product(&snapshot, Some(pid), None)?;
        snapshot.products = vec![p];
    }
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &snapshot)?;
        writeln!(out)?;
    } else {
        write_text(&snapshot, out)?;
    }
    Ok(())
}

fn write_text(snapshot: &Snapshot, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "Agent time: {}", when(snapshot.taken_at))?;
    if snapshot.products.is_empty() {
        writeln!(
            out,
            "No products. Install a product descriptor in products.d (`tessera doctor` shows \
             where) and restart the agent."
        )?;
        return Ok(());
    }
    for p in &snapshot.products {
        writeln!(out)?;
        write_product(p, out)?;
    }
    Ok(())
}

pub(crate) fn write_product(p: &ProductState, out: &mut dyn Write) -> std::io::Result<()> {
    let name = p.display_name.as_deref().unwrap_or(&p.product_id);
    writeln!(out, "{name} ({})", p.product_id)?;
    let model = match p.model {
        Some(ProductModel::AuthorizationCode) => "authorization code",
        Some(ProductModel::LicenseFile) => "License file",
        None => "unspecified",
    };
    writeln!(out, "  model:      {model}")?;
    writeln!(
        out,
        "  state:      {} ({})",
        state_word(p.state),
        reason_word(p)
    )?;
    if let Some(m) = &p.message {
        writeln!(out, "  detail:     {m}")?;
    }
    if let Some(d) = p.deadline {
        writeln!(out, "  blocks at:  {}", when(d))?;
    }
    match p.expires_at {
        Some(e) => writeln!(out, "  expires:    {}", when(e))?,
        None => writeln!(out, "  expires:    never or unknown")?,
    }
    if let Some(v) = p.last_verified_at {
        writeln!(out, "  verified:   {}", when(v))?;
    }
    for f in &p.features {
        writeln!(out, "  feature:    {}", feature_line(f))?;
    }
    if let Some(todo) = next_step(p) {
        writeln!(out, "  next step:  {todo}")?;
    }
    Ok(())
}

fn state_word(s: LicenseState) -> &'static str {
    match s {
        LicenseState::Active => "ACTIVE",
        LicenseState::Grace => "GRACE",
        LicenseState::Blocked => "BLOCKED",
    }
}

fn reason_word(p: &ProductState) -> String {
    serde_json::to_value(p.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", p.reason))
}

fn feature_line(f: &FeatureState) -> String {
    let seats = f
        .seats
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let mut line = format!("{} — {} of {seats} seats in use", f.name, f.in_use);
    if let Some(v) = &f.version_ceiling {
        line.push_str(&format!(", versions up to {v}"));
    }
    line
}

/// What the user can do about a product that is not Active.
fn next_step(p: &ProductState) -> Option<&'static str> {
    use tessera_types::StateReason as R;
    if p.state == LicenseState::Active {
        return None;
    }
    Some(match p.reason {
        R::NoLicense => match p.model {
            Some(ProductModel::AuthorizationCode) => "activate your code: tessera activate CODE",
            _ => "import your License: tessera license import FILE",
        },
        R::Expired | R::TrialExpired => "renew in KooGallery, then run `tessera heartbeat`",
        R::Frozen | R::Released | R::CodeNotAlive => {
            "check the order in KooGallery (renew or buy again), then run `tessera heartbeat`"
        }
        R::BindingMismatch => {
            "this License is for another device: apply for one with this device's fingerprint \
             (`tessera fingerprint`)"
        }
        R::SignatureInvalid => "the License is damaged or not from this vendor: import it again",
        R::OfflineGrace | R::OfflineGraceSpent => {
            "let the agent reach the marketplace (`tessera doctor` checks the network)"
        }
        R::ClockTampered => "set this computer's clock right, then run `tessera heartbeat` online",
        R::NotYetValid => "wait until the License's start date, or check this computer's clock",
        R::VerifyFailed => "the application refused its License: import a fresh one",
        R::Licensed | R::Unknown => "see `tessera logs` for details",
    })
}
