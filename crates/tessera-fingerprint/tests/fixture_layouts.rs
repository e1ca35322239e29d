//! Identity collection on fixture trees copied from real machines' sysfs/procfs layouts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tessera_fingerprint::{
    ChangeKind, CollectOptions, ComponentKind, DeviceIdentity, EnvironmentKind, FsProbe,
    IdentityCache, MatchPolicy, OverrideFile, OverrideStatus, ReadStatus, Signature, collect,
    collect_with,
};
use tessera_types::ManualClock;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn identity(name: &str) -> DeviceIdentity {
    collect(&FsProbe::new(fixture(name)))
}

/// Copies a fixture tree, symlinks as symlinks, so a test can change it.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if meta.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    copy_tree(&fixture(name), &root);
    (dir, root)
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let full = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    fs::write(full, content).unwrap();
}

fn link(root: &Path, path: &str, target: &str) {
    let full = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, full).unwrap();
}

fn excluded_reason(id: &DeviceIdentity, source: &str) -> String {
    id.components
        .iter()
        .find(|c| c.source == source)
        .unwrap_or_else(|| panic!("no report for {source}"))
        .reason
        .clone()
        .unwrap_or_default()
}

#[test]
fn workstation_uses_physical_nics_and_fixed_disks_only() {
    let id = identity("workstation");
    assert_eq!(
        id.fingerprint.as_str(),
        "3C:EC:EF:12:34:56,A0:36:9F:8A:BC:DE|S6B0NL0W412345H,WD-WCC4N7ZK1234||BFEBFBFF00090672"
    );
    assert_eq!(
        id.environment.kind,
        EnvironmentKind::BareMetal,
        "{:?}",
        id.environment
    );
    assert_eq!(
        id.hardware_id.len(),
        6,
        "machine id, CPU, 2 disks, 2 MACs: {}",
        id.hardware_id
    );
    for (source, word) in [
        ("/sys/class/net/lo", "loopback"),
        ("/sys/class/net/br0", "bridge"),
        ("/sys/class/net/docker0", "container bridge"),
        ("/sys/class/net/veth3f1c2a9", "veth"),
        ("/sys/class/net/tun0", "VPN"),
        ("/sys/class/net/wg0", "WireGuard"),
        ("/sys/block/sr0", "optical"),
        ("/sys/block/loop0", "loop"),
        ("/sys/block/dm-0", "device-mapper"),
        ("/sys/class/dmi/id/board_serial", "only by root"),
        ("/sys/class/dmi/id/product_uuid", "only by root"),
    ] {
        let why = excluded_reason(&id, source);
        assert!(why.contains(word), "{source}: {why}");
    }
    let sources: Vec<&str> = id.used_components().map(|c| c.source.as_str()).collect();
    assert!(
        sources.contains(&"/sys/block/sda/device/vpd_pg80"),
        "{sources:?}"
    );
    assert_eq!(id.system.host_name.as_deref(), Some("cad-ws-07"));
    assert_eq!(
        id.system.cpu_brand.as_deref(),
        Some("12th Gen Intel(R) Core(TM) i7-12700")
    );
}

#[test]
fn adding_vpn_adapters_changes_nothing() {
    let before = identity("workstation");
    let (_dir, root) = scratch("workstation");
    for name in ["tun1", "tap0", "wg1", "ppp0", "vboxnet0"] {
        let dev = format!("/sys/devices/virtual/net/{name}");
        link(
            &root,
            &format!("/sys/class/net/{name}"),
            &format!("../../devices/virtual/net/{name}"),
        );
        write(&root, &format!("{dev}/address"), b"5e:00:53:01:02:03\n");
        write(&root, &format!("{dev}/type"), b"1\n");
        if name.starts_with("t") {
            write(&root, &format!("{dev}/tun_flags"), b"0x1002\n");
        }
    }
    let after = collect(&FsProbe::new(&root));
    assert_eq!(after.fingerprint, before.fingerprint);
    assert_eq!(after.hardware_id, before.hardware_id);
    let v = before
        .hardware_id
        .matches(&after.hardware_id, MatchPolicy::Strict);
    assert!(v.matched && v.changed.is_empty(), "{v}");
}

