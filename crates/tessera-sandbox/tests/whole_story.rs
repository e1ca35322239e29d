//! The whole sandbox story, in-process and through the binary, bounded well under a minute; and
//! a story that cannot hold stops at the failing step with a non-zero exit.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use koogallery_sim::{DEFAULT_SECRET_KEY, FaultAction, FaultRule};
use tessera_sandbox::{Narrator, SandboxError, World, WorldOptions, run_story};

const BOUND: Duration = Duration::from_secs(60);

fn options() -> WorldOptions {
    // 2048-bit keys: the same code paths as 3072, and key generation stays short.
    WorldOptions {
        key_bits: 2048,
        ..WorldOptions::default()
    }
}

fn recording() -> (Narrator, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    (
        Narrator::new(move |l| sink.lock().unwrap().push(l.to_owned())),
        lines,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_step_of_the_story_holds_and_is_narrated() {
    tokio::time::timeout(BOUND, async {
        let world = World::start(&options()).await.expect("the world starts");
        let (mut narrator, lines) = recording();
        let outcome = run_story(&world, &mut narrator).await;
        let said = lines.lock().unwrap().clone();
        assert!(outcome.is_ok(), "{outcome:?}\n{}", said.join("\n"));

        let numbers: Vec<u32> = narrator.steps().iter().map(|s| s.number).collect();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
        for (i, line) in said.iter().enumerate() {
            assert!(line.starts_with(&format!("{}. ", i + 1)), "{line}");
        }
        let all = said.join("\n");
        for expected in [
            "newInstance → tessera-isv answered",
            "getLicenseAsync event",
            "verified against this device: ok",
            "SDK check: TESSERA_OK",
            "ALIVE",
            "agent: Blocked (Expired)",
            "checkout granted again",
            "EVENT_UPGRADENOTICE (available: true",
            "EVENT_UPDATE (fromForceWin: false)",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        // Secrets stay out of the narration: the buyer token, the API secret, codes in full,
        // License content.
        assert!(!all.contains(&world.buyer_token));
        assert!(!all.contains(DEFAULT_SECRET_KEY));
        assert!(!all.contains("BEGIN"), "{all}");
        // Codes are 64 characters: no long token (code, key, License body) appears.
        let longest = all
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(
            longest < 48,
            "a {longest}-character token was narrated:\n{all}"
        );
        let code_line = &said[5];
        let hint_end = code_line.find('…').expect("the code is shortened");
        assert!(hint_end < code_line.find("bought").unwrap());
        world.shutdown().await;
    })
    .await
    .expect("the story finishes within the bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_that_cannot_hold_stops_the_story_with_its_number() {
    tokio::time::timeout(BOUND, async {
        let world = World::start(&options()).await.expect("the world starts");
        // The authorization-code APIs drop every connection: activation (step 6) cannot work.
        world
            .sim
            .add_fault(FaultRule::new("license.*", FaultAction::DropConnection))
            .unwrap();
        let (mut narrator, _) = recording();
        let outcome = run_story(&world, &mut narrator).await;
        match outcome {
            Err(SandboxError::Step { number, title, .. }) => {
                assert_eq!((number, title), (6, "authorization code activated"));
            }
            other => panic!("expected step 6 to fail, got {other:?}"),
        }
        assert_eq!(
            narrator.steps().len(),
            5,
            "steps 1-5 held and were narrated"
        );
        world.shutdown().await;
    })
    .await
    .expect("the story stops within the bound");
}

#[test]
fn the_binary_narrates_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-sandbox"))
        .args(["--key-bits", "2048"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l.starts_with("10. ")), "{stdout}");
    assert!(stdout.contains("All 10 steps held"), "{stdout}");
}

#[test]
fn help_describes_the_story_and_the_exit_status() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-sandbox"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--stay"), "{text}");
    assert!(
        text.contains("Exit status: 0 when every step held"),
        "{text}"
    );
}
