//! Parsing of the Windows inventory: one PowerShell/CIM query answered as JSON.
//!
//! Compiled on every platform so the rules are tested on the Linux CI; `windows.rs` runs
//! [`INVENTORY_SCRIPT`] and hands its output to [`parse_inventory`].

use serde::Deserialize;

use crate::environment::{Environment, EnvironmentKind};
use crate::matching::ComponentKind;
use crate::report::{ComponentReport, ReadStatus, SystemInfo};

/// The PowerShell script: every source in one process start (PowerShell takes ~300 ms to
/// start, so one call, not eight). Every class here is readable by an unprivileged user, so
/// users and administrators get the same identity.
pub const INVENTORY_SCRIPT: &str = r"$ErrorActionPreference='SilentlyContinue'
$cs = Get-CimInstance Win32_ComputerSystem
[pscustomobject]@{
  adapters = @(Get-NetAdapter -Physical | Select-Object Name,InterfaceDescription,PermanentAddress,MacAddress,PnPDeviceID)
  disks = @(Get-CimInstance Win32_DiskDrive | Select-Object Model,SerialNumber,InterfaceType,MediaType,PNPDeviceID)
  board = (Get-CimInstance Win32_BaseBoard | Select-Object -First 1).SerialNumber
  cpu = (Get-CimInstance Win32_Processor | Select-Object -First 1).ProcessorId
  cpuName = (Get-CimInstance Win32_Processor | Select-Object -First 1).Name
  uuid = (Get-CimInstance Win32_ComputerSystemProduct).UUID
  machineGuid = (Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\Cryptography').MachineGuid
  manufacturer = $cs.Manufacturer
  model = $cs.Model
  hypervisorPresent = [bool]$cs.HypervisorPresent
  containerService = [bool](Get-Service cexecsvc)
  hostName = $env:COMPUTERNAME
  os = (Get-CimInstance Win32_OperatingSystem).Caption
} | ConvertTo-Json -Depth 3 -Compress";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Inventory {
    #[serde(deserialize_with = "one_or_many")]
    adapters: Vec<Adapter>,
    #[serde(deserialize_with = "one_or_many")]
    disks: Vec<Disk>,
    board: Option<String>,
    cpu: Option<String>,
    cpu_name: Option<String>,
    uuid: Option<String>,
    machine_guid: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    hypervisor_present: bool,
    container_service: bool,
    host_name: Option<String>,
    os: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Adapter {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "InterfaceDescription")]
    description: Option<String>,
    #[serde(rename = "PermanentAddress")]
    permanent_address: Option<String>,
    #[serde(rename = "MacAddress")]
    mac_address: Option<String>,
    #[serde(rename = "PnPDeviceID")]
    pnp_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Disk {
    #[serde(rename = "Model")]
    model: Option<String>,
    #[serde(rename = "SerialNumber")]
    serial: Option<String>,
    #[serde(rename = "InterfaceType")]
    interface: Option<String>,
    #[serde(rename = "MediaType")]
    media: Option<String>,
}

/// `ConvertTo-Json` writes a one-element array as a bare object.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
        Nothing,
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(t) => vec![t],
        OneOrMany::Nothing => Vec::new(),
    })
}