#[test]
fn replacing_one_disk_is_a_match_with_one_change() {
    let before = identity("workstation");
    let (_dir, root) = scratch("workstation");
    let serial = b"WD-WX12D80N9999";
    let mut vpd = vec![0, 0x80, 0, u8::try_from(serial.len()).unwrap()];
    vpd.extend_from_slice(serial);
    write(
        &root,
        "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/vpd_pg80",
        &vpd,
    );
    let after = collect(&FsProbe::new(&root));

    let v = before
        .hardware_id
        .matches(&after.hardware_id, MatchPolicy::default());
    assert!(v.matched, "{v}");
    assert_eq!(v.changed.len(), 1);
    assert_eq!(v.changed[0].component, ComponentKind::Disk);
    assert_eq!(v.changed[0].change, ChangeKind::Replaced);
    assert!(
        v.explain()
            .starts_with("match, 1 component changed: disk replaced"),
        "{v}"
    );
    assert!(
        !before
            .hardware_id
            .matches(&after.hardware_id, MatchPolicy::Strict)
            .matched
    );

    let v = before
        .fingerprint
        .matches(&after.fingerprint, MatchPolicy::default());
    assert!(v.matched, "{v}");
    assert_eq!(
        v.to_string(),
        "match, 1 component changed: disk replaced (was WD-WCC4N7ZK1234, now WD-WX12D80N9999)"
    );
}

#[test]
fn laptop_uses_the_wifi_permanent_address_and_ignores_the_dock() {
    let docked = identity("laptop");
    assert_eq!(
        docked.fingerprint.as_str(),
        "A4:C3:F0:11:22:33|PHAB1234005F512A||178BFBFF00A40F41"
    );
    assert!(excluded_reason(&docked, "/sys/class/net/enx00e04c680102").contains("USB"));
    assert!(excluded_reason(&docked, "/sys/block/sdb").contains("USB"));
    assert!(excluded_reason(&docked, "/sys/block/mmcblk0").contains("removable"));
    assert!(excluded_reason(&docked, "/sys/class/net/wwan0").contains("link type 519"));

    let (_dir, root) = scratch("laptop");
    fs::remove_file(root.join("sys/class/net/enx00e04c680102")).unwrap();
    fs::remove_file(root.join("sys/block/sdb")).unwrap();
    // Undocked, and NetworkManager picked another random address for the Wi-Fi.
    write(
        &root,
        "/sys/devices/pci0000:00/0000:00:14.3/net/wlp0s20f3/address",
        b"d2:77:01:9c:3e:10\n",
    );
    let undocked = collect(&FsProbe::new(&root));
    assert_eq!(undocked.fingerprint, docked.fingerprint);
    assert_eq!(undocked.hardware_id, docked.hardware_id);
    assert!(
        docked
            .hardware_id
            .matches(&undocked.hardware_id, MatchPolicy::Strict)
            .matched
    );
}

#[test]
fn kvm_guest_is_reported_as_a_virtual_machine() {
    let id = identity("kvm-guest");
    assert_eq!(id.environment.kind, EnvironmentKind::VirtualMachine);
    assert_eq!(
        id.environment.hypervisor.as_deref(),
        Some("KVM/QEMU (OpenStack)")
    );
    assert!(
        id.environment
            .evidence
            .iter()
            .any(|e| e.contains("hypervisor CPU flag"))
    );
    assert!(
        id.warnings
            .iter()
            .any(|w| w.contains("cloned virtual machine"))
    );
    assert_eq!(id.fingerprint.macs(), ["FA:16:3E:5D:7A:01"]);
    assert_eq!(id.fingerprint.disks(), ["2F1E3D4C-5B6A-4798-8"]);
    let vdb = id
        .components
        .iter()
        .find(|c| c.source == "/sys/block/vdb")
        .unwrap();
    assert_eq!(vdb.status, ReadStatus::Unreadable);
}

