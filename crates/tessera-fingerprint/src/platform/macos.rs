//! macOS: IOKit through `ioreg`, plus `networksetup`, `system_profiler` and `sysctl`.
//!
//! Not built by this repository's CI (Linux only); the parser it feeds is tested there.

use std::process::{Command, Stdio};

use crate::identity::{CollectOptions, Collected, read_override};

use super::macos_parse::{COMMANDS, assemble};

fn run(program: &str, args: &[&str]) -> String {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => {
            tracing::warn!(program, error = %e, "identity source could not be started");
            String::new()
        }
    }
}

pub(crate) fn collect_raw(options: &CollectOptions) -> Collected {
    let outputs: Vec<String> = COMMANDS
        .iter()
        .map(|(program, args)| run(program, args))
        .collect();
    let (components, environment, system) =
        assemble(&outputs[0], &outputs[1], &outputs[2], &outputs[3]);
    let path = options.override_path.clone();
    let override_status = read_override(
        &path,
        || std::path::Path::new(&path).exists(),
        || std::fs::read(&path),
    );
    Collected {
        components,
        environment,
        system,
        override_status,
        source: "IOKit (ioreg), networksetup, system_profiler, sysctl".to_owned(),
    }
}
