//! The command line of `tessera-sandbox`; `main.rs` only parses it and prints the error.

use std::io::Write as _;
use std::time::Instant;

use clap::Parser;

use crate::{Narrator, SandboxError, World, WorldOptions, run_story};

const LONG_ABOUT: &str = "\
Runs the whole Tessera story on this machine: koogallery-sim (the marketplace), tessera-isv (the
ISV's License issuer) and tessera-agent start on loopback with a fresh test CA, fresh keys and all
state in a temporary directory; two demo apps then go through purchase, fingerprint, License
issue and verification, checkout, authorization code activation, heartbeat, expiry, renewal and
an upgrade on an accelerated clock. One numbered line per step says what was checked.

Exit status: 0 when every step held; 1 with the failing step otherwise (or when a component
could not start).

With --stay everything keeps running after the story, and the lines that point `tessera` (and
`tessera-tray`) at this agent are printed; Ctrl-C stops it and removes the temporary directory.";

/// Arguments of `tessera-sandbox`.
#[derive(Debug, Parser)]
#[command(name = "tessera-sandbox", version, about = "Tessera's whole License story on loopback, in one command", long_about = LONG_ABOUT)]
pub struct Cli {
    /// Keep the marketplace, the ISV and the agent running after the story (Ctrl-C stops them).
    #[arg(long)]
    pub stay: bool,
    /// RSA key size of the fresh ISV License key and manifest key.
    #[arg(long, default_value_t = 3072, value_parser = clap::value_parser!(u16).range(2048..=4096))]
    pub key_bits: u16,
    /// Log filter for the components' own logs on stderr (`tracing` env-filter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    pub log: String,
}

/// Starts the world, runs the story, and with `--stay` keeps the world up until Ctrl-C.
///
/// # Errors
/// The component that could not start, or the first step that did not hold.
pub async fn run(cli: Cli) -> Result<(), SandboxError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut narrator = Narrator::new(|line| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    });
    let started = Instant::now();
    narrator.say(&format!(
        "tessera-sandbox: generating {}-bit keys and starting koogallery-sim, tessera-isv and tessera-agent…",
        cli.key_bits
    ));
    let options = WorldOptions {
        key_bits: usize::from(cli.key_bits),
        ..WorldOptions::default()
    };
    let world = World::start(&options).await?;
    narrator.say(&format!(
        "   state in {} (removed on exit)",
        world.dir().display()
    ));
    let outcome = run_story(&world, &mut narrator).await;
    match &outcome {
        Ok(()) => narrator.say(&format!(
            "All {} steps held ({:.1} s).",
            narrator.steps().len(),
            started.elapsed().as_secs_f64()
        )),
        Err(e) => narrator.say(&format!("FAILED: {e}")),
    }
    if cli.stay && outcome.is_ok() {
        let ahead = world.clock.offset();
        narrator.say(&format!(
            "Everything stays up. The sandbox clock runs {} days ahead of this computer's \
             (`tessera doctor` notices). Point the CLI and the tray at this agent with:",
            ahead.whole_days()
        ));
        for line in world.env_lines() {
            narrator.say(&format!("    {line}"));
        }
        narrator.say(&format!(
            "    # marketplace: {} (control API under /sim/control, CA {})",
            world.sim.primary_url(),
            world.sim.ca_path().display()
        ));
        narrator.say("Press Ctrl-C to stop.");
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut every = tokio::time::interval(crate::world::STAY_TICK);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => break,
                () = world.agent.stop_requested() => break,
                _ = every.tick() => world.agent.tick().await,
            }
        }
        narrator.say("Stopping.");
    }
    world.shutdown().await;
    outcome
}