/// `047C165EE35D` or `04-7C-16-5E-E3-5D` → `04:7C:16:5E:E3:5D`; `None` when not a unicast MAC.
fn windows_mac(raw: &str) -> Option<String> {
    let hex: String = raw.chars().filter(char::is_ascii_hexdigit).collect();
    if hex.len() != 12
        || raw
            .chars()
            .any(|c| !(c.is_ascii_hexdigit() || c == '-' || c == ':'))
    {
        return None;
    }
    let first = u8::from_str_radix(&hex[..2], 16).ok()?;
    if first & 1 == 1 || hex.chars().all(|c| c == '0') {
        return None;
    }
    let upper = hex.to_ascii_uppercase();
    Some(
        (0..6)
            .map(|i| &upper[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn single(kind: ComponentKind, source: &str, value: Option<&String>) -> ComponentReport {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(v) if !is_placeholder(v) => ComponentReport::used(kind, source, v.to_owned()),
        Some(_) => {
            ComponentReport::not_used(kind, source, ReadStatus::Unreadable, "placeholder value")
        }
        None => ComponentReport::not_used(kind, source, ReadStatus::Absent, "not reported"),
    }
}

fn is_placeholder(v: &str) -> bool {
    let u = v.to_ascii_uppercase();
    u.chars()
        .all(|c| c == '0' || c == 'F' || c == '-' || c == ' ')
        || [
            "TO BE FILLED BY O.E.M.",
            "DEFAULT STRING",
            "NONE",
            "N/A",
            "NOT SPECIFIED",
        ]
        .contains(&u.as_str())
}

/// The parsed inventory: components, environment and descriptive facts.
///
/// # Errors
/// When the text is not the JSON [`INVENTORY_SCRIPT`] prints.
pub fn parse_inventory(
    json: &str,
) -> Result<(Vec<ComponentReport>, Environment, SystemInfo), String> {
    let inv: Inventory = serde_json::from_str(json)
        .map_err(|e| format!("inventory is not the expected JSON: {e}"))?;
    let mut out = vec![
        single(
            ComponentKind::MachineId,
            r"HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid",
            inv.machine_guid.as_ref(),
        ),
        single(
            ComponentKind::ProductUuid,
            "Win32_ComputerSystemProduct.UUID",
            inv.uuid.as_ref(),
        ),
        single(
            ComponentKind::BoardSerial,
            "Win32_BaseBoard.SerialNumber",
            inv.board.as_ref(),
        ),
        single(
            ComponentKind::CpuId,
            "Win32_Processor.ProcessorId",
            inv.cpu.as_ref(),
        ),
    ];
    for disk in &inv.disks {
        let source = format!(
            "Win32_DiskDrive.SerialNumber ({})",
            disk.model.as_deref().unwrap_or("unknown model").trim()
        );
        let interface = disk.interface.as_deref().unwrap_or_default();
        let media = disk.media.as_deref().unwrap_or_default();
        let report = if interface.eq_ignore_ascii_case("USB") {
            ComponentReport::not_used(
                ComponentKind::Disk,
                source,
                ReadStatus::Excluded,
                "USB-attached (external disks move between machines)",
            )
        } else if !media.is_empty() && !media.starts_with("Fixed") {
            ComponentReport::not_used(
                ComponentKind::Disk,
                source,
                ReadStatus::Excluded,
                format!("removable media ({media})"),
            )
        } else {
            // Kept exactly as Windows reports it, trailing '.' included (PROTOCOL.md §4.4).
            single(ComponentKind::Disk, &source, disk.serial.as_ref())
        };
        out.push(report);
    }
    for adapter in &inv.adapters {
        let name = adapter.name.as_deref().unwrap_or("?");
        let source = format!(
            "Get-NetAdapter -Physical: {name} ({})",
            adapter.description.as_deref().unwrap_or_default()
        );
        let pnp = adapter
            .pnp_id
            .as_deref()
            .unwrap_or_default()
            .to_ascii_uppercase();
        // -Physical still lists USB dongles, dock adapters and Bluetooth PAN.
        let report = if !(pnp.starts_with("PCI\\") || pnp.starts_with("VMBUS\\")) {
            let why = if pnp.starts_with("USB") {
                "USB adapter (dongles and dock adapters move between machines)".to_owned()
            } else {
                format!(
                    "not on the PCI bus ({})",
                    pnp.split('\\').next().unwrap_or("unknown")
                )
            };
            ComponentReport::not_used(ComponentKind::Mac, source, ReadStatus::Excluded, why)
        } else {
            // PermanentAddress is the burned-in one; MacAddress may be randomised (Wi-Fi).
            match adapter.permanent_address.as_deref().and_then(windows_mac) {
                Some(mac) => ComponentReport::used(ComponentKind::Mac, source, mac),
                None => ComponentReport::not_used(
                    ComponentKind::Mac,
                    source,
                    ReadStatus::Unreadable,
                    "no permanent address reported",
                ),
            }
        };
        out.push(report);
    }

    let mut evidence = Vec::new();
    let vendor = format!(
        "{} {}",
        inv.manufacturer.as_deref().unwrap_or_default(),
        inv.model.as_deref().unwrap_or_default()
    );
    let upper = vendor.to_ascii_uppercase();
    let hypervisor = [
        ("VMWARE", "VMware"),
        ("VIRTUALBOX", "VirtualBox"),
        ("VIRTUAL MACHINE", "Hyper-V"),
        ("QEMU", "KVM/QEMU"),
        ("KVM", "KVM/QEMU"),
        ("XEN", "Xen"),
        ("AMAZON EC2", "Amazon EC2"),
        ("GOOGLE COMPUTE ENGINE", "Google Compute Engine"),
        ("PARALLELS", "Parallels"),
    ]
    .iter()
    .find(|(s, _)| upper.contains(s))
    .map(|(_, n)| {
        evidence.push(format!("Win32_ComputerSystem is {:?}", vendor.trim()));
        (*n).to_owned()
    });
    // HypervisorPresent is also true on bare metal with VBS/Hyper-V enabled: evidence only.
    if inv.hypervisor_present {
        evidence.push("Win32_ComputerSystem.HypervisorPresent is true".to_owned());
    }
    let container = inv.container_service;
    if container {
        evidence.push("the container execution service (cexecsvc) exists".to_owned());
    }
    let kind = if container {
        EnvironmentKind::Container
    } else if hypervisor.is_some() {
        EnvironmentKind::VirtualMachine
    } else {
        EnvironmentKind::BareMetal
    };
    let mut warnings = Vec::new();
    if container {
        warnings.push(
            "in a Windows container the hardware is the host's: install a signed override id file"
                .to_owned(),
        );
    } else if hypervisor.is_some() {
        warnings.push(
            "cloned images share MachineGuid unless sysprep'd; the VM's UUID tells clones apart"
                .to_owned(),
        );
    }
    let environment = Environment {
        kind,
        hypervisor,
        container_runtime: container.then(|| "windows".to_owned()),
        container_id: None,
        evidence,
        warnings,
    };
    let system = SystemInfo {
        cpu_brand: inv.cpu_name.map(|s| s.trim().to_owned()),
        host_name: inv.host_name,
        os: inv.os,
    };
    Ok((out, environment, system))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKSTATION: &str = r#"{"adapters":[
        {"Name":"Ethernet","InterfaceDescription":"Intel(R) Ethernet Connection (17) I219-LM","PermanentAddress":"047C165EE35D","MacAddress":"04-7C-16-5E-E3-5D","PnPDeviceID":"PCI\\VEN_8086&DEV_1A1C&SUBSYS_0A4D1028&REV_11\\3&11583659&0&FE"},
        {"Name":"Wi-Fi","InterfaceDescription":"Intel(R) Wi-Fi 6E AX211 160MHz","PermanentAddress":"A4C3F0112233","MacAddress":"3A-11-22-33-44-55","PnPDeviceID":"PCI\\VEN_8086&DEV_51F0&SUBSYS_00948086&REV_01\\3&11583659&0&A3"},
        {"Name":"Ethernet 3","InterfaceDescription":"Realtek USB GbE Family Controller","PermanentAddress":"00E04C680102","MacAddress":"00-E0-4C-68-01-02","PnPDeviceID":"USB\\VID_0BDA&PID_8153\\000001"},
        {"Name":"Bluetooth Network Connection","InterfaceDescription":"Bluetooth Device (Personal Area Network)","PermanentAddress":"A4C3F0112237","MacAddress":"A4-C3-F0-11-22-37","PnPDeviceID":"BTH\\MS_BTHPAN\\6&2B3C&0&2"}],
      "disks":[
        {"Model":"Samsung SSD 980 PRO 1TB","SerialNumber":"0025_3889_21B2_C3D4.","InterfaceType":"SCSI","MediaType":"Fixed hard disk media","PNPDeviceID":"SCSI\\DISK&VEN_NVME"},
        {"Model":"SanDisk Ultra USB 3.0 USB Device","SerialNumber":"4C530001231116115333","InterfaceType":"USB","MediaType":"Removable Media","PNPDeviceID":"USBSTOR\\DISK"}],
      "board":"/7XK2PX3/CNWS20023K00JY/","cpu":"BFEBFBFF00090672","cpuName":"12th Gen Intel(R) Core(TM) i7-12700",
      "uuid":"4C4C4544-0058-4B10-8032-B7C04F505833","machineGuid":"9b1f6c0e-5d4f-4a0b-9a3e-2f1d6c7b8a90",
      "manufacturer":"Dell Inc.","model":"Precision 3660","hypervisorPresent":false,"containerService":false,
      "hostName":"CAD-WS-07","os":"Microsoft Windows 11 Pro"}"#;

    #[test]
    fn workstation_inventory_gives_physical_pci_adapters_and_fixed_disks() {
        let (components, env, system) = parse_inventory(WORKSTATION).unwrap();
        let used = |k| {
            components
                .iter()
                .filter(|c| c.kind == k && c.is_used())
                .map(|c| c.value.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            used(ComponentKind::Mac),
            ["04:7C:16:5E:E3:5D", "A4:C3:F0:11:22:33"]
        );
        assert_eq!(used(ComponentKind::Disk), ["0025_3889_21B2_C3D4."]);
        assert_eq!(
            used(ComponentKind::BoardSerial),
            ["/7XK2PX3/CNWS20023K00JY/"]
        );
        assert_eq!(used(ComponentKind::CpuId), ["BFEBFBFF00090672"]);
        assert_eq!(env.kind, EnvironmentKind::BareMetal);
        assert_eq!(system.host_name.as_deref(), Some("CAD-WS-07"));
        let excluded = components
            .iter()
            .filter(|c| c.status == ReadStatus::Excluded)
            .count();
        assert_eq!(excluded, 3, "USB NIC, Bluetooth PAN, USB stick");
    }

    #[test]
    fn single_objects_and_vm_vendors_are_understood() {
        let json = r#"{"adapters":{"Name":"Ethernet","PermanentAddress":"00155D010203","PnPDeviceID":"VMBUS\\{f8615163}"},
            "disks":null,"board":"None","cpu":"","manufacturer":"Microsoft Corporation","model":"Virtual Machine","hypervisorPresent":true}"#;
        let (components, env, _) = parse_inventory(json).unwrap();
        assert!(components.iter().any(
            |c| c.kind == ComponentKind::Mac && c.value.as_deref() == Some("00:15:5D:01:02:03")
        ));
        assert_eq!(env.kind, EnvironmentKind::VirtualMachine);
        assert_eq!(env.hypervisor.as_deref(), Some("Hyper-V"));
        assert!(
            components
                .iter()
                .all(|c| c.kind != ComponentKind::BoardSerial || !c.is_used())
        );
        assert!(parse_inventory("garbage").is_err());
    }
}
