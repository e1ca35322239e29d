//! Collection from a Linux sysfs/procfs tree through a [`Probe`].
//!
//! Compiled on every platform (it only reads files through the probe) so the fixture tests run
//! anywhere; only on Linux is it what [`crate::collect_local`] uses.

use crate::environment::{Environment, EnvironmentKind};
use crate::matching::ComponentKind;
use crate::probe::{Probe, resolve_link};
use crate::report::{ComponentReport, ReadStatus, SystemInfo};

const ROOT_ONLY: &str = "readable only by root (the kernel creates it 0400); it is not used \
                         so that root and every user compute the same id";

/// DMI attributes the kernel always creates 0400 (drivers/firmware/dmi-id.c).
const ROOT_ONLY_DMI: [&str; 4] = [
    "product_serial",
    "product_uuid",
    "board_serial",
    "chassis_serial",
];

/// Serial numbers longer than this are not serial numbers.
const MAX_SERIAL_LEN: usize = 128;

/// Every identity component this tree offers, used or not.
pub(crate) fn collect_components(probe: &dyn Probe) -> Vec<ComponentReport> {
    let mut out = vec![
        machine_id(probe),
        dmi_serial(probe, ComponentKind::ProductUuid, "product_uuid"),
        dmi_serial(probe, ComponentKind::BoardSerial, "board_serial"),
        cpu_id(probe),
    ];
    out.extend(disks(probe));
    out.extend(network_adapters(probe));
    out
}

fn machine_id(probe: &dyn Probe) -> ComponentReport {
    let kind = ComponentKind::MachineId;
    for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if !probe.exists(path) {
            continue;
        }
        if probe.is_restricted(path) {
            return ComponentReport::not_used(kind, path, ReadStatus::Excluded, ROOT_ONLY);
        }
        return match probe.read_string(path) {
            Ok(id)
                if id.len() == 32
                    && id.bytes().all(|b| b.is_ascii_hexdigit())
                    && id.bytes().any(|b| b != b'0') =>
            {
                ComponentReport::used(kind, path, id.to_ascii_lowercase())
            }
            Ok(id) if id.is_empty() || id == "uninitialized" => ComponentReport::not_used(
                kind,
                path,
                ReadStatus::Unreadable,
                "empty or uninitialized (usual in container images)",
            ),
            Ok(_) => ComponentReport::not_used(
                kind,
                path,
                ReadStatus::Unreadable,
                "not a 32-digit hex id",
            ),
            Err(e) => ComponentReport::not_used(kind, path, ReadStatus::Unreadable, e.to_string()),
        };
    }
    ComponentReport::not_used(
        kind,
        "/etc/machine-id",
        ReadStatus::Absent,
        "no machine id (usual in containers)",
    )
}

fn dmi_serial(probe: &dyn Probe, kind: ComponentKind, attr: &str) -> ComponentReport {
    let path = format!("/sys/class/dmi/id/{attr}");
    if !probe.exists(&path) {
        return ComponentReport::not_used(
            kind,
            path,
            ReadStatus::Absent,
            "no DMI table (virtual machine without SMBIOS, or non-x86 firmware)",
        );
    }
    if ROOT_ONLY_DMI.contains(&attr) || probe.is_restricted(&path) {
        return ComponentReport::not_used(kind, path, ReadStatus::Excluded, ROOT_ONLY);
    }
    match probe.read_string(&path) {
        Ok(v) => match clean_serial(&v) {
            Some(v) => ComponentReport::used(kind, path, v),
            None => {
                ComponentReport::not_used(kind, path, ReadStatus::Unreadable, "placeholder value")
            }
        },
        Err(e) => ComponentReport::not_used(kind, path, ReadStatus::Unreadable, e.to_string()),
    }
}

