//! Linux: sysfs and procfs under `/`, with `sysinfo` for the descriptive facts.

use crate::identity::{CollectOptions, Collected, collect_tree};
use crate::probe::FsProbe;
use crate::report::SystemInfo;

pub(crate) fn collect_raw(options: &CollectOptions) -> Collected {
    let probe = FsProbe::local();
    collect_tree(&probe, options, system_info())
}

/// CPU brand, host name and OS from `sysinfo`, which knows every distribution's quirks.
fn system_info() -> SystemInfo {
    use sysinfo::{CpuRefreshKind, RefreshKind, System};
    let cpu_brand =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()))
            .ok()
            .and_then(|s| s.cpus().first().map(|c| c.brand().trim().to_owned()))
            .filter(|b| !b.is_empty());
    SystemInfo {
        cpu_brand,
        host_name: System::host_name().ok(),
        os: System::long_os_version().ok(),
    }
}
