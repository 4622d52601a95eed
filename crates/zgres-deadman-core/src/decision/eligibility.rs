//! Who may contend for a free lock, and how candidates rank against each other.

use std::collections::BTreeSet;
use std::time::Instant;

use zgres_schema::documents::{Role, SyncMode};
use zgres_schema::{Lsn, NodeId, Timeline};

use super::{DataDirKind, Decider, Ineligible, Observation, Peer};

/// The peers a primary may make synchronous standbys: healthy replicas without the `nosync`
/// tag.
pub fn sync_eligible(peers: &[Peer]) -> BTreeSet<NodeId> {
    peers
        .iter()
        .filter(|p| p.state.is_healthy() && p.state.role == Role::Replica && !p.state.tags.nosync)
        .map(|p| p.state.node)
        .collect()
}

/// Sort key of a candidate: higher is better, compared field by field in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    /// Newer timeline first.
    pub(super) timeline: Option<Timeline>,
    /// Then more WAL.
    pub(super) position: Lsn,
    /// Then the operator's priority tag.
    pub(super) priority: u32,
}

impl Decider {
    /// Until when a node that gave the lock up (its PostgreSQL did not come back within the
    /// restart bound) stays out of elections: two election waits, long enough for any other
    /// node that can take over to take the lock (its unhealthy state keeps it out of their
    /// ranking). It contends again afterwards: it may be the only node that can (the others
    /// behind its timeline), and what kept its PostgreSQL down (a hung disk, a full one) may
    /// be over; if not, it gives up again after another restart bound.
    pub(super) fn sits_out_until(&self) -> Option<Instant> {
        self.gave_up.map(|at| at + self.timing.election_wait * 2)
    }

    pub(super) fn my_rank(&self, obs: &Observation) -> Result<Rank, Ineligible> {
        let pg = &obs.postgres;
        match (pg.running, pg.probe, pg.control) {
            (true, Some(p), _) if p.in_recovery => Ok(Rank {
                timeline: p.timeline,
                position: p.position().unwrap_or(Lsn::ZERO),
                priority: self.tags.priority,
            }),
            // A stopped primary data directory (first start, or a fenced primary) contends with
            // its checkpoint position, an underestimate of its WAL: that errs towards others.
            (false, _, Some((timeline, lsn))) if pg.data_dir == DataDirKind::Primary => Ok(Rank {
                timeline: Some(timeline),
                position: lsn,
                priority: self.tags.priority,
            }),
            _ => Err(Ineligible::NotAStandby),
        }
    }

    pub(super) fn eligibility(&self, obs: &Observation) -> Result<(), Ineligible> {
        if self.tags.never_promoted() {
            return Err(Ineligible::NoFailoverTag);
        }
        if obs.vetoed {
            return Err(Ineligible::Vetoed);
        }
        if self.sits_out_until().is_some_and(|until| obs.now < until) {
            return Err(Ineligible::GaveUp);
        }
        if self.promotion_veto_holds(obs.now) {
            return Err(Ineligible::PromotionVetoed);
        }
        let mine = self.my_rank(obs)?;
        let my_system = obs.postgres.probe.map(|p| p.system_id);
        if let (Some(group), Some(mine)) = (obs.db_id.valid().copied(), my_system) {
            if group != mine {
                return Err(Ineligible::WrongSystem);
            }
        }
        if let Some(group) = obs.group_timeline {
            if mine.timeline.map_or(true, |t| t < group) {
                return Err(Ineligible::TimelineBehind);
            }
        }
        // A candidate that received everything the stopped primary wrote needs no `/sync`.
        let handed_to_me = self
            .active_request(obs)
            .is_some_and(|r| r.to == Some(self.me) && r.stopped_lsn.is_some());
        let waited = self
            .takeover
            .lock_free_since
            .map(|since| obs.now.duration_since(since))
            .unwrap_or_default();
        if obs.config.synchronous_mode != SyncMode::Off && !handed_to_me {
            use crate::synchronous::Promotable;
            match crate::synchronous::promotable(&obs.sync, self.me, mine.position, &witnesses(obs))
            {
                Promotable::Yes => {}
                Promotable::Never => return Err(Ineligible::NotSynchronous),
                // Listed standbys may still publish their positions during the election wait;
                // past it, the ones missing are taken to be gone.
                Promotable::Unseen if waited < self.timing.election_wait => {
                    return Err(Ineligible::WaitingForPeers)
                }
                Promotable::Unseen => return Err(Ineligible::QuorumUnseen),
            }
        }
        if let Some(request) = self.active_request(obs) {
            match request.to {
                Some(to) if to != self.me => return Err(Ineligible::RequestNamesOther(to)),
                // Named by the operator: no ranking, but everything the old primary wrote.
                Some(_) => {
                    return match request.stopped_lsn {
                        Some(stopped) if mine.position < stopped => Err(Ineligible::CatchingUp),
                        _ => Ok(()),
                    };
                }
                None => {}
            }
        }
        let max_lag = obs.config.maximum_lag_on_failover_bytes;
        if let Some(last) = self.last_primary_position() {
            if last.bytes_after(mine.position) > max_lag {
                return Err(Ineligible::TooFarBehind);
            }
        }
        for peer in obs.peers.iter().filter(|p| p.state.node != self.me) {
            let Some(rank) = peer_rank(peer, obs, max_lag, self.last_primary_position()) else {
                continue;
            };
            if !peer.fresh && waited < self.timing.election_wait {
                return Err(Ineligible::WaitingForPeers);
            }
            if rank > mine {
                return Err(Ineligible::PeerIsBetter(peer.state.node));
            }
        }
        Ok(())
    }
}

/// The positions of the peers whose state was written after the lock vanished: what a
/// candidate compares itself with under a quorum claim.
fn witnesses(obs: &Observation) -> Vec<crate::synchronous::Witness> {
    obs.peers
        .iter()
        .filter(|p| p.fresh)
        .filter_map(|p| {
            let position = [p.state.wal.receive, p.state.wal.replay]
                .into_iter()
                .flatten()
                .max()?;
            Some(crate::synchronous::Witness {
                node: p.state.node,
                position,
            })
        })
        .collect()
}

/// A peer's rank if it could contend for the lock, else `None`.
pub(super) fn peer_rank(
    peer: &Peer,
    obs: &Observation,
    max_lag: u64,
    last_primary: Option<Lsn>,
) -> Option<Rank> {
    let s = &peer.state;
    if !s.is_healthy() || s.role != Role::Replica || s.tags.never_promoted() {
        return None;
    }
    if obs
        .group_timeline
        .is_some_and(|group| s.timeline < Some(group))
    {
        return None;
    }
    if obs.config.synchronous_mode != SyncMode::Off
        && !crate::synchronous::is_listed(&obs.sync, s.node)
    {
        return None;
    }
    if let (Some(group), Some(theirs)) = (obs.db_id.valid().copied(), s.system_id) {
        if group != theirs {
            return None;
        }
    }
    let position = [s.wal.receive, s.wal.replay].into_iter().flatten().max()?;
    if last_primary.is_some_and(|last| last.bytes_after(position) > max_lag) {
        return None;
    }
    Some(Rank {
        timeline: s.timeline,
        position,
        priority: s.tags.priority,
    })
}
