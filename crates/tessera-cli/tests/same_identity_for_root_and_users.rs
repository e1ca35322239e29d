//! `tessera fingerprint` gives root and an unprivileged user the same identity on this machine.
//!
//! Needs root (to create the throwaway user and switch to it with `runuser`). Run as another
//! user it fails, unless `TESSERA_SKIP_PRIVILEGE_TEST=1` says the environment cannot do it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const USER: &str = "tessera-fp-test";

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("`id -u` runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn ensure_user() {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .expect("`id` runs")
        .status
        .success();
    if !exists {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .expect("useradd runs");
        // 9: created meanwhile by a concurrent run.
        assert!(
            status.success() || status.code() == Some(9),
            "useradd failed: {status}"
        );
    }
}

#[test]
fn root_and_an_unprivileged_user_get_the_same_identity() {
    if !is_root() {
        if std::env::var("TESSERA_SKIP_PRIVILEGE_TEST").as_deref() == Ok("1") {
            eprintln!("not root: skipped because TESSERA_SKIP_PRIVILEGE_TEST=1");
            return;
        }
        panic!(
            "this test must run as root to create a user and compare its view with root's; \
             set TESSERA_SKIP_PRIVILEGE_TEST=1 to skip it where that is impossible"
        );
    }
    ensure_user();
    // The target dir may not be reachable for other users: run a copy from a world-readable dir.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("tessera");
    std::fs::copy(env!("CARGO_BIN_EXE_tessera"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();

    let args = ["fingerprint", "--json", "--explain"];
    let as_root = Command::new(&binary)
        .args(args)
        .env_remove("TESSERA_DEVICE_OVERRIDE")
        .output()
        .unwrap();
    assert!(
        as_root.status.success(),
        "{}",
        String::from_utf8_lossy(&as_root.stderr)
    );
    let as_user = Command::new("runuser")
        .args(["-u", USER, "--"])
        .arg(&binary)
        .args(args)
        .current_dir(dir.path())
        .env_remove("TESSERA_DEVICE_OVERRIDE")
        .output()
        .unwrap();
    assert!(
        as_user.status.success(),
        "{}",
        String::from_utf8_lossy(&as_user.stderr)
    );

    let root: serde_json::Value = serde_json::from_slice(&as_root.stdout).unwrap();
    let user: serde_json::Value = serde_json::from_slice(&as_user.stdout).unwrap();
    for key in [
        "fingerprint",
        "hardware_id",
        "hardware_id_summary",
        "environment",
        "components",
        "warnings",
    ] {
        assert_eq!(
            root[key], user[key],
            "{key} differs between root and {USER}"
        );
    }
    assert!(!root["fingerprint"].as_str().unwrap().is_empty());
}
