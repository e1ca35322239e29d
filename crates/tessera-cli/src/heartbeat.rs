//! `tessera heartbeat`: have the agent check an authorization code with the marketplace now.
//!
//! The agent's IPC has no "check now" call: it checks a code on the first use of its product
//! each day and every 12 hours while the product's applications run. This command counts as a
//! use of the product (it connects as one of its applications), so the day's first check runs
//! at once, and waits for the agent's `EVENT_HEARTBEAT_REPLY`. When no check is due it says
//! when the code was last verified.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use tessera_types::state::ProductModel;
use tessera_types::{Event, EventKind};

use crate::agent::{Failure, client_failure, connect, exit, pick_product, runtime, when};

/// Arguments of `tessera heartbeat`.
#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    /// The product; needed only when several products use authorization codes.
    #[arg(long, value_name = "PRODUCT_ID")]
    pub product: Option<String>,
    /// Seconds to wait for the marketplace's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub wait: u64,
}

/// Triggers the day's check and prints its result.
///
/// # Errors
/// [`Failure`] with [`exit::BLOCKED`] when the marketplace says the code is not alive,
/// [`exit::UNAVAILABLE`] when it cannot be reached.
pub fn run(args: &HeartbeatArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let outcome = runtime()?.block_on(async {
        let cli = connect("").await?;
        let snapshot = cli.status().await.map_err(client_failure)?;
        cli.close().await;
        let product = pick_product(
            &snapshot,
            args.product.as_deref(),
            Some(ProductModel::AuthorizationCode),
        )?;
        let app = connect(&product.product_id).await?;
        let mut events = app.events();
        let wait = Duration::from_secs(args.wait);
        let reply = tokio::time::timeout(wait, async {
            while let Some(ev) = events.next().await {
                if ev.kind() == Some(EventKind::HeartbeatReply)
                    && let Ok(Event::HeartbeatReply {
                        product_id,
                        ok,
                        status,
                        next_check_at,
                    }) = ev.event()
                    && product_id == product.product_id
                {
                    return Some((ok, status, next_check_at));
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let after = app.status().await.map_err(client_failure)?;
        app.close().await;
        Ok::<_, Failure>((product.product_id, reply, after))
    })?;
    let (pid, reply, snapshot) = outcome;
    let state = snapshot.product(&pid).cloned();
    match reply {
        Some((true, status, next)) => {
            writeln!(
                out,
                "{pid}: the marketplace answered {}.",
                status.as_deref().unwrap_or("ok")
            )?;
            if let Some(n) = next {
                writeln!(out, "Next check: {}", when(n))?;
            }
        }
        Some((false, status, _)) => {
            let failure = match status {
                Some(s) => Failure::new(
                    exit::BLOCKED,
                    format!("{pid}: the marketplace says the code is {s}"),
                )
                .hint("renew or re-buy in KooGallery, then run `tessera heartbeat` again"),
                None => Failure::new(
                    exit::UNAVAILABLE,
                    format!("{pid}: the marketplace could not be reached"),
                )
                .hint(
                    "the agent retries with backoff and the offline grace period runs meanwhile; \
                     `tessera doctor` checks the network",
                ),
            };
            return Err(failure.into());
        }
        None => {
            let last = state
                .as_ref()
                .and_then(|p| p.last_verified_at)
                .map_or_else(|| "never".to_owned(), when);
            writeln!(
                out,
                "{pid}: no check was due (the agent checks on the first use each day and every \
                 12 hours while the product runs). Last verified: {last}."
            )?;
        }
    }
    if let Some(p) = &state {
        crate::status::write_product(p, out)?;
    }
    Ok(())
}
