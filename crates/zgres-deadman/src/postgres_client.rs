//! Talking SQL to the local PostgreSQL: the health probe, promotion and re-pointing.

use std::time::Duration;

use tokio_postgres::{Client, Statement};
use zgres_schema::{Lsn, NodeId, SlotName, Timeline};

mod catalog;
mod probe;
mod slots;
mod timeline_history;

use crate::config::PostgresConfig;
use crate::conninfo;
use crate::data_dir::quote_literal;
use crate::postgres_tls::{ConnectError, TlsFileError};
use crate::slots::LocalSlot;
use crate::synchronous::Connected;

/// Every statement and connection attempt gets this long, so a hung server cannot stall the
/// loop.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A query failed. Retryable: the server may be starting, stopping or overloaded.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or querying failed.
    #[error("postgres: {}", zgres_config::with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No answer in time.
    #[error("postgres did not answer within {0:?}")]
    Timeout(Duration),
    /// A WAL position in the answer does not parse.
    #[error("postgres returned a bad WAL position: {0}")]
    BadLsn(#[from] zgres_schema::LsnParseError),
    /// The system identifier in the answer does not parse.
    #[error("postgres returned a bad system identifier: {0}")]
    BadSystemId(#[from] zgres_schema::IdError),
    /// A TLS file named in `[postgres]` cannot be used.
    #[error(transparent)]
    Tls(TlsFileError),
    /// `pg_promote()` gave up.
    #[error("pg_promote() returned false")]
    PromoteFailed,
}

impl ClientError {
    /// Whether PostgreSQL did not answer at all (no answer in time, or the connection is
    /// gone), as opposed to answering with an error.
    pub fn is_unanswered(&self) -> bool {
        match self {
            ClientError::Timeout(_) => true,
            ClientError::Postgres(e) => e.code().is_none(),
            _ => false,
        }
    }
}

/// What PostgreSQL says about its settings (after a start or a reload).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsReport {
    /// Parameters whose new value in a file waits for a restart (`pg_settings.pending_restart`).
    pub pending_restart: Vec<String>,
    /// Configuration-file lines PostgreSQL rejected, as `file:line: name: error`.
    pub rejected: Vec<String>,
}

/// A (re)connecting client for the local PostgreSQL.
#[derive(Debug)]
pub struct PostgresClient {
    config: PostgresConfig,
    application_name: String,
    /// The connection and the probe prepared on it (parsed once, not every round).
    client: Option<(Client, Statement)>,
    /// `server_version_num` of the server last connected to (read once per connection: it
    /// changes only with a restart, which drops the connection).
    server_version: Option<i32>,
    /// The highest timeline seen since PostgreSQL last started. A standby whose WAL receiver
    /// is down reports no received timeline, and its checkpoint's may be older than the
    /// timeline it replays: it must not look behind the group for that.
    seen_timeline: Option<Timeline>,
    /// The TLS problem last warned about, until a connection succeeds.
    tls_problem: Option<String>,
    /// This node's slot on its upstream, as `primary_slot_name` names it when in use.
    member_slot: SlotName,
    /// The replication slots the last probe saw.
    slots: Vec<LocalSlot>,
}

impl From<ConnectError> for ClientError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::File(e) => ClientError::Tls(e),
            ConnectError::Postgres(e) => ClientError::Postgres(e),
        }
    }
}

impl PostgresClient {
    /// A client for `config` on `node`; connects lazily. The node id is what this node
    /// calls itself when it streams from a primary (its `application_name`, so the primary
    /// can tell standbys apart in `pg_stat_replication` and name them in
    /// `synchronous_standby_names`), and names its slot there.
    pub fn new(config: PostgresConfig, node: NodeId) -> Self {
        PostgresClient {
            config,
            application_name: node.to_string(),
            client: None,
            server_version: None,
            seen_timeline: None,
            tls_problem: None,
            member_slot: SlotName::for_member(node),
            slots: Vec::new(),
        }
    }

    /// PostgreSQL's `server_version_num` (e.g. 150004), as read when the client last
    /// connected; `None` before the first connection.
    pub fn server_version(&self) -> Option<i32> {
        self.server_version
    }

    /// Forgets the connection (after PostgreSQL stopped).
    pub fn disconnect(&mut self) {
        self.client = None;
    }

    /// Forgets the timeline seen (PostgreSQL is about to start on a possibly changed data
    /// directory).
    pub fn forget_timeline(&mut self) {
        self.seen_timeline = None;
    }

