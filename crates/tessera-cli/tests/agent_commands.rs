//! Every agent-facing command run as a user runs it: the `tessera` binary against an in-process
//! agent and marketplace, checking human and JSON output and the documented exit codes.

mod common;

use common::{CODE_PRODUCT, Env, FILE_PRODUCT, KEY_PRIVATE, env};
use koogallery_sim::ManifestSpec;
use tessera_license::{Binding, FORMAT_VERSION, Feature, License, Nonce, SigningKey};
use tessera_types::{Clock as _, LicenseState, Snapshot};
use time::{Duration, OffsetDateTime};

fn license_file(env: &Env, fingerprint: &str, days: i64) -> String {
    let now = env.clock.now();
    let license = License {
        format_version: FORMAT_VERSION,
        license_id: "lic-cli-1".into(),
        product_id: FILE_PRODUCT.into(),
        instance_id: "inst-1".into(),
        order_id: "CS1".into(),
        features: vec![Feature {
            name: "solver".into(),
            count: 2,
            max_version: None,
        }],
        binding: Binding::fingerprint(fingerprint),
        issued_at: now - Duration::days(1),
        not_before: now - Duration::days(1),
        not_after: Some(now + Duration::days(days)),
        trial: false,
        nonce: Nonce([3; 16]),
    };
    SigningKey::from_pkcs8_pem(KEY_PRIVATE)
        .unwrap()
        .sign_file(&license)
        .unwrap()
}

