//! The `tessera` command line.
//!
//! One module per subcommand; [`Command`] lists them and [`run`] dispatches. `main.rs` only
//! parses the arguments, calls [`run`] and prints the error chain. Subcommands that talk to the
//! agent (`status`, `activate`, `license`, …) join [`Command`] as the agent grows;
//! `fingerprint` works offline, straight from the hardware.

use std::io::Write;

use clap::{Parser, Subcommand};

pub mod fingerprint;

/// Tessera: License client for CAD/CAE software sold through Huawei Cloud KooGallery.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show this device's identity: the KooGallery fingerprint to paste when you buy, the
    /// hardware id a License is bound to, and the environment (bare metal, VM, container).
    #[command(long_about = fingerprint::LONG_ABOUT)]
    Fingerprint(fingerprint::FingerprintArgs),
}

/// Runs a parsed command line, writing its output to `out`.
///
/// # Errors
/// When the command fails or its output cannot be written.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Fingerprint(args) => fingerprint::run(&args, out),
    }
}