    fn connect_config(&self) -> tokio_postgres::Config {
        connect_config(
            &self.config,
            std::net::SocketAddr::new(self.config.probe_host, self.config.port),
        )
    }

    async fn client(&mut self) -> Result<&Client, ClientError> {
        Ok(&self.connection().await?.0)
    }

    async fn connection(&mut self) -> Result<&(Client, Statement), ClientError> {
        if self.client.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            self.client = None;
        }
        if let Some(ref connected) = self.client {
            return Ok(connected);
        }
        let pg = self.connect_config();
        let client = match timed(self.config.tls.connect(&pg)).await? {
            Ok(client) => {
                if self.tls_problem.take().is_some() {
                    tracing::info!("TLS to PostgreSQL works again");
                }
                client
            }
            Err(e) => {
                self.note_tls_problem(&e);
                return Err(e.into());
            }
        };
        let probe = timed(client.prepare(probe::PROBE_SQL)).await??;
        let version =
            timed(client.query_one("SELECT current_setting('server_version_num')::int", &[]))
                .await??;
        self.server_version = Some(version.get(0));
        Ok(self.client.insert((client, probe)))
    }

    /// Warns once per distinct TLS problem: unlike a server that is starting, it does not go
    /// away by itself, and probe failures are otherwise logged at debug level only.
    fn note_tls_problem(&mut self, error: &ConnectError) {
        if !error.is_tls_problem() {
            return;
        }
        let text = error.to_string();
        if self.tls_problem.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, "cannot connect to PostgreSQL over TLS");
            self.tls_problem = Some(text);
        }
    }

    /// The standbys connected to this primary, `synchronous_standby_names`, and the current
    /// WAL position (read after the standbys, so it bounds what they were sent).
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer properly.
    pub async fn replication(&mut self) -> Result<(Vec<Connected>, String, Lsn), ClientError> {
        let client = self.client().await?;
        let rows = timed(client.query(
            "SELECT application_name, state, sync_state, flush_lsn::text FROM pg_stat_replication",
            &[],
        ))
        .await??;
        let connected = rows
            .iter()
            .filter_map(|row| {
                let node: NodeId = row.get::<_, Option<String>>(0)?.parse().ok()?;
                Some(Connected {
                    node,
                    streaming: row.get::<_, Option<String>>(1).as_deref() == Some("streaming"),
                    synchronous: matches!(
                        row.get::<_, Option<String>>(2).as_deref(),
                        Some("sync" | "quorum")
                    ),
                    flush: row.get::<_, Option<String>>(3).and_then(|t| t.parse().ok()),
                })
            })
            .collect();
        let row = timed(client.query_one(
            "SELECT current_setting('synchronous_standby_names'), pg_current_wal_lsn()::text",
            &[],
        ))
        .await??;
        let position = row.get::<_, String>(1).parse()?;
        Ok((connected, row.get(0), position))
    }

    /// Sets `synchronous_standby_names` (`ALTER SYSTEM` + reload).
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL rejects it.
    pub async fn set_standby_names(&mut self, names: &str) -> Result<(), ClientError> {
        let client = self.client().await?;
        timed(client.batch_execute(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = {}",
            quote_literal(names)
        )))
        .await??;
        timed(client.batch_execute("SELECT pg_reload_conf()")).await??;
        Ok(())
    }

    /// Promotes the standby and waits (up to 60 s) until it accepts writes.
    ///
    /// # Errors
    /// [`ClientError`] when promotion fails or does not finish in time.
    pub async fn promote(&mut self) -> Result<(), ClientError> {
        let client = self.client().await?;
        let row = tokio::time::timeout(
            Duration::from_secs(65),
            client.query_one("SELECT pg_promote(true, 60)", &[]),
        )
        .await
        .map_err(|_| ClientError::Timeout(Duration::from_secs(65)))??;
        if row.get::<_, bool>(0) {
            Ok(())
        } else {
            Err(ClientError::PromoteFailed)
        }
    }

    /// Starts a `CHECKPOINT` on its own connection and task, so the round does not wait for it.
    pub fn checkpoint_in_background(&self) {
        let config = self.connect_config();
        let tls = self.config.tls.clone();
        tokio::spawn(async move {
            let run = async {
                let client = tls.connect(&config).await?;
                client
                    .batch_execute("CHECKPOINT")
                    .await
                    .map_err(ConnectError::from)
            };
            match tokio::time::timeout(Duration::from_secs(600), run).await {
                Ok(Ok(())) => tracing::info!("checkpoint after promotion done"),
                Ok(Err(e)) => tracing::warn!(error = %e, "checkpoint after promotion failed"),
                Err(_) => tracing::warn!("checkpoint after promotion did not finish in 10 minutes"),
            }
        });
    }

    /// Asks PostgreSQL to re-read its configuration files (`pg_reload_conf()`). The server
    /// applies them a moment later, asynchronously.
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer.
    pub async fn reload(&mut self) -> Result<(), ClientError> {
        let client = self.client().await?;
        timed(client.batch_execute("SELECT pg_reload_conf()")).await??;
        Ok(())
    }

    /// Whether this standby's WAL receiver is streaming (`pg_stat_wal_receiver.status`).
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer.
    pub async fn wal_receiver_streaming(&mut self) -> Result<bool, ClientError> {
        let client = self.client().await?;
        let rows =
            timed(client.query("SELECT status = 'streaming' FROM pg_stat_wal_receiver", &[]))
                .await??;
        Ok(rows.first().is_some_and(|row| row.get::<_, bool>(0)))
    }

    /// Which parameters wait for a restart, and which lines of the configuration files
    /// PostgreSQL rejected.
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer.
    pub async fn settings_report(&mut self) -> Result<SettingsReport, ClientError> {
        let client = self.client().await?;
        let pending = timed(client.query(
            "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name",
            &[],
        ))
        .await??;
        // A changed postmaster-level setting shows here as "could not be applied" too; it is
        // reported as pending a restart instead.
        let rejected = timed(client.query(
            "SELECT coalesce(sourcefile, '?') || ':' || coalesce(sourceline, 0) || ': '
                    || coalesce(name || ': ', '') || error
               FROM pg_file_settings
              WHERE error IS NOT NULL AND error <> 'setting could not be applied'
              ORDER BY seqno",
            &[],
        ))
        .await??;
        Ok(SettingsReport {
            pending_restart: pending.iter().map(|r| r.get(0)).collect(),
            rejected: rejected.iter().map(|r| r.get(0)).collect(),
        })
    }

    /// Points the running standby at `upstream`, with this node's slot there when `slot`
    /// (`ALTER SYSTEM` + reload; PostgreSQL 13+ restarts the WAL receiver by itself).
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL rejects it.
    pub async fn repoint(&mut self, upstream: NodeId, slot: bool) -> Result<(), ClientError> {
        let conninfo = self.conninfo_for(upstream);
        let slot_setting = match slot {
            true => format!(
                "ALTER SYSTEM SET primary_slot_name = {}",
                quote_literal(self.member_slot.as_str())
            ),
            false => "ALTER SYSTEM RESET primary_slot_name".to_owned(),
        };
        let client = self.client().await?;
        timed(client.batch_execute(&format!(
            "ALTER SYSTEM SET primary_conninfo = {}",
            quote_literal(&conninfo)
        )))
        .await??;
        timed(client.batch_execute(&slot_setting)).await??;
        timed(client.batch_execute("SELECT pg_reload_conf()")).await??;
        Ok(())
    }

    /// The `primary_conninfo` for following `upstream`. It never holds the password: with
    /// one configured it names the password file ([`crate::passfile`]).
    pub fn conninfo_for(&self, upstream: NodeId) -> String {
        let mut conninfo = format!(
            "host={} port={} user={} application_name={} connect_timeout=2",
            upstream.addr().ip(),
            upstream.addr().port(),
            conninfo::value(&self.config.user),
            conninfo::value(&self.application_name)
        );
        if self.config.password.is_some() {
            let passfile = crate::passfile::path(&self.config);
            conninfo.push_str(&format!(
                " passfile={}",
                conninfo::value(&passfile.display().to_string())
            ));
        }
        conninfo.push_str(&self.config.tls.libpq_params());
        conninfo
    }
}

/// How the deadman connects to a PostgreSQL server at `addr` (this node's, or a source to
/// rewind from): `postgres.user`, `postgres.dbname`, its password, a short connect timeout.
pub fn connect_config(
    config: &PostgresConfig,
    addr: std::net::SocketAddr,
) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(addr.ip().to_string())
        .port(addr.port())
        .user(&config.user)
        .dbname(&config.dbname)
        .application_name("zgres-deadman")
        .connect_timeout(QUERY_TIMEOUT);
    if let Some(password) = &config.password {
        pg.password(password.expose());
    }
    pg
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> Result<T, ClientError> {
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(|_| ClientError::Timeout(QUERY_TIMEOUT))
}
