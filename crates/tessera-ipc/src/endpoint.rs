//! Where the agent listens, and the per-user checks around it.
//!
//! The platform code (Unix socket file or Windows named pipe) sits behind the same names in
//! `platform/unix.rs` and `platform/windows.rs`; this module is what the rest of the crate and its
//! users see.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::platform;

pub use crate::platform::{PeerIdentity, UserId};

/// Environment variable that overrides the socket path (or pipe name on Windows).
pub const SOCKET_ENV: &str = "TESSERA_SOCKET";

/// The local endpoint of the agent: a socket file path on Unix, a pipe name on Windows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    path: PathBuf,
}

/// The environment variables that decide the default endpoint, read once so the decision is
/// testable without touching the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointEnv {
    /// `TESSERA_SOCKET`.
    pub socket: Option<OsString>,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<OsString>,
    /// `TMPDIR` (the per-user temporary directory on macOS).
    pub tmpdir: Option<OsString>,
}

impl EndpointEnv {
    /// Reads the variables from the process environment.
    #[must_use]
    pub fn capture() -> Self {
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            socket: non_empty(SOCKET_ENV),
            xdg_runtime_dir: non_empty("XDG_RUNTIME_DIR"),
            tmpdir: non_empty("TMPDIR"),
        }
    }
}

impl Endpoint {
    /// The endpoint at an explicit path (socket file) or pipe name.
    #[must_use]
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The current user's endpoint: `TESSERA_SOCKET` if set, else the platform default
    /// (see the crate README).
    ///
    /// # Errors
    /// [`EndpointError`] when the current user cannot be determined.
    pub fn from_env() -> Result<Self, EndpointError> {
        Self::resolve(&EndpointEnv::capture())
    }

    /// The endpoint the given environment selects for the current user.
    ///
    /// # Errors
    /// [`EndpointError`] when the current user cannot be determined.
    pub fn resolve(env: &EndpointEnv) -> Result<Self, EndpointError> {
        if let Some(explicit) = &env.socket {
            return Ok(Self::at(explicit));
        }
        platform::default_endpoint(env).map(Self::at)
    }

    /// The socket path or pipe name.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

/// What [`probe_existing`] found at the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Nothing there.
    Absent,
    /// An agent answers: the caller must not start another.
    Alive,
    /// A socket file nobody listens on was left behind; it has been removed.
    StaleRemoved,
}

/// Why the endpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The directory holding the socket is not private to this user.
    #[error("socket directory {path} is unsafe: {why}")]
    InsecureDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Something that is not a socket sits at the socket path; it is left alone.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Another agent already serves this endpoint.
    #[error("another agent is already listening on {0}")]
    AlreadyRunning(PathBuf),
    /// The endpoint or its directory could not be prepared.
    #[error("cannot prepare {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The current user's identity could not be read.
    #[error("cannot determine the current user")]
    NoUser(#[source] io::Error),
}

/// Tries to connect to an existing endpoint, as the agent does before it starts.
///
/// A live agent → [`ProbeOutcome::Alive`] (refuse to start). A socket file nobody listens on →
/// removed after checking it is a socket → [`ProbeOutcome::StaleRemoved`]. Anything else at the
/// path is left alone and reported as [`EndpointError::NotASocket`]. [`crate::IpcServer::bind`]
/// performs the same check under an exclusive lock, so two agents starting together cannot both
/// win.
///
/// # Errors
/// [`EndpointError`] when the path cannot be inspected or removed.
pub async fn probe_existing(endpoint: &Endpoint) -> Result<ProbeOutcome, EndpointError> {
    platform::probe(endpoint.path()).await
}

/// The identity of the user running this process.
///
/// # Errors
/// [`EndpointError::NoUser`] when the OS does not tell.
pub fn current_user() -> Result<UserId, EndpointError> {
    platform::current_user()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_socket_wins_over_defaults() {
        let env = EndpointEnv {
            socket: Some("/srv/test/agent.sock".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            tmpdir: None,
        };
        let endpoint = Endpoint::resolve(&env).unwrap();
        assert_eq!(endpoint.path(), Path::new("/srv/test/agent.sock"));
        assert_eq!(endpoint.to_string(), "/srv/test/agent.sock");
    }
}
