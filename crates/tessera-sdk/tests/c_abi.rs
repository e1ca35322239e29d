//! The C ABI tested from C and C++: the programs in `tests/c/` are compiled with
//! `-Wall -Wextra -Wpedantic -Werror`, linked against the libtessera this build produced, and run
//! against the real agent (`tessera-agent`, in-process, with `koogallery-sim` as its marketplace;
//! see `real_agent/mod.rs`) — under ASan+UBSan, against the static library, and under valgrind.
//! `examples/cad-demo` is built from a staged install through its pkg-config file and driven
//! through a License block and an update.
//!
//! Needs gcc, g++, valgrind and pkg-config (`apt-get install gcc g++ valgrind pkg-config`).
//! LeakSanitizer runs with no suppression (`detect_leaks=1`). Valgrind runs with
//! `tests/c/valgrind.supp`, which silences one record only: the `Thread` handle Rust's standard
//! library keeps in a thread-local of each C thread that calls in (see the file).

mod real_agent;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tessera_types::Clock as _;

use real_agent::RealAgent;
use tessera_types::{LicenseState, StateReason};

const C_FLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-g",
];
const CXX_FLAGS: &[&str] = &[
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-g",
];
const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
];
const RUN_BOUND: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sdk_include() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// The directory holding libtessera.so and libtessera.a from this build (cargo test leaves them
/// in target/<profile>/deps; cargo build also copies them to target/<profile>).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_owned();
    for dir in [deps.clone(), deps.parent().unwrap().to_owned()] {
        if dir.join("libtessera.so").exists() && dir.join("libtessera.a").exists() {
            return dir;
        }
    }
    panic!("libtessera.so/.a not found next to {}", exe.display());
}

fn need(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is needed for the C ABI tests: apt-get install {package}"
    );
}

struct Build {
    dir: tempfile::TempDir,
}

impl Build {
    fn new() -> Self {
        need("gcc", "gcc");
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Compiles and links `sources` into an executable named `name`.
    fn program(&self, name: &str, sources: &[&str], extra: &[&str], link_static: bool) -> PathBuf {
        let cpp = sources.iter().any(|s| s.ends_with(".cpp"));
        let (compiler, flags) = if cpp {
            need("g++", "g++");
            ("g++", CXX_FLAGS)
        } else {
            ("gcc", C_FLAGS)
        };
        let out = self.dir.path().join(name);
        let libs = lib_dir();
        let mut cmd = Command::new(compiler);
        cmd.args(flags)
            .args(extra)
            .arg("-I")
            .arg(sdk_include())
            .arg("-I")
            .arg(repo().join("tests/c"))
            .arg("-o")
            .arg(&out);
        for source in sources {
            cmd.arg(repo().join(source));
        }
        if link_static {
            cmd.arg(libs.join("libtessera.a"))
                .args(["-lpthread", "-ldl", "-lm"]);
        } else {
            cmd.arg("-L")
                .arg(&libs)
                .arg("-ltessera")
                .arg(format!("-Wl,-rpath,{}", libs.display()))
                .arg("-pthread");
        }
        let output = cmd.output().unwrap();
        assert!(
            output.status.success(),
            "{compiler} failed for {sources:?}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    }
}

/// Runs `program` (optionally through `wrapper`) against a fresh real agent and emulator; fails
/// the test with its output unless it exits 0.
fn run_against_agent(program: &Path, wrapper: &[&str], env: &[(&str, String)]) {
    let agent = RealAgent::start();
    let mut cmd = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.env("TESSERA_SOCKET", agent.socket_path())
        .env("TESSERA_TEST_LICENSE", &agent.license)
        .env("TESSERA_TEST_CODE", &agent.code)
        .env_remove("TESSERA_PRODUCT_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let (status, stdout, stderr) = wait_bounded(child);
    assert!(
        status == Some(0),
        "{} exited with {status:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        program.display()
    );
    assert!(stdout.contains("all expectations hold"), "{stdout}");
}

fn wait_bounded(child: Child) -> (Option<i32>, String, String) {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        let _ = tx.send(out);
    });
    match rx.recv_timeout(RUN_BOUND) {
        Ok(out) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("pid {pid} did not finish within {RUN_BOUND:?}");
        }
    }
}

fn sanitizer_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "ASAN_OPTIONS",
            "detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
                .to_owned(),
        ),
        (
            "UBSAN_OPTIONS",
            "halt_on_error=1:print_stacktrace=1".to_owned(),
        ),
    ]
}

