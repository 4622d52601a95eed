//! The primary's synchronous-replication round: feeds the pure [`crate::synchronous::SyncKeeper`]
//! what PostgreSQL and ZooKeeper show, and carries out the one step it asks for.

use std::collections::BTreeSet;
use std::time::Duration;

use zgres_schema::documents::{SyncMode, SyncState};
use zgres_schema::{Fetched, NodeId};

use super::Daemon;
use crate::coordination::CoordinationError;
use crate::decision::{LockView, Observation};
use crate::postgres_client::ClientError;
use crate::synchronous::{Acknowledgers, Progress, SyncInputs, SyncKeeper, SyncStep};

impl Daemon {
    /// As the running primary: one step towards the synchronous replication the group's mode
    /// asks for (see [`crate::synchronous`]), with the standbys the core allows.
    /// Returns whether the next round should come soon: a step was taken, or the claim waits
    /// to be narrowed (see [`SyncKeeper::settling`]).
    pub(super) async fn keep_synchronous(
        &mut self,
        obs: &Observation,
        sync: Fetched<(SyncState, i32)>,
        allowed: BTreeSet<NodeId>,
    ) -> bool {
        // Before a valid config is known, synchronous mode is unknown: change nothing.
        if !self.core.config_in_force.is_known() {
            return false;
        }
        let primary = obs.lock == LockView::Ours
            && obs.postgres.probe.is_some_and(|p| !p.in_recovery)
            && self.pg.process.is_running();
        if !primary {
            self.core.sync_keeper = SyncKeeper::default();
            return false;
        }
        let mode = obs.config.synchronous_mode;
        // Asynchronous and already cleaned up this term: no queries on every round.
        if mode == SyncMode::Off && self.core.sync_keeper.off_settled() {
            return false;
        }
        let (connected, standby_names, position) = match self.pg.client.replication().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pg_stat_replication");
                return false;
            }
        };
        let (published, version) = match sync {
            Fetched::Valid((state, version)) => (Some(state), Some(version)),
            Fetched::Absent => (None, None),
            // Never overwritten because unreadable, and no step without knowing what is in
            // force: synchronous_standby_names stays as it is (the reader logged it).
            Fetched::Unreadable(_) => return false,
        };
        let was_degraded = self.core.sync_keeper.degraded();
        let progress = Some(Progress {
            now: obs.now,
            position,
            ack_timeout: Duration::from_millis(obs.config.synchronous_ack_timeout_ms),
        });
        let was_stalled = self.core.sync_keeper.stalled_nodes().clone();
        let inputs = SyncInputs {
            mode,
            acknowledgers: Acknowledgers {
                count: obs.config.synchronous_node_count.get() as usize,
                method: obs.config.synchronous_method,
            },
            me: self.config.node,
            published,
            standby_names,
            connected,
            allowed,
            progress,
        };
        let step = self.core.sync_keeper.step(&inputs);
        for node in self
            .core
            .sync_keeper
            .stalled_nodes()
            .difference(&was_stalled)
        {
            tracing::warn!(standby = %node, ack_timeout_ms = obs.config.synchronous_ack_timeout_ms, ?mode,
                "synchronous standby connected but not acknowledging commits");
        }
        let Some(step) = step else {
            // Waiting for the standbys to take the new setting or catch up: look again soon.
            return self.core.sync_keeper.settling(obs.now);
        };
        if self.core.sync_keeper.degraded() != was_degraded {
            match (self.core.sync_keeper.degraded(), mode) {
                (true, SyncMode::Strict) => tracing::error!("no synchronous standby available: commits wait until one is back (synchronous_mode = strict)"),
                (true, _) => tracing::warn!("no synchronous standby available: replication is asynchronous until one is back (synchronous_mode = on)"),
                (false, _) => tracing::info!("a synchronous standby is available again"),
            }
        }
        let done = match &step {
            SyncStep::Publish(claim) => {
                let state = claim.document(self.config.node);
                self.publish_sync(Some(&state), version)
                    .await
                    .map(|()| tracing::info!(standbys = ?claim.standbys.iter().map(ToString::to_string).collect::<Vec<_>>(), holders = claim.holders, "published the synchronous standby set"))
            }
            SyncStep::Unpublish => self.publish_sync(None, None).await,
            SyncStep::SetStandbyNames(names) => self
                .pg.client
                .set_standby_names(names)
                .await
                .map_err(SyncStepError::from)
                .map(|()| tracing::info!(synchronous_standby_names = %names, "set synchronous_standby_names")),
            SyncStep::Confirm => {
                self.core.sync_keeper.confirming(position);
                Ok(())
            }
        };
        match done {
            Ok(()) => {
                self.core.sync_keeper.done(&step);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, ?step, "synchronous replication step failed; retrying next round");
                false
            }
        }
    }

    /// Writes (or deletes, with `None`) `/sync`, compare-and-set on `version`.
    async fn publish_sync(
        &mut self,
        state: Option<&SyncState>,
        version: Option<i32>,
    ) -> Result<(), SyncStepError> {
        let session = self.zk.session.as_mut().ok_or(SyncStepError::NoSession)?;
        match session.coordinator.publish_sync(state, version).await? {
            true => Ok(()),
            false => Err(SyncStepError::Changed),
        }
    }
}

/// Why a synchronous-replication step did not happen (it is retried next round).
#[derive(Debug, thiserror::Error)]
enum SyncStepError {
    /// No ZooKeeper session at the moment.
    #[error("no ZooKeeper session")]
    NoSession,
    /// `/sync` changed since it was read.
    #[error("/sync changed since it was read")]
    Changed,
    /// ZooKeeper failed.
    #[error(transparent)]
    Coordination(#[from] CoordinationError),
    /// PostgreSQL failed.
    #[error(transparent)]
    Postgres(#[from] ClientError),
}