/// Trims a serial and refuses the placeholders firmware vendors ship.
fn clean_serial(raw: &str) -> Option<String> {
    let v: String = raw
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_owned();
    let upper = v.to_ascii_uppercase();
    let placeholder = upper.is_empty()
        || upper.len() > MAX_SERIAL_LEN
        || !v.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        || upper
            .chars()
            .all(|c| c == '0' || c == 'F' || c == ' ' || c == '-' || c == '.')
        || [
            "TO BE FILLED BY O.E.M.",
            "DEFAULT STRING",
            "SYSTEM SERIAL NUMBER",
            "NOT SPECIFIED",
            "NONE",
            "N/A",
            "123456789",
            "0123456789",
        ]
        .contains(&upper.as_str());
    (!placeholder).then_some(v)
}

/// The first processor block of `/proc/cpuinfo` as `key → value`.
fn cpuinfo_first_block(text: &str) -> Vec<(String, String)> {
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn field<'a>(block: &'a [(String, String)], key: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// CPUID leaf 1 EDX feature bits by their `/proc/cpuinfo` names.
const EDX_FLAGS: [(&str, u32); 29] = [
    ("fpu", 0),
    ("vme", 1),
    ("de", 2),
    ("pse", 3),
    ("tsc", 4),
    ("msr", 5),
    ("pae", 6),
    ("mce", 7),
    ("cx8", 8),
    ("apic", 9),
    ("sep", 11),
    ("mtrr", 12),
    ("pge", 13),
    ("mca", 14),
    ("cmov", 15),
    ("pat", 16),
    ("pse36", 17),
    ("pn", 18),
    ("clflush", 19),
    ("dts", 21),
    ("acpi", 22),
    ("mmx", 23),
    ("fxsr", 24),
    ("sse", 25),
    ("sse2", 26),
    ("ss", 27),
    ("ht", 28),
    ("tm", 29),
    ("pbe", 31),
];

/// Rebuilds Windows' `Win32_Processor.ProcessorId` (CPUID leaf 1: EDX then EAX, 16 hex digits)
/// from `/proc/cpuinfo`, so one machine gives one CPU id whichever OS it runs.
pub(crate) fn x86_processor_id(block: &[(String, String)]) -> Option<String> {
    let flags = field(block, "flags")?;
    let family: u32 = field(block, "cpu family")?.parse().ok()?;
    let model: u32 = field(block, "model")?.parse().ok()?;
    let stepping: u32 = field(block, "stepping")?.parse().ok()?;
    let mut edx = 0u32;
    for flag in flags.split_whitespace() {
        if let Some((_, bit)) = EDX_FLAGS.iter().find(|(name, _)| *name == flag) {
            edx |= 1 << bit;
        }
    }
    let (base_family, ext_family) = if family > 15 {
        (15, family - 15)
    } else {
        (family, 0)
    };
    let (model_low, ext_model) = if family == 6 || family >= 15 {
        (model & 0xF, model >> 4)
    } else {
        (model & 0xF, 0)
    };
    if ext_family > 0xFF || ext_model > 0xF || stepping > 0xF {
        return None;
    }
    let eax = stepping | model_low << 4 | base_family << 8 | ext_model << 16 | ext_family << 20;
    Some(format!("{edx:08X}{eax:08X}"))
}

/// An ARM CPU's identity: the board serial some SoCs print (Raspberry Pi), else the MIDR
/// register rebuilt from its fields.
fn arm_cpu_id(block: &[(String, String)], whole: &str) -> Option<String> {
    let serial = whole
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "Serial")
        .and_then(|(_, v)| clean_serial(v));
    if serial.is_some() {
        return serial;
    }
    let num = |key: &str| {
        let v = field(block, key)?;
        match v.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    };
    let midr = num("CPU implementer")? << 24
        | num("CPU variant")? << 20
        | 0xF << 16
        | num("CPU part")? << 4
        | num("CPU revision")?;
    Some(format!("{midr:08X}"))
}

