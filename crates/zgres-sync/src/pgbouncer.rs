//! The built-in pgbouncer plugin: rewrites a `[databases]` file (included from pgbouncer.ini)
//! so that `{group}` goes to the primary and `{group}{suffix}` to a replica, then tells
//! pgbouncer to `RELOAD` through its admin console.

use tokio_postgres::NoTls;

use crate::config::PgbouncerConfig;
use crate::snapshot::{Endpoint, Snapshot};

/// Why pgbouncer could not be updated. Retryable.
#[derive(Debug, thiserror::Error)]
pub enum PgbouncerError {
    /// The databases file could not be written.
    #[error("pgbouncer: cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The admin console refused or could not be reached.
    #[error("pgbouncer admin console: {0}")]
    Admin(#[from] tokio_postgres::Error),
}

/// The `[databases]` section for `snapshot`.
pub fn render(config: &PgbouncerConfig, snapshot: &Snapshot) -> String {
    let mut text =
        String::from("; Written by zgres-sync; changes here are overwritten.\n[databases]\n");
    let line = |name: String, endpoints: &[&Endpoint]| -> String {
        let Some(first) = endpoints.first() else {
            return String::new();
        };
        // pgbouncer takes several hosts but one port: list several only when they agree.
        let hosts: Vec<&str> = if endpoints.iter().all(|e| e.port == first.port) {
            endpoints.iter().map(|e| e.host.as_str()).collect()
        } else {
            vec![first.host.as_str()]
        };
        let dbname = first.dbname.as_deref().unwrap_or(&config.dbname);
        format!(
            "{name} = host={} port={} dbname={dbname}\n",
            hosts.join(","),
            first.port
        )
    };
    for (group, g) in &snapshot.groups {
        if let Some(primary) = &g.primary {
            text.push_str(&line(group.to_string(), &[primary]));
        }
        let readers: Vec<&Endpoint> = g
            .replicas
            .iter()
            .filter(|r| !r.tags.noloadbalance)
            .collect();
        let readers = if readers.is_empty() {
            g.primary.iter().collect()
        } else {
            readers
        };
        text.push_str(&line(
            format!("{group}{}", config.read_only_suffix),
            &readers,
        ));
    }
    text
}

/// Applies `snapshot`: writes the file if its content changed, then reloads pgbouncer.
///
/// # Errors
/// [`PgbouncerError`]; the caller retries.
pub async fn apply(config: &PgbouncerConfig, snapshot: &Snapshot) -> Result<(), PgbouncerError> {
    let text = render(config, snapshot);
    let changed =
        crate::atomic_file::write_if_changed(&config.databases_file, &text).map_err(|source| {
            PgbouncerError::Write {
                path: config.databases_file.display().to_string(),
                source,
            }
        })?;
    if let Some(conninfo) = &config.admin_conninfo {
        let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // Reload even when unchanged: pgbouncer may have restarted with an old file in memory.
        client.simple_query("RELOAD").await?;
        for (group, g) in &snapshot.groups {
            // No primary: refuse new clients for the group rather than leave them on a stale one.
            let verb = if g.primary.is_some() {
                "ENABLE"
            } else {
                "DISABLE"
            };
            if let Err(e) = client.simple_query(&format!("{verb} \"{group}\"")).await {
                tracing::debug!(error = %e, %group, verb, "pgbouncer did not take it");
            }
        }
    }
    if changed {
        tracing::info!(file = %config.databases_file.display(), "pgbouncer databases updated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::GroupSnapshot;
    use zgres_schema::documents::Tags;
    use zgres_schema::GroupName;

    fn endpoint(i: u8, port: u16) -> Endpoint {
        Endpoint {
            node: format!("10.0.0.{i}:{port}").parse().unwrap(),
            host: format!("10.0.0.{i}"),
            port,
            dbname: None,
            tags: Tags::default(),
        }
    }

    fn config() -> PgbouncerConfig {
        PgbouncerConfig {
            databases_file: "/tmp/x.ini".into(),
            dbname: "app".into(),
            read_only_suffix: "-ro".into(),
            admin_conninfo: None,
        }
    }

    #[test]
    fn writers_go_to_the_primary_and_readers_to_replicas() {
        let mut s = Snapshot::default();
        let mut hidden = endpoint(4, 5432);
        hidden.tags.noloadbalance = true;
        s.groups.insert(
            GroupName::new("main").unwrap(),
            GroupSnapshot {
                primary: Some(endpoint(1, 5432)),
                replicas: vec![endpoint(2, 5432), endpoint(3, 5432), hidden],
            },
        );
        let text = render(&config(), &s);
        assert!(
            text.contains("main = host=10.0.0.1 port=5432 dbname=app\n"),
            "{text}"
        );
        assert!(
            text.contains("main-ro = host=10.0.0.2,10.0.0.3 port=5432 dbname=app\n"),
            "{text}"
        );
    }

    #[test]
    fn no_primary_means_no_writer_entry_and_readers_fall_back_to_the_primary() {
        let mut s = Snapshot::default();
        s.groups.insert(
            GroupName::new("a").unwrap(),
            GroupSnapshot {
                primary: None,
                replicas: vec![endpoint(2, 5432)],
            },
        );
        s.groups.insert(
            GroupName::new("b").unwrap(),
            GroupSnapshot {
                primary: Some(endpoint(1, 6000)),
                replicas: vec![],
            },
        );
        let text = render(&config(), &s);
        assert!(!text.contains("\na = "), "{text}");
        assert!(text.contains("a-ro = host=10.0.0.2 port=5432"));
        assert!(text.contains("b-ro = host=10.0.0.1 port=6000"));
    }
}
