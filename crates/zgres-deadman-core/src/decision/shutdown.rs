//! What a deadman's shutdown does with PostgreSQL: stop it (the rule), or leave it running when
//! the group is paused, so that maintenance of the deadman costs no restart and no failover.

use super::{Action, DataDirKind, LockView, Observation};

/// What the shutdown does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPlan {
    /// Stop PostgreSQL (fast shutdown), then release the lock.
    StopPostgres,
    /// Leave PostgreSQL running under its guardian for the next deadman to take over.
    LeaveRunning {
        /// First turn this session's lock into a persistent one with the same content, so that
        /// nobody takes over the primary left running, even after the group is resumed.
        persist_lock: bool,
    },
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
        return ShutdownPlan::StopPostgres;
    }
    match (lock, running_primary, running_standby) {
        (LockView::Ours, true, _) => ShutdownPlan::LeaveRunning { persist_lock: true },
        (LockView::Unattended, true, _) => ShutdownPlan::LeaveRunning {
            persist_lock: false,
        },
        (_, false, true) => ShutdownPlan::LeaveRunning {
            persist_lock: false,
        },
        _ => ShutdownPlan::StopPostgres,
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
                prop_assert_eq!(plan, ShutdownPlan::StopPostgres);
            }
            if primary {
                match plan {
                    ShutdownPlan::StopPostgres => {}
                    ShutdownPlan::LeaveRunning { persist_lock: true } => {
                        prop_assert_eq!(lock, LockView::Ours)
                    }
                    ShutdownPlan::LeaveRunning { persist_lock: false } => {
                        prop_assert_eq!(lock, LockView::Unattended)
                    }
                }
            }
            if !primary && !standby {
                prop_assert_eq!(plan, ShutdownPlan::StopPostgres);
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
        assert_eq!(
            shutdown_plan(false, other, false, true),
            ShutdownPlan::StopPostgres
        );
        assert_eq!(
            shutdown_plan(true, LockView::Ours, true, false),
            ShutdownPlan::LeaveRunning { persist_lock: true }
        );
        assert_eq!(
            shutdown_plan(true, other, true, false),
            ShutdownPlan::StopPostgres,
            "a primary without the lock is not kept"
        );
    }
}
