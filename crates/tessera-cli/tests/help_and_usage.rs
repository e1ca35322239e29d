//! `--help` for every command, and the usage exit code.

use std::process::Command;

fn tessera(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_command_has_help() {
    for (cmd, says) in [
        (vec!["status"], "--json"),
        (vec!["activate"], "<CODE>"),
        (vec!["license"], "import"),
        (vec!["license", "import"], "<FILE>"),
        (vec!["license", "show"], "--product"),
        (vec!["fingerprint"], "--explain"),
        (vec!["heartbeat"], "--wait"),
        (vec!["check-updates"], "--product"),
        (vec!["accept-update"], "--product"),
        (vec!["logs"], "--level"),
        (vec!["doctor"], "--offline"),
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let (code, text) = tessera(&args);
        assert_eq!(code, 0, "{cmd:?}: {text}");
        assert!(
            text.contains(&format!("Usage: tessera {}", cmd.join(" "))),
            "{cmd:?}: {text}"
        );
        assert!(text.contains(says), "{cmd:?} help lacks {says}: {text}");
    }
    let (code, text) = tessera(&["--help"]);
    assert_eq!(code, 0);
    assert!(text.contains("Exit status: 0 ok"), "{text}");
}

#[test]
fn a_wrong_command_line_exits_2() {
    let (code, _) = tessera(&["activate"]);
    assert_eq!(code, 2);
    let (code, _) = tessera(&["no-such-command"]);
    assert_eq!(code, 2);
}
