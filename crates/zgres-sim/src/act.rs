//! The simulated shell carrying out the core's actions, as `daemon/act.rs` does for the real
//! deadman.

use zgres_deadman_core::decision::Action;

use crate::faults::Kind;
use crate::world::{World, STARTUP_MS};

impl World {
    pub(crate) fn index_of(&self, id: zgres_schema::NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Carries out one action as the shell would; returns whether to look again at once.
    pub(crate) fn act(&mut self, i: usize, action: &Action) -> bool {
        let t = self.t;
        let reachable = !self.nodes[i].host.cut.zookeeper;
        match action {
            Action::AcquireLock => {
                if let (true, Some(s)) = (reachable, self.nodes[i].deadman.session) {
                    self.zk.acquire(s, self.nodes[i].id);
                }
                true
            }
            Action::ReleaseLock { quiet } => {
                if let (true, Some(s)) = (reachable, self.nodes[i].deadman.session) {
                    // As the shell: quiet only if PostgreSQL is not running, or answers as a
                    // standby.
                    let pg = &self.nodes[i].pg;
                    let running = pg.phase != crate::postgres::Phase::Stopped;
                    let standby = !pg.is_primary() && pg.answers(t);
                    let quiet = *quiet || self.settings.bug == Some(crate::Bug::QuietEveryRelease);
                    if quiet
                        && running
                        && standby
                        && self.zk.lock.held.is_some_and(|l| l.session == s)
                    {
                        self.record.tally.quiet_releases_by_a_standby += 1;
                    }
                    self.zk.release(s, quiet && (!running || standby));
                }
                true
            }
            Action::ReclaimLock => {
                // As the shell: armed first, then the transaction.
                let node = &mut self.nodes[i];
                if let (true, Some(s)) = (reachable, node.deadman.session) {
                    if node.fence.arm(node.host.clock.ns(t), node.deadman.session) {
                        self.zk.reclaim_lock(s, node.id);
                    }
                }
                true
            }
            Action::StartPrimary => {
                let node = &mut self.nodes[i];
                if node.fence.arm(node.host.clock.ns(t), node.deadman.session) {
                    node.pg.standby_signal = false;
                    node.pg.start(t, STARTUP_MS);
                }
                false
            }
            Action::StartStandby { upstream, .. } => {
                let upstream = upstream.and_then(|u| self.index_of(u));
                let pg = &mut self.nodes[i].pg;
                pg.standby_signal = true;
                pg.upstream = upstream.or(pg.upstream);
                pg.start(t, STARTUP_MS);
                false
            }
            Action::Promote { .. } => {
                if crate::faults::cut_since(self.faults(), i, Kind::Veto, t).is_some() {
                    // As `daemon/act.rs`: the callback vetoed it; the core gives the lock up.
                    let now = self.nodes[i].host.instant(t);
                    self.nodes[i].deadman.decider.promotion_vetoed(now);
                    return true;
                }
                let node = &mut self.nodes[i];
                if !node.fence.arm(node.host.clock.ns(t), node.deadman.session) {
                    return false;
                }
                if let Some((timeline, lsn)) = node.pg.promote(i) {
                    self.record.tally.promotions += 1;
                    if reachable && self.nodes[i].deadman.session.is_some() {
                        self.zk.history.push((timeline, lsn, self.nodes[i].id));
                    }
                }
                true
            }
            Action::Repoint { upstream, .. } => {
                self.nodes[i].pg.upstream = self.index_of(*upstream);
                false
            }
            Action::StopPostgres { immediate, .. } => {
                if *immediate {
                    self.stop_postgres(i);
                } else {
                    self.fast_shutdown(i);
                }
                true
            }
            Action::Rewind { source } => {
                let Some(s) = self.index_of(*source) else {
                    return false;
                };
                // pg_rewind reads from the source server over the network; a failure is
                // reported to the core, as `daemon/act.rs` does.
                if !self.nodes[s].pg.is_primary() || !self.linked(i, s) {
                    let now = self.nodes[i].host.instant(t);
                    self.nodes[i].deadman.decider.rewind_failed(now);
                    return false;
                }
                let wal = self.nodes[s].pg.wal.clone();
                self.nodes[i].pg.rewind(&wal, s);
                true
            }
            Action::StepDown { candidate } => {
                // As `daemon::act::step_down`: fast stop, record the stop position and the
                // candidate in the request, release the lock.
                self.fast_shutdown(i);
                let session = self.nodes[i]
                    .deadman
                    .session
                    .filter(|&s| reachable && self.zk.heard(s, t));
                if let (Some(session), Some(mut request)) = (session, self.zk.switchover.clone()) {
                    request.to = Some(*candidate);
                    request.stopped_lsn = Some(self.nodes[i].pg.wal.end);
                    self.zk.switchover = Some(request);
                    self.zk.release(session, false);
                }
                true
            }
            Action::FinishSwitchover | Action::DropSwitchover { .. } => {
                if reachable {
                    self.zk.switchover = None;
                }
                false
            }
            // No empty data directories, the database recorded from the start; no operator's
            // requests to one node (the observation never has one).
            Action::PublishState
            | Action::Bootstrap
            | Action::CloneFrom { .. }
            | Action::RecordDatabase { .. }
            | Action::RestartPostgres { .. }
            | Action::ReloadConfiguration
            | Action::WipeDataDirectory { .. }
            | Action::FinishNodeRequest
            | Action::PassRestartOn { .. }
            | Action::DropNodeRequest { .. } => false,
        }
    }
}
