//! Secrets: the marketplace AK/SK, authorization codes and the state MAC key.
//!
//! They live in the OS keyring when one is usable (`keyring-core` with the store chosen
//! explicitly: Secret Service over zbus on Linux desktops). Where none is (headless machines,
//! CI, a locked collection), they live in a 0600 file in the state dir, encrypted with
//! ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the device identity and a random salt
//! stored in the file. That binds the file to the machine; it is no secret from the same user,
//! and status says which store is in use and why.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use keyring_core::{CredentialStore, Entry};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The keyring "service" every entry is filed under.
pub const SERVICE: &str = "tessera-agent";
/// Largest secrets file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Which store holds the secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The freedesktop Secret Service (GNOME Keyring, KWallet) over D-Bus.
    SecretService,
    /// The machine-bound encrypted file in the state dir.
    EncryptedFile,
    /// An in-memory store (tests).
    Memory,
}

/// Which store the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreChoice {
    /// The OS keyring when usable, else the encrypted file.
    #[default]
    Auto,
    /// The OS keyring; fail when unusable.
    Keyring,
    /// The encrypted file.
    File,
}

/// A secrets operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The keyring refused or failed.
    #[error("the OS keyring failed to {op} secret {name:?}")]
    Keyring {
        /// What was attempted.
        op: &'static str,
        /// Entry name.
        name: String,
        /// The store's error.
        #[source]
        source: keyring_core::Error,
    },
    /// The keyring could not be opened.
    #[error("no usable OS keyring: {0}")]
    NoKeyring(String),
    /// The encrypted file could not be read or written.
    #[error("cannot {op} the secrets file {path}")]
    FileIo {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The encrypted file does not decrypt with this machine's key (another machine, or edited).
    #[error("the secrets file {0} does not decrypt on this machine or was modified")]
    Undecryptable(PathBuf),
}

/// The secrets of one agent.
#[derive(Clone)]
pub struct Secrets {
    backend: Backend,
    kind: StoreKind,
    note: Option<String>,
}

#[derive(Clone)]
enum Backend {
    Keyring(Arc<CredentialStore>),
    File(Arc<EncryptedFile>),
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("kind", &self.kind)
            .field("note", &self.note)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Opens the store `choice` asks for. With [`StoreChoice::Auto`] the OS keyring is probed
    /// (write, read back, delete a probe entry) and the encrypted file used when that fails; the
    /// reason is kept for status.
    ///
    /// `identity` is the device identity material the file key is derived from.
    ///
    /// # Errors
    /// When the chosen store cannot be used at all.
    pub fn open(
        choice: StoreChoice,
        secrets_file: &Path,
        identity: &[u8],
    ) -> Result<Self, SecretsError> {
        if choice != StoreChoice::File {
            match open_os_keyring() {
                Ok((store, kind)) => {
                    return Ok(Self {
                        backend: Backend::Keyring(store),
                        kind,
                        note: None,
                    });
                }
                Err(why) if choice == StoreChoice::Keyring => {
                    return Err(SecretsError::NoKeyring(why));
                }
                Err(why) => {
                    tracing::info!(reason = %why, "no usable OS keyring; using the encrypted secrets file");
                    let file = EncryptedFile::open(secrets_file, identity)?;
                    return Ok(Self {
                        backend: Backend::File(Arc::new(file)),
                        kind: StoreKind::EncryptedFile,
                        note: Some(format!("OS keyring unusable: {why}")),
                    });
                }
            }
        }
        let file = EncryptedFile::open(secrets_file, identity)?;
        Ok(Self {
            backend: Backend::File(Arc::new(file)),
            kind: StoreKind::EncryptedFile,
            note: Some("configured to use the encrypted file".to_owned()),
        })
    }

    /// Secrets in a given keyring-core store (tests use `keyring_core::mock`).
    #[must_use]
    pub fn with_store(store: Arc<CredentialStore>, kind: StoreKind) -> Self {
        Self {
            backend: Backend::Keyring(store),
            kind,
            note: None,
        }
    }

    /// The store in use.
    #[must_use]
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Why this store was chosen, when it is a fallback.
    #[must_use]
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Reads secret `name`. Blocking (the keyring talks D-Bus): call from a blocking context.
    ///
    /// # Errors
    /// When the store fails (a missing entry is `Ok(None)`).
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretsError> {
        match &self.backend {
            Backend::Keyring(store) => {
                let entry = entry(store, name, "read")?;
                match entry.get_secret() {
                    Ok(v) => Ok(Some(Zeroizing::new(v))),
                    Err(keyring_core::Error::NoEntry) => Ok(None),
                    Err(source) => Err(SecretsError::Keyring {
                        op: "read",
                        name: name.to_owned(),
                        source,
                    }),
                }
            }
            Backend::File(f) => Ok(f.get(name)),
        }
    }