fn cpu_id(probe: &dyn Probe) -> ComponentReport {
    let kind = ComponentKind::CpuId;
    let path = "/proc/cpuinfo";
    let text = match probe.read_string(path) {
        Ok(t) => t,
        Err(e) => {
            return ComponentReport::not_used(kind, path, ReadStatus::Unreadable, e.to_string());
        }
    };
    let block = cpuinfo_first_block(&text);
    if field(&block, "flags").is_some() {
        return match x86_processor_id(&block) {
            Some(id) => ComponentReport::used(
                kind,
                format!("{path} (CPUID leaf 1 from flags, family, model, stepping)"),
                id,
            ),
            None => ComponentReport::not_used(
                kind,
                path,
                ReadStatus::Unreadable,
                "family/model/stepping missing or out of range",
            ),
        };
    }
    match arm_cpu_id(&block, &text) {
        Some(id) => ComponentReport::used(kind, format!("{path} (Serial, else MIDR fields)"), id),
        None => ComponentReport::not_used(
            kind,
            path,
            ReadStatus::Unreadable,
            "no CPU id fields for this architecture",
        ),
    }
}

/// Where a sysfs entry really lives, from its class/block link (empty when not a link).
fn device_path(probe: &dyn Probe, path: &str) -> String {
    probe
        .read_link(path)
        .map(|t| resolve_link(path, &t))
        .unwrap_or_default()
}

