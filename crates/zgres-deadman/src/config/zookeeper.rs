//! The validated `[zookeeper]` section, and the takeover wait that follows from it: how long
//! a node that took over a lock another session lost waits before it accepts writes
//! (`zgres-deadman-core`'s `decision::takeover` explains why).

use std::time::Duration;

use zgres_deadman_core::decision::{takeover_wait, TakeoverTiming};
use zgres_zk::settings::fencing::{idle_ping_gap, EnsembleTiming};
use zgres_zk::ZkSettings;

/// ZooKeeper connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZookeeperConfig {
    /// Where to connect, the session timeout to ask for (the server may grant a different one;
    /// the granted one is what fencing uses) and where zgres's znodes live.
    pub settings: ZkSettings,
    /// How long before the earliest possible session expiry PostgreSQL is fenced.
    pub fence_margin: Duration,
    /// The ensemble's `tickTime` and `syncLimit`, for the takeover wait.
    pub ensemble: EnsembleTiming,
}

impl ZookeeperConfig {
    /// This node's takeover wait, from its own settings. It publishes it in its `/state`, and
    /// a node taking over its lock waits at least that long (the old primary's fence margin
    /// and session timeout are what count).
    pub fn takeover_wait(&self) -> Duration {
        let granted = self.ensemble.granted(self.settings.session_timeout);
        takeover_wait(TakeoverTiming {
            tick: self.ensemble.tick,
            sync_limit: self.ensemble.sync_limit,
            idle_ping_gap: idle_ping_gap(granted),
            fence_margin: self.fence_margin,
        })
    }

    /// What to tell an operator at start and by `--check-config`: the wait, and the keys it
    /// follows from (a warning unless [`EnsembleTiming::declared`]: ZooKeeper's defaults are
    /// assumed then).
    pub fn takeover_note(&self) -> String {
        let declared = if self.ensemble.declared {
            "as declared"
        } else {
            "ZooKeeper's defaults, assumed: set zookeeper.ensemble_tick_ms and ensemble_sync_limit to your ensemble's"
        };
        format!(
            "a node taking over a lock that expired waits {:.2} s before promoting, until the old primary is certainly fenced (ensemble tickTime {} ms, syncLimit {}: {declared})",
            self.takeover_wait().as_secs_f64(),
            self.ensemble.tick.as_millis(),
            self.ensemble.sync_limit,
        )
    }
}
