//! `tessera-sandbox`: sim + ISV + agent + demo app on loopback, through the whole story.

use std::process::ExitCode;

use clap::Parser;
use tessera_sandbox::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("tessera-sandbox")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera-sandbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera-sandbox: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
