//! The deadman's ZooKeeper session as its client and fence keep it: the client's keep-alive
//! pings (an answered one confirms the fence; an expired session is learnt of), and the fence
//! keeper, which acts on the deadline they leave.

use crate::zookeeper::SessionId;
use zgres_deadman_core::fence_deadline::FenceStep;

use crate::settings::Bug;
use crate::world::World;

impl World {
    /// The keeper: a separate process, so it acts while the deadman is stopped (not when the
    /// whole node was killed: its state was cleared then).
    pub(crate) fn keep_fence(&mut self, i: usize) {
        if self.settings.bug == Some(Bug::FenceFromExpiry) {
            // The bug: no deadline from t_ok; see `ping`.
            return;
        }
        let t = self.t;
        let node = &mut self.nodes[i];
        let now_ns = node.host.clock.ns(t);
        match node.fence.state.step(now_ns, node.fence.demoted_for) {
            FenceStep::Idle | FenceStep::WaitUntil(_) => {}
            FenceStep::Demote => {
                node.fence.demoted_for = Some(node.fence.state.deadline_ns);
                self.fast_shutdown(i);
            }
            FenceStep::Kill => self.stop_postgres(i),
        }
    }

    /// The ZooKeeper client's keep-alive: an answered ping confirms the session (its send time
    /// becomes `t_ok`); an expired session is learnt of. Returns whether a ping was answered
    /// (a wake-up a periodic round may share).
    pub(crate) fn ping(&mut self, i: usize) -> bool {
        let t = self.t;
        let interval = self.ping_gap_ms();
        let node = &mut self.nodes[i];
        if t < node.deadman.timers.next_ping {
            return false;
        }
        node.deadman.timers.next_ping = t + interval;
        let follower_timeout = self.settings.ensemble.follower_timeout_ms();
        let answered_by_cut_member = |session: &SessionId| {
            node.host.cut.pings_answered_until.is_some_and(|until| {
                t < until && !self.zk.expired_before(*session, until - follower_timeout)
            })
        };
        if let Some(session) = node.deadman.session.filter(answered_by_cut_member) {
            // Answered by a member the leader no longer hears from: the fence is confirmed,
            // the session is not kept alive.
            node.fence.confirmed(node.host.clock.ns(t), session);
            return true;
        }
        let (Some(session), false) = (node.deadman.session, node.host.cut.zookeeper) else {
            return false;
        };
        if self.zk.heard(session, t) {
            node.fence.confirmed(node.host.clock.ns(t), session);
            true
        } else {
            node.deadman.session = None;
            if self.settings.bug == Some(Bug::FenceFromExpiry) && node.pg.is_primary() {
                // The bug: fencing only once the expiry is known.
                node.pg.stop();
                node.pending_commit = None;
            }
            false
        }
    }

    /// The model's client pings every third of the session timeout.
    pub(crate) fn ping_gap_ms(&self) -> u64 {
        self.settings.deadman.session_timeout_ms / 3
    }
}
