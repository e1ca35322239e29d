//! `tessera logs`: the end of the agent's log file, or a new log filter for the running agent.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use tessera_ipc::{Call, Reply};

use crate::agent::{Failure, client_failure, connect, exit, runtime};

/// Bytes read from the end of the log file at most.
const TAIL_BYTES: u64 = 1024 * 1024;

/// Arguments of `tessera logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// How many of the last lines to print.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// Print the log directory and exit.
    #[arg(long)]
    pub path: bool,
    /// Change the running agent's log filter instead (e.g. `info,tessera_agent=debug`).
    #[arg(long, value_name = "FILTER")]
    pub level: Option<String>,
}

/// Prints the end of the newest log file, or changes the agent's filter.
///
/// # Errors
/// [`Failure`] when there is no log yet or the agent refuses the filter.
pub fn run(args: &LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(filter) = &args.level {
        runtime()?.block_on(async {
            let client = connect("").await?;
            let reply = client
                .call(Call::SetLogLevel {
                    filter: filter.clone(),
                })
                .await
                .map_err(client_failure)?;
            client.close().await;
            match reply {
                Reply::Ack => Ok(()),
                other => Err(Failure::new(
                    exit::FAILURE,
                    format!("the agent answered something unexpected: {other:?}"),
                )),
            }
        })?;
        writeln!(out, "The agent now logs with filter {filter:?}.")?;
        return Ok(());
    }
    let dir = crate::dirs::state_dir()
        .map(|d| d.join("logs"))
        .ok_or_else(|| {
            Failure::new(exit::FAILURE, "cannot locate the agent's state directory")
                .hint("set TESSERA_STATE_DIR to the agent's state directory")
        })?;
    if args.path {
        writeln!(out, "{}", dir.display())?;
        return Ok(());
    }
    let file = newest_log(&dir).ok_or_else(|| {
        Failure::new(
            exit::FAILURE,
            format!("no agent log file in {}", dir.display()),
        )
        .hint(
            "the agent writes one once it has run; under systemd also see \
             `journalctl --user -u tessera-agent`",
        )
    })?;
    let text = tail(&file, args.lines).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn newest_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("tessera-agent") && name.ends_with("log")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// The last `lines` lines of `path`, reading at most [`TAIL_BYTES`].
pub(crate) fn tail(path: &Path, lines: usize) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    f.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    // A partial first line (we started mid-file) is dropped.
    let skip_partial = usize::from(start > 0);
    let from = all
        .len()
        .saturating_sub(lines)
        .max(skip_partial.min(all.len()));
    let mut s = all[from..].join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_the_last_lines_and_skips_a_partial_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.log");
        std::fs::write(&small, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&small, 2).unwrap(), "b\nc\n");
        assert_eq!(tail(&small, 10).unwrap(), "a\nb\nc\n");
        assert_eq!(tail(&small, 0).unwrap(), "");

        // Longer than the window: the cut first line must not appear.
        let big = dir.path().join("big.log");
        let line = "x".repeat(1000);
        let text: String = (0..2000).map(|i| format!("{i:04}{line}\n")).collect();
        std::fs::write(&big, &text).unwrap();
        let all = tail(&big, usize::MAX).unwrap();
        assert!(
            all.lines().all(|l| l.len() == 1004),
            "a partial line leaked"
        );
        assert!(all.ends_with(&format!("1999{line}\n")));
    }
}
