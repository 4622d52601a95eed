//! The node state this node publishes each round: the core's role, problems and warnings
//! ([`crate::decision::Published`]) with local facts (positions, tags, plugin metadata).

use zgres_schema::documents::{NodeState, WalPositions};

use super::{wall_ms, Daemon};
use crate::decision::{Observation, Probe, Published};

impl Daemon {
    pub(super) fn node_state(&self, obs: &Observation, published: Published) -> NodeState {
        let probe: Option<Probe> = obs.postgres.probe;
        NodeState {
            node: self.config.node,
            name: zgres_schema::NodeName::new(&self.config.node_name).ok(),
            role: published.role,
            problems: published.problems,
            warnings: published
                .warnings
                .into_iter()
                .chain(self.cluster_settings_left_out().iter().cloned())
                .collect(),
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
                oldest_kept: probe.and_then(|p| p.oldest_kept),
            },
            upstream: probe.filter(|p| p.in_recovery).and_then(|p| p.upstream),
            tags: self.config.tags.clone(),
            slots: if probe.is_some() {
                self.pg
                    .client
                    .slots()
                    .iter()
                    .filter(|s| s.kind == zgres_schema::slots::SlotKind::Physical)
                    .map(|s| (s.name.clone(), s.restart_lsn))
                    .collect()
            } else {
                Default::default()
            },
            meta: self
                .live
                .plugins
                .as_ref()
                .map(|p| p.outcome.borrow().meta.clone())
                .unwrap_or_default(),
            pending_restart: self
                .live
                .restart_needed
                .iter()
                .map(|key| (*key).to_owned())
                .chain(
                    self.live
                        .postgres_pending_restart
                        .iter()
                        .map(|name| format!("postgresql.{name}")),
                )
                .collect(),
            updated_at_ms: wall_ms(),
            refresh_ms: Some(self.config.timing.state_refresh.as_millis() as u64),
            takeover_wait_ms: Some(self.config.zookeeper.takeover_wait().as_millis() as u64),
        }
    }
}
