//! The deadman's decisions as a pure state machine: [`Observation`] in, [`Action`]s out.
//!
//! No I/O happens here, so every rule is testable with plain values (see the tests, including
//! property tests). The safety rules it enforces:
//! - only the lock holder may run PostgreSQL as a primary: a primary without the lock is stopped
//!   at once, and promotion or a primary start is only ever asked for while the lock is ours;
//! - the lock is only contended for while it is free, by a healthy, eligible node that no fresh
//!   peer beats on (timeline, WAL position, priority); ties are settled by the atomic create;
//! - a replica further behind the last primary position than `maximum_lag_on_failover` never
//!   contends, nor does a node whose timeline is behind the group's newest (`/history`);
//! - a planned switchover hands the lock only to a candidate that has received everything the
//!   stopped primary wrote;
//! - while the group is paused nothing automatic happens (the fence and the "no primary
//!   without the lock" rule still hold: they are safety, not automation);
//! - a data directory is only created (initdb) by the holder of the lock of a group that has
//!   no database yet, and only cloned from the current primary.
//!
//! Fencing (stopping PostgreSQL when the ZooKeeper session cannot be confirmed) is not decided
//! here: it runs on its own timer, in `zgres-deadman`'s `fence` module.

use std::time::{Duration, Instant};

use zgres_schema::documents::{PromotionReason, SwitchoverKind, SyncMode, Tags};
use zgres_schema::{Fetched, Lsn, NodeId};

pub use eligibility::sync_eligible;

mod action;
mod divergence;
mod down_clock;
pub use divergence::STUCK_AFTER;
mod eligibility;
mod following;
mod last_primary;
mod missing_wal;
mod standby_leader;
mod switchover;
mod takeover;
pub use missing_wal::{MissingWal, MISSING_WAL_AFTER};
pub use takeover::{takeover_wait, TakeoverTiming, MAX_PUBLISHED_WAIT, WAITING_TO_PROMOTE};
mod node_request;
mod observation;
mod published;
mod recovery;
mod round;
mod round_time;
pub use round_time::{round_time, RoundTime};
mod schedule;
mod shutdown;
pub use shutdown::{may_hand_over, shutdown_plan, ShutdownPlan};

pub use action::{Action, Ineligible};
pub use observation::{
    wants_every_peer, wants_timeline_starts, DataDirKind, LocalPostgres, LockView, Observation,
    Peer, Probe, TimelineStart,
};
pub use published::{
    not_taking_over, problems, role, warnings, WarningInputs, DAMAGED_DATA_DIR,
    UNATTENDED_LOCK_ON_STANDBY,
};
pub use recovery::Reclone;
use recovery::Recovery;
pub use round::{Decision, Published, RoundInputs, REWIND_FAILED};
pub use schedule::{
    bootstrap_retry_after, clone_retry_after, confirmation_wanted, fence_may_disarm, next_round,
    rewind_retry_after, Next, Pacing, RoundOutcome, BOOTSTRAP_RETRY, BOOTSTRAP_RETRY_MAX,
    CLONE_RETRY, CLONE_RETRY_MAX, PROMOTION_VETO_WAIT, REWIND_RETRY, REWIND_RETRY_MAX,
    ROUNDS_AT_ONCE,
};

/// How long a switchover or failover request steers elections after the lock became free;
/// after that it is ignored and the normal rules pick a primary.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the decider waits for things; fixed for its life.
#[derive(Debug, Clone, Copy)]
struct DeciderTiming {
    /// A crashed primary is restarted in place for this long before the lock is released.
    primary_restart_timeout: Duration,
    /// An election waits this long for peers to publish fresh positions.
    election_wait: Duration,
    /// A switchover or failover request steers elections this long once the lock is free.
    request_timeout: Duration,
}

