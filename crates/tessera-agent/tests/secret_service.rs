//! The real Secret Service store (zbus, GNOME Keyring) through the agent's secrets module.
//!
//! The test re-runs itself under `dbus-run-session` with a fresh, unlocked gnome-keyring
//! (`tests/secret-service-session.sh`). Without `dbus-run-session` and `gnome-keyring-daemon` it
//! fails, naming the Debian packages, unless `TESSERA_SKIP_SECRET_SERVICE=1`.

use std::path::Path;
use std::process::Command;

use tessera_agent::config::Settings;
use tessera_agent::secrets::{Secrets, StoreChoice, StoreKind};

/// Set in the re-run inside the session.
const INSIDE: &str = "TESSERA_TEST_INSIDE_SECRET_SERVICE_SESSION";
const TEST_NAME: &str = "secret_service_store_sets_gets_and_deletes";
const DONE: &str = "secret-service round trip verified";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The check itself, inside the D-Bus session with the keyring unlocked.
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.enc");
    // `auto` must pick the keyring when it works, not the file.
    let choice = Settings::default().secrets.store;
    assert_eq!(choice, StoreChoice::Auto);
    let secrets = Secrets::open(choice, &file, b"identity").unwrap();
    assert_eq!(
        secrets.kind(),
        StoreKind::SecretService,
        "{:?}",
        secrets.note()
    );
    assert_eq!(secrets.note(), None);

    let name = format!("test-{}", std::process::id());
    assert_eq!(secrets.get(&name).unwrap(), None);
    secrets.set(&name, b"CANARY-SS-VALUE-1").unwrap();
    assert_eq!(
        secrets.get(&name).unwrap().unwrap().as_slice(),
        b"CANARY-SS-VALUE-1"
    );
    secrets.set(&name, b"second value").unwrap();
    // another handle on the same keyring sees the overwrite: the value lives in the keyring
    let again = Secrets::open(StoreChoice::Keyring, &file, b"identity").unwrap();
    assert_eq!(
        again.get(&name).unwrap().unwrap().as_slice(),
        b"second value"
    );
    let key = again.get_or_create_random("state-key", 32).unwrap();
    assert_eq!(
        secrets.get("state-key").unwrap().unwrap().as_slice(),
        key.as_slice()
    );
    secrets.delete(&name).unwrap();
    assert_eq!(again.get(&name).unwrap(), None);
    secrets.delete("state-key").unwrap();
    assert!(
        !file.exists(),
        "the keyring store must not write the secrets file"
    );
    println!("{DONE}");
}

#[test]
fn secret_service_store_sets_gets_and_deletes() {
    if std::env::var_os(INSIDE).is_some() {
        round_trip();
        return;
    }
    if std::env::var("TESSERA_SKIP_SECRET_SERVICE").as_deref() == Ok("1") {
        eprintln!("skipped: TESSERA_SKIP_SECRET_SERVICE=1");
        return;
    }
    let missing: Vec<&str> = ["dbus-run-session", "gnome-keyring-daemon"]
        .into_iter()
        .filter(|p| !on_path(p))
        .collect();
    assert!(
        missing.is_empty(),
        "{} not found: install the Debian packages `gnome-keyring dbus-daemon` \
         (or set TESSERA_SKIP_SECRET_SERVICE=1 to skip this test)",
        missing.join(" and ")
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/secret-service-session.sh");
    let output = Command::new("dbus-run-session")
        .arg("--")
        .arg("sh")
        .arg(&script)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(DONE),
        "the Secret Service run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
