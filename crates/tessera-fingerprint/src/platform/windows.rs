//! Windows: one PowerShell/CIM query (see [`super::windows_parse::INVENTORY_SCRIPT`]).
//!
//! Not built by this repository's CI (Linux only); the parser it feeds is tested there.

use std::os::windows::process::CommandExt;
use std::process::{Command, Stdio};

use crate::environment::{Environment, EnvironmentKind};
use crate::identity::{CollectOptions, Collected, read_override};
use crate::matching::ComponentKind;
use crate::report::{ComponentReport, ReadStatus, SystemInfo};

use super::windows_parse::{INVENTORY_SCRIPT, parse_inventory};

/// No console window flashes up when the tray or the agent asks.
const CREATE_NO_WINDOW: u32 = 0x0800_0000;

pub(crate) fn collect_raw(options: &CollectOptions) -> Collected {
    let output = Command::new("powershell.exe")
        .args([
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-Command",
            INVENTORY_SCRIPT,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .creation_flags(CREATE_NO_WINDOW)
        .output();
    let parsed = match output {
        Ok(out) if out.status.success() => parse_inventory(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => Err(format!("PowerShell inventory failed with {}", out.status)),
        Err(e) => Err(format!("PowerShell could not be started: {e}")),
    };
    let (components, environment, system) = parsed.unwrap_or_else(|why| {
        tracing::warn!(%why, "no Windows inventory");
        let components = ComponentKind::ALL
            .iter()
            .filter(|k| {
                !matches!(
                    k,
                    ComponentKind::ContainerInstance | ComponentKind::OverrideId
                )
            })
            .map(|k| ComponentReport::not_used(*k, "WMI/CIM", ReadStatus::Unreadable, why.clone()))
            .collect();
        let environment = Environment {
            kind: EnvironmentKind::BareMetal,
            hypervisor: None,
            container_runtime: None,
            container_id: None,
            evidence: Vec::new(),
            warnings: vec![format!("environment unknown: {why}")],
        };
        (components, environment, SystemInfo::default())
    });
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
        source: "WMI/CIM (PowerShell)".to_owned(),
    }
}
