//! Real PostgreSQL 15 instances: primaries made with initdb, replicas with pg_basebackup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};
use zgres_schema::{Lsn, SystemId, Timeline};

use crate::os_user::OsUser;
use crate::ports::free_port;
use crate::process::{run_command, ManagedProcess};
use crate::{io_error, poll, HarnessError, Result};

mod files;
use files::{PG_HBA_CONF, POSTGRESQL_CONF};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts tried on fresh ports when another process took the port meanwhile.
const PORT_ATTEMPTS: usize = 3;
const DEFAULT_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// Where PostgreSQL's programs are: `$ZGRES_PG_BINDIR`, else Debian's PostgreSQL 15 directory.
pub fn bindir() -> PathBuf {
    std::env::var_os("ZGRES_PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINDIR))
}

/// A PostgreSQL instance on a loopback port with its data in a temp dir.
///
/// Connections use the superuser `postgres` with trust authentication on 127.0.0.1. Dropping
/// the node kills the server and deletes the data.
#[derive(Debug)]
pub struct PgNode {
    name: String,
    port: u16,
    run_as: Option<OsUser>,
    process: Option<ManagedProcess>,
    dir: TempDir,
}

impl Drop for PgNode {
    /// Kills the server, then removes the System V shared memory segment a killed postmaster
    /// leaves behind (named in its `postmaster.pid`): it outlives the deleted data directory,
    /// and a long series of test runs on one machine exhausts the kernel's limit (`SHMMNI`),
    /// after which no PostgreSQL starts ("could not create shared memory segment"). A segment
    /// still attached is only marked for removal.
    fn drop(&mut self) {
        drop(self.process.take());
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid"));
        let segment = pid_file.ok().and_then(|text| {
            let line = text.lines().nth(6)?.to_owned();
            let id = line.split_whitespace().nth(1)?;
            id.parse::<u32>().ok()
        });
        if let Some(id) = segment {
            let _ = std::process::Command::new("ipcrm")
                .args(["-m", &id.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl PgNode {
    /// Creates a new cluster with initdb (data checksums on, so pg_rewind works) and starts it.
    ///
    /// # Errors
    /// When initdb fails or the server does not accept connections within a minute.
    pub async fn init_primary(name: &str) -> Result<Self> {
        let node = Self::prepare(name)?;
        let data = node.data_dir();
        run_command(
            &bin("initdb"),
            [
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--data-checksums",
                "--no-sync",
            ],
            node.run_as.as_ref(),
        )
        .await?;
        append(&data.join("postgresql.conf"), POSTGRESQL_CONF)?;
        std::fs::write(data.join("pg_hba.conf"), PG_HBA_CONF)
            .map_err(io_error("write pg_hba.conf"))?;
        node.start().await
    }

    /// Clones this node with pg_basebackup into a new streaming replica (`-R` writes
    /// `standby.signal` and `primary_conninfo`) and starts it. It does not wait for streaming;
    /// see [`PgNode::wait_streaming`].
    ///
    /// # Errors
    /// When pg_basebackup fails or the replica does not accept connections within a minute.
    pub async fn clone_replica(&self, name: &str) -> Result<Self> {
        let node = Self::prepare(name)?;
        let port = self.port.to_string();
        run_command(
            &bin("pg_basebackup"),
            [
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                path_str(&node.data_dir())?,
                "-X",
                "stream",
                "-R",
                "-c",
                "fast",
                "--no-sync",
            ],
            node.run_as.as_ref(),
        )
        .await?;
        // Name the connection after the replica, so the primary's pg_stat_replication shows which
        // replica is which (pg_basebackup -R leaves application_name unset).
        append(
            &node.data_dir().join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={port} user=postgres application_name={name}'\n"
            ),
        )?;
        node.start().await
    }

    /// A node with no data directory yet (for the deadman to bootstrap or clone), on a free
    /// port, in a temp dir the PostgreSQL user owns. Nothing runs.
    ///
    /// # Errors
    /// When the temp dir cannot be made.
    pub fn empty(name: &str) -> Result<Self> {
        Self::prepare(name)
    }

    fn prepare(name: &str) -> Result<Self> {
        let run_as = OsUser::for_postgres()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("zgres-pg-{name}-"))
            .tempdir()
            .map_err(io_error("create a PostgreSQL temp dir"))?;
        if let Some(user) = &run_as {
            user.chown(dir.path())?;
        }
        Ok(PgNode {
            name: name.to_owned(),
            port: free_port()?,
            run_as,
            process: None,
            dir,
        })
    }

    /// Starts the server (if stopped) and waits until it accepts connections.
    ///
    /// # Errors
    /// When it exits or does not accept connections within a minute.
    pub async fn start(mut self) -> Result<Self> {
        // Another test process may take the port between `free_port` and the bind: the
        // postmaster then exits at once, and another free port is tried.
        for attempt in 1..=PORT_ATTEMPTS {
            self.spawn()?;
            match self.wait_ready().await {
                Err(_) if attempt < PORT_ATTEMPTS && self.lost_its_port() => {
                    self.process = None;
                    self.port = free_port()?;
                }
                result => return result.map(|()| self),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Whether the postmaster's log says its TCP port was taken.
    fn lost_its_port(&self) -> bool {
        std::fs::read_to_string(self.log_path())
            .is_ok_and(|log| log.contains("could not bind IPv4 address"))
    }

    /// Starts the server again after [`PgNode::stop`] or [`PgNode::kill`].
    ///
    /// # Errors
    /// As [`PgNode::start`].
    pub async fn restart(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready().await
    }

    fn spawn(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let data = self.data_dir();
        let socket_dir = self.dir.path().display().to_string();
        let port = self.port.to_string();
        let args = [
            "-D",
            path_str(&data)?,
            "-c",
            &format!("port={port}"),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("unix_socket_directories={socket_dir}"),
        ];
        self.process = Some(ManagedProcess::spawn(
            &format!("postgres {}", self.name),
            bin("postgres"),
            args,
            &[],
            self.run_as.as_ref(),
            &self.dir.path().join("postgres.log"),
        )?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let what = format!(
            "postgres {} accepting connections on port {}",
            self.name, self.port
        );
        // Through the socket in this node's own directory: another server that took the TCP
        // port (another test process's) cannot answer there. The postmaster creates it only
        // once it has its TCP port too.
        let conninfo = format!(
            "host={} port={} user=postgres dbname=postgres connect_timeout=2",
            self.dir.path().display(),
            self.port
        );
        let log = self.log_path();
        poll::until(&what, START_TIMEOUT, || {
            let alive = self.process.as_mut().map(|p| p.check_alive());
            let conninfo = conninfo.clone();
            async move {
                if let Some(Err(e)) = alive {
                    return Some(Err(e));
                }
                match tokio_postgres::connect(&conninfo, NoTls).await {
                    Ok(_) => Some(Ok(())),
                    Err(_) => None,
                }
            }
        })
        .await
        .map_err(|e| e.with_log(log))?
    }

    /// Fast shutdown (`SIGINT`), waiting up to 30 s before killing. Blocks the thread.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop(Signal::SIGINT, Duration::from_secs(30));
        }
    }

    /// Kills the postmaster and every backend with `SIGKILL`.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// The postmaster's pid (also its process group), if running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid())
    }

    /// Node name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir holding the data directory; also the Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The OS user PostgreSQL runs as, when not the current user.
    pub fn run_as(&self) -> Option<&OsUser> {
        self.run_as.as_ref()
    }

    /// libpq key/value connection string for the superuser.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
            self.port
        )
    }

    /// Opens a connection; its driver task runs on the current runtime.
    ///
    /// # Errors
    /// When the server does not accept it.
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(), NoTls)
            .await
            .map_err(|e| self.query_error(e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    fn query_error(&self, source: tokio_postgres::Error) -> HarnessError {
        HarnessError::Postgres {
            node: self.name.clone(),
            source,
        }
    }

    async fn query_text(&self, sql: &str) -> Result<Option<String>> {
        let client = self.connect().await?;
        let row = client
            .query_one(sql, &[])
            .await
            .map_err(|e| self.query_error(e))?;
        Ok(row.get(0))
    }

    /// `pg_is_in_recovery()`.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn is_in_recovery(&self) -> Result<bool> {
        Ok(self
            .query_text("SELECT pg_is_in_recovery()::text")
            .await?
            .as_deref()
            == Some("true"))
    }

    /// `pg_current_wal_lsn()` on a primary, `pg_last_wal_receive_lsn()` on a replica.
    ///
    /// # Errors
    /// When the query fails or returns something that is not an LSN.
    pub async fn wal_lsn(&self) -> Result<Option<Lsn>> {
        self.lsn_query(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
             ELSE pg_current_wal_lsn() END::text",
        )
        .await
    }

    /// `pg_last_wal_replay_lsn()` (None on a primary).
    ///
    /// # Errors
    /// When the query fails or returns something that is not an LSN.
    pub async fn replay_lsn(&self) -> Result<Option<Lsn>> {
        self.lsn_query("SELECT pg_last_wal_replay_lsn()::text")
            .await
    }

    async fn lsn_query(&self, sql: &str) -> Result<Option<Lsn>> {
        self.query_text(sql)
            .await?
            .map(|text| {
                text.parse().map_err(|e: zgres_schema::LsnParseError| {
                    HarnessError::Setup(format!("{}: {e}", self.name))
                })
            })
            .transpose()
    }

    /// The system identifier from `pg_control_system()`.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn system_id(&self) -> Result<SystemId> {
        let text = self
            .query_text("SELECT system_identifier::text FROM pg_control_system()")
            .await?
            .unwrap_or_default();
        text.parse()
            .map_err(|e| HarnessError::Setup(format!("{}: {e}", self.name)))
    }

    /// The current timeline from `pg_control_checkpoint()` (as of the last checkpoint; on a
    /// replica the timeline it replays).
    ///
    /// # Errors
    /// When the query fails.
    pub async fn timeline(&self) -> Result<Timeline> {
        let text = self
            .query_text("SELECT timeline_id::text FROM pg_control_checkpoint()")
            .await?
            .unwrap_or_default();
        text.parse::<u32>()
            .ok()
            .and_then(|t| Timeline::new(t).ok())
            .ok_or_else(|| HarnessError::Setup(format!("{}: bad timeline {text:?}", self.name)))
    }

    /// Status of the WAL receiver (`streaming`, `catchup`, ...), None when there is none.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn wal_receiver_status(&self) -> Result<Option<String>> {
        let client = self.connect().await?;
        let rows = client
            .query("SELECT status FROM pg_stat_wal_receiver", &[])
            .await
            .map_err(|e| self.query_error(e))?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Waits until this replica's WAL receiver reports `streaming`.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] with the server log when it does not within `timeout`.
    pub async fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        let what = format!("replica {} streaming", self.name);
        poll::until(&what, timeout, || async {
            match self.wal_receiver_status().await {
                Ok(Some(status)) if status == "streaming" => Some(()),
                _ => None,
            }
        })
        .await
        .map_err(|e| e.with_log(self.log_path()))
    }

    /// Runs SQL statements (simple query protocol).
    ///
    /// # Errors
    /// When PostgreSQL rejects them.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.connect()
            .await?
            .batch_execute(sql)
            .await
            .map_err(|e| self.query_error(e))
    }
}

fn bin(program: &str) -> String {
    bindir().join(program).display().to_string()
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| HarnessError::Setup(format!("non-UTF-8 path {}", path.display())))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io_error(format!("append to {}", path.display())))
}
