//! TLS for the servers: a certificate chain and its private key, read from PEM files when a
//! server starts (and again when it is replaced, so a reload picks up rotated files).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Where a server's certificate chain and key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, followed by any intermediates.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why the certificate or key cannot be used. Permanent until the files change.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file holds no usable PEM item of the kind needed.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (unreadable, not PEM, no certificate, no key).
        problem: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("{cert} with {key}: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

fn file_error(path: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

/// Why a configuration's `cert` and `key` settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSettingsError {
    /// Only one of the two is set.
    #[error("set both the certificate and the key file, or neither")]
    OnlyOneSet,
    /// The files cannot be read or used.
    #[error(transparent)]
    Files(#[from] TlsError),
}

/// The TLS files of a configuration's `cert` and `key` settings: both (checked by reading
/// them now, so a bad file is a configuration error naming it) or neither.
///
/// # Errors
/// [`TlsSettingsError`]: one of the two set alone, or a file that cannot be used.
pub fn files_from_settings(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<TlsFiles>, TlsSettingsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert_file), Some(key_file)) => {
            let files = TlsFiles {
                cert_file,
                key_file,
            };
            acceptor(&files)?;
            Ok(Some(files))
        }
        _ => Err(TlsSettingsError::OnlyOneSet),
    }
}

/// Reads `files` into a TLS acceptor (TLS 1.2 and 1.3, no client certificates).
///
/// # Errors
/// [`TlsError`] naming the file that cannot be read or used.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| file_error(&files.cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert_file, e))?;
    if chain.is_empty() {
        return Err(file_error(&files.cert_file, "no CERTIFICATE in the file"));
    }
    zgres_config::check_private_key(&files.key_file).map_err(|e| file_error(&files.key_file, e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| file_error(&files.key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair_error = |source| TlsError::Pair {
        cert: files.cert_file.clone(),
        key: files.key_file.clone(),
        source,
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(pair_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS a running server uses for its next connections (`None`: plain HTTP). Replacing it
/// keeps the listening socket, so a rotated certificate is taken without a moment in which
/// nothing listens.
#[derive(Clone, Default)]
pub struct TlsSlot(Arc<RwLock<Option<TlsAcceptor>>>);

impl TlsSlot {
    /// A slot holding `acceptor`.
    pub fn new(acceptor: Option<TlsAcceptor>) -> Self {
        TlsSlot(Arc::new(RwLock::new(acceptor)))
    }

    /// Uses `acceptor` from the next connection on.
    pub fn replace(&self, acceptor: Option<TlsAcceptor>) {
        // A poisoned lock only means a panic elsewhere while holding it: the value is whole.
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
    }

    /// The acceptor for a new connection.
    pub(crate) fn current(&self) -> Option<TlsAcceptor> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::fmt::Debug for TlsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.current().is_some() {
            "TlsSlot(TLS)"
        } else {
            "TlsSlot(plain)"
        })
    }
}
