//! The group's records a primary keeps: its system identifier and promotion history; and the
//! fence's disarming after a round.

use zgres_schema::documents::{Promotion, PromotionReason};
use zgres_schema::{Fetched, Lsn, Timeline};

use super::{wall_ms, Daemon};
use crate::decision::{fence_may_disarm, LockView, Observation};

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

    /// Bookkeeping after the actions: the group's system id and the fence's arming.
    pub(super) async fn after_round(&mut self, obs: &Observation) {
        let primary = obs.postgres.probe.filter(|p| !p.in_recovery);
        if let (LockView::Ours, Some(p), Fetched::Absent) = (obs.lock, primary, &obs.db_id) {
            if let Some(session) = self.zk.session.as_mut() {
                if let Ok(Fetched::Valid(theirs)) =
                    session.coordinator.publish_db_id(p.system_id).await
                {
                    if theirs != p.system_id {
                        tracing::error!(%theirs, ours = %p.system_id, "the group's system identifier changed under us");
                    } else {
                        self.append_history(
                            p.timeline,
                            p.write_lsn.unwrap_or(Lsn::ZERO),
                            PromotionReason::Bootstrap,
                        )
                        .await;
                    }
                }
            }
        }
        // Disarm only once PostgreSQL cannot be a primary any more.
        if self.fence.is_armed() && fence_may_disarm(obs.lock, self.pg.process.is_running()) {
            self.fence.disarm();
        }
    }
}