const CONTAINER_ID: &str = "7c2d9e4fa1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3";

#[test]
fn docker_container_is_detected_with_its_id() {
    let id = identity("docker-container");
    assert_eq!(id.environment.kind, EnvironmentKind::Container);
    assert_eq!(id.environment.container_runtime.as_deref(), Some("docker"));
    assert_eq!(id.environment.container_id.as_deref(), Some(CONTAINER_ID));
    assert!(id.environment.identity_may_be_shared());
    assert!(id.fingerprint.macs().is_empty(), "the veth is not hardware");
    assert_eq!(
        id.fingerprint.disks(),
        ["S6B0NL0W412345H"],
        "the host's disk"
    );
    assert!(id.warnings.iter().any(|w| w.contains("override id file")));
    assert_eq!(
        id.hardware_id
            .digests(ComponentKind::ContainerInstance)
            .len(),
        1
    );
}

#[test]
fn two_containers_from_one_image_are_told_apart_and_flagged() {
    let first = identity("docker-container");
    let (_dir, root) = scratch("docker-container");
    let other_id = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let mountinfo = fs::read_to_string(root.join("proc/self/mountinfo")).unwrap();
    write(
        &root,
        "/proc/self/mountinfo",
        mountinfo.replace(CONTAINER_ID, other_id).as_bytes(),
    );
    write(
        &root,
        "/proc/sys/kernel/hostname",
        &other_id.as_bytes()[..12],
    );
    let second = collect(&FsProbe::new(&root));

    // Same host, same image: the KooGallery string cannot differ, so it is flagged...
    assert_eq!(first.fingerprint, second.fingerprint);
    assert!(
        first.environment.identity_may_be_shared() && second.environment.identity_may_be_shared()
    );
    // ...and the hardware ids are told apart under every policy.
    assert_ne!(first.hardware_id, second.hardware_id);
    for policy in MatchPolicy::ALL {
        let v = first.hardware_id.matches(&second.hardware_id, policy);
        assert!(!v.matched, "{policy}: {v}");
        assert!(v.to_string().contains("container instance"), "{v}");
    }
}

#[test]
fn container_without_an_id_says_it_cannot_be_told_apart() {
    let (_dir, root) = scratch("docker-container");
    write(
        &root,
        "/proc/self/mountinfo",
        b"612 540 0:53 / / rw,relatime - overlay overlay rw\n",
    );
    let id = collect(&FsProbe::new(&root));
    assert_eq!(id.environment.kind, EnvironmentKind::Container);
    assert_eq!(id.environment.container_id, None);
    assert!(
        id.warnings
            .iter()
            .any(|w| w.contains("cannot be told apart")),
        "{:?}",
        id.warnings
    );
}

#[test]
fn storage_server_reads_every_serial_source_once() {
    let id = identity("nvme-sata");
    assert_eq!(
        id.fingerprint.disks(),
        [
            "BTLJ0123456P4P0DGN",
            "S3Z9NB0K654321A",
            "S4EWNX0R123456",
            "ZL2ABCDE"
        ]
    );
    assert_eq!(
        id.fingerprint.macs(),
        ["B4:96:91:AA:BB:C0", "B4:96:91:AA:BB:C1"],
        "bond members' own addresses"
    );
    assert!(excluded_reason(&id, "/sys/block/nvme0n2").contains("same serial"));
    assert!(excluded_reason(&id, "/sys/block/sdc").contains("USB"));
    assert!(excluded_reason(&id, "/sys/block/md127").contains("RAID"));
    assert!(excluded_reason(&id, "/sys/class/net/bond0").contains("bond"));
    let udev = id
        .used_components()
        .find(|c| c.value.as_deref() == Some("ZL2ABCDE"))
        .unwrap();
    assert!(udev.source.contains("ID_SERIAL_SHORT"), "{}", udev.source);
    assert_eq!(id.fingerprint.cpu(), "BFEBFBFF00050657");
}

