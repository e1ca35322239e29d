//! `tessera license import FILE|-` and `tessera license show`: Model B Licenses.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tessera_ipc::proto::{LicenseSource, LicenseText};
use tessera_ipc::{Call, Reply};
use tessera_types::LicenseState;
use tessera_types::state::ProductModel;

use crate::agent::{Failure, client_failure, connect, exit, pick_product, runtime};

/// Largest License read from standard input (an IPC frame is 64 KiB).
const MAX_STDIN_LICENSE: u64 = 48 * 1024;

/// `tessera license …`.
#[derive(Debug, Args)]
pub struct LicenseArgs {
    /// What to do with Licenses.
    #[command(subcommand)]
    pub command: LicenseCommand,
}

/// The License subcommands.
#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Import a License file, or a License file or string from standard input (`-`); the agent
    /// verifies signature, device binding and validity before it replaces the current one.
    Import(ImportArgs),
    /// Show the License state of the License-file products.
    Show(ShowArgs),
}

/// Arguments of `tessera license import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The License file, or `-` for standard input.
    #[arg(value_name = "FILE")]
    pub file: String,
    /// The product; by default the one the License names.
    #[arg(long, value_name = "PRODUCT_ID")]
    pub product: Option<String>,
}

/// Arguments of `tessera license show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Only this product.
    #[arg(long, value_name = "PRODUCT_ID")]
    pub product: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a License subcommand.
///
/// # Errors
/// [`Failure`]: the agent unreachable, the License refused ([`exit::BLOCKED`]) or invalid
/// ([`exit::REFUSED`]).
pub fn run(args: &LicenseArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        LicenseCommand::Import(a) => import(a, out),
        LicenseCommand::Show(a) => show(a, out),
    }
}

fn import(args: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let source = if args.file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_STDIN_LICENSE + 1)
            .read_to_string(&mut text)
            .map_err(|e| {
                Failure::new(
                    exit::REFUSED,
                    format!("cannot read the License from standard input: {e}"),
                )
            })?;
        if text.len() as u64 > MAX_STDIN_LICENSE {
            return Err(
                Failure::new(exit::REFUSED, "the input is larger than any License can be")
                    .hint("pass the file's path instead of `-`")
                    .into(),
            );
        }
        if text.trim().is_empty() {
            return Err(Failure::new(exit::REFUSED, "standard input holds no License").into());
        }
        LicenseSource::Content {
            content: LicenseText(text),
        }
    } else {
        let path = std::path::absolute(PathBuf::from(&args.file)).map_err(|e| {
            Failure::new(exit::REFUSED, format!("cannot resolve {}: {e}", args.file))
        })?;
        if !path.is_file() {
            return Err(
                Failure::new(exit::REFUSED, format!("{} is not a file", path.display()))
                    .hint("give the path of the .lic file your vendor or KooGallery delivered")
                    .into(),
            );
        }
        LicenseSource::Path { path }
    };
    let state = runtime()?.block_on(async {
        let client = connect("").await?;
        let reply = client
            .call(Call::ImportLicense {
                product_id: args.product.clone(),
                source,
            })
            .await
            .map_err(client_failure)?;
        client.close().await;
        match reply {
            Reply::ProductState(ps) => Ok(ps),
            other => Err(Failure::new(
                exit::FAILURE,
                format!("the agent answered something unexpected: {other:?}"),
            )),
        }
    })?;
    if state.state == LicenseState::Blocked {
        crate::status::write_product(&state, out)?;
        return Err(Failure::new(
            exit::BLOCKED,
            format!(
                "the License was not accepted for {}: {}",
                state.product_id,
                state
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", state.reason))
            ),
        )
        .hint("see the next step above")
        .into());
    }
    writeln!(out, "License imported and verified.")?;
    crate::status::write_product(&state, out)?;
    Ok(())
}

fn show(args: &ShowArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let snapshot = runtime()?.block_on(async {
        let client = connect("").await?;
        let s = client.status().await.map_err(client_failure)?;
        client.close().await;
        Ok::<_, Failure>(s)
    })?;
    let products: Vec<_> = match &args.product {
        Some(p) => vec![pick_product(&snapshot, Some(p), None)?],
        None => snapshot
            .products
            .iter()
            .filter(|p| p.model == Some(ProductModel::LicenseFile))
            .cloned()
            .collect(),
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &products)?;
        writeln!(out)?;
        return Ok(());
    }
    if products.is_empty() {
        writeln!(out, "No License-file products are configured.")?;
        return Ok(());
    }
    for (i, p) in products.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        crate::status::write_product(p, out)?;
    }
    Ok(())
}
