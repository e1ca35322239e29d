//! `tessera activate CODE|-`: activate a KooGallery authorization code (Model A).

use std::io::{Read, Write};

use clap::Args;
use tessera_ipc::Call;
use tessera_ipc::proto::AuthCode;
use tessera_types::LicenseState;
use tessera_types::state::ProductModel;
use zeroize::Zeroizing;

use crate::agent::{Failure, client_failure, connect, exit, pick_product, runtime};

/// Arguments of `tessera activate`.
#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The authorization code (`PL…`), or `-` to read it from standard input (keeps it out of
    /// the shell history).
    #[arg(value_name = "CODE")]
    pub code: String,
    /// The product the code is for; needed only when several products use codes.
    #[arg(long, value_name = "PRODUCT_ID")]
    pub product: Option<String>,
}

/// Activates the code through the agent and prints the product's new state.
///
/// # Errors
/// [`Failure`] with [`exit::REFUSED`] for a code the marketplace refuses, [`exit::UNAVAILABLE`]
/// when the marketplace cannot be reached.
pub fn run(args: &ActivateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let code = if args.code == "-" {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .take(1024)
            .read_to_string(&mut text)
            .map_err(|e| {
                Failure::new(
                    exit::FAILURE,
                    format!("cannot read the code from standard input: {e}"),
                )
            })?;
        Zeroizing::new(text.trim().to_owned())
    } else {
        Zeroizing::new(args.code.trim().to_owned())
    };
    if code.is_empty() {
        return Err(
            Failure::new(exit::REFUSED, "the authorization code is empty")
                .hint("copy the code from KooGallery (it starts with PL)")
                .into(),
        );
    }
    let state = runtime()?.block_on(async {
        let client = connect("").await?;
        let snapshot = client.status().await.map_err(client_failure)?;
        let product = pick_product(
            &snapshot,
            args.product.as_deref(),
            Some(ProductModel::AuthorizationCode),
        )?;
        let reply = client
            .call(Call::ActivateCode {
                product_id: Some(product.product_id.clone()),
                code: AuthCode(code.to_string()),
            })
            .await
            .map_err(|e| {
                let f = client_failure(e);
                if f.code == exit::REFUSED {
                    f.hint(
                        "copy the code again from your KooGallery order (it starts with PL); a \
                         new code must first be accepted (确认收货) in KooGallery",
                    )
                } else {
                    f
                }
            })?;
        client.close().await;
        match reply {
            tessera_ipc::Reply::ProductState(ps) => Ok(ps),
            other => Err(Failure::new(
                exit::FAILURE,
                format!("the agent answered something unexpected: {other:?}"),
            )),
        }
    })?;
    writeln!(out, "Activated. {}:", state.product_id)?;
    crate::status::write_product(&state, out)?;
    if state.state == LicenseState::Blocked {
        return Err(Failure::new(
            exit::BLOCKED,
            format!("the code is activated but {} is blocked", state.product_id),
        )
        .hint("see the next step above")
        .into());
    }
    Ok(())
}
