//! A process running as another user reaches the socket (the test opens the directory and the
//! socket to it on purpose) and the server still refuses it, by the kernel's peer credentials.
//!
//! Needs root to switch the helper process to `nobody`. Without root the test fails with an
//! explanation, unless `TESSERA_SKIP_PRIVILEGE_TEST=1`.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use common::*;
use tessera_ipc::PROTOCOL_VERSION;
use tessera_ipc::endpoint::Endpoint;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exit codes of the helper process.
const REFUSED: i32 = 0;
const SETUID_FAILED: i32 = 10;
const CONNECT_FAILED: i32 = 11;
const GOT_DATA: i32 = 12;
const READ_TIMED_OUT: i32 = 13;

// Computed at compile time so the forked child does no conversions; both structs are tiny.
#[allow(clippy::cast_possible_truncation)]
const TIMEVAL_LEN: libc::socklen_t = size_of::<libc::timeval>() as libc::socklen_t;
#[allow(clippy::cast_possible_truncation)]
const SOCKADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_un>() as libc::socklen_t;

fn nobody() -> (libc::uid_t, libc::gid_t) {
    let name = CString::new("nobody").unwrap();
    // SAFETY: `name` is a valid C string; the returned record is read before any other passwd
    // call on this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        (65534, 65534)
    } else {
        // SAFETY: non-null result of getpwnam points to a valid passwd record.
        unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
    }
}

fn sockaddr(path: &std::path::Path) -> libc::sockaddr_un {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::sa_family_t::try_from(libc::AF_UNIX).unwrap();
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    addr
}

/// Runs in the forked child: only async-signal-safe system calls, no allocation, then `_exit`.
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

#[tokio::test]
async fn a_peer_running_as_another_user_is_refused_and_logged() {
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
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This runtime is current-thread: the server's tasks log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    // For this test only: let `nobody` traverse the directory and write to the socket.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let endpoint = Endpoint::at(dir.path().join("agent.sock"));
    let server = start(&endpoint, TestAgent::new(), fast_config()).await;
    fs::set_permissions(endpoint.path(), fs::Permissions::from_mode(0o666)).unwrap();

    let (uid, gid) = nobody();
    let addr = sockaddr(endpoint.path());
    let hello = hello_frame(PROTOCOL_VERSION);
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
    let code = libc::WEXITSTATUS(status);
    assert_eq!(
        code, REFUSED,
        "helper exit code {code}: 10 setuid failed, 11 connect failed, 12 got data, 13 timed out"
    );

    let stats = server.handle.stats();
    assert_eq!(stats.refused_peers, 1);
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.sessions, 0);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("refused IPC connection from another user")
            && logs.contains(&format!("peer_user=uid {uid}")),
        "log lacks the refusal: {logs}"
    );

    // Our own user still gets in.
    let client = tessera_ipc::IpcClient::connect(client_config(&endpoint, "owner"))
        .await
        .unwrap();
    assert!(client.status().await.is_ok());
    server.stop().await;
}
