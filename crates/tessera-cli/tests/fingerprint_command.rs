//! `tessera fingerprint` on fixture trees and its help text.

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tessera-fingerprint/tests/fixtures")
        .join(name)
}

fn tessera(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_remove("TESSERA_DEVICE_OVERRIDE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn text_output_leads_with_the_string_to_paste() {
    let root = fixture("workstation");
    let (ok, out, err) = tessera(&["fingerprint", "--root", root.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("KooGallery fingerprint (paste this into KooGallery):")
    );
    assert_eq!(
        lines.next(),
        Some(
            "  3C:EC:EF:12:34:56,A0:36:9F:8A:BC:DE|S6B0NL0W412345H,WD-WCC4N7ZK1234||BFEBFBFF00090672"
        )
    );
    assert!(out.contains("Hardware id:  HWID1-"), "{out}");
    assert!(out.contains("(6 components)"), "{out}");
    assert!(out.contains("Environment:  bare metal"), "{out}");
    assert!(
        !out.contains("Components"),
        "no explanation unless asked: {out}"
    );
}

#[test]
fn explain_lists_every_source_and_why_it_was_left_out() {
    let root = fixture("workstation");
    let (ok, out, err) = tessera(&["fingerprint", "--explain", "--root", root.to_str().unwrap()]);
    assert!(ok, "{err}");
    for expected in [
        "[used      ] disk               /sys/block/nvme0n1/device/serial = S6B0NL0W412345H",
        "[excluded  ] network adapter    /sys/class/net/docker0  (container bridge",
        "[excluded  ] network adapter    /sys/class/net/tun0  (tun/tap interface (VPN or emulator)",
        "[excluded  ] board serial       /sys/class/dmi/id/board_serial  (readable only by root",
        "Environment evidence:",
        "Hardware id components (salt ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn json_output_carries_the_identity_and_components_only_with_explain() {
    let root = fixture("docker-container");
    let (ok, out, err) = tessera(&["fingerprint", "--json", "--root", root.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fingerprint"], "|S6B0NL0W412345H||BFEBFBFF00090672");
    assert_eq!(v["environment"]["kind"], "container");
    assert_eq!(v["override_file"]["state"], "absent");
    assert!(v["hardware_id"]["components"].as_array().unwrap().len() >= 3);
    assert!(
        v.get("components").is_none(),
        "raw values only with --explain"
    );

    let (ok, out, _) = tessera(&[
        "fingerprint",
        "--json",
        "--explain",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "excluded")
    );
}

#[test]
fn override_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device-override.json");
    std::fs::write(&path, "{\"format\":\"nope\"}").unwrap();
    let root = fixture("docker-container");
    let (ok, out, err) = tessera(&[
        "fingerprint",
        "--root",
        root.to_str().unwrap(),
        "--override-file",
        "/etc/tessera/absent.json",
    ]);
    assert!(ok, "{err}");
    assert!(!out.contains("Override:"), "{out}");
    // Outside --root the override path is a real path.
    let (ok, out, err) = tessera(&["fingerprint", "--override-file", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("is unusable"), "{out}");
}

#[test]
fn help_explains_the_command() {
    let (ok, out, _) = tessera(&["fingerprint", "--help"]);
    assert!(ok);
    for expected in [
        "--json",
        "--explain",
        "paste into KooGallery",
        "root and every user",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let (ok, out, _) = tessera(&["--help"]);
    assert!(ok);
    assert!(out.contains("fingerprint"));
}

#[test]
fn a_missing_root_directory_is_an_error() {
    let (ok, _, err) = tessera(&["fingerprint", "--root", "/nonexistent/tree"]);
    assert!(!ok);
    assert!(
        err.starts_with("tessera: /nonexistent/tree is not a directory"),
        "{err}"
    );
}
