//! An operator's request to one node (`/request/{GROUP}_{NODE}`, written by `zgresctl
//! restart`, `reload` and `reinit`): when and how its deadman carries it out.
//!
//! A request waits while the round has anything else to do (a failover, a rewind, a fence), and
//! while the session is unconfirmed. A restart keeps the role: a primary holding the lock
//! restarts in place and keeps the lock (no failover), a standby restarts following the same
//! primary. A reinit wipes a replica's data directory, never the primary's, and the usual
//! rounds clone it again; the request is deleted once it streams again. What cannot be carried
//! out is dropped, with the reason in the log.

use zgres_schema::documents::NodeAction;
use zgres_schema::{Fetched, NodeId};

use super::{Action, LockView, Observation};

/// When a scheduled request falls due, as a moment on the round's clock.
pub(super) fn due_at(obs: &Observation) -> Option<std::time::Instant> {
    let at = obs.node_request.valid()?.scheduled_at_ms?;
    let ahead = at.checked_sub(obs.wall_ms)?;
    Some(obs.now + std::time::Duration::from_millis(ahead))
}

/// A request being carried out over several rounds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum InProgress {
    /// None.
    #[default]
    Nothing,
    /// The data directory was wiped for a reinit: done once the node runs as a standby.
    Reinit,
    /// Restarted: the request is deleted (and a rolling restart handed on) once the node runs
    /// again in its role.
    Restarted,
}

/// The actions for the pending request in `obs`, if any, given what runs; `progress` is what
/// this node already did for it.
pub(super) fn actions(
    obs: &Observation,
    me: NodeId,
    running_primary: bool,
    running_standby: bool,
    progress: &mut InProgress,
) -> Vec<Action> {
    let request = match &obs.node_request {
        Fetched::Absent => {
            *progress = InProgress::Nothing;
            return vec![];
        }
        // Not an operator's: garbage that would block every later request.
        Fetched::Unreadable(_) => {
            return vec![Action::DropNodeRequest {
                reason: "the request is unreadable",
            }]
        }
        Fetched::Valid(request) => request,
    };
    // Not before its time (wake_at wakes the round then), and not while the session is
    // unconfirmed.
    let early = request.scheduled_at_ms.is_some_and(|at| obs.wall_ms < at);
    if obs.lock == LockView::Unknown || early {
        return vec![];
    }
    let holds_the_lock = obs.lock == LockView::Ours;
    let rest: Vec<NodeId> = request.then.iter().copied().filter(|&n| n != me).collect();
    if request.action == NodeAction::Restart && *progress == InProgress::Restarted {
        // Back in its role: a primary holding the lock, or a standby that receives WAL again
        // (PostgreSQL reports no receive position until its WAL receiver got something).
        let receiving = obs.postgres.probe.is_some_and(|p| p.receive_lsn.is_some());
        let back = (running_primary && holds_the_lock) || (running_standby && receiving);
        if !back {
            return vec![];
        }
        *progress = InProgress::Nothing;
        return match rest.split_first() {
            Some((&next, then)) => vec![
                Action::PassRestartOn {
                    next,
                    then: then.to_vec(),
                },
                Action::FinishNodeRequest,
            ],
            None => vec![Action::FinishNodeRequest],
        };
    }
    let restart = |primary: bool, progress: &mut InProgress| {
        *progress = InProgress::Restarted;
        vec![Action::RestartPostgres { primary }]
    };
    match request.action {
        // Deleted once back in its role, so that its absence tells zgresctl (and a rolling
        // restart, handed on then) that this node runs again: a standby that failed to start
        // must not let the primary's restart go ahead. A deadman that dies meanwhile restarts
        // PostgreSQL once more, which is harmless.
        NodeAction::Restart if running_primary && holds_the_lock => restart(true, progress),
        NodeAction::Restart if running_standby => restart(false, progress),
        // Starting up, recovering: not answering yet. Ask again when it does.
        NodeAction::Restart if obs.postgres.running => vec![],
        NodeAction::Restart => vec![Action::DropNodeRequest {
            reason: "PostgreSQL is not running: nothing to restart",
        }],
        // The deadman's own file, whatever runs.
        NodeAction::Reload => vec![Action::ReloadConfiguration, Action::FinishNodeRequest],
        NodeAction::Reinit if holds_the_lock || running_primary => {
            vec![Action::DropNodeRequest {
                reason:
                    "this node is the primary: reinit only rebuilds a replica (switch over first)",
            }]
        }
        // Paused, nothing would clone it again: the replica would stay empty until resumed.
        NodeAction::Reinit if obs.config.paused && *progress == InProgress::Nothing => {
            vec![Action::DropNodeRequest {
                reason: "the group is paused: a wiped replica would not be cloned again until it is resumed",
            }]
        }
        NodeAction::Reinit if *progress == InProgress::Reinit => {
            if running_standby {
                *progress = InProgress::Nothing;
                vec![Action::FinishNodeRequest]
            } else {
                vec![]
            }
        }
        // Only with a primary to clone from.
        NodeAction::Reinit if matches!(obs.lock, LockView::Other(Some(_))) => {
            *progress = InProgress::Reinit;
            vec![Action::WipeDataDirectory { reason: REINIT }]
        }
        NodeAction::Reinit => vec![],
    }
}

/// Why an operator's reinit empties the data directory, for the log.
const REINIT: &str =
    "reinit requested: stopping postgres and emptying its data directory to clone it again from the primary";
