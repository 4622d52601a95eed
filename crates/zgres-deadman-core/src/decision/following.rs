//! As a follower (another node holds the lock): clone, rewind or start the local PostgreSQL
//! as the holder's standby, repoint it, and stop a standby that cannot follow (see
//! [`super::divergence`]).

use zgres_schema::documents::Role;
use zgres_schema::NodeId;

use super::{Action, DataDirKind, Decider, Observation};

/// Where an empty node clones from: the most advanced healthy replica tagged `clonefrom` on
/// the primary's timeline (sparing the primary a base backup), else the primary `holder`.
fn clone_source(obs: &Observation, holder: NodeId) -> NodeId {
    let primary_timeline = obs
        .peers
        .iter()
        .find(|p| p.state.node == holder)
        .and_then(|p| p.state.timeline);
    obs.peers
        .iter()
        .map(|p| &p.state)
        .filter(|s| {
            s.tags.clonefrom
                && s.role == Role::Replica
                && s.is_healthy()
                && s.timeline.is_some()
                && s.timeline == primary_timeline
                && s.system_id.is_some()
                && s.system_id == obs.db_id.valid().copied()
        })
        .max_by_key(|s| (s.wal.replay, s.node))
        .map_or(holder, |s| s.node)
}

impl Decider {
    /// The node this standby streams from: the member its `replicatefrom` tag names while
    /// that is a healthy replica streaming from the primary `holder` itself (one level of
    /// cascading, so a chain of tags can never form a loop), else `holder`.
    pub(super) fn upstream(&self, obs: &Observation, holder: NodeId) -> NodeId {
        let Some(wanted) = &self.tags.replicatefrom else {
            return holder;
        };
        obs.peers
            .iter()
            .map(|p| &p.state)
            .find(|s| {
                s.name.as_ref() == Some(wanted)
                    && s.node != holder
                    && s.role == Role::Replica
                    && s.is_healthy()
                    && s.upstream == Some(holder)
            })
            .map_or(holder, |s| s.node)
    }

    /// A running standby of `holder` at `position`: wiped to be cloned again once the WAL it
    /// needs is confirmed gone from the primary, if that is allowed (else only reported).
    fn when_wal_is_missing(
        &mut self,
        obs: &Observation,
        holder: NodeId,
        position: Option<zgres_schema::Lsn>,
        replayed: Option<zgres_schema::Lsn>,
    ) -> Vec<Action> {
        let oldest_kept = obs
            .peers
            .iter()
            .find(|peer| peer.state.node == holder && peer.state.role == Role::Primary)
            .and_then(|peer| peer.state.wal.oldest_kept);
        match self
            .retry
            .missing_wal
            .observe(obs.now, position, replayed, oldest_kept)
        {
            Some(_) if self.retry.reclone.on_missing_wal => vec![Action::WipeDataDirectory {
                reason: "the WAL this standby needs is gone from the primary: emptying its data directory to clone it again (provisioning.reclone_on_missing_wal)",
            }],
            _ => vec![],
        }
    }

    /// A stopped node whose pg_rewind failed (`wipe_after_rewind_failure`, set only when
    /// re-cloning is allowed) or left the directory damaged: wiped to be cloned again when
    /// allowed, else left as it is (reported as a problem).
    fn after_rewind_failure(&mut self, kind: DataDirKind) -> Vec<Action> {
        if !self.retry.reclone.on_rewind_failure {
            return vec![];
        }
        self.retry.wipe_after_rewind_failure = false;
        vec![Action::WipeDataDirectory {
            reason: if kind == DataDirKind::Damaged {
                "an interrupted pg_rewind left the data directory unusable: emptying it to clone it again (provisioning.reclone_on_rewind_failure)"
            } else {
                "pg_rewind failed: emptying the data directory to clone it again (provisioning.reclone_on_rewind_failure)"
            },
        }]
    }

