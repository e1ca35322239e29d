//! Security of the agent: another user cannot connect; malformed, truncated and oversized
//! frames close only their own connection; secrets never reach the logs or the database in
//! clear.
//!
//! The other-user test needs root to start a helper process as `nobody`; without root it fails
//! with an explanation unless `TESSERA_SKIP_PRIVILEGE_TEST=1`.

mod common;

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration as StdDuration;

use common::process::{BinAgent, kill9, real_time_sim, terminate};
use common::{PRODUCT, env};
use tessera_ipc::proto::{AuthCode, Hello, LicenseSource, LicenseText};
use tessera_ipc::{AppInfo, Call, ClientMsg, PROTOCOL_VERSION, Reply};
use tessera_license::{Binding, FORMAT_VERSION, Feature, License, Nonce, SigningKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

const REFUSED: i32 = 0;
const SETUID_FAILED: i32 = 10;
const CONNECT_FAILED: i32 = 11;
const GOT_DATA: i32 = 12;
const READ_TIMED_OUT: i32 = 13;
const IO_BOUND: StdDuration = StdDuration::from_secs(20);

// Computed at compile time so the forked child does no conversions; both structs are tiny.
#[allow(clippy::cast_possible_truncation)]
const TIMEVAL_LEN: libc::socklen_t = size_of::<libc::timeval>() as libc::socklen_t;
#[allow(clippy::cast_possible_truncation)]
const SOCKADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_un>() as libc::socklen_t;

fn nobody() -> (libc::uid_t, libc::gid_t) {
    let name = CString::new("nobody").unwrap();
    // SAFETY: `name` is a valid C string; the record is read before any other passwd call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        (65534, 65534)
    } else {
        // SAFETY: a non-null getpwnam result points to a valid passwd record.
        unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
    }
}

fn sockaddr(path: &Path) -> libc::sockaddr_un {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::sa_family_t::try_from(libc::AF_UNIX).unwrap();
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    addr
}

fn frame(msg: &ClientMsg) -> Vec<u8> {
    let body = serde_json::to_vec(msg).unwrap();
    let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn hello_frame() -> Vec<u8> {
    frame(&ClientMsg::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        app: AppInfo {
            product_id: PRODUCT.into(),
            name: "intruder".into(),
            version: "1".into(),
            pid: 1,
        },
        resume_session: None,
    }))
}

/// Runs in the forked child: only async-signal-safe calls on data prepared before the fork.
fn helper(uid: libc::uid_t, gid: libc::gid_t, addr: &libc::sockaddr_un, hello: &[u8]) -> ! {
    // SAFETY: plain system calls on values prepared before fork; the child never returns.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
            || libc::getuid() != uid
        {
            libc::_exit(SETUID_FAILED);
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        let timeout = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            TIMEVAL_LEN,
        );
        if fd < 0 || libc::connect(fd, (addr as *const libc::sockaddr_un).cast(), SOCKADDR_LEN) != 0
        {
            libc::_exit(CONNECT_FAILED);
        }
        libc::write(fd, hello.as_ptr().cast(), hello.len());
        let mut buf = [0u8; 64];
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        if n > 0 {
            libc::_exit(GOT_DATA);
        }
        if n < 0 && *libc::__errno_location() == libc::EAGAIN {
            libc::_exit(READ_TIMED_OUT);
        }
        libc::_exit(REFUSED);
    }
}

