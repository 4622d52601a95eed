//! What this node publishes about itself each round: its role, problems (which make it
//! unhealthy) and warnings (which do not).

use zgres_schema::documents::{NodeState, Role, SyncMode, WalPositions};

use super::{wall_ms, Daemon};
use crate::decision::{LockView, Observation, Probe};

impl Daemon {
    pub(super) fn problems(&self, obs: &Observation) -> Vec<String> {
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
        if pg.probe.is_some_and(|p| !p.in_recovery) && obs.lock != LockView::Ours {
            problems.push("running as primary without the lock".to_owned());
        }
        if let Some(plugins) = &self.plugins {
            problems.extend(plugins.outcome.borrow().vetoes.iter().cloned());
        }
        problems
    }

    /// What an operator should know that does not make the node unhealthy.
    pub(super) fn warnings(&self, obs: &Observation) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(problem) = self.core.config_in_force.problem() {
            warnings.push(problem.to_owned());
        }
        if let Some(e) = obs.sync.error() {
            warnings.push(format!(
                "{e}; no node may be promoted and synchronous_standby_names is left as it is"
            ));
        }
        if obs.lock == LockView::Ours
            && obs.config.synchronous_mode != SyncMode::Off
            && self.core.sync_keeper.degraded()
        {
            warnings.push(match obs.config.synchronous_mode {
                SyncMode::Strict => {
                    "no synchronous standby: commits wait until one is back (strict)".to_owned()
                }
                _ => "no synchronous standby: replication is asynchronous until one is back"
                    .to_owned(),
            });
        }
        if let Some(e) = obs.db_id.error() {
            warnings.push(format!(
                "{e}; the group's system identifier cannot be checked and nothing is bootstrapped or cloned"
            ));
        }
        warnings
    }

    pub(super) fn node_state(&self, obs: &Observation) -> NodeState {
        let pg = &obs.postgres;
        let role = match (pg.running, pg.probe) {
            (false, _) => Role::Stopped,
            (true, None) => Role::Unknown,
            (true, Some(p)) if p.in_recovery => Role::Replica,
            (true, Some(_)) => Role::Primary,
        };
        let probe: Option<Probe> = pg.probe;
        NodeState {
            node: self.config.node,
            name: zgres_schema::NodeName::new(&self.config.node_name).ok(),
            role,
            problems: self.problems(obs),
            warnings: self.warnings(obs),
            timeline: probe
                .and_then(|p| p.timeline)
                .or(self.pg.control.map(|c| c.timeline)),
            system_id: probe
                .map(|p| p.system_id)
                .or(self.pg.control.map(|c| c.system_id)),
            wal: WalPositions {
                write: probe.and_then(|p| p.write_lsn),
                receive: probe.and_then(|p| p.receive_lsn),
                replay: probe.and_then(|p| p.replay_lsn),
            },
            tags: self.config.tags.clone(),
            meta: self
                .plugins
                .as_ref()
                .map(|p| p.outcome.borrow().meta.clone())
                .unwrap_or_default(),
            updated_at_ms: wall_ms(),
            refresh_ms: Some(self.config.timing.state_refresh.as_millis() as u64),
        }
    }
}
