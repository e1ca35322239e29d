//! Where identity sources are read from: a file tree rooted at a path.
//!
//! The live machine is the tree at `/`; tests use fixture trees copied from real machines. Every
//! path a collector asks for is an absolute path *inside* the tree (`/sys/class/net`), so the
//! same code reads both.

use std::fmt;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// No identity source is anywhere near this large; a bigger file is not what we think it is.
pub const MAX_SOURCE_BYTES: u64 = 4 * 1024 * 1024;

/// Read access to an operating-system file tree (sysfs, procfs, `/etc`).
pub trait Probe: fmt::Debug + Send + Sync {
    /// The bytes of the file at `path` (absolute, inside the tree), at most
    /// [`MAX_SOURCE_BYTES`].
    ///
    /// # Errors
    /// Whatever the file system says: not found, permission denied, too large.
    fn read_bytes(&self, path: &str) -> io::Result<Vec<u8>>;

    /// The names in directory `path`, sorted.
    ///
    /// # Errors
    /// Whatever the file system says.
    fn list(&self, path: &str) -> io::Result<Vec<String>>;

    /// The target of symbolic link `path`, as written in the link.
    ///
    /// # Errors
    /// Whatever the file system says; `InvalidInput` when `path` is not a link.
    fn read_link(&self, path: &str) -> io::Result<String>;

    /// Whether anything exists at `path`.
    fn exists(&self, path: &str) -> bool;

    /// Whether the file at `path` is readable only by its owner or group (not by every user).
    /// Such sources are never used, so that root and users compute the same identity.
    fn is_restricted(&self, path: &str) -> bool;

    /// Whether this probe reads the running machine (so `sysinfo` may describe it too).
    fn is_live(&self) -> bool {
        false
    }

    /// A short description for reports: the root path.
    fn describe(&self) -> String;

    /// The file at `path` as trimmed UTF-8 (invalid sequences replaced).
    ///
    /// # Errors
    /// As [`read_bytes`](Self::read_bytes).
    fn read_string(&self, path: &str) -> io::Result<String> {
        let bytes = self.read_bytes(path)?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
    }
}

/// A [`Probe`] over a real directory: `/` for the live machine, a fixture tree in tests.
///
/// Symbolic links inside the tree must be relative (as sysfs links are), so that a fixture's
/// links resolve inside the fixture.
#[derive(Debug, Clone)]
pub struct FsProbe {
    root: PathBuf,
}

impl FsProbe {
    /// A probe reading the tree under `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A probe reading this machine.
    #[must_use]
    pub fn local() -> Self {
        Self::new("/")
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps an in-tree absolute path to the real path, refusing `..` so a caller cannot leave
    /// the tree by path arithmetic.
    fn real(&self, path: &str) -> io::Result<PathBuf> {
        let mut real = self.root.clone();
        for part in Path::new(path).components() {
            match part {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(p) => real.push(p),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "probe paths must not contain '..'",
                    ));
                }
            }
        }
        Ok(real)
    }
}

impl Probe for FsProbe {
    fn read_bytes(&self, path: &str) -> io::Result<Vec<u8>> {
        let file = std::fs::File::open(self.real(path)?)?;
        let mut bytes = Vec::new();
        file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes)?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_SOURCE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "file is larger than any identity source",
            ));
        }
        Ok(bytes)
    }

    fn list(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.real(path)?)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read_link(&self, path: &str) -> io::Result<String> {
        Ok(std::fs::read_link(self.real(path)?)?
            .to_string_lossy()
            .into_owned())
    }

    fn exists(&self, path: &str) -> bool {
        self.real(path).is_ok_and(|p| p.exists())
    }

    #[cfg(unix)]
    fn is_restricted(&self, path: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        self.real(path)
            .and_then(std::fs::metadata)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o004 == 0)
    }

    #[cfg(not(unix))]
    fn is_restricted(&self, _path: &str) -> bool {
        false
    }

    fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Resolves a relative link `target` found at in-tree `path` to an in-tree absolute path,
/// textually (`/sys/class/net/eth0` + `../../devices/x/net/eth0` → `/sys/devices/x/net/eth0`).
#[must_use]
pub fn resolve_link(path: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut base: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        base.pop();
        base
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_sysfs_style_links() {
        assert_eq!(
            resolve_link(
                "/sys/class/net/eth0",
                "../../devices/pci0000:00/0000:00:1f.6/net/eth0"
            ),
            "/sys/devices/pci0000:00/0000:00:1f.6/net/eth0"
        );
        assert_eq!(resolve_link("/sys/block/sda", "/abs/x"), "/abs/x");
        assert_eq!(resolve_link("/a", "../../../x"), "/x");
    }

    #[test]
    fn refuses_to_leave_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let probe = FsProbe::new(dir.path());
        let err = probe.read_bytes("/../etc/passwd").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn reads_lists_and_reports_restricted_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/machine-id"), " abc \n").unwrap();
        let probe = FsProbe::new(dir.path());
        assert_eq!(probe.read_string("/etc/machine-id").unwrap(), "abc");
        assert_eq!(probe.list("/etc").unwrap(), ["machine-id"]);
        assert!(probe.exists("/etc/machine-id"));
        assert!(!probe.exists("/etc/nothing"));
        assert!(!probe.is_live());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert!(!probe.is_restricted("/etc/machine-id"));
            let p = dir.path().join("etc/machine-id");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
            assert!(probe.is_restricted("/etc/machine-id"));
        }
    }
}
