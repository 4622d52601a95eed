//! What the node shows: its state and connection info in ZooKeeper, the plugins' input and
//! the health API's status.

use std::collections::BTreeMap;
use std::time::Instant;

use zgres_schema::documents::{ConnInfo, NodeState, SyncMode};
use zgres_schema::SlotName;

use super::Daemon;
use crate::api;
use crate::decision::{LockView, Observation};

impl Daemon {
    pub(super) fn update_status(&self, obs: &Observation, state: NodeState) {
        let fence = self.fence.state();
        let headroom = fence
            .armed
            .then(|| (fence.deadline_ns as f64 - crate::fence::monotonic_ns() as f64) / 1e9);
        let slot_retained_bytes = self.slot_retention(&state);
        self.out.status.send_replace(Some(api::Status {
            node: self.config.node,
            group: self.config.group.clone(),
            health: api::Health {
                role: state.role,
                lock_held: obs.lock == LockView::Ours,
                writable: self
                    .fence
                    .may_serve_as_primary(crate::fence::monotonic_ns()),
                problems: state.problems,
                warnings: state.warnings,
                tags: state.tags,
                zookeeper_connected: obs.lock != LockView::Unknown,
                standby_leader: obs.lock == LockView::Ours && obs.config.standby_cluster.is_some(),
                pending_restart_settings: state.pending_restart,
            },
            replication: api::Replication {
                timeline: state.timeline,
                wal: state.wal,
                primary_position: self.core.decider.last_primary_position(),
                synchronous: obs
                    .sync
                    .valid()
                    .is_some_and(|s| s.standbys.contains(&self.config.node)),
                synchronous_degraded: obs.lock == LockView::Ours
                    && obs.config.synchronous_mode != SyncMode::Off
                    && self.core.sync_keeper.degraded(),
                system_id: state.system_id,
                server_version: self.pg.client.server_version(),
                slot_retained_bytes,
            },
            counters: api::Counters {
                unreadable_znodes_total: self
                    .zk
                    .unreadable_total
                    .load(std::sync::atomic::Ordering::Relaxed),
                fence_headroom_seconds: headroom,
                fenced_total: self.fence.fired_count(),
                promotions_total: self.out.promotions,
            },
            updated: Instant::now(),
            loop_interval: self.config.timing.loop_interval,
        }));
    }

    /// Bytes each local slot retains, measured from this node's position (a primary's
    /// write position, a standby's replay position).
    fn slot_retention(&self, state: &NodeState) -> BTreeMap<SlotName, u64> {
        let Some(position) = state.wal.write.or(state.wal.replay) else {
            return BTreeMap::new();
        };
        self.pg
            .client
            .slots()
            .iter()
            .filter_map(|slot| Some((slot.name.clone(), position.bytes_after(slot.restart_lsn?))))
            .collect()
    }

    pub(super) async fn publish(&mut self, state: &NodeState, force: bool) {
        if let Some(plugins) = &self.live.plugins {
            let input = serde_json::json!({
                "v": 1,
                "group": self.config.group,
                "node": self.config.node,
                "state": state,
            });
            plugins.input.send_replace(serde_json::to_vec(&input).ok());
        }
        let healthy = state.is_healthy();
        let unchanged = self.out.state.as_ref().is_some_and(|(old, at)| {
            let mut old = old.clone();
            old.updated_at_ms = state.updated_at_ms;
            old == *state && at.elapsed() < self.config.timing.state_refresh
        });
        let Some(session) = self.zk.session.as_mut() else {
            return;
        };
        if force || !unchanged {
            match session.coordinator.publish_state(state).await {
                Ok(()) => {
                    // Logged when what an operator reads changes: the role, the problems and
                    // the warnings (a takeover's wait before promoting, say).
                    let shown = |s: &NodeState| (s.role, s.problems.clone(), s.warnings.clone());
                    if self.out.state.as_ref().map(|(s, _)| shown(s)) != Some(shown(state)) {
                        tracing::info!(
                            role = ?state.role,
                            problems = ?state.problems,
                            warnings = ?state.warnings,
                            "published node state"
                        );
                        self.systemd.notifier.status(&format!(
                            "{:?}{}",
                            state.role,
                            if state.problems.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", state.problems.join("; "))
                            }
                        ));
                    }
                    self.out.state = Some((state.clone(), Instant::now()));
                }
                Err(e) => tracing::warn!(error = %e, "cannot publish node state"),
            }
        }
        // /conn exists while the node is healthy, and says what it runs as (so proxies send
        // writes only to a lock holder that is already a primary) with its current tags.
        let conn = healthy.then(|| ConnInfo {
            host: self.config.node.addr().ip().to_string(),
            port: self.config.node.addr().port(),
            dbname: None,
            tags: self.config.tags.clone(),
            role: Some(state.role),
            // Proxies check a replica's lag on its API (`/read-only?lag=`) before sending reads.
            api_port: self.config.api.as_ref().map(|a| a.listen.port()),
        });
        if self.out.conn.as_ref() != Some(&conn) {
            match session.coordinator.set_conn(conn.as_ref()).await {
                Ok(()) => self.out.conn = Some(conn),
                Err(e) => tracing::warn!(error = %e, "cannot update connection info"),
            }
        }
    }
}
