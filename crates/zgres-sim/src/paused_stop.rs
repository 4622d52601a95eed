//! A deadman's shutdown (SIGTERM), as the real shell carries it out, following the core's
//! `shutdown_plan` of its last round: in the paused stop, the group paused, the node's deadman
//! stopped [`PAUSED_STOP_AFTER_MS`] later (`daemon/paused_shutdown.rs`), then at the end started
//! again (by [`crate::node::Node::deadman_runs`]) and the group resumed; in an operator's stop
//! ([`Kind::Stop`]), a running group's deadman stopped (a primary handing its lock over,
//! `daemon/shutdown.rs`) and started again at the end.

use zgres_deadman_core::decision::{may_hand_over, ShutdownPlan};
use zgres_deadman_core::fence_deadline::FenceState;
use zgres_schema::documents::{Switchover, SwitchoverKind};
use zgres_schema::NodeId;

use crate::faults::{Kind, PAUSED_STOP_AFTER_MS};
use crate::node::Process;
use crate::settings::Bug;
use crate::world::World;

impl World {
    /// Stops the deadmen whose paused stop is due now, and resumes the group when one ends.
    pub(crate) fn paused_stops(&mut self) {
        let (t, step) = (self.t, self.settings.step_ms);
        let now = |at: u64| at <= t && t < at + step;
        let due: Vec<_> = self
            .faults()
            .iter()
            .filter(|f| f.kind == Kind::PausedStop)
            .map(|f| (f.node, f.from + PAUSED_STOP_AFTER_MS, f.until))
            .collect();
        for (i, stop_at, until) in due {
            if now(stop_at) {
                self.stop_deadman(i, until);
            }
            if now(until) {
                self.zk.paused = false;
            }
        }
    }

    /// The deadman's shutdown (SIGTERM): PostgreSQL left running when the plan says so and
    /// every step holds (a primary's lock made persistent first), else stopped — with a fast
    /// shutdown and the stop position recorded for the standby it hands the lock to, when the
    /// plan names one and no request is pending; the fence disarmed; the session closed (its
    /// ephemerals gone). A deadman not running (stopped, dead) is left as it is.
    pub(crate) fn stop_deadman(&mut self, i: usize, until: u64) {
        // (The candidate is picked before the stop, as the shell reads the standbys first.)
        if self.nodes[i].deadman.process != Process::Running {
            return;
        }
        let node = &self.nodes[i];
        let session = node.deadman.session.filter(|_| !node.host.cut.zookeeper);
        let left_running = match node.deadman.on_shutdown {
            ShutdownPlan::StopPostgres { .. } => false,
            ShutdownPlan::LeaveRunning { .. }
                if self.settings.bug == Some(Bug::ForgetPausedLock) =>
            {
                true
            }
            ShutdownPlan::LeaveRunning { persist_lock } => {
                !persist_lock || session.is_some_and(|s| self.zk.leave_lock(s))
            }
        };
        let hand_over_to = if left_running {
            None
        } else {
            self.hand_over_candidate(i)
        };
        if left_running {
            self.record.tally.paused_stops_left_running += 1;
        } else if let Some(candidate) = hand_over_to {
            // As `daemon/shutdown.rs`: a fast shutdown (standbys receive all WAL; a clean
            // stop in this model), then the request, created only if none is pending.
            self.fast_shutdown(i);
            self.nodes[i].pending_commit = None;
            let reachable = session.is_some_and(|s| self.zk.heard(s, self.t));
            if reachable && self.zk.switchover.is_none() {
                self.record.tally.hand_overs_at_stop += 1;
                self.zk.switchover = Some(Switchover {
                    kind: SwitchoverKind::Switchover,
                    from: Some(self.nodes[i].id),
                    to: Some(candidate),
                    scheduled_at_ms: None,
                    requested_at_ms: self.t,
                    stopped_lsn: Some(self.nodes[i].pg.wal.end),
                });
            }
        } else {
            self.nodes[i].pg.stop();
            self.nodes[i].pending_commit = None;
        }
        let node = &mut self.nodes[i];
        node.fence.state = FenceState::DISARMED;
        node.deadman.process = Process::DeadUntil(until);
        if let Some(s) = session {
            // As `daemon/shutdown.rs`: quietly, when the core says every earlier holder is
            // fenced and PostgreSQL is stopped.
            let stopped = self.nodes[i].pg.phase == crate::postgres::Phase::Stopped;
            if let ShutdownPlan::StopPostgres {
                release_quietly: true,
                ..
            } = self.nodes[i].deadman.on_shutdown
            {
                self.zk.release(s, stopped && !left_running);
            }
            self.zk.close(s);
            self.zk.states[i] = None;
        }
    }
}

impl World {
    /// As `daemon/shutdown.rs`: the core's pick for node `i`'s shutdown, from an observation
    /// completed with the standbys streaming from it now, when the core may hand over.
    fn hand_over_candidate(&mut self, i: usize) -> Option<NodeId> {
        if !matches!(
            self.nodes[i].deadman.on_shutdown,
            ShutdownPlan::StopPostgres { .. }
        ) {
            return None;
        }
        let mut obs = self.observation(i);
        if !may_hand_over(&obs) {
            return None;
        }
        let streaming = self.connected(i).into_iter().filter(|c| c.streaming);
        obs.postgres.streaming = Some(streaming.map(|c| c.node).collect());
        match self.nodes[i].deadman.decider.shutdown_plan(&obs) {
            ShutdownPlan::StopPostgres { hand_over_to, .. } => hand_over_to,
            ShutdownPlan::LeaveRunning { .. } => None,
        }
    }
}
