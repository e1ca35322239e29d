//! `tessera check-updates` and `tessera accept-update`: the signed update manifests the agent
//! follows per product.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use tessera_ipc::{Call, Reply};
use tessera_types::{Event, EventKind};

use crate::agent::{Failure, client_failure, connect, exit, pick_product, runtime};

/// Arguments of `tessera check-updates` and `tessera accept-update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The product; needed only when the agent knows several.
    #[arg(long, value_name = "PRODUCT_ID")]
    pub product: Option<String>,
}

async fn product_id(named: Option<&str>) -> Result<String, Failure> {
    let cli = connect("").await?;
    let snapshot = cli.status().await.map_err(client_failure)?;
    cli.close().await;
    Ok(pick_product(&snapshot, named, None)?.product_id)
}

/// Asks whether a newer version of the product is published (`CheckNewVersions`).
///
/// # Errors
/// [`Failure`] when the agent cannot be reached or does not answer.
pub fn check(args: &UpdateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (pid, available) = runtime()?.block_on(async {
        let pid = product_id(args.product.as_deref()).await?;
        // CheckNewVersions is the application's call: ask as one of the product's applications.
        let app = connect(&pid).await?;
        let mut events = app.events();
        app.call(Call::CheckNewVersions)
            .await
            .map_err(client_failure)?;
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = events.next().await {
                if ev.kind() == Some(EventKind::UpgradeNotice)
                    && let Ok(Event::UpgradeNotice { available }) = ev.event()
                {
                    return Some(available);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        app.close().await;
        let available = answer.ok_or_else(|| {
            Failure::new(exit::FAILURE, "the agent did not answer the update check")
                .hint("see `tessera logs`")
        })?;
        Ok::<_, Failure>((pid, available))
    })?;
    if available {
        writeln!(
            out,
            "{pid}: a newer version is available. Accept it with `tessera accept-update --product {pid}`; \
             running applications are told to save and exit."
        )?;
    } else {
        writeln!(out, "{pid}: up to date.")?;
    }
    Ok(())
}

/// Accepts the pending upgrade of the product; its applications get `EVENT_UPDATE`.
///
/// # Errors
/// [`Failure`] with [`exit::REFUSED`] when no upgrade is pending.
pub fn accept(args: &UpdateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let pid = runtime()?.block_on(async {
        let pid = product_id(args.product.as_deref()).await?;
        let cli = connect("").await?;
        let reply = cli
            .call(Call::AcceptUpdate {
                product_id: Some(pid.clone()),
            })
            .await
            .map_err(|e| {
                let f = client_failure(e);
                if f.code == exit::REFUSED {
                    f.hint(
                        "run `tessera check-updates` first: only a found upgrade can be accepted",
                    )
                } else {
                    f
                }
            })?;
        cli.close().await;
        match reply {
            Reply::Ack => Ok(pid),
            other => Err(Failure::new(
                exit::FAILURE,
                format!("the agent answered something unexpected: {other:?}"),
            )),
        }
    })?;
    writeln!(
        out,
        "{pid}: upgrade accepted; its running applications were told to update."
    )?;
    Ok(())
}
