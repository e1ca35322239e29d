//! Where the agent keeps its files, each directory overridable by environment.
//!
//! | what | default (Linux) | override |
//! |---|---|---|
//! | config dir (`tessera.toml`, user `products.d/`) | `$XDG_CONFIG_HOME/tessera` | `TESSERA_CONFIG_DIR` |
//! | system products dir | `/etc/tessera/products.d` | `TESSERA_SYSTEM_PRODUCTS_DIR` |
//! | state dir (database, logs, secrets file) | `$XDG_STATE_HOME/tessera` (`~/.local/state/tessera`) | `TESSERA_STATE_DIR` |
//! | socket | tessera-ipc's rule: `$XDG_RUNTIME_DIR/tessera/agent.sock`, else `/tmp/tessera-<uid>/agent.sock` | `TESSERA_SOCKET` |
//!
//! The environment is read once, by [`Paths::from_env`], into a plain value the rest of the agent
//! receives: nothing else reads the environment, so tests build a [`Paths`] by hand.

use std::path::{Path, PathBuf};

/// The environment variable naming the config dir.
pub const ENV_CONFIG_DIR: &str = "TESSERA_CONFIG_DIR";
/// The environment variable naming the state dir.
pub const ENV_STATE_DIR: &str = "TESSERA_STATE_DIR";
/// The environment variable naming the socket path.
pub const ENV_SOCKET: &str = "TESSERA_SOCKET";
/// The environment variable naming the system-wide product descriptor dir.
pub const ENV_SYSTEM_PRODUCTS_DIR: &str = "TESSERA_SYSTEM_PRODUCTS_DIR";

/// The agent's directories and socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Holds `tessera.toml` and the user's `products.d/`.
    pub config_dir: PathBuf,
    /// Product descriptors installed for every user; read before the user's.
    pub system_products_dir: Option<PathBuf>,
    /// Database, logs and the secrets file fallback.
    pub state_dir: PathBuf,
    /// The IPC socket.
    pub socket: PathBuf,
}

/// No home directory could be found and no override was set.
#[derive(Debug, thiserror::Error)]
#[error("cannot locate the {what} directory: set {env} or HOME")]
pub struct NoHomeDir {
    what: &'static str,
    env: &'static str,
}

/// The variables tessera-ipc resolves the agent socket from, read through `lookup`.
fn socket_env(lookup: &impl Fn(&str) -> Option<PathBuf>) -> tessera_ipc::endpoint::EndpointEnv {
    tessera_ipc::endpoint::EndpointEnv {
        socket: lookup(ENV_SOCKET).map(PathBuf::into_os_string),
        xdg_runtime_dir: lookup("XDG_RUNTIME_DIR").map(PathBuf::into_os_string),
        tmpdir: lookup("TMPDIR").map(PathBuf::into_os_string),
    }
}

impl Paths {
    /// Every path under one root, as tests and the sandbox use it.
    #[must_use]
    pub fn under(root: &Path) -> Self {
        Self {
            config_dir: root.join("config"),
            system_products_dir: None,
            state_dir: root.join("state"),
            socket: root.join("agent.sock"),
        }
    }

    /// The paths from the environment and the platform conventions.
    ///
    /// # Errors
    /// When a directory has no override and the platform gives no home directory.
    pub fn from_env() -> Result<Self, NoHomeDir> {
        Self::from_lookup(|k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// The paths from `lookup` (an environment stand-in) and the platform conventions.
    ///
    /// # Errors
    /// See [`Paths::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<PathBuf>) -> Result<Self, NoHomeDir> {
        let base = directories::BaseDirs::new();
        let config_dir = match lookup(ENV_CONFIG_DIR) {
            Some(p) => p,
            None => base
                .as_ref()
                .map(|b| b.config_dir().join("tessera"))
                .ok_or(NoHomeDir {
                    what: "config",
                    env: ENV_CONFIG_DIR,
                })?,
        };
        let state_dir = match lookup(ENV_STATE_DIR) {
            Some(p) => p,
            None => base
                .as_ref()
                .map(|b| {
                    b.state_dir()
                        .map_or_else(|| b.data_local_dir().join("tessera"), |s| s.join("tessera"))
                })
                .ok_or(NoHomeDir {
                    what: "state",
                    env: ENV_STATE_DIR,
                })?,
        };
        // The socket comes from tessera-ipc's rule, the one the SDK, CLI and tray use to find
        // the agent; a rule of our own would let them disagree when XDG_RUNTIME_DIR is unset.
        let endpoint_env = socket_env(&lookup);
        let socket = tessera_ipc::Endpoint::resolve(&endpoint_env).map_or_else(
            // Only when the current user cannot be determined at all; clients fail the same way.
            |_| state_dir.join("agent.sock"),
            |e| e.path().to_path_buf(),
        );
        let system_products_dir =
            lookup(ENV_SYSTEM_PRODUCTS_DIR).or_else(default_system_products_dir);
        Ok(Self {
            config_dir,
            system_products_dir,
            state_dir,
            socket,
        })
    }

    /// `tessera.toml`.
    #[must_use]
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("tessera.toml")
    }

