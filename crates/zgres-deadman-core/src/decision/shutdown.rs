//! What a deadman's shutdown does with PostgreSQL: stop it (the rule), or leave it running when
//! the group is paused, so that maintenance of the deadman costs no restart and no failover.
//! A primary that stops hands its lock over to a streaming standby, as in a switchover, so
//! that the standby need not wait out the takeover wait of a lock that merely vanished.

use zgres_schema::NodeId;

use super::{Action, DataDirKind, Decider, LockView, Observation};

/// What the shutdown does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPlan {
    /// Stop PostgreSQL (fast shutdown), then release the lock. With `hand_over_to`, a primary
    /// holding the lock first records, once PostgreSQL stopped cleanly, a switchover request
    /// to that standby with the stop position, as a switchover's step-down does: the standby
    /// takes over once it has received everything, without the takeover wait.
    StopPostgres {
        /// The streaming standby to hand the lock to.
        hand_over_to: Option<NodeId>,
        /// Every earlier holder of the lock is fenced: once PostgreSQL has stopped, the lock
        /// is released quietly (`Action::ReleaseLock { quiet: true }`).
        release_quietly: bool,
    },
    /// Leave PostgreSQL running under its guardian for the next deadman to take over.
    LeaveRunning {
        /// First turn this session's lock into a persistent one with the same content, so that
        /// nobody takes over the primary left running, even after the group is resumed.
        persist_lock: bool,
    },
}

impl ShutdownPlan {
    /// Stop PostgreSQL, hand nothing over, release the lock plainly: the plan before a round
    /// has made one.
    pub const STOP: ShutdownPlan = ShutdownPlan::StopPostgres {
        hand_over_to: None,
        release_quietly: false,
    };
}

/// The plan for a shutdown, from the last round's view: `paused` the group's flag,
/// `running_primary`/`running_standby` the probe of the running PostgreSQL.
///
/// Only in a paused group, and only for a PostgreSQL whose role is known: a primary that holds
/// the lock (kept by persisting it) or whose lock is already one left unattended, or a standby.
/// A primary without the lock is stopped, as the running rules would have it.
pub fn shutdown_plan(
    paused: bool,
    lock: LockView,
    running_primary: bool,
    running_standby: bool,
) -> ShutdownPlan {
    if !paused {
        return ShutdownPlan::STOP;
    }
    match (lock, running_primary, running_standby) {
        (LockView::Ours, true, _) => ShutdownPlan::LeaveRunning { persist_lock: true },
        (LockView::Unattended, true, _) => ShutdownPlan::LeaveRunning {
            persist_lock: false,
        },
        (_, false, true) => ShutdownPlan::LeaveRunning {
            persist_lock: false,
        },
        _ => ShutdownPlan::STOP,
    }
}

/// Whether a shutdown after `obs` may hand the lock over: a running primary holding it, in a
/// running group, with no switchover request pending (the operator's, which the election
/// follows). The shell then reads which standbys stream from it, for [`Decider::shutdown_plan`].
pub fn may_hand_over(obs: &Observation) -> bool {
    let primary = obs.postgres.running && obs.postgres.probe.is_some_and(|p| !p.in_recovery);
    !obs.config.paused && obs.lock == LockView::Ours && primary && obs.switchover.is_none()
}

impl Decider {
    /// The plan for a shutdown after `obs` ([`shutdown_plan`]), with the standby a primary
    /// holding the lock hands it over to when it stops: the one a switchover would pick (a
    /// healthy peer streaming from it, on its timeline, ranked best), unless a request is
    /// already pending (the operator's, which the election follows); and whether the lock,
    /// once PostgreSQL stopped, may be released quietly.
    pub fn shutdown_plan(&self, obs: &Observation) -> ShutdownPlan {
        let probe = obs.postgres.probe.filter(|_| obs.postgres.running);
        let primary = probe.is_some_and(|p| !p.in_recovery);
        let standby = probe.is_some_and(|p| p.in_recovery);
        match shutdown_plan(obs.config.paused, obs.lock, primary, standby) {
            ShutdownPlan::StopPostgres { .. } => {
                let hands_over = may_hand_over(obs);
                let hand_over_to = obs
                    .postgres
                    .streaming
                    .as_ref()
                    .filter(|_| hands_over)
                    .and_then(|streaming| self.switchover_candidate(obs, None, streaming));
                ShutdownPlan::StopPostgres {
                    hand_over_to,
                    release_quietly: self.takeover.earlier_holders_fenced(obs.now),
                }
            }
            left_running => left_running,
        }
    }
}

/// What a node does about the lock its previous deadman left at a paused shutdown
/// ([`LockView::Unattended`]): taken back into this session (paused or not) by the primary it
/// protects, or by a stopped primary's data directory, which the lock holder's rules then
/// start. A standby never claims it: an operator releases it (`zgresctl unlock`).
pub(super) fn take_back(obs: &Observation, running_primary: bool) -> Vec<Action> {
    let pg = &obs.postgres;
    let stopped_primary = !pg.running && pg.data_dir == DataDirKind::Primary;
    if running_primary || stopped_primary {
        vec![Action::ReclaimLock]
    } else {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::decision::observation::any_lock_view as lock_view;

    proptest! {
        /// A primary is left running only under a lock nobody else can take: one made
        /// persistent by this shutdown, or one left so before. Outside a pause, never.
        #[test]
        fn a_primary_is_left_running_only_paused_and_under_a_lock_nobody_can_take(
            paused: bool, lock in lock_view(), primary: bool, standby: bool,
        ) {
            let plan = shutdown_plan(paused, lock, primary, standby);
            if !paused {
                prop_assert_eq!(plan, ShutdownPlan::STOP);
            }
            if primary {
                match plan {
                    ShutdownPlan::StopPostgres { .. } => {}
                    ShutdownPlan::LeaveRunning { persist_lock: true } => {
                        prop_assert_eq!(lock, LockView::Ours)
                    }
                    ShutdownPlan::LeaveRunning { persist_lock: false } => {
                        prop_assert_eq!(lock, LockView::Unattended)
                    }
                }
            }
            if !primary && !standby {
                prop_assert_eq!(plan, ShutdownPlan::STOP);
            }
        }
    }

    #[test]
    fn a_paused_standby_is_left_running_and_an_unpaused_one_stopped() {
        let other = LockView::Other(Some("10.0.0.2:5432".parse().unwrap()));
        assert_eq!(
            shutdown_plan(true, other, false, true),
            ShutdownPlan::LeaveRunning {
                persist_lock: false
            }
        );
        assert_eq!(shutdown_plan(false, other, false, true), ShutdownPlan::STOP);
        assert_eq!(
            shutdown_plan(true, LockView::Ours, true, false),
            ShutdownPlan::LeaveRunning { persist_lock: true }
        );
        assert_eq!(
            shutdown_plan(true, other, true, false),
            ShutdownPlan::STOP,
            "a primary without the lock is not kept"
        );
    }
}
