//! The few things the tray asks of the operating system: where things are, opening a URL or a
//! folder, starting the agent, and the per-user single-instance lock.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Environment variable naming the agent's state dir (shared with the agent: logs live in it).
pub const ENV_STATE_DIR: &str = "TESSERA_STATE_DIR";
/// Environment variable overriding the tray's lock file.
pub const ENV_TRAY_LOCK: &str = "TESSERA_TRAY_LOCK";
/// Environment variable overriding the page "Renew on KooGallery" opens.
pub const ENV_RENEW_URL: &str = "TESSERA_RENEW_URL";
/// KooGallery's buyer-facing home page; renewals start from the buyer's purchased products.
pub const DEFAULT_RENEW_URL: &str = "https://marketplace.huaweicloud.com/";

/// The agent's log folder: `<state dir>/logs`, the state dir as the agent computes it
/// (`TESSERA_STATE_DIR`, else `$XDG_STATE_HOME/tessera`, else `~/.local/state/tessera`).
#[must_use]
pub fn log_dir(lookup: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let state = match lookup(ENV_STATE_DIR).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None if cfg!(windows) => PathBuf::from(lookup("LOCALAPPDATA")?).join("tessera"),
        None => match lookup("XDG_STATE_HOME").filter(|v| Path::new(v).is_absolute()) {
            Some(dir) => PathBuf::from(dir).join("tessera"),
            None => PathBuf::from(lookup("HOME")?).join(".local/state/tessera"),
        },
    };
    Some(state.join("logs"))
}

/// Where the single-instance lock lives: `TESSERA_TRAY_LOCK`, else `tessera-tray.lock` in the
/// per-user runtime dir, else in the temp dir with the user id in the name.
#[must_use]
pub fn lock_path(lookup: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(p) = lookup(ENV_TRAY_LOCK).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(run) = lookup("XDG_RUNTIME_DIR").filter(|v| Path::new(v).is_absolute()) {
        return PathBuf::from(run).join("tessera-tray.lock");
    }
    std::env::temp_dir().join(format!("tessera-tray-{}.lock", user_tag()))
}

#[cfg(unix)]
fn user_tag() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    uid.to_string()
}

#[cfg(not(unix))]
fn user_tag() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "user".to_owned())
}

/// Another tray holds the lock, or the lock file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another tray of this user is running.
    #[error("another tessera-tray is already running (lock {0})")]
    AlreadyRunning(PathBuf),
    /// The lock file could not be opened or locked.
    #[error("cannot use the lock file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Held for the tray's lifetime; the OS drops the lock when the process ends, even on a crash,
/// so a stale lock file never blocks the next start.
#[derive(Debug)]
#[must_use = "the lock is released when this guard is dropped"]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the per-user single-instance lock at `path`.
///
/// # Errors
/// [`LockError::AlreadyRunning`] when another process holds it.
pub fn acquire_instance_lock(path: &Path) -> Result<InstanceLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW: a symlink planted at a shared temp path must not redirect the open.
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // No sharing: a second open fails while this handle lives (the Windows lock).
        options.share_mode(0);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        #[cfg(windows)]
        Err(e) if e.raw_os_error() == Some(32) => {
            return Err(LockError::AlreadyRunning(path.to_owned()));
        }
        Err(e) => return Err(io(e)),
    };
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call; flock has no other
        // preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                LockError::AlreadyRunning(path.to_owned())
            } else {
                io(e)
            });
        }
    }
    Ok(InstanceLock {
        _file: file,
        path: path.to_owned(),
    })
}

/// Opens `target` (a URL or a folder) with the desktop's default handler, without waiting.
///
/// # Errors
/// When the opener cannot be started.
pub fn open(target: &str) -> std::io::Result<()> {
    let mut cmd = if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(windows) {
        Command::new("explorer")
    } else {
        Command::new("xdg-open")
    };
    cmd.arg(target);
    spawn_detached(cmd)
}

/// Starts the agent: on Linux through the systemd user manager (the unit the package installs),
/// falling back to running `tessera-agent run` directly (beside this executable, else from
/// `PATH`) when there is no user manager or no unit.
///
/// # Errors
/// When neither way could be started.
pub fn start_agent() -> std::io::Result<()> {
    if cfg!(target_os = "linux") {
        let via_systemd = Command::new("systemctl")
            .args(["--user", "start", "tessera-agent.service"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match via_systemd {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => {
                tracing::info!(status = %s, "systemctl --user could not start the agent; starting it directly");
            }
            Err(e) => {
                tracing::info!(error = %e, "systemctl is not available; starting the agent directly");
            }
        }
    }
    let exe = agent_executable();
    let mut cmd = Command::new(exe);
    cmd.arg("run");
    spawn_detached(cmd)
}

fn agent_executable() -> PathBuf {
    let name = if cfg!(windows) {
        "tessera-agent.exe"
    } else {
        "tessera-agent"
    };
    std::env::current_exe()
        .ok()
        .and_then(|me| me.parent().map(|dir| dir.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn spawn_detached(mut cmd: Command) -> std::io::Result<()> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    // Reap the child when it ends so no zombie is left behind; nobody waits for the answer.
    std::thread::Builder::new()
        .name("tray-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn log_dir_follows_the_agent_state_dir() {
        assert_eq!(
            log_dir(&env(&[(ENV_STATE_DIR, "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s/logs"))
        );
        assert_eq!(
            log_dir(&env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/tessera/logs"))
        );
        if !cfg!(windows) {
            assert_eq!(
                log_dir(&env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/h")])),
                Some(PathBuf::from("/h/.local/state/tessera/logs"))
            );
            assert_eq!(log_dir(&env(&[])), None);
        }
    }

    #[test]
    fn lock_path_prefers_override_then_runtime_dir() {
        assert_eq!(
            lock_path(&env(&[
                (ENV_TRAY_LOCK, "/l.lock"),
                ("XDG_RUNTIME_DIR", "/r")
            ])),
            PathBuf::from("/l.lock")
        );
        assert_eq!(
            lock_path(&env(&[("XDG_RUNTIME_DIR", "/run/user/7")])),
            PathBuf::from("/run/user/7/tessera-tray.lock")
        );
        let fallback = lock_path(&env(&[]));
        assert!(fallback.starts_with(std::env::temp_dir()));
    }

    #[test]
    fn second_instance_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tray.lock");
        let first = acquire_instance_lock(&path).unwrap();
        assert_eq!(first.path(), path);
        assert!(matches!(
            acquire_instance_lock(&path),
            Err(LockError::AlreadyRunning(p)) if p == path
        ));
        drop(first);
        let again = acquire_instance_lock(&path).unwrap();
        drop(again);
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("tray.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            acquire_instance_lock(&link),
            Err(LockError::Io { .. })
        ));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
