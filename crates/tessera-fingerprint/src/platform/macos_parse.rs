//! Parsing of the macOS sources: `ioreg`, `networksetup`, `system_profiler`, `sysctl`.
//!
//! Compiled on every platform so the rules are tested on the Linux CI; `macos.rs` runs the
//! commands (all work for an unprivileged user) and hands their output to [`assemble`].

use crate::environment::{Environment, EnvironmentKind};
use crate::matching::ComponentKind;
use crate::report::{ComponentReport, ReadStatus, SystemInfo};

/// The commands `macos.rs` runs, in the order [`assemble`] takes their outputs.
pub const COMMANDS: [(&str, &[&str]); 4] = [
    ("/usr/sbin/ioreg", &["-rd1", "-c", "IOPlatformExpertDevice"]),
    ("/usr/sbin/networksetup", &["-listallhardwareports"]),
    (
        "/usr/sbin/system_profiler",
        &["SPNVMeDataType", "SPSerialATADataType", "-json"],
    ),
    (
        "/usr/sbin/sysctl",
        &[
            "machdep.cpu.signature",
            "machdep.cpu.feature_bits",
            "machdep.cpu.brand_string",
            "hw.cpufamily",
            "kern.hv_vmm_present",
            "kern.hostname",
            "kern.osproductversion",
        ],
    ),
];

/// `"Key" = "value"` and `"key" = <"value">` lines of `ioreg` output.
fn ioreg_value(text: &str, key: &str) -> Option<String> {
    let quoted = format!("\"{key}\"");
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == quoted).then(|| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim_matches('"')
                .to_owned()
        })
    })
}