async fn run_as_nobody(socket: &Path) -> i32 {
    let (uid, gid) = nobody();
    let addr = sockaddr(socket);
    let hello = hello_frame();
    // SAFETY: the child runs only `helper`, which makes async-signal-safe calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        helper(uid, gid, &addr, &hello);
    }
    let status = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert_eq!(rc, pid, "waitpid failed");
        status
    });
    let status = tokio::time::timeout(IO_BOUND, status)
        .await
        .expect("helper finishes")
        .unwrap();
    assert!(libc::WIFEXITED(status), "helper crashed: {status}");
    libc::WEXITSTATUS(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_connect_to_the_agent() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("TESSERA_SKIP_PRIVILEGE_TEST").as_deref() == Ok("1") {
            eprintln!("skipped: not root and TESSERA_SKIP_PRIVILEGE_TEST=1");
            return;
        }
        panic!(
            "this test must run as root to start a helper process as user `nobody`; \
             run it as root or set TESSERA_SKIP_PRIVILEGE_TEST=1 to skip it"
        );
    }
    let env = env("").await;
    let socket = env.paths.socket.clone();
    let owner = env.client(PRODUCT).await;

    // As installed: the private directories keep the other user from reaching the socket.
    let code = run_as_nobody(&socket).await;
    assert_eq!(code, CONNECT_FAILED, "helper exit code {code}");

    // Even with the directories and the socket opened to everyone, the peer check refuses.
    for d in [env.dir.path(), socket.parent().unwrap()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let code = run_as_nobody(&socket).await;
    assert_eq!(
        code, REFUSED,
        "helper exit code {code}: 10 setuid failed, 11 connect failed, 12 got data, 13 timed out"
    );
    let stats = env.agent().ipc_stats();
    assert_eq!(stats.refused_peers, 1);
    assert_eq!(stats.sessions, 1);
    assert!(owner.status().await.is_ok());
}

