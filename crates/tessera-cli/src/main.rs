use std::process::ExitCode;

use clap::Parser;
use tessera_cli::{Cli, exit_code, hint, is_broken_pipe, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    match run(cli, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stops early (`tessera status --json | head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {e:#}");
            if let Some(h) = hint(&e) {
                eprintln!("  what to do: {h}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}
