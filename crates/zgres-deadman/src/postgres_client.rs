//! Talking SQL to the local PostgreSQL: the health probe, promotion and re-pointing.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};
use zgres_schema::{Lsn, NodeId, SystemId, Timeline};

use crate::config::PostgresConfig;
use crate::data_dir::quote_literal;
use crate::decision::Probe;

/// Every statement and connection attempt gets this long, so a hung server cannot stall the
/// loop.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A query failed. Retryable: the server may be starting, stopping or overloaded.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or querying failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No answer in time.
    #[error("postgres did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer made no sense.
    #[error("postgres returned {0}")]
    Unexpected(String),
}

/// A (re)connecting client for the local PostgreSQL.
#[derive(Debug)]
pub struct PostgresClient {
    config: PostgresConfig,
    application_name: String,
    client: Option<Client>,
}

const PROBE_SQL: &str = "
SELECT pg_is_in_recovery(),
       (SELECT system_identifier::text FROM pg_control_system()),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery()
            THEN (SELECT received_tli FROM pg_stat_wal_receiver)
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END,
       (SELECT timeline_id FROM pg_control_checkpoint()),
       current_setting('primary_conninfo')";

impl PostgresClient {
    /// A client for `config`; connects lazily.
    pub fn new(config: PostgresConfig, application_name: String) -> Self {
        PostgresClient {
            config,
            application_name,
            client: None,
        }
    }

    /// Forgets the connection (after PostgreSQL stopped).
    pub fn disconnect(&mut self) {
        self.client = None;
    }

    async fn client(&mut self) -> Result<&Client, ClientError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let mut pg = tokio_postgres::Config::new();
            pg.host(self.config.probe_host.to_string())
                .port(self.config.port)
                .user(&self.config.user)
                .dbname(&self.config.dbname)
                .application_name("zgres-deadman")
                .connect_timeout(QUERY_TIMEOUT);
            if let Some(password) = &self.config.password {
                pg.password(password.expose());
            }
            let (client, connection) = timed(pg.connect(NoTls)).await??;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| ClientError::Unexpected("no connection".into()))
    }

    /// Queries role, positions, timeline, system id and upstream.
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL does not answer properly; the connection is dropped.
    pub async fn probe(&mut self) -> Result<Probe, ClientError> {
        let result = self.probe_once().await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    async fn probe_once(&mut self) -> Result<Probe, ClientError> {
        let client = self.client().await?;
        let row = timed(client.query_one(PROBE_SQL, &[])).await??;
        let lsn = |i: usize| -> Result<Option<Lsn>, ClientError> {
            row.get::<_, Option<String>>(i)
                .map(|t| {
                    t.parse()
                        .map_err(|e| ClientError::Unexpected(format!("{e}")))
                })
                .transpose()
        };
        let system_id: SystemId = row
            .get::<_, String>(1)
            .parse()
            .map_err(|e| ClientError::Unexpected(format!("{e}")))?;
        let timeline = row
            .get::<_, Option<i32>>(5)
            .or(row.get::<_, Option<i32>>(6))
            .and_then(|t| u32::try_from(t).ok())
            .and_then(|t| Timeline::new(t).ok());
        let in_recovery: bool = row.get(0);
        // A promoted server still reports the last positions it received and replayed as a
        // standby; they describe the past, not this primary.
        let standby_only = |v: Option<Lsn>| v.filter(|_| in_recovery);
        Ok(Probe {
            in_recovery,
            system_id,
            write_lsn: lsn(2)?,
            receive_lsn: standby_only(lsn(3)?),
            replay_lsn: standby_only(lsn(4)?),
            timeline,
            upstream: upstream_of(&row.get::<_, String>(7)),
        })
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
            Err(ClientError::Unexpected(
                "pg_promote() returned false".into(),
            ))
        }
    }

    /// Points the running standby at `upstream` (`ALTER SYSTEM` + reload; PostgreSQL 13+
    /// restarts the WAL receiver by itself).
    ///
    /// # Errors
    /// [`ClientError`] when PostgreSQL rejects it.
    pub async fn repoint(&mut self, upstream: NodeId) -> Result<(), ClientError> {
        let conninfo = self.conninfo_for(upstream);
        let client = self.client().await?;
        timed(client.batch_execute(&format!(
            "ALTER SYSTEM SET primary_conninfo = {}",
            quote_literal(&conninfo)
        )))
        .await??;
        timed(client.batch_execute("SELECT pg_reload_conf()")).await??;
        Ok(())
    }

    /// The `primary_conninfo` for following `upstream`.
    pub fn conninfo_for(&self, upstream: NodeId) -> String {
        let mut conninfo = format!(
            "host={} port={} user={} application_name={} connect_timeout=2",
            upstream.addr().ip(),
            upstream.addr().port(),
            conninfo_value(&self.config.user),
            self.application_name
        );
        if let Some(password) = &self.config.password {
            conninfo.push_str(&format!(" password={}", conninfo_value(password.expose())));
        }
        conninfo
    }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> Result<T, ClientError> {
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(|_| ClientError::Timeout(QUERY_TIMEOUT))
}

/// A libpq connection-string value, quoted when needed.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// The `host`/`port` of a `primary_conninfo`, as a node id when the host is an IP address.
fn upstream_of(conninfo: &str) -> Option<NodeId> {
    let mut host = None;
    let mut port = Some(5432u16);
    for pair in conninfo.split_whitespace() {
        match pair.split_once('=') {
            Some(("host", v)) | Some(("hostaddr", v)) => host = v.trim_matches('\'').parse().ok(),
            Some(("port", v)) => port = v.trim_matches('\'').parse().ok(),
            _ => {}
        }
    }
    NodeId::new(std::net::SocketAddr::new(host?, port?)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_upstream_in_primary_conninfo() {
        assert_eq!(
            upstream_of("host=10.0.0.2 port=5433 user=postgres").map(|n| n.to_string()),
            Some("10.0.0.2:5433".into())
        );
        assert_eq!(
            upstream_of("user=postgres host='::1'").map(|n| n.to_string()),
            Some("[::1]:5432".into())
        );
        assert_eq!(upstream_of("host=db.example port=5432"), None);
        assert_eq!(upstream_of(""), None);
    }

    #[test]
    fn quotes_conninfo_values() {
        assert_eq!(conninfo_value("postgres"), "postgres");
        assert_eq!(conninfo_value("a b'c"), "'a b\\'c'");
    }
}
