//! Waiting between two rounds: for the round's time (its timer, or a ZooKeeper answer the
//! process wakes for anyway), or for an event that runs the next round at once.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{upgrade, Daemon};
use crate::config::Config;
use crate::decision::{Next, RoundTime};

/// What ended the wait.
pub(super) enum Woken {
    /// The round's time came (its timer, or an answer in its window): the cadence continues.
    Periodic,
    /// A watched znode changed, PostgreSQL exited, or shutdown was asked for.
    Event,
    /// A reloaded configuration to apply.
    Reloaded(Box<Config>),
    /// An upgrade (re-execution) was asked for.
    Upgrade,
}

impl Daemon {
    /// When the round after one that asked for `next` runs (`None`: at once), as the core's
    /// `round_time` decides from the last round's due time and the session's ping gap.
    pub(super) fn next_round_time(&mut self, next: Next) -> Option<RoundTime> {
        let time = crate::decision::round_time(
            next,
            self.config.timing.loop_interval,
            self.core.schedule.wake_at,
            Instant::now(),
            self.core.schedule.last_due,
            self.zk
                .session
                .as_ref()
                .map(|s| s.coordinator.idle_ping_gap()),
        );
        if time.is_none() {
            self.core.schedule.last_due = None;
        }
        time
    }

    /// Waits until `time` (re-arming `round_timer`: one timerfd for every pause) or an event,
    /// and records whether the cadence continues. Cancel-safe; returns at once on shutdown.
    pub(super) async fn between_rounds(
        &mut self,
        time: RoundTime,
        round_timer: &mut zgres_timer::Timer,
        upgrade: &mut upgrade::Upgrade,
        shutdown: &CancellationToken,
    ) -> Woken {
        let Self { zk, pg, live, .. } = self;
        let group_changed = async {
            match zk.session.as_ref() {
                Some(s) => s.coordinator.changed().await,
                None => std::future::pending().await,
            }
        };
        let reloaded = async {
            match live.reloads.configs.recv().await {
                Some(config) => config,
                // No more reloads (the SIGHUP task ended): never ready again.
                None => std::future::pending().await,
            }
        };
        // A periodic round runs on the first ZooKeeper answer (an idle session's ping) in
        // its window, saving a wake-up of its own; its timer is the backstop.
        let shared_answer = async {
            match zk.session.as_ref() {
                Some(s) => s.coordinator.answered(time.shares_from).await,
                None => std::future::pending().await,
            }
        };
        round_timer.set_at(time.at_latest);
        let woken = tokio::select! {
            () = round_timer.expired() => Woken::Periodic,
            () = shared_answer => Woken::Periodic,
            () = group_changed => Woken::Event,
            () = pg.process.exited() => Woken::Event,
            config = reloaded => Woken::Reloaded(Box::new(config)),
            () = upgrade.requested() => Woken::Upgrade,
            () = shutdown.cancelled() => Woken::Event,
        };
        self.core.schedule.last_due = matches!(woken, Woken::Periodic).then_some(time.due);
        woken
    }
}
