//! Windows: a named pipe per user, `\\.\pipe\tessera-agent-<SID>`, with a protected DACL that
//! grants the user's SID alone; peers identified by the token of the pipe client's process.
//!
//! Written to the same interface as `unix.rs` but not built or tested on the project's machines
//! (see the crate README).

use std::ffi::c_void;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, PipeMode, ServerOptions,
};
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_PIPE_BUSY, HANDLE, HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use crate::endpoint::{EndpointEnv, EndpointError, ProbeOutcome};

/// A user as Windows knows it: the string form of its SID (`S-1-5-21-…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(pub String);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SID {}", self.0)
    }
}

/// Who is on the other end of a connection, from its process token (never as the peer claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The SID of the peer process's user.
    pub user: UserId,
    /// Its process id.
    pub pid: Option<u32>,
}

/// The connected transport: the agent holds pipe server ends, clients hold client ends.
#[derive(Debug)]
pub enum Stream {
    /// Agent side.
    Server(NamedPipeServer),
    /// Client side.
    Client(NamedPipeClient),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(c) => Pin::new(c).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(c) => Pin::new(c).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(c) => Pin::new(c).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Client(c) => Pin::new(c).poll_shutdown(cx),
        }
    }
}

/// Closes a handle on drop.
struct OwnedHandle(HANDLE);

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // SAFETY: the handle was returned open by the OS and is closed exactly once, here.
        unsafe { CloseHandle(self.0) };
    }
}

/// Frees `LocalAlloc`ated memory on drop.
struct LocalMem(*mut c_void);

impl Drop for LocalMem {
    fn drop(&mut self) {
        // SAFETY: the pointer came from an API documented to allocate with LocalAlloc.
        unsafe { LocalFree(self.0 as HLOCAL) };
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The user SID of the process with the given handle, as a string.
fn process_user_sid(process: HANDLE) -> io::Result<UserId> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is a valid process handle; `token` receives a new handle we own.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = OwnedHandle(token);
    let mut len = 0u32;
    // SAFETY: a size query with a null buffer, as documented.
    unsafe { GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut len) };
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    // SAFETY: `buf` has the size the previous call asked for.
    if unsafe { GetTokenInformation(token.0, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) }
        == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER; read unaligned to be safe.
    let user: TOKEN_USER = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: the SID points into `buf`, alive for this call; `text` receives a LocalAlloc string.
    if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let _free = LocalMem(text.cast());
    // SAFETY: `text` is a NUL-terminated UTF-16 string owned by `_free`.
    let len = unsafe { (0..).take_while(|&i| *text.add(i) != 0).count() };
    // SAFETY: `len` code units precede the terminator.
    let units = unsafe { std::slice::from_raw_parts(text, len) };
    Ok(UserId(String::from_utf16_lossy(units)))
}

pub(crate) fn current_user() -> Result<UserId, EndpointError> {
    // SAFETY: the pseudo handle of the current process needs no closing.
    process_user_sid(unsafe { GetCurrentProcess() }).map_err(EndpointError::NoUser)
}

pub(crate) fn default_endpoint(_env: &EndpointEnv) -> Result<PathBuf, EndpointError> {
    let UserId(sid) = current_user()?;
    Ok(PathBuf::from(format!(r"\\.\pipe\tessera-agent-{sid}")))
}

pub(crate) async fn probe(path: &Path) -> Result<ProbeOutcome, EndpointError> {
    match ClientOptions::new().open(path) {
        Ok(_) => Ok(ProbeOutcome::Alive),
        Err(e) if is_pipe_busy(&e) => Ok(ProbeOutcome::Alive),
        // A pipe disappears with its last handle: nothing is ever stale.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ProbeOutcome::Absent),
        Err(source) => Err(EndpointError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A security descriptor built from SDDL, freed on drop.
struct Descriptor(LocalMem);

// SAFETY: the descriptor is immutable after creation and only read by CreateNamedPipe.
unsafe impl Send for Descriptor {}
// SAFETY: as above.
unsafe impl Sync for Descriptor {}

impl Descriptor {
    /// Full access for `sid` only; `P` protects the DACL from inherited entries.
    fn for_user(sid: &str) -> io::Result<Self> {
        let sddl = wide(&format!("D:P(A;;GA;;;{sid})"));
        let mut sd: *mut c_void = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated; `sd` receives a LocalAlloc'ed descriptor.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(LocalMem(sd)))
    }

    fn create(&self, name: &Path, first: bool) -> io::Result<NamedPipeServer> {
        let mut attrs = SECURITY_ATTRIBUTES {
            nLength: u32::try_from(std::mem::size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(u32::MAX),
            lpSecurityDescriptor: self.0.0,
            bInheritHandle: 0,
        };
        // SAFETY: `attrs` and the descriptor it points to outlive the call.
        unsafe {
            ServerOptions::new()
                .first_pipe_instance(first)
                .reject_remote_clients(true)
                .pipe_mode(PipeMode::Byte)
                .create_with_security_attributes_raw(name, (&raw mut attrs).cast())
        }
    }
}

/// The listening pipe: one instance always waits for the next client.
pub(crate) struct Listener {
    name: PathBuf,
    descriptor: Descriptor,
    next: tokio::sync::Mutex<NamedPipeServer>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .finish()
    }
}

impl Listener {
    pub(crate) async fn bind(name: &Path) -> Result<Self, EndpointError> {
        let io_err = |source| EndpointError::Io {
            path: name.to_owned(),
            source,
        };
        let UserId(sid) = current_user()?;
        let descriptor = Descriptor::for_user(&sid).map_err(io_err)?;
        let first = descriptor.create(name, true).map_err(|e| {
            // ERROR_ACCESS_DENIED on a first instance means another server owns the name.
            if e.kind() == io::ErrorKind::PermissionDenied {
                EndpointError::AlreadyRunning(name.to_owned())
            } else {
                io_err(e)
            }
        })?;
        Ok(Self {
            name: name.to_owned(),
            descriptor,
            next: tokio::sync::Mutex::new(first),
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<(Stream, io::Result<PeerIdentity>)> {
        let mut next = self.next.lock().await;
        next.connect().await?;
        let fresh = self.descriptor.create(&self.name, false)?;
        let connected = std::mem::replace(&mut *next, fresh);
        let peer = peer_identity(&connected);
        Ok((Stream::Server(connected), peer))
    }
}

fn peer_identity(pipe: &NamedPipeServer) -> io::Result<PeerIdentity> {
    use std::os::windows::io::AsRawHandle;
    let mut pid = 0u32;
    // SAFETY: the pipe handle is valid while `pipe` lives.
    if unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle() as HANDLE, &mut pid) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: opening a process by id; the handle is owned and closed by OwnedHandle.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    let process = OwnedHandle(process);
    Ok(PeerIdentity {
        user: process_user_sid(process.0)?,
        pid: Some(pid),
    })
}

fn is_pipe_busy(e: &io::Error) -> bool {
    e.raw_os_error()
        .and_then(|code| u32::try_from(code).ok())
        .is_some_and(|code| code == ERROR_PIPE_BUSY)
}

pub(crate) async fn connect(path: &Path) -> io::Result<Stream> {
    // Every instance busy: the server creates the next one right after each accept.
    for _ in 0..50 {
        match ClientOptions::new().open(path) {
            Ok(client) => return Ok(Stream::Client(client)),
            Err(e) if is_pipe_busy(&e) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "every agent pipe instance stayed busy",
    ))
}
