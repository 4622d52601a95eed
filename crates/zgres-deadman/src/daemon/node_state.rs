//! The node state this node publishes each round, assembled from the core's derivation of
//! its role, problems and warnings ([`crate::decision::published`]) and local facts.

use zgres_schema::documents::{NodeState, SyncMode, WalPositions};

use super::{wall_ms, Daemon};
use crate::decision::{self, LockView, Observation, Probe, WarningInputs};

impl Daemon {
    pub(super) fn node_state(&self, obs: &Observation) -> NodeState {
        let pg = &obs.postgres;
        let vetoes = self
            .plugins
            .as_ref()
            .map(|p| p.outcome.borrow().vetoes.clone())
            .unwrap_or_default();
        let warnings = decision::warnings(
            obs,
            WarningInputs {
                config_problem: self.core.config_in_force.problem(),
                synchronous_degraded: obs.lock == LockView::Ours
                    && obs.config.synchronous_mode != SyncMode::Off
                    && self.core.sync_keeper.degraded(),
            },
        );
        let probe: Option<Probe> = pg.probe;
        NodeState {
            node: self.config.node,
            name: zgres_schema::NodeName::new(&self.config.node_name).ok(),
            role: decision::role(pg),
            problems: decision::problems(obs, &vetoes),
            warnings,
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
