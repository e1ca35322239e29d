//! The `tessera-isv` binary: keygen → issue (both forms) → verify, and status on a fresh
//! database.

use std::path::Path;
use std::process::{Command, Output};

const FP: &str = "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672";

fn isv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera-isv"))
        .args(args)
        .output()
        .expect("tessera-isv runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keygen_issue_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let key_id = ok(&isv(&["keygen", "--out", p(&keys), "--bits", "2048"]));
    assert_eq!(key_id.trim().len(), 16, "prints the key id");
    let private = keys.join("signing-key.pem");
    let public = keys.join("public-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is private");
    }

    for form in ["file", "string"] {
        let lic = dir.path().join(format!("customer-{form}.lic"));
        ok(&isv(&[
            "issue",
            "--key",
            p(&private),
            "--product",
            "prod-cad",
            "--fingerprint",
            FP,
            "--not-before",
            "20260101000000",
            "--not-after",
            "20990101000000",
            "--feature",
            "solver=4",
            "--form",
            form,
            "--out",
            p(&lic),
        ]));
        let verified = ok(&isv(&[
            "verify",
            p(&lic),
            "--public-key",
            p(&public),
            "--fingerprint",
            FP,
        ]));
        assert!(
            verified.contains("prod-cad") && verified.contains("valid now"),
            "{verified}"
        );
        let other_device = isv(&[
            "verify",
            p(&lic),
            "--public-key",
            p(&public),
            "--fingerprint",
            "A|B|C|D",
        ]);
        assert!(!other_device.status.success());
        assert!(String::from_utf8_lossy(&other_device.stderr).contains("another device"));
    }

    // Tampering breaks the signature.
    let lic = dir.path().join("customer-file.lic");
    let mut text = std::fs::read_to_string(&lic).unwrap();
    let at = text.find("-----BEGIN TESSERA SIGNATURE-----").unwrap() - 10;
    let replacement = if &text[at..=at] == "A" { "B" } else { "A" };
    text.replace_range(at..=at, replacement);
    std::fs::write(&lic, text).unwrap();
    assert!(
        !isv(&["verify", p(&lic), "--public-key", p(&public)])
            .status
            .success()
    );

    // An expired License verifies but is reported expired (non-zero exit).
    let old = dir.path().join("old.lic");
    ok(&isv(&[
        "issue",
        "--key",
        p(&private),
        "--product",
        "prod-cad",
        "--fingerprint",
        FP,
        "--not-before",
        "20200101000000",
        "--not-after",
        "20210101000000",
        "--out",
        p(&old),
    ]));
    let expired = isv(&["verify", p(&old), "--public-key", p(&public)]);
    assert!(!expired.status.success());
    assert!(String::from_utf8_lossy(&expired.stdout).contains("expired"));
}

#[test]
fn status_reads_a_fresh_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("isv.toml");
    let db = dir.path().join("isv.db");
    std::fs::write(
        &cfg,
        format!(
            r#"database_url = "sqlite://{}"
[server]
listen = "127.0.0.1:0"
plain_http = true
[access_keys]
basic = "k"
[market]
access_key_id = "ak"
secret_access_key = "sk"
[signing]
private_key = "unused.pem"
"#,
            db.display()
        ),
    )
    .unwrap();
    let out = ok(&isv(&["status", "--config", p(&cfg)]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["backend"], "sqlite");
    assert_eq!(v["instances"].as_array().unwrap().len(), 0);
    assert_eq!(v["jobs"]["dead"], 0);
    assert!(db.exists(), "created and migrated on first use");
    assert!(
        !isv(&["retry-job", "--config", p(&cfg), "7"])
            .status
            .success()
    );
}