fn sysctl_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn mac(raw: &str) -> Option<String> {
    let octets: Vec<u8> = raw
        .trim()
        .split(':')
        .map(|o| u8::from_str_radix(o, 16).ok())
        .collect::<Option<_>>()?;
    (octets.len() == 6 && octets.iter().any(|&o| o != 0) && octets[0] & 1 == 0).then(|| {
        octets
            .iter()
            .map(|o| format!("{o:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

fn hardware_ports(text: &str) -> Vec<ComponentReport> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let get = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
        };
        let (Some(port), Some(device)) = (get("Hardware Port:"), get("Device:")) else {
            continue;
        };
        let source = format!("networksetup: {port} ({device})");
        let lower = port.to_ascii_lowercase();
        let excluded = [
            "bridge",
            "usb",
            "iphone",
            "bluetooth",
            "thunderbolt",
            "vpn",
            "tether",
        ]
        .iter()
        .find(|w| lower.contains(**w));
        let report = if let Some(word) = excluded {
            let why = match *word {
                "usb" | "iphone" | "tether" => "USB or tethered adapter (moves between machines)",
                "thunderbolt" => "Thunderbolt port or bridge (virtual or on a dock)",
                "bluetooth" => "Bluetooth PAN",
                _ => "virtual interface",
            };
            ComponentReport::not_used(ComponentKind::Mac, source, ReadStatus::Excluded, why)
        } else {
            // networksetup shows the hardware address, never Wi-Fi's private per-network one.
            match get("Ethernet Address:").and_then(mac) {
                Some(m) => ComponentReport::used(ComponentKind::Mac, source, m),
                None => ComponentReport::not_used(
                    ComponentKind::Mac,
                    source,
                    ReadStatus::Unreadable,
                    "no hardware address",
                ),
            }
        };
        out.push(report);
    }
    out
}

fn disks(json: &str) -> Vec<ComponentReport> {
    fn walk(v: &serde_json::Value, out: &mut Vec<ComponentReport>) {
        match v {
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => {
                if let Some(serial) = map.get("device_serial").and_then(|s| s.as_str()) {
                    let name = map.get("_name").and_then(|n| n.as_str()).unwrap_or("disk");
                    let source = format!("system_profiler device_serial ({name})");
                    let yes = |k: &str| map.get(k).and_then(|x| x.as_str()) == Some("yes");
                    let serial = serial.trim();
                    out.push(if yes("removable_media") || yes("detachable_drive") {
                        ComponentReport::not_used(
                            ComponentKind::Disk,
                            source,
                            ReadStatus::Excluded,
                            "removable or external",
                        )
                    } else if serial.is_empty() {
                        ComponentReport::not_used(
                            ComponentKind::Disk,
                            source,
                            ReadStatus::Unreadable,
                            "empty serial",
                        )
                    } else {
                        ComponentReport::used(ComponentKind::Disk, source, serial.to_owned())
                    });
                }
                map.values().for_each(|x| walk(x, out));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) => walk(&v, &mut out),
        Err(e) => out.push(ComponentReport::not_used(
            ComponentKind::Disk,
            "system_profiler",
            ReadStatus::Unreadable,
            format!("output is not JSON: {e}"),
        )),
    }
    out
}

/// The CPU id: on Intel Macs Windows' ProcessorId form (CPUID leaf 1 EDX then EAX, which
/// `sysctl` exposes), on Apple silicon the CPU family code.
fn cpu_id(sysctl: &str) -> ComponentReport {
    let num = |k: &str| sysctl_value(sysctl, k).and_then(|v| v.parse::<u64>().ok());
    if let (Some(eax), Some(features)) = (
        num("machdep.cpu.signature"),
        num("machdep.cpu.feature_bits"),
    ) {
        // xnu keeps ECX in the high half and EDX in the low half.
        let edx = features & 0xFFFF_FFFF;
        return ComponentReport::used(
            ComponentKind::CpuId,
            "sysctl machdep.cpu.feature_bits, machdep.cpu.signature",
            format!("{edx:08X}{:08X}", eax & 0xFFFF_FFFF),
        );
    }
    match num("hw.cpufamily") {
        Some(family) => ComponentReport::used(
            ComponentKind::CpuId,
            "sysctl hw.cpufamily",
            format!("{:08X}", family & 0xFFFF_FFFF),
        ),
        None => ComponentReport::not_used(
            ComponentKind::CpuId,
            "sysctl",
            ReadStatus::Unreadable,
            "no CPU id fields",
        ),
    }
}

/// Components, environment and descriptive facts from the four command outputs.
#[must_use]
pub fn assemble(
    ioreg: &str,
    ports: &str,
    profiler: &str,
    sysctl: &str,
) -> (Vec<ComponentReport>, Environment, SystemInfo) {
    let from_ioreg = |kind, key: &str| match ioreg_value(ioreg, key).filter(|v| !v.is_empty()) {
        Some(v) => ComponentReport::used(kind, format!("ioreg IOPlatformExpertDevice {key}"), v),
        None => ComponentReport::not_used(
            kind,
            format!("ioreg IOPlatformExpertDevice {key}"),
            ReadStatus::Absent,
            "not reported",
        ),
    };
    let mut components = vec![
        ComponentReport::not_used(
            ComponentKind::MachineId,
            "(none on macOS)",
            ReadStatus::Absent,
            "macOS has no install id apart from the hardware UUID, which is the product UUID",
        ),
        from_ioreg(ComponentKind::ProductUuid, "IOPlatformUUID"),
        from_ioreg(ComponentKind::BoardSerial, "IOPlatformSerialNumber"),
        cpu_id(sysctl),
    ];
    components.extend(disks(profiler));
    components.extend(hardware_ports(ports));

    let model = ioreg_value(ioreg, "model").unwrap_or_default();
    let mut evidence = Vec::new();
    let mut hypervisor = ["VMware", "Parallels", "VirtualBox", "VirtualMac"]
        .iter()
        .find(|h| model.contains(**h))
        .map(|h| {
            evidence.push(format!("ioreg model is {model:?}"));
            if *h == "VirtualMac" {
                "Apple Virtualization".to_owned()
            } else {
                (*h).to_owned()
            }
        });
    if sysctl_value(sysctl, "kern.hv_vmm_present") == Some("1") {
        evidence.push("sysctl kern.hv_vmm_present is 1".to_owned());
        hypervisor.get_or_insert_with(|| "unnamed hypervisor".to_owned());
    }
    let kind = if hypervisor.is_some() {
        EnvironmentKind::VirtualMachine
    } else {
        EnvironmentKind::BareMetal
    };
    let warnings = if hypervisor.is_some() {
        vec!["cloned macOS virtual machines share their serial unless the hypervisor assigns a new one".to_owned()]
    } else {
        Vec::new()
    };
    let environment = Environment {
        kind,
        hypervisor,
        container_runtime: None,
        container_id: None,
        evidence,
        warnings,
    };
    let system = SystemInfo {
        cpu_brand: sysctl_value(sysctl, "machdep.cpu.brand_string").map(str::to_owned),
        host_name: sysctl_value(sysctl, "kern.hostname").map(str::to_owned),
        os: sysctl_value(sysctl, "kern.osproductversion").map(|v| format!("macOS {v}")),
    };
    (components, environment, system)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOREG: &str = r#"+-o MacBookPro18,3  <class IOPlatformExpertDevice, id 0x100000227, registered, matched, active, busy 0 (0 ms), retain 36>
    {
      "IOPlatformSerialNumber" = "C02G31ABMD6R"
      "manufacturer" = <"Apple Inc.">
      "model" = <"MacBookPro18,3">
      "IOPlatformUUID" = "8F2C1A52-9B3D-5E4F-A1B2-C3D4E5F60718"
    }"#;

    const PORTS: &str = "\nHardware Port: Ethernet Adapter (en4)\nDevice: en4\nEthernet Address: 3a:5f:11:22:33:44\n\n\
        Hardware Port: Wi-Fi\nDevice: en0\nEthernet Address: f0:18:98:12:34:56\n\n\
        Hardware Port: Thunderbolt Bridge\nDevice: bridge0\nEthernet Address: 36:a1:2b:00:00:01\n\n\
        Hardware Port: USB 10/100/1000 LAN\nDevice: en7\nEthernet Address: 00:e0:4c:68:01:02\n\n\
        VLAN Configurations\n===================\n";

    const PROFILER: &str = r#"{"SPNVMeDataType":[{"_name":"Apple SSD Controller","_items":[
        {"_name":"APPLE SSD AP1024R","device_model":"APPLE SSD AP1024R","device_serial":"0ba01234a5b6c7d8","removable_media":"no","detachable_drive":"no"}]}],
        "SPSerialATADataType":[]}"#;

    const SYSCTL: &str = "machdep.cpu.brand_string: Apple M1 Pro\nhw.cpufamily: 458787763\nkern.hv_vmm_present: 0\nkern.hostname: cad-mbp\nkern.osproductversion: 14.5\n";

    #[test]
    fn apple_silicon_laptop() {
        let (c, env, sys) = assemble(IOREG, PORTS, PROFILER, SYSCTL);
        let used = |k| {
            c.iter()
                .filter(|r| r.kind == k && r.is_used())
                .map(|r| r.value.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            used(ComponentKind::ProductUuid),
            ["8F2C1A52-9B3D-5E4F-A1B2-C3D4E5F60718"]
        );
        assert_eq!(used(ComponentKind::BoardSerial), ["C02G31ABMD6R"]);
        assert_eq!(used(ComponentKind::CpuId), ["1B588BB3"]);
        assert_eq!(used(ComponentKind::Disk), ["0ba01234a5b6c7d8"]);
        assert_eq!(
            used(ComponentKind::Mac),
            ["3A:5F:11:22:33:44", "F0:18:98:12:34:56"]
        );
        assert_eq!(env.kind, EnvironmentKind::BareMetal);
        assert_eq!(sys.cpu_brand.as_deref(), Some("Apple M1 Pro"));
    }

    #[test]
    fn intel_mac_cpu_id_has_the_windows_form() {
        let sysctl = "machdep.cpu.signature: 591594\nmachdep.cpu.feature_bits: 9221960262849657855\nkern.hv_vmm_present: 1\n";
        let (c, env, _) = assemble("", "", "{}", sysctl);
        let cpu = c.iter().find(|r| r.kind == ComponentKind::CpuId).unwrap();
        assert_eq!(cpu.value.as_deref(), Some("BFEBFBFF000906EA"));
        assert_eq!(env.kind, EnvironmentKind::VirtualMachine);
    }
}
