//! `tessera fingerprint [--json] [--explain]`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use tessera_fingerprint::{
    CollectOptions, ComponentReport, DeviceIdentity, Environment, FsProbe, HardwareId,
    KooGalleryFingerprint, MAX_REQUEST_FORM_CHARS, OverrideStatus, ReadStatus, SystemInfo,
    collect_local_with, collect_with, default_override_path,
};

pub(crate) const LONG_ABOUT: &str = "\
Show this device's identity.

The KooGallery fingerprint (MAC|disk|board|CPU) is what you paste into KooGallery when you buy or
apply for a License; a License is bound to it. The hardware id holds one salted hash per
component (machine id, disks, network adapters, CPU, …) so raw serials never leave the machine;
a License still matches when one component changes (a disk swapped, a network card replaced).

Only physical network adapters and fixed disks count: VPN, Docker, bridges, USB dongles, docks and
removable media never change the fingerprint. Files only root can read (DMI serials on Linux) are
never used, so root and every user get the same result.

Nothing is sent anywhere. Use --explain to see every source, whether it was readable and why
something was left out.";

/// Arguments of `tessera fingerprint`.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also list every component with its source, its value and whether it was readable.
    #[arg(long)]
    pub explain: bool,
    /// The signed device override file to report on.
    #[arg(long, value_name = "FILE", env = "TESSERA_DEVICE_OVERRIDE")]
    pub override_file: Option<PathBuf>,
    /// Read a Linux sysfs/procfs tree copied from another machine instead of this one
    /// (support cases).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    fingerprint: &'a KooGalleryFingerprint,
    /// Present only when the fingerprint is longer than getLicenseAsync accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_form: Option<KooGalleryFingerprint>,
    hardware_id_summary: String,
    hardware_id: &'a HardwareId,
    environment: &'a Environment,
    override_file: &'a OverrideStatus,
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<&'a [ComponentReport]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a SystemInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
}

/// Collects and prints the identity.
///
/// # Errors
/// When the override path is unusable or the output cannot be written.
pub fn run(args: &FingerprintArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut options = CollectOptions::default();
    if let Some(path) = &args.override_file {
        let absolute = std::path::absolute(path)
            .with_context(|| format!("cannot resolve override file path {}", path.display()))?;
        options.override_path = absolute.to_string_lossy().into_owned();
    }
    let identity = match &args.root {
        Some(root) => {
            anyhow::ensure!(root.is_dir(), "{} is not a directory", root.display());
            if args.override_file.is_none() {
                default_override_path().clone_into(&mut options.override_path);
            }
            collect_with(&FsProbe::new(root), &options)
        }
        None => collect_local_with(&options),
    };
    if args.json {
        write_json(&identity, args.explain, out)
    } else {
        write_text(&identity, args.explain, out)
    }
    .context("cannot write the output")
}

fn request_form(identity: &DeviceIdentity) -> Option<KooGalleryFingerprint> {
    (identity.fingerprint.as_str().chars().count() > MAX_REQUEST_FORM_CHARS)
        .then(|| identity.fingerprint.to_request_form())
}

fn write_json(
    identity: &DeviceIdentity,
    explain: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let report = JsonReport {
        fingerprint: &identity.fingerprint,
        request_form: request_form(identity),
        hardware_id_summary: identity.hardware_id.summary(),
        hardware_id: &identity.hardware_id,
        environment: &identity.environment,
        override_file: &identity.override_status,
        warnings: &identity.warnings,
        components: explain.then_some(identity.components.as_slice()),
        system: explain.then_some(&identity.system),
        source: explain.then_some(identity.source.as_str()),
    };
    serde_json::to_writer_pretty(&mut *out, &report)?;
    writeln!(out)
}

fn write_text(
    identity: &DeviceIdentity,
    explain: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(out, "KooGallery fingerprint (paste this into KooGallery):")?;
    writeln!(out, "  {}", identity.fingerprint)?;
    if let Some(form) = request_form(identity) {
        writeln!(
            out,
            "  request form (≤ {MAX_REQUEST_FORM_CHARS} characters, sent to the ISV):"
        )?;
        writeln!(out, "  {form}")?;
    }
    let hwid = &identity.hardware_id;
    writeln!(
        out,
        "Hardware id:  {} ({} components)",
        hwid.summary(),
        hwid.len()
    )?;
    writeln!(out, "Environment:  {}", identity.environment)?;
    match &identity.override_status {
        OverrideStatus::Absent { .. } => {}
        OverrideStatus::Unverified { path, file } => writeln!(
            out,
            "Override:     {} from {path} (signed by key {}, not verified yet)",
            file.payload.device_id, file.signature.key_id
        )?,
        OverrideStatus::Invalid { path, reason } => {
            writeln!(out, "Override:     {path} is unusable: {reason}")?;
        }
    }
    for warning in &identity.warnings {
        writeln!(out, "Note:         {warning}")?;
    }
    if !explain {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "Components (read from {}):", identity.source)?;
    for c in &identity.components {
        let status = match c.status {
            ReadStatus::Used => "used",
            ReadStatus::Absent => "absent",
            ReadStatus::Unreadable => "unreadable",
            ReadStatus::Excluded => "excluded",
        };
        write!(
            out,
            "  [{status:<10}] {:<18} {}",
            c.kind.to_string(),
            c.source
        )?;
        if let Some(v) = &c.value {
            write!(out, " = {v}")?;
        }
        if let Some(r) = &c.reason {
            write!(out, "  ({r})")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Environment evidence:")?;
    if identity.environment.evidence.is_empty() {
        writeln!(out, "  none: no sign of a hypervisor or a container")?;
    }
    for e in &identity.environment.evidence {
        writeln!(out, "  {e}")?;
    }
    writeln!(out, "Hardware id components (salt {}):", hwid.salt_id)?;
    for c in &hwid.components {
        writeln!(out, "  {:<18} {}", c.kind.to_string(), c.digest)?;
    }
    let sys = &identity.system;
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".to_owned());
    writeln!(out, "System (not part of the identity):")?;
    writeln!(out, "  CPU  {}", show(&sys.cpu_brand))?;
    writeln!(out, "  host {}", show(&sys.host_name))?;
    writeln!(out, "  OS   {}", show(&sys.os))
}
