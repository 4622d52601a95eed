//! What a node publishes about itself: its role, its problems (which make it unhealthy: no
//! `/conn`, no contending, 503 on the replica checks) and its warnings (which do not). Derived
//! from the observation alone, so the rules are tested here with plain values.

use zgres_schema::documents::{Role, SyncMode};

use super::{DataDirKind, Ineligible, LocalPostgres, LockView, Observation};

/// The problem of a node whose data directory an interrupted pg_rewind left unusable.
pub const DAMAGED_DATA_DIR: &str = "an interrupted pg_rewind left the data directory unusable (it mixes two servers' files); it is not started: re-clone it with zgresctl reinit, or set provisioning.reclone_on_rewind_failure";

/// The problem of a standby that a lock left at a paused shutdown names.
pub const UNATTENDED_LOCK_ON_STANDBY: &str = "the group's lock was left persistent naming this node, which runs as a standby: no node takes over until an operator releases it (zgresctl unlock)";

/// PostgreSQL's role as the probe shows it.
pub fn role(pg: &LocalPostgres) -> Role {
    match (pg.running, pg.probe) {
        (false, _) => Role::Stopped,
        (true, None) => Role::Unknown,
        (true, Some(p)) if p.in_recovery => Role::Replica,
        (true, Some(_)) => Role::Primary,
    }
}

/// Why the node is unhealthy; empty when it is healthy. `vetoes` are the plugins'.
pub fn problems(obs: &Observation, vetoes: &[String]) -> Vec<String> {
    let pg = &obs.postgres;
    let mut problems = Vec::new();
    if !pg.running {
        problems.push("postgres is not running".to_owned());
    } else if pg.probe.is_none() {
        problems.push("postgres does not answer".to_owned());
    }
    if let (Some(p), Some(&group)) = (pg.probe, obs.db_id.valid()) {
        if p.system_id != group {
            problems.push(format!(
                "system identifier {} differs from the group's {group}",
                p.system_id
            ));
        }
    }
    if pg.data_dir == DataDirKind::Damaged {
        problems.push(DAMAGED_DATA_DIR.to_owned());
    }
    if pg.probe.is_some_and(|p| !p.in_recovery) && obs.lock != LockView::Ours {
        problems.push("running as primary without the lock".to_owned());
    }
    if obs.lock == LockView::Unattended && pg.probe.is_some_and(|p| p.in_recovery) {
        problems.push(UNATTENDED_LOCK_ON_STANDBY.to_owned());
    }
    problems.extend(vetoes.iter().cloned());
    problems
}

/// What the warnings depend on besides the observation.
#[derive(Debug, Clone, Copy, Default)]
pub struct WarningInputs<'a> {
    /// Why the group config in force is not the one in ZooKeeper (it is unreadable).
    pub config_problem: Option<&'a str>,
    /// As the primary in synchronous mode: no synchronous standby is in force.
    pub synchronous_degraded: bool,
}

/// What an operator should know that does not make the node unhealthy.
pub fn warnings(obs: &Observation, inputs: WarningInputs<'_>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(problem) = inputs.config_problem {
        warnings.push(problem.to_owned());
    }
    if let Some(e) = obs.sync.error() {
        warnings.push(format!(
            "{e}; no node may be promoted and synchronous_standby_names is left as it is"
        ));
    }
    if obs.lock == LockView::Ours
        && obs.config.synchronous_mode != SyncMode::Off
        && inputs.synchronous_degraded
    {
        warnings.push(match obs.config.synchronous_mode {
            SyncMode::Strict => {
                "no synchronous standby: commits wait until one is back (strict)".to_owned()
            }
            _ => "no synchronous standby: replication is asynchronous until one is back".to_owned(),
        });
    }
    if obs.config.standby_cluster.is_some() && obs.standby_source.is_none() {
        warnings.push(
            "standby_cluster has nothing to follow: the group it names has no lock holder (or it names this group itself)"
                .to_owned(),
        );
    }
    if obs.config.standby_cluster.is_some()
        && obs.lock == LockView::Ours
        && obs.postgres.probe.is_some_and(|p| !p.in_recovery)
    {
        warnings.push(
            "standby_cluster is set, but this group's lock holder already runs as a primary: it stays one (a standby cluster starts from empty or re-cloned nodes)"
                .to_owned(),
        );
    }
    if let Some(e) = obs.db_id.error() {
        warnings.push(format!(
            "{e}; the group's system identifier cannot be checked and nothing is bootstrapped or cloned"
        ));
    }
    warnings
}

/// While the lock is free, why this node does not take it, when the reason lasts (the group
/// may stay without a primary for it, and `zgresctl list` should say so). Passing reasons (a
/// better peer, an election's wait, a request naming another node) are left out: they would
/// flap through every ordinary failover.
pub fn not_taking_over(lock: LockView, ineligible: Option<Ineligible>) -> Option<String> {
    if lock != LockView::Free {
        return None;
    }
    let why = match ineligible? {
        Ineligible::NoFailoverTag => "tagged nofailover or priority 0",
        Ineligible::NotAStandby => "PostgreSQL is not running as a standby",
        Ineligible::GaveUp => "it gave the lock up after failing to restart PostgreSQL",
        Ineligible::WrongSystem => "its system identifier differs from the group's",
        Ineligible::TooFarBehind => {
            "it is further behind the last primary position than maximum_lag_on_failover_bytes"
        }
        Ineligible::Paused => "the group is paused",
        Ineligible::Vetoed => "a health plugin vetoes it",
        Ineligible::NoData => "it has no data directory yet",
        Ineligible::BootstrapFailed => {
            "its bootstrap of the group's database failed; it tries again after a pause (its log says why)"
        }
        Ineligible::DataDirDamaged => "an interrupted pg_rewind left its data directory unusable",
        Ineligible::TimelineBehind => {
            "its timeline is behind the group's newest (it may lack WAL of that timeline)"
        }
        Ineligible::NotSynchronous => "synchronous mode is on and /sync does not list it",
        Ineligible::QuorumUnseen => {
            "/sync claims a quorum and too few of its standbys are seen at or behind this node to be sure it holds every acknowledged commit"
        }
        Ineligible::PromotionVetoed
        | Ineligible::PeerIsBetter(_)
        | Ineligible::WaitingForPeers
        | Ineligible::RequestNamesOther(_)
        | Ineligible::CatchingUp => return None,
    };
    Some(format!("not taking over the free lock: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lasting_reason_for_leaving_a_free_lock_is_published() {
        let why = not_taking_over(LockView::Free, Some(Ineligible::TimelineBehind)).unwrap();
        assert!(why.contains("timeline is behind"), "{why}");
        assert_eq!(
            not_taking_over(LockView::Ours, Some(Ineligible::TimelineBehind)),
            None
        );
        assert_eq!(
            not_taking_over(LockView::Free, Some(Ineligible::WaitingForPeers)),
            None
        );
        assert_eq!(not_taking_over(LockView::Free, None), None);
    }
}