/// The decision state machine. Holds only what must be remembered between observations.
#[derive(Debug)]
pub struct Decider {
    me: NodeId,
    tags: Tags,
    timing: DeciderTiming,
    /// The restart bound's clock, while the lock is ours and PostgreSQL down or silent.
    down: down_clock::DownClock,
    /// The election under way and the takeover that may follow it.
    takeover: takeover::Takeover,
    /// When this node last gave the lock up after its restart bound ran out: it sits the
    /// elections out for a while ([`Decider::sits_out_until`]), so that another node takes over.
    gave_up: Option<Instant>,
    /// The lock holder last seen and the furthest position it published.
    last_primary: last_primary::LastPrimary,
    last_ineligible: Option<Ineligible>,
    /// Bringing the node back after failures: retries and a standby that does not follow.
    retry: Recovery,
    /// An operator's request carried out over several rounds.
    request_progress: node_request::InProgress,
}

impl Decider {
    /// A decider for node `me` with its tags and timing.
    pub fn new(
        me: NodeId,
        tags: Tags,
        primary_restart_timeout: Duration,
        election_wait: Duration,
    ) -> Self {
        Decider {
            me,
            tags,
            timing: DeciderTiming {
                primary_restart_timeout,
                election_wait,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
            },
            down: down_clock::DownClock::default(),
            takeover: takeover::Takeover::default(),
            gave_up: None,
            last_primary: last_primary::LastPrimary::default(),
            last_ineligible: None,
            retry: Recovery::default(),
            request_progress: node_request::InProgress::default(),
        }
    }

