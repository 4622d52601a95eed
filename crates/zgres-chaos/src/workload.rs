//! The clients: one writing to each node directly and one through pgbouncer. Each write is a
//! transaction of its own with a unique id; every acknowledged one is recorded with the
//! server that committed it and the client's monotonic send and acknowledge times.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::cluster::TABLE;
use crate::recording::Ack;
use crate::recording::{Recording, Records};

/// A write that takes longer is abandoned (and not acknowledged): its connection is dropped.
const WRITE_WITHIN: Duration = Duration::from_secs(3);
/// Between writes, so that four clients leave the two cores to the daemons.
const PACE: Duration = Duration::from_millis(10);

/// The running clients.
pub struct Workload {
    acks: Recording<Ack>,
    refusals: Refusals,
}

/// Writes a server refused for another reason than being a standby, counted per SQLSTATE
/// and message (`disk-full` refuses writes, for instance; a missing table must never).
pub type Refusals = Arc<Mutex<BTreeMap<String, u64>>>;

impl Workload {
    /// Starts one client per `(name, conninfo)` target; times are measured from `epoch`.
    /// Each reconnects whenever its server stops answering. Call inside a tokio runtime.
    pub fn start(targets: Vec<(String, String)>, epoch: Instant) -> Workload {
        let ids = Arc::new(AtomicI64::new(1));
        let refusals = Refusals::default();
        let acks = Recording::start(targets, |(name, conninfo), acks, stop| {
            let client = Client {
                name,
                conninfo,
                epoch,
                ids: ids.clone(),
                acks,
                refusals: refusals.clone(),
            };
            client.run(stop)
        });
        Workload { acks, refusals }
    }

    /// Stops every client; returns all writes acknowledged, and the refusals counted.
    pub async fn finish(self) -> (Vec<Ack>, BTreeMap<String, u64>) {
        let acks = self.acks.finish().await;
        let refusals = self.refusals.lock().expect("no client panics").clone();
        (acks, refusals)
    }
}

struct Client {
    name: String,
    conninfo: String,
    epoch: Instant,
    ids: Arc<AtomicI64>,
    acks: Records<Ack>,
    refusals: Refusals,
}

impl Client {
    async fn run(self, stop: CancellationToken) {
        let insert = format!(
            "INSERT INTO {TABLE} (id, client) VALUES ($1, $2) RETURNING inet_server_port()"
        );
        while !stop.is_cancelled() {
            let connected =
                tokio::time::timeout(WRITE_WITHIN, tokio_postgres::connect(&self.conninfo, NoTls))
                    .await;
            let Ok(Ok((client, connection))) = connected else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(connection);
            while !stop.is_cancelled() {
                let id = self.ids.fetch_add(1, Ordering::Relaxed);
                let sent_us = self.micros();
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id, &self.name];
                let write = client.query_one(&insert, &params);
                match tokio::time::timeout(WRITE_WITHIN, write).await {
                    Ok(Ok(row)) => {
                        let acked_us = self.micros();
                        let server: i32 = row.get(0);
                        self.acks.lock().expect("no client panics").push(Ack {
                            id,
                            server: u16::try_from(server).unwrap_or(0),
                            sent_us,
                            acked_us,
                        });
                        tokio::time::sleep(PACE).await;
                    }
                    // An SQL error (a read-only standby): the connection is fine.
                    Ok(Err(e)) if e.code().is_some() && !client.is_closed() => {
                        self.note_refusal(&e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => break,
                }
            }
        }
    }

    /// Counts a refusal that is not a standby's.
    fn note_refusal(&self, e: &tokio_postgres::Error) {
        let Some(db) = e.as_db_error() else {
            return;
        };
        if *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION {
            return;
        }
        let key = format!("{} {}", db.code().code(), db.message());
        *self
            .refusals
            .lock()
            .expect("no client panics")
            .entry(key)
            .or_default() += 1;
    }

    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}
