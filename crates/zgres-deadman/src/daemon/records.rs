//! The group's records a primary keeps: its system identifier and promotion history.

use zgres_schema::documents::{Promotion, PromotionReason};
use zgres_schema::{Fetched, Lsn, SystemId, Timeline};

use super::{wall_ms, Daemon};
use crate::decision::Observation;

impl Daemon {
    /// Appends this promotion, for the core's `reason`, to `/history/{GROUP}`: the new
    /// timeline and where it began, as the server's timeline history file says (exact, so a
    /// standby is called diverged only when it is); the position observed before promoting
    /// when the file cannot be read (a little short of the fork, at worst: the server replays
    /// what it had received before it switches).
    pub(super) async fn record_promotion(&mut self, obs: &Observation, reason: PromotionReason) {
        let timeline = match self.pg.client.probe().await {
            Ok(probe) => probe.timeline,
            Err(_) => None,
        };
        let observed = obs
            .postgres
            .probe
            .and_then(|p| p.position())
            .unwrap_or(Lsn::ZERO);
        let start = match timeline {
            Some(timeline) => match self.pg.client.timeline_start(timeline).await {
                Ok(start) => start,
                Err(e) => {
                    tracing::warn!(error = %e, %timeline, "cannot read the new timeline's history file: recording the position seen before promoting");
                    None
                }
            },
            None => None,
        };
        self.append_history(timeline, start.unwrap_or(observed), reason)
            .await;
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