    pub(super) fn as_follower(
        &mut self,
        obs: &Observation,
        holder: Option<NodeId>,
        running_primary: bool,
    ) -> Vec<Action> {
        let pg = &obs.postgres;
        if running_primary {
            return vec![Action::StopPostgres {
                immediate: true,
                reason: "running as primary while another node holds the lock",
            }];
        }
        let Some(holder) = holder else {
            return vec![];
        };
        // Where a standby streams from: the holder, or the member its tag names; with its
        // slot there once the upstream has it.
        let upstream = self.upstream(obs, holder);
        let slot = crate::slots::streams_with_slot(
            &obs.config,
            self.me,
            obs.peers
                .iter()
                .map(|p| &p.state)
                .find(|s| s.node == upstream),
        );
        // Copying from or rewinding to the holder needs it to be a working primary (in a
        // standby cluster, a working standby leader).
        let holder_role = if obs.config.standby_cluster.is_some() {
            Role::Replica
        } else {
            Role::Primary
        };
        let holder_ready = obs
            .peers
            .iter()
            .any(|p| p.state.node == holder && p.state.role == holder_role && p.state.is_healthy());
        if !pg.running
            && (pg.data_dir == DataDirKind::Damaged || self.retry.wipe_after_rewind_failure)
        {
            return self.after_rewind_failure(pg.data_dir);
        }
        match (pg.running, pg.data_dir) {
            (false, DataDirKind::Empty)
                if obs.db_id.valid().is_some()
                    && holder_ready
                    && !self.retry.clone.paused_under(obs.now, holder) =>
            {
                vec![Action::CloneFrom {
                    source: clone_source(obs, holder),
                }]
            }
            (false, DataDirKind::Empty | DataDirKind::Damaged) => vec![],
            // A former primary: it may hold WAL the new primary never saw.
            (false, DataDirKind::Primary)
                if holder_ready && !self.retry.rewind.paused_under(obs.now, holder) =>
            {
                vec![Action::Rewind { source: holder }]
            }
            (false, DataDirKind::Primary) => vec![],
            // A standby stopped because it could not follow: rewind it first.
            (false, DataDirKind::Standby) if self.retry.follow.rewind_wanted => {
                if holder_ready && !self.retry.rewind.paused_under(obs.now, holder) {
                    self.retry.follow.rewinding();
                    vec![Action::Rewind { source: holder }]
                } else {
                    vec![]
                }
            }
            (false, DataDirKind::Standby) => {
                self.retry.follow.starting();
                self.retry.rewind.succeeded();
                vec![Action::StartStandby {
                    upstream: Some(upstream),
                    slot,
                }]
            }
            (true, _) => match pg.probe {
                Some(p) if p.upstream != Some(upstream) || p.member_slot != slot => {
                    self.retry.follow.forget();
                    vec![Action::Repoint { upstream, slot }]
                }
                Some(p) => {
                    let primary_timeline = obs
                        .peers
                        .iter()
                        .find(|peer| peer.state.node == holder && peer.state.role == Role::Primary)
                        .and_then(|peer| peer.state.timeline);
                    let mine = p.timeline.zip(p.position());
                    let reason = if self.retry.follow.has_diverged(mine, &obs.timeline_starts) {
                        "this standby has WAL past the point where the next timeline began (from the group's history): stopping it to rewind it"
                    } else if self.retry.follow.is_stuck(obs.now, mine, primary_timeline) {
                        "this standby cannot follow the primary's timeline (it has WAL the new timeline forked off before): stopping it to rewind it"
                    } else {
                        // The primary's kept WAL says nothing of a cascading standby's source.
                        if p.restores_from_archive || p.upstream != Some(holder) {
                            self.retry.missing_wal.forget();
                            return vec![];
                        }
                        return self.when_wal_is_missing(obs, holder, p.position(), p.replay_lsn);
                    };
                    self.retry.follow.forget();
                    self.retry.follow.rewind_wanted = true;
                    vec![Action::StopPostgres {
                        immediate: false,
                        reason,
                    }]
                }
                // Not answering yet (recovering): its WAL may be gone from the primary too, and
                // then it never becomes consistent.
                None => match pg.recovering_from {
                    Some(end) if pg.data_dir == DataDirKind::Standby => {
                        self.when_wal_is_missing(obs, holder, Some(end), Some(end))
                    }
                    _ => vec![],
                },
            },
        }
    }
}
