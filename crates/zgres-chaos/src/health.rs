//! Whether the group is whole, seen from outside through PostgreSQL alone (no zgres code):
//! exactly one node takes writes, every other node streams from it, and a write through
//! pgbouncer reaches it.

use std::time::Duration;

use zgres_tests::e2e::connect;

/// How long one query may take before the node counts as not answering (a connection: 3 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Why the group is not whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotWhole {
    /// Not exactly one node takes writes.
    #[error("not exactly one node takes writes: {0:?}")]
    Primaries(Vec<u16>),
    /// A node that does not answer.
    #[error("the node on port {0} does not answer")]
    NotAnswering(u16),
    /// A standby that does not stream from the primary.
    #[error("the node on port {port} does not stream from {primary}: {receiver:?}")]
    NotStreaming {
        /// The standby.
        port: u16,
        /// The primary.
        primary: u16,
        /// Its WAL receiver's status and sender port, if it has one.
        receiver: Option<(String, i32)>,
    },
    /// pgbouncer does not connect or answer.
    #[error("pgbouncer does not answer")]
    BouncerDown,
    /// pgbouncer's writer database reaches another server.
    #[error(
        "pgbouncer reaches port {port} (in recovery: {in_recovery}), not the primary {primary}"
    )]
    BouncerElsewhere {
        /// The server it reached.
        port: i32,
        /// Whether that server is in recovery.
        in_recovery: bool,
        /// The primary.
        primary: u16,
    },
}

/// What one node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    in_recovery: bool,
    /// The WAL receiver's status and the port it streams from.
    receiver: Option<(String, i32)>,
}

async fn see(port: u16) -> Option<Seen> {
    let client = connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"
    ))
    .await?;
    let query = client.query_one(
        "SELECT pg_is_in_recovery(), r.status, r.sender_port
           FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true",
        &[],
    );
    let row = tokio::time::timeout(ANSWER_WITHIN, query)
        .await
        .ok()?
        .ok()?;
    let status: Option<String> = row.get(1);
    let sender: Option<i32> = row.get(2);
    Some(Seen {
        in_recovery: row.get(0),
        receiver: status.zip(sender),
    })
}

/// The primary's port when the group is whole, else what is missing.
///
/// # Errors
/// The first thing that is not as it should be.
pub async fn whole(ports: &[u16], bouncer_conninfo: &str) -> Result<u16, NotWhole> {
    let mut seen = Vec::new();
    for &port in ports {
        seen.push((port, see(port).await));
    }
    let primaries: Vec<u16> = seen
        .iter()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| !s.in_recovery))
        .map(|(p, _)| *p)
        .collect();
    let [primary] = primaries[..] else {
        return Err(NotWhole::Primaries(primaries));
    };
    for (port, s) in &seen {
        if *port == primary {
            continue;
        }
        match s {
            None => return Err(NotWhole::NotAnswering(*port)),
            Some(Seen {
                receiver: Some((status, sender)),
                ..
            }) if status == "streaming" && *sender == i32::from(primary) => {}
            Some(s) => {
                return Err(NotWhole::NotStreaming {
                    port: *port,
                    primary,
                    receiver: s.receiver.clone(),
                })
            }
        }
    }
    let client = connect(bouncer_conninfo)
        .await
        .ok_or(NotWhole::BouncerDown)?;
    let query = client.query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[]);
    let row = tokio::time::timeout(ANSWER_WITHIN, query)
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or(NotWhole::BouncerDown)?;
    let (port, in_recovery): (i32, bool) = (row.get(0), row.get(1));
    if port != i32::from(primary) || in_recovery {
        return Err(NotWhole::BouncerElsewhere {
            port,
            in_recovery,
            primary,
        });
    }
    Ok(primary)
}

/// Whether the node on `port` answers and has `table` (on a standby: replayed).
pub async fn has_table(port: u16, table: &str) -> bool {
    let Some(client) = connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"
    ))
    .await
    else {
        return false;
    };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&table];
    let query = client.query_one("SELECT to_regclass($1) IS NOT NULL", &params);
    matches!(
        tokio::time::timeout(ANSWER_WITHIN, query).await,
        Ok(Ok(row)) if row.get::<_, bool>(0)
    )
}
