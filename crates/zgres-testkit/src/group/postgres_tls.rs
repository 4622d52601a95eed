//! PostgreSQL that takes TCP connections only over TLS with a client certificate, for a
//! group's nodes: a test CA, a server certificate for 127.0.0.1, a client certificate for
//! `postgres`, and a `pg_hba.conf` with `hostssl ... cert` and nothing else over TCP.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Group;
use crate::os_user::OsUser;
use crate::tls;

/// Only TLS with a certificate over TCP; the test's own clients use the Unix socket.
const HBA: &str = "local all all trust\n\
                   hostssl all postgres 127.0.0.1/32 cert\n\
                   hostssl replication postgres 127.0.0.1/32 cert\n\
                   hostnossl all all 0.0.0.0/0 reject\n";

/// The files, readable by the user PostgreSQL and pgbouncer run as (keys mode 0600, as both
/// require). They are deleted when this is dropped: keep it as long as the group.
pub struct TlsOnlyPostgres {
    dir: tempfile::TempDir,
    /// The CA certificate.
    pub ca: PathBuf,
    /// The servers' certificate and key.
    pub server: (PathBuf, PathBuf),
    /// The client certificate (`CN=postgres`) and key.
    pub client: (PathBuf, PathBuf),
    /// The `pg_hba.conf` every node uses (`hba_file`).
    pub hba: PathBuf,
}

impl TlsOnlyPostgres {
    /// Makes the CA, the certificates and the `pg_hba.conf`.
    ///
    /// # Panics
    /// When `openssl` fails or the files cannot be written.
    pub fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path();
        let ca = tls::make_ca(path, "pgca");
        let server = tls::issue_leaf(path, "pgca", "server", "127.0.0.1");
        let client = tls::issue_leaf(path, "pgca", "client", "postgres");
        let hba = path.join("pg_hba.conf");
        std::fs::write(&hba, HBA).unwrap();
        let postgres = OsUser::for_postgres().unwrap();
        for (file, mode) in [
            (&ca, 0o644),
            (&server.0, 0o644),
            (&client.0, 0o644),
            (&hba, 0o644),
            (&server.1, 0o600),
            (&client.1, 0o600),
        ] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
            if let Some(user) = &postgres {
                user.chown(file).unwrap();
            }
        }
        TlsOnlyPostgres {
            dir,
            ca,
            server,
            client,
            hba,
        }
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `[postgres]` settings of a deadman using these files with `sslrootcert` = `ca`
    /// (TOML, merged into a node's config).
    pub fn deadman_config(&self, ca: &Path) -> String {
        format!(
            "[postgres]\nsslmode = \"verify-full\"\nsslrootcert = \"{}\"\n\
             sslcert = \"{}\"\nsslkey = \"{}\"\n\
             [postgres.parameters]\nssl = \"on\"\nssl_cert_file = \"{}\"\nssl_key_file = \"{}\"\n\
             ssl_ca_file = \"{}\"\nhba_file = \"{}\"\n",
            ca.display(),
            self.client.0.display(),
            self.client.1.display(),
            self.server.0.display(),
            self.server.1.display(),
            self.ca.display(),
            self.hba.display()
        )
    }

    /// Makes every node of `group` (not started yet) run TLS-only with these files, and the
    /// test's own clients connect through the Unix socket.
    pub fn apply(&self, group: &mut Group) {
        for node in &mut group.nodes {
            node.clients_use_socket = true;
            node.extra_config = self.deadman_config(&self.ca);
        }
    }

    /// pgbouncer's settings for reaching these servers with `verify-full` and the client
    /// certificate.
    pub fn pgbouncer_settings(&self) -> String {
        format!(
            "server_tls_sslmode = verify-full\nserver_tls_ca_file = {}\n\
             server_tls_cert_file = {}\nserver_tls_key_file = {}\n",
            self.ca.display(),
            self.client.0.display(),
            self.client.1.display()
        )
    }
}
