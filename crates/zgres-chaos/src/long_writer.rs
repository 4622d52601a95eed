//! The long writer (`--long-writes`): a client whose every write is a statement that keeps its
//! backend busy for [`BUSY`] before it inserts, sent to whichever node is the primary.
//!
//! A busy backend does not notice its postmaster's death until its statement ends, so if a
//! fence or a crash killed only the postmaster it would still commit, possibly after another
//! node took over: the checker sees the acknowledged write overlap the new primary's. The
//! other clients' single-row inserts end long before a failover and cannot show that. Busy
//! means a core: about [`BUSY`] in every [`BUSY`] + [`PAUSE`] on the primary's host.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::cluster::TABLE;
use crate::recording::{Ack, Recording, Records};

/// How long each write keeps its backend busy before it inserts.
pub const BUSY: Duration = Duration::from_secs(3);
/// Between long writes.
pub const PAUSE: Duration = Duration::from_secs(2);
/// A long write that takes longer is abandoned (and not acknowledged).
const WRITE_WITHIN: Duration = Duration::from_secs(30);
/// Ids of long writes start here, apart from the other clients' (which count from 1).
const FIRST_ID: i64 = 1 << 40;

/// The running long writer.
pub struct LongWriter(Recording<Ack>);

impl LongWriter {
    /// Starts the writer over `nodes` (each node's connection string, not through a proxy);
    /// times are measured from `epoch`. Call inside a tokio runtime.
    pub fn start(nodes: Vec<String>, epoch: Instant) -> LongWriter {
        let ids = Arc::new(AtomicI64::new(FIRST_ID));
        LongWriter(Recording::start([nodes], move |nodes, acks, stop| {
            run(nodes, epoch, ids.clone(), acks, stop)
        }))
    }

    /// Stops the writer; returns its acknowledged writes.
    pub async fn finish(self) -> Vec<Ack> {
        self.0.finish().await
    }
}

async fn run(
    nodes: Vec<String>,
    epoch: Instant,
    ids: Arc<AtomicI64>,
    acks: Records<Ack>,
    stop: CancellationToken,
) {
    // Busy in the statement's own projection (evaluated row by row, unlike a set-returning
    // function in FROM, which is materialized first), then one row inserted.
    let insert = format!(
        "INSERT INTO {TABLE} (id, client)
         SELECT $1, 'long' FROM (SELECT generate_series(1, 1000000000000) AS g) AS busy
         WHERE clock_timestamp() > statement_timestamp() + make_interval(secs => $2)
         LIMIT 1
         RETURNING inet_server_port()"
    );
    let busy_secs = BUSY.as_secs_f64();
    while !stop.is_cancelled() {
        for conninfo in &nodes {
            let Some(client) = primary(conninfo).await else {
                continue;
            };
            let id = ids.fetch_add(1, Ordering::Relaxed);
            let sent_us = epoch.elapsed().as_micros() as u64;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id, &busy_secs];
            let write = client.query_one(&insert, &params);
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(WRITE_WITHIN, write) => outcome,
                () = stop.cancelled() => return,
            };
            if let Ok(Ok(row)) = outcome {
                let server: i32 = row.get(0);
                acks.lock().expect("no client panics").push(Ack {
                    id,
                    server: u16::try_from(server).unwrap_or(0),
                    sent_us,
                    acked_us: epoch.elapsed().as_micros() as u64,
                });
            }
            tokio::select! {
                () = tokio::time::sleep(PAUSE) => {}
                () = stop.cancelled() => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection to `conninfo` if it answers as a primary within a second or two.
async fn primary(conninfo: &str) -> Option<tokio_postgres::Client> {
    let within = Duration::from_secs(2);
    let (client, connection) =
        tokio::time::timeout(within, tokio_postgres::connect(conninfo, NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(connection);
    let row = tokio::time::timeout(within, client.query_one("SELECT pg_is_in_recovery()", &[]))
        .await
        .ok()?
        .ok()?;
    (!row.get::<_, bool>(0)).then_some(client)
}
