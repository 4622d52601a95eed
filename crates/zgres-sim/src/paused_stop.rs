//! The paused stop, as the operator and the real shell carry it out: the group paused, the
//! node's deadman stopped [`PAUSED_STOP_AFTER_MS`] later (its shutdown following the core's
//! `shutdown_plan` of its last round, as `daemon/paused_shutdown.rs` does), then at the end the
//! deadman started again (by [`crate::node::Node::deadman_runs`]) and the group resumed.

use zgres_deadman_core::decision::ShutdownPlan;
use zgres_deadman_core::fence_deadline::FenceState;

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
    /// every step holds (a primary's lock made persistent first), else stopped; the fence
    /// disarmed; the session closed (its ephemerals gone). A deadman not running (stopped,
    /// dead) is left as it is.
    fn stop_deadman(&mut self, i: usize, until: u64) {
        if self.nodes[i].process != Process::Running {
            return;
        }
        let node = &self.nodes[i];
        let session = node.session.filter(|_| !node.cut.zookeeper);
        let left_running = match node.on_shutdown {
            ShutdownPlan::StopPostgres => false,
            ShutdownPlan::LeaveRunning { .. }
                if self.settings.bug == Some(Bug::ForgetPausedLock) =>
            {
                true
            }
            ShutdownPlan::LeaveRunning { persist_lock } => {
                !persist_lock || session.is_some_and(|s| self.zk.leave_lock(s))
            }
        };
        if left_running {
            self.tally.paused_stops_left_running += 1;
        } else {
            self.nodes[i].pg.stop();
            self.nodes[i].pending_commit = None;
        }
        let node = &mut self.nodes[i];
        node.fence.state = FenceState::DISARMED;
        node.process = Process::DeadUntil(until);
        if let Some(s) = session {
            self.zk.close(s);
            self.zk.states[i] = None;
        }
    }
}
