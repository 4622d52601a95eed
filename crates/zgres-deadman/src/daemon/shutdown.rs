//! The deadman's ordered shutdown. A primary's hands its lock over: once PostgreSQL stopped
//! cleanly, the stop position is recorded in a switchover request naming the standby the core
//! picked ([`crate::decision::ShutdownPlan`]), as a switchover's step-down does. That standby
//! takes the lock once it has received everything and promotes at once: a lock that merely
//! vanished would cost it the takeover wait, since it could have expired with a primary still
//! writing. (A paused group's shutdown leaves PostgreSQL running: `paused_shutdown.rs`.)

use zgres_schema::documents::{Switchover, SwitchoverKind};
use zgres_schema::NodeId;

use super::{wall_ms, Daemon};
use crate::decision::ShutdownPlan;

impl Daemon {
    /// Ordered, bounded shutdown: stop PostgreSQL, then release the lock (a primary handing
    /// it over to a streaming standby, [`Daemon::hand_over_candidate`]), then leave. In a paused group
    /// PostgreSQL is left running instead, for the next deadman to take over
    /// ([`crate::decision::shutdown_plan`]).
    pub(super) async fn shut_down(&mut self) {
        self.systemd.notifier.stopping();
        let left_running = self.leave_postgres_running().await;
        if !left_running {
            let hand_over_to = self.hand_over_candidate().await;
            if hand_over_to.is_some() {
                self.drain_before_step_down().await;
            }
            tracing::info!("shutting down: stopping postgres");
            self.pg
                .process
                .stop(false, self.config.timing.stop_timeout)
                .await;
            self.note_for_callbacks(false, None);
            if let Some(candidate) = hand_over_to {
                self.record_hand_over(candidate).await;
            }
        }
        self.fence.disarm();
        let quiet = !left_running
            && !self.pg.process.is_running()
            && matches!(
                self.core.on_shutdown,
                ShutdownPlan::StopPostgres {
                    release_quietly: true,
                    ..
                }
            );
        if let Some(mut session) = self.zk.session.take() {
            session.heartbeat.abort();
            match session.coordinator.release_lock(quiet).await {
                Ok(true) if quiet => tracing::info!("{}", super::act::RELEASED_QUIETLY),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot release the lock; it goes with the session")
                }
            }
            session.coordinator.close().await;
        }
        self.out.callbacks.finish().await;
        tracing::info!("zgres-deadman stopped");
    }

    /// The standby to hand the lock to at shutdown: the core's pick
    /// ([`crate::decision::Decider::shutdown_plan`]) from the last round's observation and the
    /// standbys streaming from PostgreSQL now (read only here: a round reads them only for a
    /// switchover request, to spare an idle primary the query). `None` when the plan leaves
    /// PostgreSQL running, or the core names nobody.
    pub(super) async fn hand_over_candidate(&mut self) -> Option<NodeId> {
        if !matches!(self.core.on_shutdown, ShutdownPlan::StopPostgres { .. }) {
            return None;
        }
        let mut obs = self
            .core
            .last_observation
            .take()
            .filter(crate::decision::may_hand_over)?;
        if !self.pg.process.is_running() {
            return None;
        }
        match self.pg.client.replication().await {
            Ok((connected, _, _)) => {
                let streaming = connected.into_iter().filter(|c| c.streaming);
                obs.postgres.streaming = Some(streaming.map(|c| c.node).collect());
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pg_stat_replication: the lock is released without a hand-over");
                return None;
            }
        }
        match self.core.decider.shutdown_plan(&obs) {
            ShutdownPlan::StopPostgres { hand_over_to, .. } => hand_over_to,
            ShutdownPlan::LeaveRunning { .. } => None,
        }
    }

    /// Records the hand-over to `candidate` after PostgreSQL stopped, if it stopped cleanly
    /// and no request is pending; else the lock is released plainly. Logs what it did.
    pub(super) async fn record_hand_over(&mut self, candidate: NodeId) {
        self.pg.client.disconnect();
        self.refresh_control().await;
        let Some(control) = self.pg.control.filter(|c| c.clean_shutdown) else {
            tracing::warn!(%candidate, "postgres did not shut down cleanly: the lock is released without a hand-over (the election decides)");
            return;
        };
        let Some(session) = self.zk.session.as_mut() else {
            return;
        };
        let request = Switchover {
            kind: SwitchoverKind::Switchover,
            from: Some(self.config.node),
            to: Some(candidate),
            scheduled_at_ms: None,
            requested_at_ms: wall_ms(),
            stopped_lsn: Some(control.checkpoint),
        };
        match session.coordinator.create_switchover(&request).await {
            Ok(true) => {
                tracing::info!(%candidate, stopped_at = %control.checkpoint, "shutting down: primary stopped; handing the lock over");
            }
            Ok(false) => {
                tracing::warn!(%candidate, "a switchover request appeared meanwhile: the lock is released without a hand-over");
            }
            Err(e) => {
                tracing::warn!(%candidate, error = %e, "cannot record the hand-over: the lock is released without one");
            }
        }
    }
}