    /// Stores secret `name`. Blocking.
    ///
    /// # Errors
    /// When the store fails.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<(), SecretsError> {
        match &self.backend {
            Backend::Keyring(store) => {
                entry(store, name, "write")?
                    .set_secret(value)
                    .map_err(|source| SecretsError::Keyring {
                        op: "write",
                        name: name.to_owned(),
                        source,
                    })
            }
            Backend::File(f) => f.set(name, Some(value)),
        }
    }

    /// Deletes secret `name` (absent is fine). Blocking.
    ///
    /// # Errors
    /// When the store fails.
    pub fn delete(&self, name: &str) -> Result<(), SecretsError> {
        match &self.backend {
            Backend::Keyring(store) => match entry(store, name, "delete")?.delete_credential() {
                Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
                Err(source) => Err(SecretsError::Keyring {
                    op: "delete",
                    name: name.to_owned(),
                    source,
                }),
            },
            Backend::File(f) => f.set(name, None),
        }
    }

    /// Reads secret `name`, creating it with `len` random bytes when absent. Blocking.
    ///
    /// # Errors
    /// When the store fails.
    pub fn get_or_create_random(
        &self,
        name: &str,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        if let Some(v) = self.get(name)? {
            return Ok(v);
        }
        let mut fresh = Zeroizing::new(vec![0u8; len]);
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        self.set(name, &fresh)?;
        Ok(fresh)
    }
}

fn entry(
    store: &Arc<CredentialStore>,
    name: &str,
    op: &'static str,
) -> Result<Entry, SecretsError> {
    store
        .build(SERVICE, name, None)
        .map_err(|source| SecretsError::Keyring {
            op,
            name: name.to_owned(),
            source,
        })
}

#[cfg(target_os = "linux")]
fn open_os_keyring() -> Result<(Arc<CredentialStore>, StoreKind), String> {
    let store: Arc<CredentialStore> =
        zbus_secret_service_keyring_store::Store::new().map_err(|e| e.to_string())?;
    probe(&store)?;
    Ok((store, StoreKind::SecretService))
}

#[cfg(not(target_os = "linux"))]
fn open_os_keyring() -> Result<(Arc<CredentialStore>, StoreKind), String> {
    Err("no native keyring store is built into this agent for this platform".to_owned())
}

/// A write/read/delete round trip, so a locked or absent collection is found at start, not at
/// the first activation.
fn probe(store: &Arc<CredentialStore>) -> Result<(), String> {
    let e = store
        .build(SERVICE, "probe", None)
        .map_err(|e| e.to_string())?;
    let mut token = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut token);
    e.set_secret(&token).map_err(|e| e.to_string())?;
    let back = e.get_secret().map_err(|e| e.to_string())?;
    let _ = e.delete_credential();
    if back == token {
        Ok(())
    } else {
        Err("the keyring returned a different value than was stored".to_owned())
    }
}

#[derive(Serialize, Deserialize)]
struct FileEnvelope {
    v: u32,
    salt: String,
    nonce: String,
    ct: String,
}

/// The machine-bound encrypted secrets file.
struct EncryptedFile {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
    salt: [u8; 32],
    entries: Mutex<BTreeMap<String, Zeroizing<Vec<u8>>>>,
}

const FILE_KDF_INFO: &[u8] = b"tessera-agent secrets file v1";

fn derive_key(identity: &[u8], salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), identity);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    hk.expand(FILE_KDF_INFO, key.as_mut()).unwrap_or_default();
    key
}

