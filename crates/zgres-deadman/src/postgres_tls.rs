//! TLS to PostgreSQL: `[postgres] sslmode`, `sslrootcert`, `sslcert` and `sslkey`, with
//! libpq's meanings. They apply to the deadman's own connections (probes, promotion, asking a
//! rewind source for its timeline) through [`PostgresTls::connect`], and to everything libpq
//! does for it as connection parameters ([`PostgresTls::libpq_params`]): streaming
//! replication's `primary_conninfo`, pg_basebackup and pg_rewind.

mod connector;
mod key_mode;

use std::path::{Path, PathBuf};

use tokio_postgres::config::SslMode as WireSslMode;
use tokio_postgres::{Client, NoTls};

use crate::conninfo;

/// libpq's `sslmode`, less `allow` (plain text first, TLS only when the server insists),
/// which protects nothing that `prefer` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, else plain text (libpq's default).
    #[default]
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS, and the server's certificate must be signed by `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the address connected to (an IP
    /// subject alternative name: the deadman connects to node ids, which are addresses).
    VerifyFull,
}

impl SslMode {
    /// The value libpq knows it by.
    pub fn as_libpq(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies_the_server(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// An `sslmode` that is not one of [`SslMode`]'s.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
pub struct UnknownSslMode(String);

impl std::str::FromStr for SslMode {
    type Err = UnknownSslMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|mode| mode.as_libpq() == text)
        .ok_or_else(|| UnknownSslMode(text.to_owned()))
    }
}

/// The certificate and key this node presents to PostgreSQL servers (for `cert`
/// authentication in `pg_hba.conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `sslcert`: the certificate (chain), PEM.
    pub cert: PathBuf,
    /// `sslkey`: its private key, PEM.
    pub key: PathBuf,
}

/// How the deadman and the libpq tools it runs protect connections to PostgreSQL servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostgresTls {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: the CA certificates servers are checked against.
    pub root_cert: Option<PathBuf>,
    /// `sslcert` and `sslkey`.
    pub client: Option<ClientCertificate>,
}