    /// Sets how long a switchover or failover request steers elections once the lock is free.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.timing.request_timeout = timeout;
        self
    }

    /// Sets how long a node that took over a lock another session lost waits, after it saw the
    /// lock free, before it promotes or starts a primary ([`takeover_wait`]; zero unless set).
    pub fn with_takeover_wait(mut self, wait: Duration) -> Self {
        self.takeover.own_wait = wait;
        self
    }

    /// Input (at start and on reload): when a data directory may be wiped and cloned again
    /// (`provisioning.reclone_on_missing_wal`, `provisioning.reclone_on_rewind_failure`);
    /// otherwise the node is only reported.
    pub fn set_reclone(&mut self, allowed: Reclone) {
        self.retry.reclone = allowed;
    }

    /// Input: a reload of the node's configuration file changed its tags or timing. Takes
    /// effect from the next round; timers already running (a primary restarting, an election
    /// waiting) are measured against the new limits.
    pub fn reconfigure(
        &mut self,
        tags: Tags,
        primary_restart_timeout: Duration,
        election_wait: Duration,
        request_timeout: Duration,
    ) {
        self.tags = tags;
        self.timing = DeciderTiming {
            primary_restart_timeout,
            election_wait,
            request_timeout,
        };
    }

    /// Why the last observation with a free lock did not lead to contending, if it did not.
    pub fn last_ineligible(&self) -> Option<Ineligible> {
        self.last_ineligible
    }

    /// The current or last primary this node followed (the lock holder it last saw, even if it
    /// never published a WAL position, e.g. a primary partitioned right after it started).
    pub fn last_primary_node(&self) -> Option<NodeId> {
        self.last_primary.node()
    }

    /// When the lock holder's restart bound runs out, while one is being timed (its PostgreSQL
    /// is down or stopped answering). The shell gives a probe until then at most: a hung
    /// server is then given up when the bound ends, not a probe timeout later.
    pub fn restart_bound_ends(&self) -> Option<Instant> {
        self.down
            .timing()
            .map(|since| since + self.timing.primary_restart_timeout)
    }

    /// The furthest WAL position the current or last primary published.
    pub fn last_primary_position(&self) -> Option<Lsn> {
        self.last_primary.position()
    }

    /// Decides what to do about `obs`.
    pub fn decide(&mut self, obs: &Observation) -> Vec<Action> {
        self.last_primary.observe(obs);
        let pg = &obs.postgres;
        let running_primary = pg.running && pg.probe.is_some_and(|p| !p.in_recovery);
        let running_standby = pg.running && pg.probe.is_some_and(|p| p.in_recovery);
        self.down.observe(obs.now, pg.running && pg.probe.is_some());
        if pg.running && pg.probe.is_some() {
            self.gave_up = None;
            self.retry.bootstrap.succeeded();
            self.retry.clone.succeeded();
        }
        self.takeover.holder_seen(obs.lock, &obs.peers);
        self.takeover.lock_seen(obs.lock, obs.now);
        // The restart bound runs only while automation does: a paused group restarts nothing,
        // so a pause must not use up the time a primary gets to come back after it.
        if obs.lock != LockView::Ours || obs.config.paused {
            self.down.stop();
        }
        let actions = if obs.lock == LockView::Unattended {
            shutdown::take_back(obs, running_primary)
        } else if obs.config.paused {
            self.while_paused(obs, running_primary)
        } else {
            match obs.lock {
                // Handled above.
                LockView::Unknown | LockView::Unattended => vec![],
                LockView::Ours => self.as_lock_holder(obs, running_primary, running_standby),
                LockView::Other(holder) => self.as_follower(obs, holder, running_primary),
                LockView::Free => self.in_election(obs, running_primary),
            }
        };
        // An operator's request waits while anything else is to be done.
        if actions.is_empty() {
            let progress = &mut self.request_progress;
            node_request::actions(obs, self.me, running_primary, running_standby, progress)
        } else {
            actions
        }
    }

    /// Paused: keep what runs as it is. Only the safety rule stays (no primary without the
    /// lock); a running primary whose lock vanished takes it back rather than being stopped.
    fn while_paused(&mut self, obs: &Observation, running_primary: bool) -> Vec<Action> {
        self.last_ineligible = Some(Ineligible::Paused);
        match obs.lock {
            LockView::Other(_) if running_primary => vec![Action::StopPostgres {
                immediate: true,
                reason: "running as primary while another node holds the lock",
            }],
            LockView::Free if running_primary => vec![Action::AcquireLock],
            _ => vec![],
        }
    }

    fn in_election(&mut self, obs: &Observation, running_primary: bool) -> Vec<Action> {
        let pg = &obs.postgres;
        if running_primary {
            return vec![Action::StopPostgres {
                immediate: true,
                reason: "running as primary without holding the lock",
            }];
        }
        let mut actions = Vec::new();
        if std::mem::take(&mut self.takeover.position_unpublished) {
            // Peers compare positions written after the lock vanished: publish ours.
            actions.push(Action::PublishState);
        }
        if pg.data_dir == DataDirKind::Empty {
            // Only a group without any data is bootstrapped; otherwise wait for a primary.
            let anyone_has_data = obs.peers.iter().any(|p| p.state.system_id.is_some());
            let no_database = obs.db_id == Fetched::Absent && !anyone_has_data;
            if no_database && self.retry.bootstrap.paused(obs.now) {
                self.last_ineligible = Some(Ineligible::BootstrapFailed);
            } else if no_database && !self.tags.never_promoted() && !obs.vetoed {
                self.last_ineligible = None;
                // No database, so no old primary to wait for.
                self.takeover.handed_over(obs.now);
                actions.push(Action::AcquireLock);
            } else {
                self.last_ineligible = Some(Ineligible::NoData);
            }
            return actions;
        }
        if pg.data_dir == DataDirKind::Damaged {
            self.last_ineligible = Some(Ineligible::DataDirDamaged);
            return actions;
        }
        if !pg.running && pg.data_dir == DataDirKind::Standby {
            actions.push(Action::StartStandby {
                upstream: None,
                slot: false,
            });
            return actions;
        }
        match self.eligibility(obs) {
            Ok(()) => {
                self.last_ineligible = None;
                // The old primary stopped before it released the lock (a hand-over), or it
                // released the lock with nobody writing under it.
                let handed_over = self
                    .active_request(obs)
                    .is_some_and(|r| r.stopped_lsn.is_some());
                if handed_over || obs.quiet_release {
                    self.takeover.handed_over(obs.now);
                }
                actions.push(Action::AcquireLock);
            }
            Err(why) => {
                // Named by a request it can never carry out: drop the request rather than
                // hold the others out of the election until it times out.
                let named = self
                    .active_request(obs)
                    .is_some_and(|r| r.to == Some(self.me));
                if named && why.lasts_while_the_lock_is_free() {
                    actions.push(Action::DropSwitchover {
                        reason:
                            "the node it names cannot take over the free lock (its state says why)",
                    });
                }
                self.last_ineligible = Some(why);
            }
        }
        actions
    }

    fn as_lock_holder(
        &mut self,
        obs: &Observation,
        running_primary: bool,
        running_standby: bool,
    ) -> Vec<Action> {
        let pg = &obs.postgres;
        if running_primary {
            self.down.stop();
            self.takeover.done();
            return self.handle_request(obs);
        }
        if !pg.running && pg.data_dir == DataDirKind::Damaged {
            return vec![self.release(obs, false)];
        }
        if obs.config.standby_cluster.is_some() {
            return self.as_standby_leader(obs);
        }
        if !pg.running && pg.data_dir == DataDirKind::Empty {
            return if obs.db_id == Fetched::Absent && !self.retry.bootstrap.paused(obs.now) {
                vec![Action::Bootstrap]
            } else {
                // The group has a database: an empty node must clone it, not create another.
                vec![self.release(obs, false)]
            };
        }
        if running_standby {
            if self.promotion_veto_holds(obs.now) {
                // Vetoed as a standby: nobody wrote under this lock.
                return vec![self.release(obs, false)];
            }
            if !self.takeover.may_promote(obs.now) {
                return vec![];
            }
            return vec![Action::Promote {
                reason: self.promotion_reason(obs),
                wait_for_a_standby: obs.config.synchronous_mode == SyncMode::Strict,
            }];
        }
        if !pg.running
            && pg.data_dir == DataDirKind::Primary
            && !self.takeover.may_start_primary(obs.now)
        {
            // Not started yet, by choice: the restart bound is for a primary that fails to
            // come back, and runs from when it may start.
            self.down.stop();
            return vec![];
        }
        // Down, or running but not answering (recovering or hung): both get the restart bound.
        let since = self.down.since(obs.now, pg.running);
        if obs.now.duration_since(since) >= self.timing.primary_restart_timeout {
            self.gave_up = Some(obs.now);
            self.down.stop();
            let mut actions = Vec::new();
            if pg.running {
                actions.push(Action::StopPostgres {
                    immediate: true,
                    reason: "primary did not come back within the restart timeout",
                });
            }
            actions.push(self.release(obs, pg.running));
            return actions;
        }
        match (pg.running, pg.data_dir) {
            (true, _) => vec![],
            (false, DataDirKind::Primary) => vec![Action::StartPrimary],
            // Won the lock while stopped as a standby: start it, then promote (a plain
            // primary start would not open a new timeline).
            (false, DataDirKind::Standby) => vec![Action::StartStandby {
                upstream: None,
                slot: false,
            }],
            (false, DataDirKind::Empty | DataDirKind::Damaged) => vec![],
        }
    }

    /// Releases the lock; quietly (the next holder need not wait) when this node's PostgreSQL
    /// is down, stopped by the action before (`stopping`) or a standby, and every earlier
    /// holder is fenced.
    pub(super) fn release(&self, obs: &Observation, stopping: bool) -> Action {
        let pg = &obs.postgres;
        let standby = pg.probe.is_some_and(|p| p.in_recovery);
        let nobody_writes_here = stopping || !pg.running || standby;
        Action::ReleaseLock {
            quiet: nobody_writes_here && self.takeover.earlier_holders_fenced(obs.now),
        }
    }

    /// Why this node is being promoted: an operator's switchover or failover naming it, or a
    /// failover.
    fn promotion_reason(&self, obs: &Observation) -> PromotionReason {
        match &obs.switchover {
            Some(r) if r.to == Some(self.me) && r.kind == SwitchoverKind::Switchover => {
                PromotionReason::Switchover
            }
            Some(r) if r.to == Some(self.me) => PromotionReason::ManualFailover,
            _ => PromotionReason::Failover,
        }
    }
}

#[cfg(test)]
mod tests;
