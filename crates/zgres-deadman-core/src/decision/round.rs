//! One round's whole answer: the actions, what the node publishes about itself, and when the
//! core next has something time-based to decide.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use zgres_schema::documents::Role;
use zgres_schema::{Fetched, Lsn, NodeId};

use super::published::{not_taking_over, problems, role, warnings, WarningInputs};
use super::{
    fence_may_disarm, sync_eligible, Action, DataDirKind, Decider, Ineligible, LockView,
    Observation,
};

/// What a round needs besides the observation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundInputs<'a> {
    /// The health plugins' vetoes.
    pub vetoes: &'a [String],
    /// What the warnings depend on.
    pub warnings: WarningInputs<'a>,
}

/// What the node publishes about itself this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// PostgreSQL's role.
    pub role: Role,
    /// Why the node is unhealthy; empty when healthy.
    pub problems: Vec<String>,
    /// What an operator should know that does not make the node unhealthy.
    pub warnings: Vec<String>,
}

/// The core's answer to one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Disarm the fence before acting: PostgreSQL is not running and the lock is not ours, so
    /// nothing this node runs can accept writes (an action of this round may arm it again).
    pub disarm_fence: bool,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// What to publish.
    pub published: Published,
    /// Why this node does not contend for a free lock, if it does not.
    pub ineligible: Option<Ineligible>,
    /// The peers that may be synchronous standbys, for the primary's synchronous round.
    pub sync_eligible: BTreeSet<NodeId>,
    /// The next moment a decision depends on time alone (a restart bound running out, an
    /// election's wait, a request's steering ending, a rewind retry, a scheduled switchover):
    /// the shell looks again then at the latest, even with nothing else happening.
    pub wake_at: Option<Instant>,
}

/// The problem of a stopped node whose last pg_rewind failed (before changing anything; an
/// interrupted one is [`super::DAMAGED_DATA_DIR`]). No count in it: the state is republished
/// only when it changes.
pub const REWIND_FAILED: &str = "pg_rewind failed and is retried (its output is in the deadman's log): re-clone the node with zgresctl reinit, or set provisioning.reclone_on_rewind_failure";

/// The bootstrap-history step: the lock holder running as a primary of a group with no
/// recorded database records its system identifier and starts the history. Automation-free
/// bookkeeping, so it happens in a paused group too.
fn database_record(obs: &Observation) -> Option<Action> {
    // A standby cluster's database is the one its standby leader copied.
    let standby_leader = obs.config.standby_cluster.is_some();
    let holder = obs
        .postgres
        .probe
        .filter(|p| !p.in_recovery || standby_leader)?;
    (obs.lock == LockView::Ours && obs.postgres.running && matches!(obs.db_id, Fetched::Absent))
        .then(|| Action::RecordDatabase {
            system_id: holder.system_id,
            timeline: holder.timeline,
            lsn: holder.write_lsn.or(holder.replay_lsn).unwrap_or(Lsn::ZERO),
        })
}

impl Decider {
    /// Decides about `obs`: the actions, the published state, and when to look again.
    pub fn decide_round(&mut self, obs: &Observation, inputs: RoundInputs<'_>) -> Decision {
        let mut actions = self.decide(obs);
        actions.extend(database_record(obs));
        let pg = &obs.postgres;
        let standby = pg.running
            && (pg.probe.is_some_and(|p| p.in_recovery)
                || (pg.probe.is_none() && pg.recovering_from.is_some()));
        if !standby
            || actions
                .iter()
                .any(|a| matches!(a, Action::WipeDataDirectory { .. }))
        {
            self.retry.missing_wal.forget();
        }
        let mut problems = problems(obs, inputs.vetoes);
        problems.extend(self.retry.missing_wal.confirmed().map(|m| m.problem()));
        if self.retry.rewind.failing()
            && !obs.postgres.running
            && obs.postgres.data_dir != DataDirKind::Damaged
        {
            problems.push(REWIND_FAILED.to_owned());
        }
        // A reason not to take the lock only means something while it is free (paused, every
        // node is "ineligible", the primary included).
        let ineligible = self
            .last_ineligible()
            .filter(|_| obs.lock == LockView::Free);
        let mut warnings = warnings(obs, inputs.warnings);
        warnings.extend(not_taking_over(obs.lock, ineligible));
        warnings.extend(self.retry.follow.warning(obs.now));
        if obs.lock == LockView::Ours && self.takeover.waiting(obs.now) {
            warnings.push(super::WAITING_TO_PROMOTE.to_owned());
        }
        Decision {
            disarm_fence: fence_may_disarm(obs.lock, obs.postgres.running),
            actions,
            published: Published {
                role: role(&obs.postgres),
                problems,
                warnings,
            },
            ineligible,
            sync_eligible: sync_eligible(&obs.peers),
            wake_at: self.wake_at(obs),
        }
    }

    /// The earliest time-based transition after `obs.now`, if any.
    fn wake_at(&self, obs: &Observation) -> Option<Instant> {
        let now = obs.now;
        let mut candidates = Vec::new();
        if obs.lock == LockView::Ours {
            if let Some(since) = self.down.timing() {
                candidates.push(since + self.timing.primary_restart_timeout);
            }
            candidates.extend(self.takeover.wake_at());
            if let Some(at) = obs.switchover.as_ref().and_then(|r| r.scheduled_at_ms) {
                let ahead = at.saturating_sub(obs.wall_ms);
                candidates.push(now + Duration::from_millis(ahead));
            }
        }
        if let (LockView::Free, Some(since)) = (obs.lock, self.takeover.lock_free_since) {
            candidates.push(since + self.timing.election_wait);
            candidates.extend(self.sits_out_until());
            if obs.switchover.is_some() {
                candidates.push(since + self.timing.request_timeout);
            }
        }
        candidates.extend(self.retry.rewind.not_before());
        candidates.extend(self.retry.contend);
        candidates.extend(self.retry.bootstrap.not_before());
        candidates.extend(self.retry.clone.not_before());
        candidates.extend(self.retry.follow.deadline());
        candidates.extend(self.retry.missing_wal.deadline());
        candidates.extend(super::node_request::due_at(obs));
        candidates.into_iter().filter(|at| *at > now).min()
    }
}
