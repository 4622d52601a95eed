//! Clients writing to every node of a group, and the check that no acknowledged write is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use super::{Group, DEADLINE};
use crate::poll;

/// One acknowledged write: which node took it, and the server's commit-time clock. All nodes
/// run on this host, so their clocks are the same clock.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The index of the node that acknowledged it.
    pub node: usize,
    /// The writer's sequence number on that node.
    pub seq: i64,
    /// The commit time the server returned.
    pub at: std::time::SystemTime,
}

/// Writes continuously to every node (each write a transaction of its own) until stopped;
/// collects every acknowledged write.
pub struct Writer {
    stop: CancellationToken,
    acks: Arc<Mutex<Vec<Ack>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writer {
    /// Waits until more than `count` further writes are acknowledged by node `i`.
    pub async fn wait_more_acks(&self, i: usize, count: usize) {
        let before = self.acks().await.len();
        poll::until(&format!("more commits on n{i}"), DEADLINE, || async {
            let acks = self.acks().await;
            (acks[before.min(acks.len())..]
                .iter()
                .filter(|a| a.node == i)
                .count()
                > count)
                .then_some(())
        })
        .await
        .unwrap();
    }

    /// Starts one writing client per node of `group`; each reconnects whenever its node stops
    /// answering. Must be called inside a tokio runtime.
    pub fn start(group: &Group) -> Writer {
        let stop = CancellationToken::new();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let tasks = group
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let conninfo = n.client_conninfo();
                let stop = stop.clone();
                let acks = acks.clone();
                tokio::spawn(async move {
                    let mut seq = 0i64;
                    while !stop.is_cancelled() {
                        let Ok(Ok((client, conn))) = tokio::time::timeout(
                            Duration::from_secs(2),
                            tokio_postgres::connect(&conninfo, NoTls),
                        )
                        .await
                        else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        let name = format!("n{i}");
                        while !stop.is_cancelled() {
                            seq += 1;
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                                [&name, &seq];
                            let insert = client.query_one(
                                "INSERT INTO writes (node, seq) VALUES ($1, $2) RETURNING at",
                                &params,
                            );
                            match tokio::time::timeout(Duration::from_secs(2), insert).await {
                                Ok(Ok(row)) => acks.lock().await.push(Ack {
                                    node: i,
                                    seq,
                                    at: row.get(0),
                                }),
                                Ok(Err(e)) if e.code().is_some() => {
                                    // An SQL error (read-only standby): the connection is fine.
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                                _ => break,
                            }
                        }
                    }
                })
            })
            .collect();
        Writer { stop, acks, tasks }
    }

    /// The writes acknowledged so far.
    pub async fn acks(&self) -> Vec<Ack> {
        self.acks.lock().await.clone()
    }

    /// Stops every client and returns all writes acknowledged.
    pub async fn finish(self) -> Vec<Ack> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let acks = self.acks.lock().await.clone();
        acks
    }
}

/// The acknowledged writes missing from node `on`'s `writes` table.
pub async fn missing_acks(group: &Group, acks: &[Ack], on: usize) -> Vec<Ack> {
    let client = group.nodes[on].client().await.expect("node answers");
    let rows = client
        .query("SELECT node, seq FROM writes", &[])
        .await
        .unwrap();
    let present: std::collections::HashSet<(String, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    acks.iter()
        .filter(|a| !present.contains(&(format!("n{}", a.node), a.seq)))
        .cloned()
        .collect()
}

/// When `node` first acknowledged a write after `after` (by the server's commit time), if it
/// did.
pub fn first_ack_after(
    acks: &[Ack],
    node: usize,
    after: std::time::SystemTime,
) -> Option<std::time::SystemTime> {
    acks.iter()
        .filter(|a| a.node == node && a.at > after)
        .map(|a| a.at)
        .min()
}