/// Sends `bytes` on a fresh connection and waits until the agent closes it.
async fn closed_after(socket: &Path, bytes: &[u8], then_half_close: bool) {
    let mut s = UnixStream::connect(socket).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if then_half_close {
        s.shutdown().await.unwrap();
    }
    let mut sink = vec![0u8; 4096];
    let closed = tokio::time::timeout(IO_BOUND, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the agent kept a bad connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_own_connection() {
    let env = env("").await;
    let socket = env.paths.socket.clone();
    let app = env.client(PRODUCT).await;
    let code = env.new_code();
    env.activate(&app, &code).await;
    let lease = app.checkout("solver").await.unwrap();

    let oversized = u32::MAX.to_be_bytes().to_vec();
    let mut malformed = 12u32.to_be_bytes().to_vec();
    malformed.extend_from_slice(b"{not json!!}");
    let mut truncated = 400u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(br#"{"type":"hello","protocol":1"#);
    let mut bad_request = hello_frame();
    let mut garbage = 5u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff, 0xfe, 0x00, 0x01, 0x02]);
    bad_request.extend_from_slice(&garbage);
    let mut just_over = (64 * 1024u32 + 1).to_be_bytes().to_vec();
    just_over.extend(std::iter::repeat_n(b' ', 1024));

    for (what, bytes, half_close) in [
        ("oversized", &oversized, false),
        ("just over 64 KiB", &just_over, false),
        ("malformed", &malformed, false),
        ("truncated", &truncated, true),
        ("garbage after hello", &bad_request, false),
    ] {
        closed_after(&socket, bytes, half_close).await;
        // the established session is untouched, lease and all
        let renewed = app
            .call(Call::RenewLease {
                lease_id: lease.lease_id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("after the {what} frame: {e:?}"));
        assert!(matches!(renewed, Reply::Lease(_)), "{what}: {renewed:?}");
        // and new clients still get in
        let fresh = env.client("").await;
        assert!(fresh.status().await.is_ok(), "after the {what} frame");
    }
    assert!(env.agent().ipc_stats().sessions >= 1);
}

fn all_bytes_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes_under(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_and_the_database() {
    const KEY_PRIVATE: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.pkcs8.pem");
    const KEY_PUBLIC: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.spki.pem");
    const TOKEN: &str = "CANARY-DELIVERY-TOKEN-5e1f9b";
    let dir = tempfile::tempdir().unwrap();
    let sim = real_time_sim(dir.path()).await;
    let agent = BinAgent::under(&dir.path().join("agent"));
    agent.configure(&sim, "");
    agent.add_product("a.toml", &common::process::code_product("SEC-A"));
    agent.add_product(
        "b.toml",
        &format!(
            "product_id = \"SEC-B\"\nname = \"B\"\nmodels = [\"license_file\"]\n\
             [[keys]]\nkey_id = \"f05d7a13b971fd09\"\npublic_key_pem = \"\"\"\n{KEY_PUBLIC}\"\"\"\n"
        ),
    );
    agent.import_credentials(Some(TOKEN));

    let order = sim
        .create_order(&koogallery_sim::NewOrder::yearly(
            koogallery_sim::LicenseModel::AuthorizationCode,
            "SEC-A",
        ))
        .unwrap();
    let code = sim.issue_code(&order.order.order_id, None).unwrap().code;
    sim.accept_code(&code).unwrap();
    let here = tessera_fingerprint::collect_local()
        .fingerprint
        .as_str()
        .to_owned();
    let now = time::OffsetDateTime::now_utc();
    let license = SigningKey::from_pkcs8_pem(KEY_PRIVATE)
        .unwrap()
        .sign_file(&License {
            format_version: FORMAT_VERSION,
            license_id: "lic-canary".into(),
            product_id: "SEC-B".into(),
            instance_id: "inst".into(),
            order_id: "CS1".into(),
            features: vec![Feature {
                name: "solver".into(),
                count: 1,
                max_version: None,
            }],
            binding: Binding::fingerprint(&here),
            issued_at: now,
            not_before: now - time::Duration::days(1),
            not_after: Some(now + time::Duration::days(30)),
            trial: false,
            nonce: Nonce([5; 16]),
        })
        .unwrap();

    let mut child = agent.spawn();
    let cli = agent.connect(&mut child).await;
    cli.call(Call::SetLogLevel {
        filter: "trace".into(),
    })
    .await
    .unwrap();
    let activated = cli
        .call(Call::ActivateCode {
            product_id: Some("SEC-A".into()),
            code: AuthCode(code.clone()),
        })
        .await
        .unwrap();
    assert!(matches!(activated, Reply::ProductState(_)), "{activated:?}");
    // a refused activation logs its failure too
    let _ = cli
        .call(Call::ActivateCode {
            product_id: Some("SEC-A".into()),
            code: AuthCode("PLCANARYUNKNOWNCODE0042".into()),
        })
        .await;
    let imported = cli
        .call(Call::ImportLicense {
            product_id: Some("SEC-B".into()),
            source: LicenseSource::Content {
                content: LicenseText(license.clone()),
            },
        })
        .await
        .unwrap();
    assert!(matches!(imported, Reply::ProductState(_)), "{imported:?}");
    drop(cli);
    assert!(terminate(&mut child).success());
    // a crash leaves WAL contents behind: look at those too
    let mut child = agent.spawn();
    let _cli = agent.connect(&mut child).await;
    kill9(&mut child);

    // The License body: every long line of it (header lines are not secret).
    let body_lines: Vec<&str> = license
        .lines()
        .filter(|l| l.len() >= 24 && !l.starts_with("-----"))
        .collect();
    assert!(!body_lines.is_empty());
    let mut canaries = vec![
        ("secret key", koogallery_sim::DEFAULT_SECRET_KEY),
        ("access key", koogallery_sim::DEFAULT_ACCESS_KEY),
        ("authorization code", code.as_str()),
        ("refused code", "PLCANARYUNKNOWNCODE0042"),
        ("delivery token", TOKEN),
    ];
    canaries.extend(body_lines.iter().map(|l| ("License body", *l)));
    let files = all_bytes_under(&agent.state_dir);
    assert!(files.iter().any(|(p, _)| p.contains("logs")), "no log file");
    assert!(
        files.iter().any(|(p, _)| p.ends_with("agent.db")),
        "no database"
    );
    let logged: usize = files
        .iter()
        .filter(|(p, _)| p.contains("logs"))
        .map(|(_, b)| b.len())
        .sum();
    assert!(
        logged > 1000,
        "the log is too short to mean anything: {logged} bytes"
    );
    for (path, bytes) in &files {
        for (what, canary) in &canaries {
            assert!(!contains(bytes, canary), "the {what} is in clear in {path}");
        }
    }
}
