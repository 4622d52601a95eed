//! TLS to ZooKeeper: the CA that signed the servers' certificates and, optionally, this
//! client's own certificate (which ZooKeeper's x509 provider turns into an identity).
//!
//! The files are read and checked when the configuration is validated, so a bad file is a
//! configuration error naming it. When a connection attempt fails, [`diagnose`] repeats the
//! handshake by itself to say why (an unknown issuer, a name mismatch, a plain-text server),
//! which the ZooKeeper client only logs at debug level.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use zookeeper_client as zk;

/// How long [`diagnose`] waits for the TCP connection: short, because a server that does
/// not accept at once is a network problem, not a TLS one, and a deadman reconnecting after an
/// outage should not wait on the diagnosis.
const DIAGNOSE_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`diagnose`] waits for the handshake once connected.
const DIAGNOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// This client's certificate and key, presented to the servers.
#[derive(Clone, PartialEq, Eq)]
struct Identity {
    cert_file: PathBuf,
    cert_pem: String,
    key_file: PathBuf,
    key_pem: String,
}

/// Validated TLS settings of the `[zookeeper]` section, with the files' contents as read.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkTls {
    ca_file: PathBuf,
    ca_pem: String,
    identity: Option<Identity>,
}

impl std::fmt::Debug for ZkTls {
    // The key's text never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkTls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.identity.as_ref().map(|i| &i.cert_file))
            .finish_non_exhaustive()
    }
}

/// A TLS file that cannot be used, with the config key that names it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct TlsFileError {
    /// The key under `zookeeper.` that names the file (e.g. `tls_ca_file`).
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