/// A TLS file that cannot be used, naming its setting and the file.
#[derive(Debug, thiserror::Error)]
#[error("postgres.{key} = {}: {problem}", path.display())]
pub struct TlsFileError {
    /// The setting under `postgres.` that names the file (e.g. `sslrootcert`).
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl TlsFileError {
    fn new(key: &'static str, path: &Path, problem: impl ToString) -> Self {
        TlsFileError {
            key,
            path: path.to_owned(),
            problem: problem.to_string(),
        }
    }
}

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS file cannot be used (it changed since the configuration was checked).
    #[error(transparent)]
    File(#[from] TlsFileError),
    /// The server refused, did not answer, or the handshake failed.
    #[error("postgres: {}", zgres_config::with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

impl ConnectError {
    /// Whether this is a TLS problem that retrying will not fix (a file, or a handshake the
    /// server or this side refused), worth a warning rather than the debug line of a server
    /// that is starting.
    pub fn is_tls_problem(&self) -> bool {
        match self {
            ConnectError::File(_) => true,
            ConnectError::Postgres(e) => connector::HandshakeFailed::find(e).is_some(),
        }
    }
}

impl PostgresTls {
    /// Reads every file as the deadman will, so a bad one is a configuration error: the CA
    /// must hold a certificate, the key must go with the certificate, and the key must be
    /// closed to others and pass libpq's own check for `libpq_user` (the OS user PostgreSQL
    /// and its tools run as, whose libpq reads the same key for replication).
    ///
    /// # Errors
    /// The first file that cannot be used.
    pub fn check(&self, libpq_user: nix::unistd::Uid) -> Result<(), TlsFileError> {
        if let Some(client) = &self.client {
            key_mode::check(&client.key, libpq_user)
                .map_err(|e| TlsFileError::new("sslkey", &client.key, e))?;
        }
        connector::client_config(self).map(drop)
    }

    /// Each file named, with its setting (`sslrootcert`, `sslcert`, `sslkey`).
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        let client = self
            .client
            .iter()
            .flat_map(|c| [("sslcert", c.cert.as_path()), ("sslkey", c.key.as_path())]);
        self.root_cert
            .iter()
            .map(|f| ("sslrootcert", f.as_path()))
            .chain(client)
    }

    /// The connection parameters that give libpq these settings, each with a leading space
    /// (appended to a `primary_conninfo` or a `--source-server`).
    pub fn libpq_params(&self) -> String {
        let mut params = format!(" sslmode={}", self.mode.as_libpq());
        for (name, file) in self.files() {
            params.push_str(&format!(
                " {name}={}",
                conninfo::value(&file.display().to_string())
            ));
        }
        params
    }

    /// Connects with `pg` under these settings (the files are read again, so renewed
    /// certificates are used from the next connection on) and drives the connection on its
    /// own task, which ends when the client is dropped.
    ///
    /// # Errors
    /// [`ConnectError`]; a handshake failure says why and names the CA file.
    ///
    /// # Cancellation
    /// Dropping the future drops the half-made connection.
    pub async fn connect(&self, pg: &tokio_postgres::Config) -> Result<Client, ConnectError> {
        let mut pg = pg.clone();
        if self.mode == SslMode::Disable {
            pg.ssl_mode(WireSslMode::Disable);
            let (client, connection) = pg.connect(NoTls).await?;
            tokio::spawn(connection);
            return Ok(client);
        }
        pg.ssl_mode(match self.mode {
            SslMode::Prefer => WireSslMode::Prefer,
            _ => WireSslMode::Require,
        });
        let connector = connector::Connector::new(self)?;
        let (client, connection) = pg.connect(connector).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// The TLS settings of `[postgres]` as written in the file.
#[derive(Debug, Default)]
pub struct TlsSettings {
    /// `sslmode`.
    pub sslmode: Option<String>,
    /// `sslrootcert`.
    pub sslrootcert: Option<PathBuf>,
    /// `sslcert`.
    pub sslcert: Option<PathBuf>,
    /// `sslkey`.
    pub sslkey: Option<PathBuf>,
}

impl TlsSettings {
    /// Validates the settings and their files, recording problems under `postgres.KEY`.
    /// `libpq_user` is as for [`PostgresTls::check`].
    pub fn validate(
        self,
        libpq_user: nix::unistd::Uid,
        problems: &mut zgres_config::Problems,
    ) -> Option<PostgresTls> {
        let mode = match self.sslmode.as_deref().map(str::parse::<SslMode>) {
            None => SslMode::default(),
            Some(Ok(mode)) => mode,
            Some(Err(e)) => {
                problems.add("postgres.sslmode", e.to_string());
                return None;
            }
        };
        if mode.verifies_the_server() && self.sslrootcert.is_none() {
            problems.add(
                "postgres.sslrootcert",
                format!(
                    "required with sslmode = {:?}: the CA the servers' certificates are checked against",
                    mode.as_libpq()
                ),
            );
            return None;
        }
        let client = match (self.sslcert, self.sslkey) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientCertificate { cert, key }),
            (Some(_), None) => {
                problems.add("postgres.sslkey", "required with sslcert");
                return None;
            }
            (None, Some(_)) => {
                problems.add("postgres.sslcert", "required with sslkey");
                return None;
            }
        };
        let tls = PostgresTls {
            mode,
            root_cert: self.sslrootcert,
            client,
        };
        if mode != SslMode::Disable {
            for (key, file) in tls.files() {
                if !file.is_absolute() {
                    problems.add(&format!("postgres.{key}"), "give the file's absolute path");
                    return None;
                }
            }
            if let Err(e) = tls.check(libpq_user) {
                problems.add(&format!("postgres.{}", e.key), e.to_string());
                return None;
            }
        }
        Some(tls)
    }
}

#[cfg(test)]
mod tests;
