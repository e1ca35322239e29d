//! The emulator's own test PKI: a CA a client trusts with one config line, a server certificate
//! for the names the client will dial, and a second, untrusted CA for the "wrong certificate" fault.
//!
//! Files in the state directory (reused when present, so a client configured once keeps working
//! across restarts):
//!
//! | file | what |
//! |---|---|
//! | `ca.pem` | the test CA certificate: the one line a client adds to its trust store |
//! | `ca-key.pem` | the CA's private key (PKCS#8), so the server certificate can be re-issued |
//! | `server.pem` | server certificate chain (leaf, then CA) |
//! | `server-key.pem` | the server's private key (PKCS#8) |
//! | `server-names.txt` | the subject alternative names `server.pem` was issued for |

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::fsutil::write_atomically;

/// Names every server certificate carries, whatever else is configured.
pub const BASE_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The CA's subject. The untrusted CA uses the same name on purpose: a client that compared
/// names instead of signatures would accept it.
const CA_COMMON_NAME: &str = "koogallery-sim test CA";

/// Why the test PKI could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file of the state directory could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// Certificate or key generation failed, or a stored key did not parse.
    #[error("cannot {what}")]
    Certificate {
        /// What was being done.
        what: &'static str,
        /// The underlying failure.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused the certificate/key pair.
    #[error("cannot build the TLS server configuration")]
    Rustls(#[source] rustls::Error),
    /// A stored PEM file held no certificate or key.
    #[error("{path} holds no usable PEM {what}")]
    EmptyPem {
        /// The file.
        path: PathBuf,
        /// Certificate or key.
        what: &'static str,
    },
}

/// The emulator's TLS material, ready to serve.
#[derive(Clone)]
pub struct SimPki {
    /// Where `ca.pem` and the server files live.
    pub dir: PathBuf,
    /// PEM of the CA a client must trust.
    pub ca_pem: String,
    /// rustls configuration serving the certificate issued by the trusted CA.
    pub trusted: Arc<ServerConfig>,
    /// rustls configuration serving a certificate of the same names from a CA nobody trusts.
    pub untrusted: Arc<ServerConfig>,
    /// PEM of the untrusted CA (for tests that want to show the chain really differs).
    pub untrusted_ca_pem: String,
}

impl std::fmt::Debug for SimPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SimPki {
    /// Path of the CA certificate a client should trust.
    #[must_use]
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Loads the PKI from `dir`, creating whatever is missing, for the base names plus
    /// `extra_names` (DNS names or IP addresses).
    ///
    /// # Errors
    /// When the directory cannot be written or a stored file is corrupt.
    pub fn load_or_create(dir: &Path, extra_names: &[String]) -> Result<Self, TlsSetupError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsSetupError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let names = server_names(extra_names);

        let ca_path = dir.join("ca.pem");
        let ca_key_path = dir.join("ca-key.pem");
        let (ca_pem, ca_key) = if ca_path.exists() && ca_key_path.exists() {
            let key_pem = read(&ca_key_path)?;
            let key = KeyPair::from_pem(&key_pem).map_err(|source| TlsSetupError::Certificate {
                what: "parse the stored CA key",
                source,
            })?;
            (read(&ca_path)?, key)
        } else {
            let key = KeyPair::generate().map_err(|source| TlsSetupError::Certificate {
                what: "generate the CA key",
                source,
            })?;
            let cert =
                ca_params()
                    .self_signed(&key)
                    .map_err(|source| TlsSetupError::Certificate {
                        what: "self-sign the CA",
                        source,
                    })?;
            write(&ca_key_path, key.serialize_pem().as_bytes())?;
            write(&ca_path, cert.pem().as_bytes())?;
            (cert.pem(), key)
        };
        // Rebuilding the issuer from the same parameters and key reproduces the CA's name and
        // key identifier, so a leaf issued now chains to the stored ca.pem.
        let issuer = Issuer::new(ca_params(), ca_key);

        let server_path = dir.join("server.pem");
        let server_key_path = dir.join("server-key.pem");
        let names_path = dir.join("server-names.txt");
        let names_line = names.join("\n");
        let reusable = server_path.exists()
            && server_key_path.exists()
            && std::fs::read_to_string(&names_path).is_ok_and(|stored| stored == names_line);
        let (chain_pem, key_pem) = if reusable {
            (read(&server_path)?, read(&server_key_path)?)
        } else {
            let (leaf_pem, key_pem) = issue_leaf(&names, &issuer)?;
            let chain = format!("{leaf_pem}{ca_pem}");
            write(&server_key_path, key_pem.as_bytes())?;
            write(&server_path, chain.as_bytes())?;
            write(&names_path, names_line.as_bytes())?;
            (chain, key_pem)
        };
        let trusted = server_config(
            parse_certs(&server_path, &chain_pem)?,
            parse_key(&server_key_path, &key_pem)?,
        )?;

        // The untrusted chain lives only in memory: nothing should ever be told to trust it.
        let rogue_key = KeyPair::generate().map_err(|source| TlsSetupError::Certificate {
            what: "generate the untrusted CA key",
            source,
        })?;
        let rogue_ca =
            ca_params()
                .self_signed(&rogue_key)
                .map_err(|source| TlsSetupError::Certificate {
                    what: "self-sign the untrusted CA",
                    source,
                })?;
        let rogue_issuer = Issuer::new(ca_params(), rogue_key);
        let (rogue_leaf_pem, rogue_leaf_key_pem) = issue_leaf(&names, &rogue_issuer)?;
        let rogue_chain = format!("{rogue_leaf_pem}{}", rogue_ca.pem());
        let untrusted = server_config(
            parse_certs(Path::new("<untrusted chain>"), &rogue_chain)?,
            parse_key(Path::new("<untrusted key>"), &rogue_leaf_key_pem)?,
        )?;

        Ok(Self {
            dir: dir.to_path_buf(),
            ca_pem,
            trusted,
            untrusted,
            untrusted_ca_pem: rogue_ca.pem(),
        })
    }
}

