//! The group's records a primary keeps: its system identifier and promotion history.

use zgres_schema::documents::{Promotion, PromotionReason};
use zgres_schema::{Fetched, Lsn, SystemId, Timeline};

use super::{wall_ms, Daemon};
use crate::decision::Observation;

impl Daemon {
    /// Appends this promotion, for the core's `reason`, to `/history/{GROUP}`.
    pub(super) async fn record_promotion(&mut self, obs: &Observation, reason: PromotionReason) {
        let timeline = match self.pg.client.probe().await {
            Ok(probe) => probe.timeline,
            Err(_) => None,
        };
        let lsn = obs
            .postgres
            .probe
            .and_then(|p| p.position())
            .unwrap_or(Lsn::ZERO);
        self.append_history(timeline, lsn, reason).await;
    }

    pub(super) async fn append_history(
        &mut self,
        timeline: Option<Timeline>,
        lsn: Lsn,
        reason: PromotionReason,
    ) {
        let promotion = Promotion {
            timeline: timeline.unwrap_or(Timeline::FIRST),
            lsn,
            reason,
            at_ms: wall_ms(),
            new_primary: self.config.node,
            old_primary: self.core.decider.last_primary_node(),
        };
        if let Some(session) = self.zk.session.as_mut() {
            // The first primary only starts the history; promotions append to it.
            let written = if reason == PromotionReason::Bootstrap {
                session.coordinator.start_history(&promotion).await
            } else {
                session.coordinator.record_promotion(&promotion).await
            };
            match written {
                Ok(()) => {
                    tracing::info!(timeline = %promotion.timeline, lsn = %lsn, ?reason, "recorded the promotion in the group's history")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the promotion in the group's history")
                }
            }
        }
    }

    /// Records the group's database (see [`crate::decision::Action::RecordDatabase`]): publishes its system
    /// identifier, create-only, and starts the history if that identifier is now the group's.
    pub(super) async fn record_database(
        &mut self,
        system_id: SystemId,
        timeline: Option<Timeline>,
        lsn: Lsn,
    ) {
        let Some(session) = self.zk.session.as_mut() else {
            return;
        };
        match session.coordinator.publish_db_id(system_id).await {
            Ok(Fetched::Valid(theirs)) if theirs != system_id => {
                tracing::error!(%theirs, ours = %system_id, "the group's system identifier changed under us");
            }
            Ok(Fetched::Valid(_)) => {
                self.append_history(timeline, lsn, PromotionReason::Bootstrap)
                    .await
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot record the group's system identifier"),
        }
    }
}