impl EncryptedFile {
    fn open(path: &Path, identity: &[u8]) -> Result<Self, SecretsError> {
        let io = |op, source| SecretsError::FileIo {
            op,
            path: path.to_path_buf(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.len() > MAX_FILE_BYTES {
                    return Err(SecretsError::Undecryptable(path.to_path_buf()));
                }
                let text = std::fs::read(path).map_err(|e| io("read", e))?;
                let undecryptable = || SecretsError::Undecryptable(path.to_path_buf());
                let env: FileEnvelope =
                    serde_json::from_slice(&text).map_err(|_| undecryptable())?;
                let salt: [u8; 32] = B64
                    .decode(&env.salt)
                    .ok()
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(undecryptable)?;
                let nonce: [u8; 12] = B64
                    .decode(&env.nonce)
                    .ok()
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(undecryptable)?;
                let ct = B64.decode(&env.ct).map_err(|_| undecryptable())?;
                let key = derive_key(identity, &salt);
                let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
                let plain = Zeroizing::new(
                    cipher
                        .decrypt(Nonce::from_slice(&nonce), ct.as_slice())
                        .map_err(|_| undecryptable())?,
                );
                let map: BTreeMap<String, String> =
                    serde_json::from_slice(&plain).map_err(|_| undecryptable())?;
                let mut entries = BTreeMap::new();
                for (k, v) in map {
                    let v = Zeroizing::new(v);
                    entries.insert(
                        k,
                        Zeroizing::new(B64.decode(v.as_bytes()).map_err(|_| undecryptable())?),
                    );
                }
                Ok(Self {
                    path: path.to_path_buf(),
                    key,
                    salt,
                    entries: Mutex::new(entries),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut salt = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                let file = Self {
                    path: path.to_path_buf(),
                    key: derive_key(identity, &salt),
                    salt,
                    entries: Mutex::new(BTreeMap::new()),
                };
                file.persist(&BTreeMap::new())?;
                Ok(file)
            }
            Err(e) => Err(io("read", e)),
        }
    }

    fn get(&self, name: &str) -> Option<Zeroizing<Vec<u8>>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(name).cloned()
    }

    fn set(&self, name: &str, value: Option<&[u8]>) -> Result<(), SecretsError> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = entries.clone();
        match value {
            Some(v) => {
                next.insert(name.to_owned(), Zeroizing::new(v.to_vec()));
            }
            None => {
                if next.remove(name).is_none() {
                    return Ok(());
                }
            }
        }
        self.persist(&next)?;
        *entries = next;
        Ok(())
    }

    /// Encrypts `entries` to a temp file, fsyncs it, renames it over the file and fsyncs the
    /// directory, so a crash leaves the old or the new generation, never a torn one.
    fn persist(&self, entries: &BTreeMap<String, Zeroizing<Vec<u8>>>) -> Result<(), SecretsError> {
        let io = |op, source| SecretsError::FileIo {
            op,
            path: self.path.clone(),
            source,
        };
        let map: BTreeMap<&str, String> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), B64.encode(v.as_slice())))
            .collect();
        let plain = Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default());
        drop(map);
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.key.as_ref()));
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| io("encrypt", std::io::Error::other("AEAD encryption failed")))?;
        let env = FileEnvelope {
            v: 1,
            salt: B64.encode(self.salt),
            nonce: B64.encode(nonce),
            ct: B64.encode(ct),
        };
        let body = serde_json::to_vec(&env).unwrap_or_default();
        write_atomic_private(&self.path, &body).map_err(|e| io("write", e))
    }
}

/// Writes `body` to `path` through a temp file in the same dir (mode 0600), with fsync of the
/// file and the directory around the rename.
///
/// # Errors
/// When any step fails; the old file is then intact.
pub fn write_atomic_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_keyring_round_trip() {
        let store: Arc<CredentialStore> = keyring_core::mock::Store::new().unwrap();
        let s = Secrets::with_store(store, StoreKind::Memory);
        assert!(s.get("code:p").unwrap().is_none());
        s.set("code:p", b"PL123").unwrap();
        assert_eq!(s.get("code:p").unwrap().unwrap().as_slice(), b"PL123");
        let k1 = s.get_or_create_random("mac", 32).unwrap();
        let k2 = s.get_or_create_random("mac", 32).unwrap();
        assert_eq!(k1.as_slice(), k2.as_slice());
        assert_eq!(k1.len(), 32);
        s.delete("code:p").unwrap();
        s.delete("code:p").unwrap();
        assert!(s.get("code:p").unwrap().is_none());
    }

    #[test]
    fn encrypted_file_is_private_persistent_and_machine_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.enc");
        let s = Secrets::open(StoreChoice::File, &path, b"machine-A").unwrap();
        assert_eq!(s.kind(), StoreKind::EncryptedFile);
        s.set("marketplace-sk", b"CANARY-SECRET-SK-42").unwrap();
        s.set("other", b"x").unwrap();
        s.delete("other").unwrap();

        let raw = std::fs::read(&path).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("CANARY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }

        let again = Secrets::open(StoreChoice::File, &path, b"machine-A").unwrap();
        assert_eq!(
            again.get("marketplace-sk").unwrap().unwrap().as_slice(),
            b"CANARY-SECRET-SK-42"
        );
        assert!(again.get("other").unwrap().is_none());
        assert!(matches!(
            Secrets::open(StoreChoice::File, &path, b"machine-B"),
            Err(SecretsError::Undecryptable(_))
        ));

        let mut tampered = raw.clone();
        let n = tampered.len();
        tampered[n - 5] ^= 1;
        std::fs::write(&path, tampered).unwrap();
        assert!(Secrets::open(StoreChoice::File, &path, b"machine-A").is_err());
    }
}