/// The names a server certificate is issued for: the base names, then the extra ones, deduplicated.
#[must_use]
pub fn server_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = BASE_SERVER_NAMES.iter().map(|s| (*s).to_owned()).collect();
    for name in extra {
        let name = name.trim();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "Tessera test PKI");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn issue_leaf(
    names: &[String],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), TlsSetupError> {
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(|source| TlsSetupError::Certificate {
            what: "use the configured server names",
            source,
        })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "koogallery-sim");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|source| TlsSetupError::Certificate {
        what: "generate the server key",
        source,
    })?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| TlsSetupError::Certificate {
            what: "sign the server certificate",
            source,
        })?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    // An explicit provider: the process default panics when a dependency enables a second one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsSetupError::Rustls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn parse_certs(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsSetupError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::EmptyPem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn parse_key(path: &Path, pem: &str) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let key = rustls_pemfile::pkcs8_private_keys(&mut pem.as_bytes())
        .next()
        .transpose()
        .map_err(|source| TlsSetupError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsSetupError::EmptyPem {
            path: path.to_path_buf(),
            what: "PKCS#8 key",
        })?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        key.secret_pkcs8_der().to_vec(),
    )))
}

fn read(path: &Path) -> Result<String, TlsSetupError> {
    std::fs::read_to_string(path).map_err(|source| TlsSetupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TlsSetupError> {
    write_atomically(path, bytes).map_err(|source| TlsSetupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SimPki::load_or_create(dir.path(), &["mkt.example.test".into()]).unwrap();
        let server_before = std::fs::read(dir.path().join("server.pem")).unwrap();
        let second = SimPki::load_or_create(dir.path(), &["mkt.example.test".into()]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(
            server_before,
            std::fs::read(dir.path().join("server.pem")).unwrap()
        );
        assert_ne!(first.ca_pem, first.untrusted_ca_pem);
    }

    #[test]
    fn changing_the_names_reissues_the_leaf_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = SimPki::load_or_create(dir.path(), &[]).unwrap();
        let leaf_before = std::fs::read(dir.path().join("server.pem")).unwrap();
        let second = SimPki::load_or_create(dir.path(), &["other.test".into()]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(
            leaf_before,
            std::fs::read(dir.path().join("server.pem")).unwrap()
        );
        let names = std::fs::read_to_string(dir.path().join("server-names.txt")).unwrap();
        assert!(names.lines().any(|l| l == "other.test"));
    }

    #[test]
    fn server_names_always_include_loopback_and_skip_duplicates() {
        let names = server_names(&["localhost".into(), " a.test ".into(), String::new()]);
        assert_eq!(names, vec!["localhost", "127.0.0.1", "::1", "a.test"]);
    }
}