fn on_usb(real_path: &str) -> bool {
    real_path.split('/').any(|seg| {
        seg.strip_prefix("usb")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn is_virtual(probe: &dyn Probe, path: &str, real_path: &str) -> bool {
    real_path.starts_with("/sys/devices/virtual/") || !probe.exists(&format!("{path}/device"))
}

/// One fixed disk's serial, from the first source that has one.
fn disk_serial(probe: &dyn Probe, base: &str) -> Result<(String, String), String> {
    for file in ["device/serial", "serial"] {
        let path = format!("{base}/{file}");
        if let Ok(v) = probe.read_string(&path)
            && let Some(s) = clean_serial(&v)
        {
            return Ok((path, s));
        }
    }
    // SCSI/SATA: VPD page 0x80 = 4-byte header (page code at byte 1, length at 2..4), serial.
    let vpd = format!("{base}/device/vpd_pg80");
    if let Ok(bytes) = probe.read_bytes(&vpd)
        && bytes.len() > 4
        && bytes[1] == 0x80
    {
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let end = (4 + len).min(bytes.len());
        if let Some(s) = clean_serial(&String::from_utf8_lossy(&bytes[4..end])) {
            return Ok((vpd, s));
        }
    }
    // udev's database (world-readable) has what udev read from the drive as root.
    if let Ok(dev) = probe.read_string(&format!("{base}/dev")) {
        let udev = format!("/run/udev/data/b{dev}");
        if let Ok(text) = probe.read_string(&udev) {
            let serial = text
                .lines()
                .find_map(|l| l.strip_prefix("E:ID_SERIAL_SHORT="))
                .and_then(clean_serial);
            if let Some(s) = serial {
                return Ok((format!("{udev} (ID_SERIAL_SHORT)"), s));
            }
        }
    }
    Err(
        "no serial exposed (device/serial, serial, device/vpd_pg80, udev ID_SERIAL_SHORT)"
            .to_owned(),
    )
}

fn disks(probe: &dyn Probe) -> Vec<ComponentReport> {
    let kind = ComponentKind::Disk;
    let Ok(names) = probe.list("/sys/block") else {
        return vec![ComponentReport::not_used(
            kind,
            "/sys/block",
            ReadStatus::Absent,
            "no block devices listed",
        )];
    };
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        let base = format!("/sys/block/{name}");
        let real = device_path(probe, &base);
        let excluded =
            |why: &str| ComponentReport::not_used(kind, base.clone(), ReadStatus::Excluded, why);
        let virtual_prefix = ["loop", "ram", "zram", "dm-", "md", "nbd", "sr", "fd"]
            .iter()
            .find(|p| name.starts_with(**p));
        if let Some(p) = virtual_prefix {
            let what = match *p {
                "loop" => "loop device",
                "ram" | "zram" => "RAM disk",
                "dm-" => "device-mapper volume (its disks are listed themselves)",
                "md" => "software RAID (its disks are listed themselves)",
                "nbd" => "network block device",
                "sr" => "optical drive",
                _ => "floppy drive",
            };
            out.push(excluded(what));
            continue;
        }
        if is_virtual(probe, &base, &real) {
            out.push(excluded("virtual block device (no hardware behind it)"));
            continue;
        }
        if probe
            .read_string(&format!("{base}/hidden"))
            .is_ok_and(|h| h == "1")
        {
            out.push(excluded(
                "hidden multipath path (the namespace is listed on its own)",
            ));
            continue;
        }
        if probe
            .read_string(&format!("{base}/removable"))
            .is_ok_and(|r| r == "1")
        {
            out.push(excluded("removable media"));
            continue;
        }
        if on_usb(&real) {
            out.push(excluded(
                "USB-attached (external disks move between machines)",
            ));
            continue;
        }
        match disk_serial(probe, &base) {
            Ok((source, serial)) => {
                let upper = serial.to_uppercase();
                if seen.contains(&upper) {
                    out.push(excluded("same serial as another namespace of this drive"));
                } else {
                    seen.push(upper);
                    out.push(ComponentReport::used(kind, source, serial));
                }
            }
            Err(why) => out.push(ComponentReport::not_used(
                kind,
                base,
                ReadStatus::Unreadable,
                why,
            )),
        }
    }
    out
}

/// Parses and validates a MAC; refuses all-zero and multicast addresses.
fn clean_mac(raw: &str) -> Option<String> {
    let octets: Vec<u8> = raw
        .trim()
        .split(':')
        .map(|o| {
            if o.len() == 2 {
                u8::from_str_radix(o, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    if octets.len() != 6 || octets.iter().all(|&o| o == 0) || octets[0] & 1 == 1 {
        return None;
    }
    Some(
        octets
            .iter()
            .map(|o| format!("{o:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn uevent_value(probe: &dyn Probe, path: &str, key: &str) -> Option<String> {
    probe.read_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|v| v.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// Why a virtual interface is virtual, for the report.
fn virtual_nic_reason(probe: &dyn Probe, base: &str, name: &str) -> String {
    let devtype = uevent_value(probe, &format!("{base}/uevent"), "DEVTYPE").unwrap_or_default();
    let what = if probe.exists(&format!("{base}/bridge")) {
        if name.starts_with("docker") || name.starts_with("br-") {
            "container bridge".to_owned()
        } else {
            "bridge".to_owned()
        }
    } else if probe.exists(&format!("{base}/tun_flags")) {
        "tun/tap interface (VPN or emulator)".to_owned()
    } else if devtype == "wireguard" {
        "WireGuard VPN".to_owned()
    } else if name.starts_with("veth") || devtype == "veth" {
        "veth pair (container networking)".to_owned()
    } else if devtype == "bond" || probe.exists(&format!("{base}/bonding")) {
        "bond (its member adapters are listed themselves)".to_owned()
    } else if devtype.is_empty() {
        "virtual interface".to_owned()
    } else {
        format!("virtual interface ({devtype})")
    };
    format!("{what}: no hardware device behind it")
}

fn network_adapters(probe: &dyn Probe) -> Vec<ComponentReport> {
    let kind = ComponentKind::Mac;
    let Ok(names) = probe.list("/sys/class/net") else {
        return vec![ComponentReport::not_used(
            kind,
            "/sys/class/net",
            ReadStatus::Absent,
            "no network interfaces listed",
        )];
    };
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        let base = format!("/sys/class/net/{name}");
        let real = device_path(probe, &base);
        let excluded =
            |why: &str| ComponentReport::not_used(kind, base.clone(), ReadStatus::Excluded, why);
        let arp_type = probe
            .read_string(&format!("{base}/type"))
            .unwrap_or_default();
        if name == "lo" || arp_type == "772" {
            out.push(excluded("loopback"));
            continue;
        }
        if is_virtual(probe, &base, &real) {
            out.push(excluded(&virtual_nic_reason(probe, &base, &name)));
            continue;
        }
        if arp_type != "1" {
            out.push(excluded(&format!(
                "not an Ethernet or Wi-Fi adapter (link type {arp_type})"
            )));
            continue;
        }
        let usb_devtype = uevent_value(probe, &format!("{base}/device/uevent"), "DEVTYPE");
        if on_usb(&real) || usb_devtype.as_deref() == Some("usb_interface") {
            out.push(excluded(
                "USB adapter (dongles and dock adapters move between machines and come and go)",
            ));
            continue;
        }
        if probe
            .read_string(&format!("{base}/device/removable"))
            .is_ok_and(|r| r == "removable")
        {
            out.push(excluded("behind an external port (Thunderbolt dock)"));
            continue;
        }
        let wireless = probe.exists(&format!("{base}/phy80211"))
            || probe.exists(&format!("{base}/wireless"))
            || uevent_value(probe, &format!("{base}/uevent"), "DEVTYPE").as_deref() == Some("wlan");
        // The permanent address, where the kernel exposes it apart from the current one: Wi-Fi
        // interfaces randomise their address, bond members take the bond's.
        let permanent = [
            (wireless, format!("{base}/phy80211/macaddress")),
            (true, format!("{base}/bonding_slave/perm_hwaddr")),
        ];
        let mut chosen = permanent
            .iter()
            .filter(|(applies, _)| *applies)
            .find_map(|(_, p)| {
                probe
                    .read_string(p)
                    .ok()
                    .and_then(|m| clean_mac(&m))
                    .map(|m| (p.clone(), m))
            });
        if chosen.is_none() {
            if wireless {
                out.push(excluded(
                    "wireless interface without a permanent address (phy80211/macaddress)",
                ));
                continue;
            }
            if probe
                .read_string(&format!("{base}/addr_assign_type"))
                .is_ok_and(|t| t == "1")
            {
                out.push(excluded(
                    "address is random (addr_assign_type 1), not the adapter's own",
                ));
                continue;
            }
            let path = format!("{base}/address");
            chosen = probe
                .read_string(&path)
                .ok()
                .and_then(|m| clean_mac(&m))
                .map(|m| (path, m));
        }
        match chosen {
            Some((source, mac)) if seen.contains(&mac) => {
                out.push(ComponentReport::not_used(
                    kind,
                    source,
                    ReadStatus::Excluded,
                    "another interface of the same adapter",
                ));
            }
            Some((source, mac)) => {
                seen.push(mac.clone());
                out.push(ComponentReport::used(kind, source, mac));
            }
            None => out.push(ComponentReport::not_used(
                kind,
                format!("{base}/address"),
                ReadStatus::Unreadable,
                "no valid unicast MAC",
            )),
        }
    }
    out
}

/// Hypervisor names by the DMI vendor/product strings they leave.
const HYPERVISOR_STRINGS: [(&str, &str); 14] = [
    ("QEMU", "KVM/QEMU"),
    ("KVM", "KVM/QEMU"),
    ("OPENSTACK", "KVM/QEMU (OpenStack)"),
    ("BOCHS", "Bochs"),
    ("VMWARE", "VMware"),
    ("VIRTUALBOX", "VirtualBox"),
    ("INNOTEK", "VirtualBox"),
    ("XEN", "Xen"),
    ("AMAZON EC2", "Amazon EC2"),
    ("GOOGLE COMPUTE ENGINE", "Google Compute Engine"),
    ("PARALLELS", "Parallels"),
    ("VIRTUAL MACHINE", "Hyper-V"),
    ("HVM DOMU", "Xen"),
    ("FIRECRACKER", "Firecracker"),
];

fn runtime_from_cgroup(line: &str) -> Option<&'static str> {
    [
        ("kubepods", "kubernetes"),
        ("docker", "docker"),
        ("libpod", "podman"),
        ("crio", "cri-o"),
        ("containerd", "containerd"),
        ("lxc", "lxc"),
    ]
    .iter()
    .find(|(needle, _)| line.contains(needle))
    .map(|(_, name)| *name)
}

/// The 64-hex container id in a cgroup or mountinfo line, if any.
fn container_id_in(line: &str, after: &[&str]) -> Option<String> {
    for marker in after {
        let mut rest = line;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let id: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            if id.len() == 64 {
                return Some(id.to_ascii_lowercase());
            }
        }
    }
    None
}

/// Detects bare metal, VM or container. Uses only world-readable sources, so root and users
/// see the same environment.
pub(crate) fn detect_environment(
    probe: &dyn Probe,
    machine_id: Option<&ComponentReport>,
) -> Environment {
    let mut evidence = Vec::new();
    let mut runtime: Option<String> = None;
    let mut container_id: Option<String> = None;
    let mut container = false;

    for (file, rt) in [("/.dockerenv", "docker"), ("/run/.containerenv", "podman")] {
        if probe.exists(file) {
            container = true;
            runtime.get_or_insert_with(|| rt.to_owned());
            evidence.push(format!("{file} exists"));
        }
    }
    for file in ["/proc/1/cgroup", "/proc/self/cgroup"] {
        let Ok(text) = probe.read_string(file) else {
            continue;
        };
        for line in text.lines() {
            if let Some(rt) = runtime_from_cgroup(line) {
                if !container || runtime.is_none() || file == "/proc/1/cgroup" {
                    evidence.push(format!("{file} names {rt}: {}", line.trim()));
                }
                container = true;
                runtime.get_or_insert_with(|| rt.to_owned());
                if container_id.is_none() {
                    container_id = container_id_in(
                        line,
                        &[
                            "docker-",
                            "docker/",
                            "libpod-",
                            "crio-",
                            "cri-containerd-",
                            "/",
                        ],
                    );
                }
            }
        }
    }
    if let Ok(text) = probe.read_string("/proc/self/mountinfo") {
        for line in text.lines() {
            if let Some(id) = container_id_in(line, &["/containers/"]) {
                if container_id.is_none() {
                    evidence.push(format!(
                        "/proc/self/mountinfo mounts files of container {}",
                        &id[..12]
                    ));
                }
                container = true;
                container_id.get_or_insert(id);
            }
        }
    }
    evidence.dedup();

    let mut hypervisor: Option<String> = None;
    if let Ok(cpuinfo) = probe.read_string("/proc/cpuinfo") {
        let block = cpuinfo_first_block(&cpuinfo);
        if field(&block, "flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor")) {
            evidence.push("/proc/cpuinfo has the hypervisor CPU flag".to_owned());
            hypervisor = Some("unnamed hypervisor".to_owned());
        }
    }
    for attr in ["sys_vendor", "product_name", "board_vendor", "bios_vendor"] {
        let path = format!("/sys/class/dmi/id/{attr}");
        let Ok(value) = probe.read_string(&path) else {
            continue;
        };
        let upper = value.to_ascii_uppercase();
        if let Some((_, name)) = HYPERVISOR_STRINGS.iter().find(|(s, _)| upper.contains(s)) {
            evidence.push(format!("{path} is {value:?}"));
            if hypervisor
                .as_deref()
                .is_none_or(|h| h == "unnamed hypervisor")
            {
                hypervisor = Some((*name).to_owned());
            }
        }
    }
    if let Ok(t) = probe.read_string("/sys/hypervisor/type")
        && !t.is_empty()
    {
        evidence.push(format!("/sys/hypervisor/type is {t:?}"));
        if hypervisor
            .as_deref()
            .is_none_or(|h| h == "unnamed hypervisor")
        {
            hypervisor = Some(if t == "xen" { "Xen".to_owned() } else { t });
        }
    }

    let machine_id_used = machine_id.is_some_and(ComponentReport::is_used);
    let mut warnings = Vec::new();
    let kind = if container {
        if !machine_id_used {
            evidence.push("no machine id".to_owned());
        }
        warnings.push(
            "in a container the disks and CPU are the host's and the machine id is the image's, \
             so containers from one image look alike"
                .to_owned(),
        );
        if container_id.is_some() {
            warnings.push(
                "the container id is part of the hardware id, which tells containers apart but \
                 changes whenever the container is re-created; install a signed override id file \
                 for a stable identity"
                    .to_owned(),
            );
        } else {
            warnings.push(
                "no container id found: containers from the same image on this host cannot be \
                 told apart; install a signed override id file"
                    .to_owned(),
            );
        }
        EnvironmentKind::Container
    } else if hypervisor.is_some() {
        warnings.push(
            "cloned virtual machine images share one machine id unless it is regenerated \
             (systemd-machine-id-setup); the VM's own product UUID is readable only by root on \
             Linux and is not used"
                .to_owned(),
        );
        EnvironmentKind::VirtualMachine
    } else {
        EnvironmentKind::BareMetal
    };
    if !container && !machine_id_used {
        warnings
            .push("no machine id: the hardware id rests on hardware components alone".to_owned());
    }
    Environment {
        kind,
        hypervisor,
        container_runtime: if container { runtime } else { None },
        container_id,
        evidence,
        warnings,
    }
}

/// Descriptive facts from the tree (the live machine uses `sysinfo` instead).
pub(crate) fn system_info(probe: &dyn Probe) -> SystemInfo {
    let cpu_brand = probe.read_string("/proc/cpuinfo").ok().and_then(|t| {
        let block = cpuinfo_first_block(&t);
        field(&block, "model name")
            .or_else(|| field(&block, "Model"))
            .map(str::to_owned)
    });
    let host_name = probe
        .read_string("/proc/sys/kernel/hostname")
        .ok()
        .filter(|h| !h.is_empty());
    let os = probe.read_string("/etc/os-release").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
    });
    SystemInfo {
        cpu_brand,
        host_name,
        os,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Vec<(String, String)> {
        cpuinfo_first_block(text)
    }

    #[test]
    fn processor_id_matches_windows_for_a_known_cpu() {
        // i7-12700 (Alder Lake): Windows reports ProcessorId BFEBFBFF00090672.
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 151\n\
                    stepping\t: 2\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca \
                    cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx \
                    hypervisor\n";
        assert_eq!(
            x86_processor_id(&block(text)).as_deref(),
            Some("BFEBFBFF00090672")
        );
    }

    #[test]
    fn processor_id_handles_extended_family() {
        // AMD Zen 3 (family 25 = 0xF + 0xA, model 33 = 0x21, stepping 0) → EAX 00A20F10
        let text = "cpu family\t: 25\nmodel\t\t: 33\nstepping\t: 0\nflags\t\t: fpu\n";
        assert_eq!(
            x86_processor_id(&block(text)).as_deref(),
            Some("0000000100A20F10")
        );
    }

    #[test]
    fn serial_placeholders_are_refused() {
        for junk in [
            "",
            "   ",
            "To be filled by O.E.M.",
            "Default string",
            "0000000000",
            "FFFFFFFF",
            "None",
        ] {
            assert_eq!(clean_serial(junk), None, "{junk:?}");
        }
        assert_eq!(
            clean_serial("  S4EWNX0R123456 \n").as_deref(),
            Some("S4EWNX0R123456")
        );
    }

    #[test]
    fn macs_are_validated() {
        assert_eq!(
            clean_mac("3c:ec:ef:12:34:56").as_deref(),
            Some("3C:EC:EF:12:34:56")
        );
        assert_eq!(clean_mac("00:00:00:00:00:00"), None);
        assert_eq!(clean_mac("01:00:5e:00:00:01"), None);
        assert_eq!(clean_mac("3c:ec:ef:12:34"), None);
        assert_eq!(clean_mac("garbage"), None);
    }

    #[test]
    fn container_ids_are_found_after_markers() {
        let id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00998877665544332211";
        let line = format!("0::/system.slice/docker-{id}.scope");
        assert_eq!(container_id_in(&line, &["docker-"]).as_deref(), Some(id));
        assert_eq!(container_id_in("0::/", &["/"]), None);
        assert!(on_usb(
            "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/net/enx1"
        ));
        assert!(!on_usb("/sys/devices/pci0000:00/0000:00:1f.6/net/eno1"));
    }
}
