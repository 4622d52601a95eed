//! Samples every standby's replication lag while a run goes on, for setting asynchronous
//! mode's lost writes against it ([`crate::losses`]).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use zgres_tests::e2e::connect;

use crate::losses::LagSample;
use crate::recording::{Recording, Records};

/// How often each node is asked.
pub const EVERY: Duration = Duration::from_millis(250);
/// A node that does not answer a query within this is skipped for the round.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The running sampler.
pub struct LagSampler(Recording<LagSample>);

impl LagSampler {
    /// Starts one sampler per `(port, conninfo)` node; times are measured from `epoch`. A
    /// node is sampled only while in recovery and once it replayed a transaction. Call
    /// inside a tokio runtime.
    pub fn start(nodes: Vec<(u16, String)>, epoch: Instant) -> LagSampler {
        LagSampler(Recording::start(
            nodes,
            |(port, conninfo), samples, stop| sample(port, conninfo, epoch, samples, stop),
        ))
    }

    /// Stops sampling; returns every sample.
    pub async fn finish(self) -> Vec<LagSample> {
        self.0.finish().await
    }
}

async fn sample(
    port: u16,
    conninfo: String,
    epoch: Instant,
    samples: Records<LagSample>,
    stop: CancellationToken,
) {
    // Microseconds behind, only on a standby that replayed something.
    let query = "SELECT (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) \
                 * 1000000)::bigint FROM (SELECT 1) AS one \
                 WHERE pg_is_in_recovery() AND pg_last_xact_replay_timestamp() IS NOT NULL";
    let mut client = None;
    while !stop.is_cancelled() {
        if client.is_none() {
            client = connect(&conninfo).await;
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
