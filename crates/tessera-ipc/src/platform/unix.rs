//! Unix: a socket file in a directory private to the user, peers identified by `SO_PEERCRED`
//! (`getpeereid` on the BSDs and macOS, through tokio).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::endpoint::{EndpointEnv, EndpointError, ProbeOutcome};

/// A user as the kernel knows it (uid).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(pub u32);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {}", self.0)
    }
}

/// The connected transport.
pub type Stream = UnixStream;

/// Who is on the other end of a connection, as the kernel reports it (never as the peer claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Effective uid of the peer when it connected.
    pub user: UserId,
    /// Its process id, where the OS reports it.
    pub pid: Option<u32>,
}

const DIR_NAME: &str = "tessera";
const SOCKET_NAME: &str = "agent.sock";

pub(crate) fn current_user() -> Result<UserId, EndpointError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Ok(UserId(unsafe { libc::geteuid() }))
}

pub(crate) fn default_endpoint(env: &EndpointEnv) -> Result<PathBuf, EndpointError> {
    if let Some(runtime) = env.xdg_runtime_dir.as_ref().map(PathBuf::from)
        && runtime.is_absolute()
    {
        return Ok(runtime.join(DIR_NAME).join(SOCKET_NAME));
    }
    // macOS gives every user a private TMPDIR; elsewhere /tmp is shared, hence the uid suffix
    // and the ownership checks in `prepare_dir`.
    if cfg!(target_os = "macos")
        && let Some(tmp) = env.tmpdir.as_ref().map(PathBuf::from)
        && tmp.is_absolute()
    {
        return Ok(tmp.join(DIR_NAME).join(SOCKET_NAME));
    }
    let UserId(uid) = current_user()?;
    Ok(PathBuf::from(format!("/tmp/tessera-{uid}")).join(SOCKET_NAME))
}

/// Makes sure `dir` exists, is a real directory owned by us, and that nobody else can create or
/// replace entries in it. A directory we create is 0700; an existing one is left as it is when
/// safe (a test may open it to other users on purpose with 0711).
fn prepare_dir(dir: &Path) -> Result<(), EndpointError> {
    let io_err = |source| EndpointError::Io {
        path: dir.to_owned(),
        source,
    };
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(io_err)?;
    let insecure = |why| EndpointError::InsecureDir {
        path: dir.to_owned(),
        why,
    };
    if meta.file_type().is_symlink() {
        return Err(insecure("it is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(insecure("it is not a directory"));
    }
    if UserId(meta.uid()) != current_user()? {
        return Err(insecure("it is owned by another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(insecure("other users can write to it"));
    }
    Ok(())
}

pub(crate) async fn probe(path: &Path) -> Result<ProbeOutcome, EndpointError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ProbeOutcome::Absent),
        Err(source) => {
            return Err(EndpointError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(EndpointError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Ok(ProbeOutcome::Alive),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale agent socket");
            match fs::remove_file(path) {
                Ok(()) => Ok(ProbeOutcome::StaleRemoved),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ProbeOutcome::StaleRemoved),
                Err(source) => Err(EndpointError::Io {
                    path: path.to_owned(),
                    source,
                }),
            }
        }
        Err(source) => Err(EndpointError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A bound socket, the lock that makes it ours, and cleanup on drop.
#[derive(Debug)]
pub(crate) struct Listener {
    inner: UnixListener,
    path: PathBuf,
    // Held for the listener's life: a second agent fails to take it and stops.
    _lock: File,
}

impl Listener {
    pub(crate) async fn bind(path: &Path) -> Result<Self, EndpointError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            prepare_dir(dir)?;
        }
        let lock = take_lock(path)?;
        match probe(path).await? {
            ProbeOutcome::Alive => return Err(EndpointError::AlreadyRunning(path.to_owned())),
            ProbeOutcome::Absent | ProbeOutcome::StaleRemoved => {}
        }
        let io_err = |source| EndpointError::Io {
            path: path.to_owned(),
            source,
        };
        let inner = UnixListener::bind(path).map_err(io_err)?;
        // The directory already keeps other users out; 0600 keeps the socket private even when
        // someone points TESSERA_SOCKET into a shared directory.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        Ok(Self {
            inner,
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<(Stream, io::Result<PeerIdentity>)> {
        let (stream, _) = self.inner.accept().await?;
        let peer = stream.peer_cred().map(|cred| PeerIdentity {
            user: UserId(cred.uid()),
            pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
        });
        Ok((stream, peer))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Still holding the lock, so the file at `path` is ours to remove.
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove agent socket");
        }
    }
}

fn take_lock(socket: &Path) -> Result<File, EndpointError> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| EndpointError::Io {
            path: path.clone(),
            source,
        })?;
    // SAFETY: the descriptor is open and owned by `file` for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock {
            EndpointError::AlreadyRunning(socket.to_owned())
        } else {
            EndpointError::Io { path, source: err }
        });
    }
    Ok(file)
}

pub(crate) async fn connect(path: &Path) -> io::Result<Stream> {
    UnixStream::connect(path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_prefers_runtime_dir_then_per_user_tmp() {
        let env = EndpointEnv {
            socket: None,
            xdg_runtime_dir: Some("/run/user/1000".into()),
            tmpdir: None,
        };
        assert_eq!(
            default_endpoint(&env).unwrap(),
            PathBuf::from("/run/user/1000/tessera/agent.sock")
        );
        let relative = EndpointEnv {
            xdg_runtime_dir: Some("run/user".into()),
            ..EndpointEnv::default()
        };
        let UserId(uid) = current_user().unwrap();
        if !cfg!(target_os = "macos") {
            assert_eq!(
                default_endpoint(&relative).unwrap(),
                PathBuf::from(format!("/tmp/tessera-{uid}/agent.sock"))
            );
        }
    }

    #[test]
    fn socket_dir_is_created_private_and_unsafe_dirs_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tessera");
        prepare_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            prepare_dir(&open),
            Err(EndpointError::InsecureDir {
                why: "other users can write to it",
                ..
            })
        ));

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            prepare_dir(&link),
            Err(EndpointError::InsecureDir {
                why: "it is a symbolic link",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn probe_removes_stale_sockets_only() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("agent.sock");
        assert_eq!(probe(&sock).await.unwrap(), ProbeOutcome::Absent);

        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(probe(&sock).await.unwrap(), ProbeOutcome::Alive);
        drop(listener);
        assert_eq!(probe(&sock).await.unwrap(), ProbeOutcome::StaleRemoved);
        assert!(!sock.exists());

        fs::write(&sock, b"not a socket").unwrap();
        assert!(matches!(
            probe(&sock).await,
            Err(EndpointError::NotASocket(_))
        ));
        assert!(sock.exists());
    }

    #[tokio::test]
    async fn second_bind_on_the_same_path_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("run").join("agent.sock");
        let first = Listener::bind(&sock).await.unwrap();
        assert_eq!(fs::metadata(&sock).unwrap().mode() & 0o777, 0o600);
        assert!(matches!(
            Listener::bind(&sock).await,
            Err(EndpointError::AlreadyRunning(_))
        ));
        drop(first);
        assert!(!sock.exists());
        let _again = Listener::bind(&sock).await.unwrap();
    }
}