fn here() -> String {
    tessera_fingerprint::collect_local()
        .fingerprint
        .as_str()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_in_text_and_json() {
    let env = env().await;
    let run = env.tessera(&["status"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("FooCAD (P-CAD)"), "{run}");
    assert!(run.stdout.contains("BLOCKED (no_license)"), "{run}");
    assert!(
        run.stdout
            .contains("next step:  activate your code: tessera activate CODE"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("next step:  import your License: tessera license import FILE"),
        "{run}"
    );

    let run = env.tessera(&["status", "--json"]).await;
    assert_eq!(run.code, 0, "{run}");
    let snapshot: Snapshot =
        serde_json::from_str(&run.stdout).expect("status --json is a Snapshot");
    assert_eq!(
        snapshot,
        env.agent().snapshot().clone_with_time(snapshot.taken_at)
    );

    // A reader that stops early is not an error.
    let mut head = env.tessera_command(&["status", "--json"]);
    let run = tokio::task::spawn_blocking(move || {
        let mut child = head
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let run = env.tessera(&["status", "--product", "NOPE"]).await;
    assert_eq!(run.code, 4, "{run}");
    assert!(run.stderr.contains("known products: P-CAD, P-CAE"), "{run}");
}

trait WithTime {
    fn clone_with_time(&self, t: OffsetDateTime) -> Snapshot;
}

impl WithTime for Snapshot {
    fn clone_with_time(&self, t: OffsetDateTime) -> Snapshot {
        let mut s = self.clone();
        s.taken_at = t;
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_a_code_then_heartbeat_the_next_day() {
    let env = env().await;
    let code = env.new_code();

    let run = env.tessera(&["activate", "PLNOSUCHCODE0000"]).await;
    assert_eq!(run.code, 4, "an unknown code is refused: {run}");
    assert!(run.stderr.contains("92020005"), "{run}");
    assert!(
        run.stderr.contains("what to do: copy the code again"),
        "{run}"
    );
    assert!(!run.stderr.contains(&code));

    // From standard input, so the code stays out of the shell history.
    let run = env
        .tessera_with_stdin(&["activate", "-"], Some(&format!("{code}\n")))
        .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("Activated. P-CAD"), "{run}");
    assert!(run.stdout.contains("ACTIVE (licensed)"), "{run}");
    assert!(
        !run.stdout.contains(&code),
        "the code is never printed: {run}"
    );
    assert_eq!(
        env.agent().snapshot().product(CODE_PRODUCT).unwrap().state,
        LicenseState::Active
    );

    // Same day: nothing is due, and the command says so.
    let run = env.tessera(&["heartbeat", "--wait", "2"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("no check was due"), "{run}");

    // Next day: running the command is the day's first use, so the agent checks at once.
    let before = env.sim.code(&code).unwrap().heartbeats;
    env.clock.advance(Duration::days(1));
    let run = env.tessera(&["heartbeat", "--product", CODE_PRODUCT]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("the marketplace answered ALIVE"),
        "{run}"
    );
    assert!(env.sim.code(&code).unwrap().heartbeats > before);

    // Expired in the marketplace: the next check blocks, exit 5 with what to do.
    env.sim.expire_code(&code).unwrap();
    env.clock.advance(Duration::days(1));
    let run = env.tessera(&["heartbeat"]).await;
    assert_eq!(run.code, 5, "{run}");
    assert!(run.stderr.contains("EXPIRED"), "{run}");
    assert!(run.stderr.contains("what to do: renew"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_import_good_foreign_and_from_stdin_then_show() {
    let env = env().await;
    let foreign = env.dir.path().join("foreign.lic");
    std::fs::write(
        &foreign,
        license_file(&env, "AA:BB:CC:DD:EE:FF|OTHERDISK|OTHERBOARD|OTHERCPU", 30),
    )
    .unwrap();
    let run = env
        .tessera(&["license", "import", foreign.to_str().unwrap()])
        .await;
    assert_eq!(
        run.code, 5,
        "a License for another device is refused: {run}"
    );
    assert!(run.stdout.contains("binding_mismatch"), "{run}");
    assert!(run.stdout.contains("tessera fingerprint"), "{run}");

    let run = env
        .tessera(&["license", "import", "/nonexistent/x.lic"])
        .await;
    assert_eq!(run.code, 4, "{run}");

    let good = license_file(&env, &here(), 30);
    let run = env
        .tessera_with_stdin(&["license", "import", "-"], Some(&good))
        .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("License imported and verified."),
        "{run}"
    );
    assert!(run.stdout.contains("solver — 0 of 2 seats in use"), "{run}");
    assert!(
        !run.stdout.contains("BEGIN"),
        "License content is never printed"
    );

    let run = env.tessera(&["license", "show", "--json"]).await;
    assert_eq!(run.code, 0, "{run}");
    let shown: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown[0]["product_id"], FILE_PRODUCT);
    assert_eq!(shown[0]["state"], "Active");
    let run = env.tessera(&["license", "show"]).await;
    assert!(run.stdout.contains("ACTIVE (licensed)"), "{run}");
    assert!(
        !run.stdout.contains("P-CAD"),
        "only License-file products: {run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_updates_and_accept_update() {
    let env = env().await;
    let run = env
        .tessera(&["accept-update", "--product", FILE_PRODUCT])
        .await;
    assert_eq!(run.code, 4, "nothing to accept yet: {run}");
    assert!(run.stderr.contains("tessera check-updates"), "{run}");

    let now = env.clock.now();
    env.sim
        .publish_manifest(
            FILE_PRODUCT,
            ManifestSpec {
                latest_version: "1.1.0".into(),
                min_supported_version: "1.0.0".into(),
                forced: false,
                released_at: now,
                download_url: "https://example.invalid/pkg".into(),
                sha256: "0".repeat(64),
                notes: String::new(),
                valid_until: now + Duration::days(30),
            },
        )
        .unwrap();
    let run = env
        .tessera(&["check-updates", "--product", FILE_PRODUCT])
        .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("a newer version is available"), "{run}");
    let run = env
        .tessera(&["accept-update", "--product", FILE_PRODUCT])
        .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("upgrade accepted"), "{run}");

    let run = env.tessera(&["check-updates"]).await;
    assert_eq!(run.code, 4, "two products: one must be named: {run}");
    assert!(run.stderr.contains("--product"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_working_setup_and_fails_without_an_agent() {
    let mut env = env().await;
    let run = env.tessera(&["doctor", "--json"]).await;
    assert_eq!(run.code, 0, "{run}");
    let checks: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let verdict = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["verdict"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name} check in {checks}"))
    };
    for name in ["socket", "agent", "clock", "marketplace", "products"] {
        assert_eq!(verdict(name), "ok", "{name}: {checks}");
    }
    assert_eq!(verdict("keyring"), "warn", "file store: {checks}");

    let run = env.tessera(&["doctor"]).await;
    assert!(run.stdout.contains("[ok  ] agent"), "{run}");
    assert!(run.stdout.contains("P-CAD"), "{run}");

    env.agent.take().unwrap().shutdown("test", false).await;
    let run = env.tessera(&["doctor", "--offline"]).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("[FAIL] agent"), "{run}");
    assert!(
        run.stdout.contains("systemctl --user start tessera-agent"),
        "{run}"
    );

    let run = env.tessera(&["status"]).await;
    assert_eq!(run.code, 3, "agent unreachable: {run}");
    assert!(run.stderr.contains("what to do: start the agent"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_prints_the_end_of_the_newest_file() {
    let env = env().await;
    let dir = env.paths.state_dir.join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let lines: Vec<String> = (1..=100).map(|i| format!("line {i}")).collect();
    std::fs::write(
        dir.join("tessera-agent.2026-01-01.log"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let run = env.tessera(&["logs", "-n", "3"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout, "line 98\nline 99\nline 100\n");
    let run = env.tessera(&["logs", "--path"]).await;
    assert_eq!(run.stdout.trim(), dir.display().to_string());
    // This in-process agent's log level belongs to its host.
    let run = env.tessera(&["logs", "--level", "debug"]).await;
    assert_eq!(run.code, 4, "{run}");
}