#[test]
fn collection_is_deterministic() {
    for name in [
        "workstation",
        "laptop",
        "kvm-guest",
        "docker-container",
        "nvme-sata",
    ] {
        assert_eq!(identity(name), identity(name), "{name}");
    }
}

#[test]
fn files_only_root_can_read_are_never_used() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, root) = scratch("workstation");
    let machine_id = root.join("etc/machine-id");
    fs::set_permissions(&machine_id, fs::Permissions::from_mode(0o400)).unwrap();
    let id = collect(&FsProbe::new(&root));
    let report = id
        .components
        .iter()
        .find(|c| c.kind == ComponentKind::MachineId)
        .unwrap();
    assert_eq!(report.status, ReadStatus::Excluded);
    assert_eq!(report.value, None);
    assert_eq!(id.hardware_id.digests(ComponentKind::MachineId).len(), 0);
}

#[test]
fn override_file_is_read_and_reported_unverified() {
    let (_dir, root) = scratch("docker-container");
    let payload = br#"{"device_id":"build-farm-17","reason":"CI containers","issued_for":"ACME GmbH","issued_at":"20261122103015"}"#;
    let sig = Signature {
        algorithm: "RSA-PSS-SHA256".into(),
        key_id: "acme-2026-01".into(),
        value: vec![7; 384],
    };
    write(
        &root,
        "/etc/tessera/device-override.json",
        OverrideFile::encode(payload, &sig).as_bytes(),
    );
    let options = CollectOptions {
        override_path: "/etc/tessera/device-override.json".into(),
        ..Default::default()
    };
    let id = collect_with(&FsProbe::new(&root), &options);
    let file = id.override_status.file().expect("override found");
    assert_eq!(file.payload.device_id, "build-farm-17");
    assert_eq!(file.signed_bytes, payload);
    assert!(
        id.warnings
            .iter()
            .any(|w| w.contains("once its signature is verified"))
    );

    write(
        &root,
        "/etc/tessera/device-override.json",
        b"{\"format\":\"x\"}",
    );
    let id = collect_with(&FsProbe::new(&root), &options);
    assert!(
        matches!(id.override_status, OverrideStatus::Invalid { .. }),
        "{:?}",
        id.override_status
    );

    let id = collect_with(&FsProbe::new(fixture("workstation")), &options);
    assert!(matches!(id.override_status, OverrideStatus::Absent { .. }));
}

#[test]
fn cache_serves_the_warm_path_and_refreshes_by_the_clock() {
    let clock = ManualClock::at_unix(1_790_000_000);
    let collections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&collections);
    let probe = FsProbe::new(fixture("workstation"));
    let cache = IdentityCache::with_collector(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            collect(&probe)
        },
        clock.shared(),
        time::Duration::minutes(10),
    );
    let first = cache.get();
    let again = cache.get();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(collections.load(Ordering::SeqCst), 1);
    clock.advance(time::Duration::minutes(11));
    cache.get();
    assert_eq!(collections.load(Ordering::SeqCst), 2);
    clock.advance(time::Duration::hours(-5));
    cache.get();
    assert_eq!(
        collections.load(Ordering::SeqCst),
        3,
        "a clock set back forces a refresh"
    );
    cache.invalidate();
    cache.get();
    assert_eq!(collections.load(Ordering::SeqCst), 4);
}

#[test]
fn this_machine_collects_the_same_identity_twice() {
    let a = tessera_fingerprint::collect_local();
    let b = tessera_fingerprint::collect_local();
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.hardware_id, b.hardware_id);
    assert_eq!(a.environment, b.environment);
}