    /// The user's product descriptor dir.
    #[must_use]
    pub fn user_products_dir(&self) -> PathBuf {
        self.config_dir.join("products.d")
    }

    /// The SQLite database.
    #[must_use]
    pub fn database(&self) -> PathBuf {
        self.state_dir.join("agent.db")
    }

    /// The log directory (rotated daily).
    #[must_use]
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// The encrypted secrets file used when no OS keyring is usable.
    #[must_use]
    pub fn secrets_file(&self) -> PathBuf {
        self.state_dir.join("secrets.enc")
    }

    /// Where Licenses delivered as files are written for applications to read.
    #[must_use]
    pub fn delivered_dir(&self) -> PathBuf {
        self.state_dir.join("licenses")
    }
}

fn default_system_products_dir() -> Option<PathBuf> {
    if cfg!(target_os = "windows") {
        std::env::var_os("ProgramData").map(|p| PathBuf::from(p).join("Tessera").join("products.d"))
    } else if cfg!(target_os = "macos") {
        Some(PathBuf::from(
            "/Library/Application Support/Tessera/products.d",
        ))
    } else {
        Some(PathBuf::from("/etc/tessera/products.d"))
    }
}

/// Creates `dir` (and parents) readable only by the owner.
///
/// # Errors
/// When the directory cannot be created or its mode set.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_overrides_win_and_socket_follows_runtime_dir() {
        let env: HashMap<&str, &str> = [
            (ENV_CONFIG_DIR, "/c"),
            (ENV_STATE_DIR, "/s"),
            ("XDG_RUNTIME_DIR", "/run/user/7"),
            (ENV_SYSTEM_PRODUCTS_DIR, "/sys-products"),
        ]
        .into();
        let p = Paths::from_lookup(|k| env.get(k).map(PathBuf::from)).unwrap();
        assert_eq!(p.config_dir, PathBuf::from("/c"));
        assert_eq!(p.state_dir, PathBuf::from("/s"));
        assert_eq!(p.socket, PathBuf::from("/run/user/7/tessera/agent.sock"));
        assert_eq!(p.system_products_dir, Some(PathBuf::from("/sys-products")));
        assert_eq!(p.database(), PathBuf::from("/s/agent.db"));

        let with_socket: HashMap<&str, &str> = [
            (ENV_STATE_DIR, "/s"),
            (ENV_CONFIG_DIR, "/c"),
            (ENV_SOCKET, "/x.sock"),
        ]
        .into();
        let p = Paths::from_lookup(|k| with_socket.get(k).map(PathBuf::from)).unwrap();
        assert_eq!(p.socket, PathBuf::from("/x.sock"));

        let no_runtime: HashMap<&str, &str> =
            [(ENV_STATE_DIR, "/s"), (ENV_CONFIG_DIR, "/c")].into();
        let p = Paths::from_lookup(|k| no_runtime.get(k).map(PathBuf::from)).unwrap();
        let clients_look_at = tessera_ipc::Endpoint::resolve(&tessera_ipc::endpoint::EndpointEnv {
            socket: None,
            xdg_runtime_dir: None,
            tmpdir: None,
        })
        .unwrap();
        assert_eq!(p.socket, clients_look_at.path());
        assert!(!p.socket.starts_with("/s"), "{}", p.socket.display());
    }
}
