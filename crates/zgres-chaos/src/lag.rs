//! Samples every standby's replication lag while a run goes on, for setting asynchronous
//! mode's lost writes against it ([`crate::losses`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::losses::LagSample;

/// How often each node is asked.
pub const EVERY: Duration = Duration::from_millis(250);
/// A node that does not answer within this is skipped for the round.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The running sampler.
pub struct LagSampler {
    stop: CancellationToken,
    samples: Arc<Mutex<Vec<LagSample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LagSampler {
    /// Starts one sampler per `(port, conninfo)` node; times are measured from `epoch`. A
    /// node is sampled only while in recovery and once it replayed a transaction. Call
    /// inside a tokio runtime.
    pub fn start(nodes: Vec<(u16, String)>, epoch: Instant) -> LagSampler {
        let stop = CancellationToken::new();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tasks = nodes
            .into_iter()
            .map(|(port, conninfo)| {
                tokio::spawn(sample(port, conninfo, epoch, samples.clone(), stop.clone()))
            })
            .collect();
        LagSampler {
            stop,
            samples,
            tasks,
        }
    }

    /// Stops sampling; returns every sample.
    pub async fn finish(self) -> Vec<LagSample> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let samples = self.samples.lock().expect("no sampler panics").clone();
        samples
    }
}

async fn sample(
    port: u16,
    conninfo: String,
    epoch: Instant,
    samples: Arc<Mutex<Vec<LagSample>>>,
    stop: CancellationToken,
) {
    // Microseconds behind, only on a standby that replayed something.
    let query = "SELECT (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) \
                 * 1000000)::bigint FROM (SELECT 1) AS one \
                 WHERE pg_is_in_recovery() AND pg_last_xact_replay_timestamp() IS NOT NULL";
    let mut client = None;
    while !stop.is_cancelled() {
        if client.is_none() {
            let connected =
                tokio::time::timeout(ANSWER_WITHIN, tokio_postgres::connect(&conninfo, NoTls))
                    .await;
            if let Ok(Ok((c, connection))) = connected {
                tokio::spawn(connection);
                client = Some(c);
            }
        }
        if let Some(c) = &client {
            // The server's now() is after this: the lag bound derived from it errs long.
            let asked_us = epoch.elapsed().as_micros() as u64;
            match tokio::time::timeout(ANSWER_WITHIN, c.query_opt(query, &[])).await {
                Ok(Ok(row)) => {
                    if let Some(lag) = row.and_then(|r| r.get::<_, Option<i64>>(0)) {
                        samples.lock().expect("no sampler panics").push(LagSample {
                            server: port,
                            at_us: asked_us,
                            lag_us: lag.max(0) as u64,
                        });
                    }
                }
                _ => client = None,
            }
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
