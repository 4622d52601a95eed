//! A real pgbouncer on a loopback port, reading its `[databases]` from a file someone else
//! (zgres-sync) writes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::os_user::OsUser;
use crate::ports::free_port;
use crate::process::ManagedProcess;
use crate::{io_error, Result};

/// What zgres recommends for `server_login_retry` (docs/sync.md): after a failed connect,
/// one new attempt per second while new clients fail at once, instead of an attempt for
/// every waiting client in a loop.
pub const RECOMMENDED_LOGIN_RETRY: &str = "1";

/// A running pgbouncer (trust authentication, user `postgres` is admin, session pooling,
/// `server_login_retry` as zgres recommends). Dropping it stops it.
#[derive(Debug)]
pub struct PgBouncer {
    port: u16,
    log: PathBuf,
    process: ManagedProcess,
}

impl PgBouncer {
    /// Starts pgbouncer with `%include databases` in `dir` (which must be readable by the
    /// `postgres` user when running as root; pgbouncer refuses to run as root). An empty
    /// databases file is created if there is none yet.
    ///
    /// # Errors
    /// When the files cannot be written or pgbouncer cannot start.
    pub fn start(dir: &Path, databases: &Path) -> Result<Self> {
        Self::start_with_login_retry(dir, databases, RECOMMENDED_LOGIN_RETRY)
    }

    /// As [`PgBouncer::start`], with `server_login_retry = login_retry` (seconds), to measure
    /// other settings against the recommended one.
    ///
    /// # Errors
    /// As [`PgBouncer::start`].
    pub fn start_with_login_retry(dir: &Path, databases: &Path, login_retry: &str) -> Result<Self> {
        Self::start_configured(dir, databases, login_retry, "")
    }

    /// As [`PgBouncer::start`], with `server_lifetime = seconds`: server connections are
    /// replaced that often, so connections through a load balancer move to a replica that
    /// came back.
    ///
    /// # Errors
    /// As [`PgBouncer::start`].
    pub fn start_with_server_lifetime(dir: &Path, databases: &Path, seconds: u32) -> Result<Self> {
        Self::start_with_settings(dir, databases, &format!("server_lifetime = {seconds}\n"))
    }

    /// As [`PgBouncer::start`], with `settings` (lines of the `[pgbouncer]` section) added,
    /// e.g. `server_tls_*`.
    ///
    /// # Errors
    /// As [`PgBouncer::start`].
    pub fn start_with_settings(dir: &Path, databases: &Path, settings: &str) -> Result<Self> {
        Self::start_configured(dir, databases, RECOMMENDED_LOGIN_RETRY, settings)
    }

    fn start_configured(
        dir: &Path,
        databases: &Path,
        login_retry: &str,
        extra: &str,
    ) -> Result<Self> {
        let port = free_port()?;
        if !databases.exists() {
            std::fs::write(databases, "[databases]\n")
                .map_err(io_error("write pgbouncer databases"))?;
        }
        let ini = dir.join("pgbouncer.ini");
        let users = dir.join("pgbouncer-users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").map_err(io_error("write pgbouncer users"))?;
        std::fs::write(
            &ini,
            format!(
                "%include {}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\nadmin_users = postgres\n\
                 pool_mode = session\nserver_login_retry = {login_retry}\nserver_connect_timeout = 2\n\
                 ignore_startup_parameters = extra_float_digits\n{extra}",
                databases.display(),
                users.display()
            ),
        )
        .map_err(io_error("write pgbouncer.ini"))?;
        Self::run(&ini, port, &[&users, databases])
    }

    /// Runs pgbouncer with the configuration file `ini` as it is (e.g. one taken from the docs),
    /// listening on `port`; `files` are the other files it reads, made readable to it. Its log
    /// goes beside `ini`.
    ///
    /// # Errors
    /// When the files cannot be made readable or pgbouncer cannot start.
    pub fn run(ini: &Path, port: u16, files: &[&Path]) -> Result<Self> {
        for f in std::iter::once(ini).chain(files.iter().copied()) {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))
                .map_err(io_error("make pgbouncer files readable"))?;
        }
        let log = ini.with_file_name("pgbouncer.log");
        let process = ManagedProcess::spawn(
            "pgbouncer",
            "/usr/sbin/pgbouncer",
            [ini.as_os_str()],
            &[],
            OsUser::for_postgres()?.as_ref(),
            &log,
        )?;
        Ok(PgBouncer { port, log, process })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `conninfo` for the admin console, as zgres-sync's `admin_conninfo` wants it.
    pub fn admin_conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=pgbouncer connect_timeout=2",
            self.port
        )
    }

    /// pgbouncer's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// pgbouncer's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}
