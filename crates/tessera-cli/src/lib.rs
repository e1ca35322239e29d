//! The `tessera` command line.
//!
//! One module per subcommand; [`Command`] lists them and [`run`] dispatches. `main.rs` only
//! parses the arguments, calls [`run`], prints the error (with what to do next) and exits with
//! the code [`agent::exit`] documents. Every command but `fingerprint` talks to the agent over
//! `tessera-ipc`; `fingerprint` works offline, straight from the hardware.

use std::io::Write;

use clap::{Parser, Subcommand};

pub mod activate;
pub mod agent;
mod dirs;
pub mod doctor;
pub mod fingerprint;
pub mod heartbeat;
pub mod license;
pub mod logs;
pub mod status;
pub mod updates;

pub use agent::{Failure, exit};

const AFTER_HELP: &str = "\
Exit status: 0 ok · 1 failure (doctor: a check failed) · 2 usage · 3 agent unreachable ·
4 refused by the agent · 5 blocked or License refused · 6 marketplace unavailable, retry later.
The agent's socket comes from TESSERA_SOCKET, else the per-user default.";

/// Tessera: License client for CAD/CAE software sold through Huawei Cloud KooGallery.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, propagate_version = true, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every product's License state (Active / Grace / Blocked), why, and what to do.
    Status(status::StatusArgs),
    /// Activate a KooGallery authorization code (the `PL…` code from your order).
    Activate(activate::ActivateArgs),
    /// Import or show License files (Licenses issued for this device).
    License(license::LicenseArgs),
    /// Show this device's identity: the KooGallery fingerprint to paste when you buy, the
    /// hardware id a License is bound to, and the environment (bare metal, VM, container).
    #[command(long_about = fingerprint::LONG_ABOUT)]
    Fingerprint(fingerprint::FingerprintArgs),
    /// Have the agent check an authorization code with the marketplace now (the day's check).
    Heartbeat(heartbeat::HeartbeatArgs),
    /// Ask whether a newer version of a product is published.
    CheckUpdates(updates::UpdateArgs),
    /// Accept the pending upgrade of a product; its running applications are told to update.
    AcceptUpdate(updates::UpdateArgs),
    /// Show the end of the agent's log, or change its log level.
    Logs(logs::LogsArgs),
    /// Check the agent, socket, keyring, clock, marketplace and product descriptors, and say
    /// what to do about each problem.
    Doctor(doctor::DoctorArgs),
}

/// Runs a parsed command line, writing its output to `out`.
///
/// # Errors
/// When the command fails; a [`Failure`] in the chain carries the exit code and a hint.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Status(args) => status::run(&args, out),
        Command::Activate(args) => activate::run(&args, out),
        Command::License(args) => license::run(&args, out),
        Command::Fingerprint(args) => fingerprint::run(&args, out),
        Command::Heartbeat(args) => heartbeat::run(&args, out),
        Command::CheckUpdates(args) => updates::check(&args, out),
        Command::AcceptUpdate(args) => updates::accept(&args, out),
        Command::Logs(args) => logs::run(&args, out),
        Command::Doctor(args) => doctor::run(&args, out),
    }
}

/// The exit code for an error from [`run`]: the [`Failure`]'s, else [`exit::FAILURE`].
#[must_use]
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<Failure>()
        .map_or(exit::FAILURE, |f| f.code)
}

/// What to do next, when the error says.
#[must_use]
pub fn hint(error: &anyhow::Error) -> Option<&str> {
    error
        .downcast_ref::<Failure>()
        .and_then(|f| f.hint.as_deref())
}

/// Whether the error is only that standard output was closed early.
#[must_use]
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                e.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            })
            == Some(std::io::ErrorKind::BrokenPipe)
    })
}