fn file_error(key: &'static str, path: &Path, problem: impl ToString) -> TlsFileError {
    TlsFileError {
        key,
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn read(key: &'static str, path: &Path) -> Result<String, TlsFileError> {
    std::fs::read_to_string(path).map_err(|e| file_error(key, path, e))
}

impl ZkTls {
    /// Reads and checks the CA file and, when given, the client certificate and key.
    ///
    /// # Errors
    /// The first file that cannot be read, holds no certificate (or key), or whose key does
    /// not go with its certificate.
    pub fn load(ca_file: &Path, identity: Option<(&Path, &Path)>) -> Result<ZkTls, TlsFileError> {
        let ca_pem = read("tls_ca_file", ca_file)?;
        let roots = roots(ca_file, &ca_pem)?;
        let identity = match identity {
            None => None,
            Some((cert_file, key_file)) => {
                zgres_config::check_private_key(key_file)
                    .map_err(|e| file_error("tls_key_file", key_file, e))?;
                let identity = Identity {
                    cert_file: cert_file.to_owned(),
                    cert_pem: read("tls_cert_file", cert_file)?,
                    key_file: key_file.to_owned(),
                    key_pem: read("tls_key_file", key_file)?,
                };
                Some(identity)
            }
        };
        let tls = ZkTls {
            ca_file: ca_file.to_owned(),
            ca_pem,
            identity,
        };
        // Building the configuration checks the pair (a key that does not match its
        // certificate is refused here, not at the first handshake).
        tls.client_config(roots)?;
        Ok(tls)
    }

    /// The CA file.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Whether a client certificate is presented (an identity for ZooKeeper's x509 provider).
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// The ZooKeeper client's TLS options.
    ///
    /// # Errors
    /// When the client's own PEM parser refuses what `load` accepted (not expected).
    pub(crate) fn options(&self) -> Result<zk::TlsOptions, zk::Error> {
        let options = zk::TlsOptions::new().with_pem_ca(&self.ca_pem)?;
        match &self.identity {
            Some(identity) => options.with_pem_identity(&identity.cert_pem, &identity.key_pem),
            None => Ok(options),
        }
    }

    fn client_config(&self, roots: RootCertStore) -> Result<ClientConfig, TlsFileError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| file_error("tls_ca_file", &self.ca_file, e))?
            .with_root_certificates(roots);
        let Some(identity) = &self.identity else {
            return Ok(builder.with_no_client_auth());
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| file_error("tls_cert_file", &identity.cert_file, e))?;
        if chain.is_empty() {
            return Err(file_error(
                "tls_cert_file",
                &identity.cert_file,
                "no CERTIFICATE in the file",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
            .map_err(|e| file_error("tls_key_file", &identity.key_file, e))?;
        builder.with_client_auth_cert(chain, key).map_err(|e| {
            file_error(
                "tls_key_file",
                &identity.key_file,
                format!("does not go with {}: {e}", identity.cert_file.display()),
            )
        })
    }
}

fn roots(ca_file: &Path, pem: &str) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| file_error("tls_ca_file", ca_file, e))?;
        roots
            .add(cert)
            .map_err(|e| file_error("tls_ca_file", ca_file, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(
            "tls_ca_file",
            ca_file,
            "no CERTIFICATE in the file",
        ));
    }
    Ok(roots)
}

/// Why a TLS connection to one server cannot be made, found by handshaking with it directly.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {server} failed: {reason} (zookeeper.tls_ca_file = {ca_file})")]
pub struct TlsHandshakeError {
    /// `host:port` tried.
    pub server: String,
    /// What rustls or the network said.
    pub reason: String,
    /// The CA file the server's certificate was checked against.
    pub ca_file: String,
}

/// Handshakes with the first server of `connect` using `tls`, and returns why it failed, or
/// `None` when it succeeds (the failure was something else), the server does not accept a
/// connection within 0.5 s or does not finish the handshake within 2 s (a network problem,
/// reported as such by the caller). Cancel-safe: dropping it drops the connection.
pub async fn diagnose(tls: &ZkTls, connect: &str) -> Option<TlsHandshakeError> {
    let server = connect
        .split('/')
        .next()?
        .split(',')
        .next()?
        .trim()
        .to_owned();
    let (host, _) = server.rsplit_once(':')?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let failed = |reason: String| TlsHandshakeError {
        server: server.clone(),
        reason,
        ca_file: tls.ca_file.display().to_string(),
    };
    let config = match roots(&tls.ca_file, &tls.ca_pem).and_then(|r| tls.client_config(r)) {
        Ok(config) => config,
        Err(e) => return Some(failed(e.to_string())),
    };
    let name = match ServerName::try_from(host) {
        Ok(name) => name,
        Err(e) => return Some(failed(e.to_string())),
    };
    let connect = tokio::net::TcpStream::connect(&server);
    let stream = tokio::time::timeout(DIAGNOSE_CONNECT_TIMEOUT, connect)
        .await
        .ok()?
        .ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = connector.connect(name, stream);
    match tokio::time::timeout(DIAGNOSE_HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Err(e)) => Some(failed(e.to_string())),
        Ok(Ok(_)) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zgres_config::Problems;

    use crate::ZookeeperSection;

    /// The problems of a `[zookeeper]` section with `keys` added, as `key: reason` lines.
    fn problems_of(keys: &str) -> (Vec<String>, Option<crate::ZkSettings>) {
        let section: ZookeeperSection =
            toml::from_str(&format!("connect = \"a:1\"\n{keys}")).unwrap();
        let mut problems = Problems::default();
        let settings = section.settings(Duration::from_secs(4), &mut problems);
        (problems.iter().map(ToString::to_string).collect(), settings)
    }

    #[test]
    fn each_tls_problem_names_its_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = zgres_testkit::tls::make_ca(dir.path(), "ca");
        let (cert, key) = zgres_testkit::tls::issue_leaf(dir.path(), "ca", "client", "zgres");
        let (_, other_key) = zgres_testkit::tls::issue_leaf(dir.path(), "ca", "other", "x");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        let [ca, cert, key, other_key, empty, missing] =
            [ca, cert, key, other_key, empty, missing].map(|p| p.display().to_string());

        let (problems, _) = problems_of(&format!("tls_cert_file = \"{cert}\""));
        assert_eq!(
            problems,
            ["zookeeper.tls_key_file: tls_cert_file needs its key file"]
        );
        let (problems, _) = problems_of(&format!("tls_key_file = \"{key}\""));
        assert_eq!(
            problems,
            ["zookeeper.tls_cert_file: tls_key_file needs its certificate file"]
        );
        let (problems, _) = problems_of(&format!(
            "tls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\""
        ));
        assert!(
            problems[0].starts_with("zookeeper.tls_ca_file: a client certificate"),
            "{problems:?}"
        );
        let (problems, _) = problems_of(&format!("tls_ca_file = \"{missing}\""));
        assert!(
            problems[0].starts_with(&format!("zookeeper.tls_ca_file: {missing}: ")),
            "{problems:?}"
        );
        let (problems, _) = problems_of(&format!("tls_ca_file = \"{empty}\""));
        assert_eq!(
            problems,
            [format!(
                "zookeeper.tls_ca_file: {empty}: no CERTIFICATE in the file"
            )]
        );
        let (problems, _) = problems_of(&format!(
            "tls_ca_file = \"{ca}\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{other_key}\""
        ));
        assert!(
            problems[0].starts_with(&format!(
                "zookeeper.tls_key_file: {other_key}: does not go with {cert}"
            )),
            "{problems:?}"
        );

        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (problems, _) = problems_of(&format!(
                "tls_ca_file = \"{ca}\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\""
            ));
            assert_eq!(
                problems,
                [format!(
                    "zookeeper.tls_key_file: {key}: a private key others may access (mode 644): chmod o-rwx"
                )]
            );
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let (problems, settings) = problems_of(&format!(
            "tls_ca_file = \"{ca}\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\""
        ));
        assert!(problems.is_empty(), "{problems:?}");
        let tls = settings.unwrap().tls.expect("TLS is on");
        assert!(tls.options().is_ok());
        assert!(
            !format!("{tls:?}").contains("PRIVATE KEY"),
            "the key is never shown"
        );
        let (_, plain) = problems_of("");
        assert!(plain.unwrap().tls.is_none());
    }
}
