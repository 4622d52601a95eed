//! An operator's request to one node (`/request/{GROUP}_{NODE}`, written by `zgresctl
//! restart` and `zgresctl reload`): when and how its deadman carries it out.
//!
//! A request waits while the round has anything else to do (a failover, a rewind, a fence), and
//! while the session is unconfirmed. A restart keeps the role: a primary holding the lock
//! restarts in place and keeps the lock (no failover), a standby restarts following the same
//! primary. What cannot be carried out is dropped, with the reason in the log.

use zgres_schema::documents::NodeAction;
use zgres_schema::Fetched;

use super::{Action, LockView, Observation};

/// The actions for the pending request in `obs`, if any, given what runs.
pub(super) fn actions(
    obs: &Observation,
    running_primary: bool,
    running_standby: bool,
) -> Vec<Action> {
    let request = match &obs.node_request {
        Fetched::Absent => return vec![],
        // Not an operator's: garbage that would block every later request.
        Fetched::Unreadable(_) => {
            return vec![Action::DropNodeRequest {
                reason: "the request is unreadable",
            }]
        }
        Fetched::Valid(request) => request,
    };
    if obs.lock == LockView::Unknown {
        return vec![];
    }
    match request.action {
        // Deleted once carried out, so that its absence tells zgresctl the restart is done; a
        // deadman that dies meanwhile restarts PostgreSQL once more, which is harmless.
        NodeAction::Restart if running_primary && obs.lock == LockView::Ours => vec![
            Action::RestartPostgres { primary: true },
            Action::FinishNodeRequest,
        ],
        NodeAction::Restart if running_standby => vec![
            Action::RestartPostgres { primary: false },
            Action::FinishNodeRequest,
        ],
        // Starting up, recovering: not answering yet. Ask again when it does.
        NodeAction::Restart if obs.postgres.running => vec![],
        NodeAction::Restart => vec![Action::DropNodeRequest {
            reason: "PostgreSQL is not running: nothing to restart",
        }],
        // The deadman's own file, whatever runs.
        NodeAction::Reload => vec![Action::ReloadConfiguration, Action::FinishNodeRequest],
    }
}