#[test]
fn c_api_under_asan_and_ubsan() {
    let build = Build::new();
    let api = build.program(
        "api",
        &["tests/c/api.c", "tests/c/double_include.c"],
        SANITIZE,
        false,
    );
    run_against_agent(&api, &[], &sanitizer_env());
    let threads = build.program("threads", &["tests/c/threads.c"], SANITIZE, false);
    run_against_agent(&threads, &[], &sanitizer_env());
}

#[test]
fn cpp_iscdesk_facade_under_asan_and_ubsan() {
    let build = Build::new();
    let facade = build.program("iscdesk", &["tests/c/iscdesk.cpp"], SANITIZE, false);
    run_against_agent(&facade, &[], &sanitizer_env());
}

#[test]
fn c_api_against_the_static_library() {
    let build = Build::new();
    let api = build.program(
        "api-static",
        &["tests/c/api.c", "tests/c/double_include.c"],
        &[],
        true,
    );
    run_against_agent(&api, &[], &[]);
}

#[test]
fn c_api_under_valgrind() {
    need("valgrind", "valgrind");
    let build = Build::new();
    let api = build.program(
        "api-vg",
        &["tests/c/api.c", "tests/c/double_include.c"],
        &[],
        false,
    );
    let suppressions = format!(
        "--suppressions={}",
        repo().join("tests/c/valgrind.supp").display()
    );
    run_against_agent(
        &api,
        &[
            "valgrind",
            "--error-exitcode=1",
            "--leak-check=full",
            "--quiet",
            &suppressions,
        ],
        &[],
    );
}

/// Reads the demo's stdout lines on a thread, so the test can wait for one with a bound.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn wait_for(&mut self, needle: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if self.seen.iter().any(|l| l.contains(needle)) {
                self.seen.clear();
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "the demo never printed {needle:?}; it printed {:?}",
                    self.seen
                ),
            }
        }
    }
}

#[test]
fn cad_demo_built_from_an_install_disables_commands_when_blocked_and_exits_on_update() {
    need("pkg-config", "pkg-config");
    let build = Build::new();
    let prefix = build.dir.path().join("prefix");
    let install = Command::new("sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
        .arg(&prefix)
        .arg(lib_dir())
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    for file in [
        "lib/libtessera.so",
        "lib/libtessera.a",
        "include/tessera.h",
        "include/tessera/version.h",
        "include/tessera/iscdesk.hpp",
        "lib/cmake/Tessera/TesseraConfig.cmake",
        "lib/cmake/Tessera/TesseraConfigVersion.cmake",
    ] {
        assert!(prefix.join(file).exists(), "{file} not installed");
    }
    let pkg = |arg: &str| {
        let out = Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
            .args([arg, "tessera"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(pkg("--modversion"), env!("CARGO_PKG_VERSION"));
    let demo = build.dir.path().join("cad-demo");
    let mut cc = Command::new("gcc");
    cc.args(C_FLAGS).args(SANITIZE);
    cc.args(pkg("--cflags").split_whitespace())
        .arg("-o")
        .arg(&demo)
        .arg(repo().join("examples/cad-demo/cad_demo.c"))
        .args(pkg("--libs").split_whitespace());
    let out = cc.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let agent = RealAgent::start();
    let mut child = Command::new(&demo)
        .env("TESSERA_SOCKET", agent.socket_path())
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .envs(sanitizer_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Lines {
        rx,
        seen: Vec::new(),
    };
    let mut stdin = child.stdin.take().unwrap();
    lines.wait_for("features at start: solver=on mesher=on");
    lines.wait_for("ready");
    writeln!(stdin, "solve").unwrap();
    lines.wait_for("solve: solved");

    // The License runs out on the agent's clock.
    agent.advance(time::Duration::seconds(
        real_agent::EXPIRES_AT - agent.clock.now().unix_timestamp() + 60,
    ));
    let state = agent.state();
    assert_eq!(
        (state.state, state.reason),
        (LicenseState::Blocked, StateReason::Expired)
    );
    lines.wait_for("[license] blocked: commands disabled");
    writeln!(stdin, "solve").unwrap();
    lines.wait_for("solve: disabled");
    lines.wait_for("to renew");
    writeln!(stdin, "mesh").unwrap();
    lines.wait_for("the License has expired");

    // A renewed License is imported.
    let state = agent.renew(365);
    assert_eq!(
        (state.state, state.reason),
        (LicenseState::Active, StateReason::Licensed)
    );
    lines.wait_for("[license] usable again");
    writeln!(stdin, "mesh").unwrap();
    lines.wait_for("mesh: meshed");

    // The user accepts the published (forced) update; the agent tells the application.
    agent.accept_update();
    lines.wait_for("[update] an update is ready (forced)");
    lines.wait_for("saved. exiting for the update.");
    let (status, _, stderr) = wait_bounded(child);
    assert_eq!(status, Some(0), "{stderr}");
}
