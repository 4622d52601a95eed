//! Synchronous replication, kept by the primary as a pure state machine: what
//! `synchronous_standby_names` should be and what `/sync/{GROUP}` may claim.
//!
//! The invariant: every commit PostgreSQL acknowledged is on every node `/sync` lists (only
//! those, and the primary itself, may be promoted). It holds because the steps come in this
//! order, one per round:
//! - a node leaves `/sync` *before* `synchronous_standby_names` stops waiting for it;
//! - a node joins `/sync` only *after* `synchronous_standby_names` waits for it, PostgreSQL
//!   reports it as `sync`, and its flushed position has reached the primary's position taken
//!   once it was `sync` (so commits acknowledged before it became synchronous are on it too).
//!
//! One synchronous standby is kept (the one already in `/sync` while it streams, else the one
//! with the most WAL). With none available, `on` turns replication asynchronous (and says so);
//! `strict` sets `*`, so commits wait for any standby to come back.
//!
//! A standby can be connected and streaming yet acknowledge nothing (its WAL receiver stopped,
//! its host hung): commits then wait on it until the walsender times out, a minute by default.
//! In `on` mode a standby whose flushed position has stayed behind a position the primary had
//! `synchronous_ack_timeout` ago counts as unavailable, so `on` degrades within that bound;
//! `strict` keeps waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use zgres_schema::documents::{SyncMode, SyncState};
use zgres_schema::{Fetched, Lsn, NodeId};

/// A standby connected to the primary, from `pg_stat_replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The node (its `application_name` is its node id).
    pub node: NodeId,
    /// `state = 'streaming'`.
    pub streaming: bool,
    /// `sync_state = 'sync'`.
    pub synchronous: bool,
    /// `flush_lsn`.
    pub flush: Option<Lsn>,
}

/// What the primary sees this round.
#[derive(Debug, Clone)]
pub struct SyncInputs {
    /// The group's mode.
    pub mode: SyncMode,
    /// This node (the primary).
    pub me: NodeId,
    /// `/sync/{GROUP}` as it is now.
    pub published: Option<SyncState>,
    /// The current `synchronous_standby_names`.
    pub standby_names: String,
    /// Connected standbys.
    pub connected: Vec<Connected>,
    /// Nodes allowed to be synchronous (healthy replicas without the `nosync` tag).
    pub allowed: BTreeSet<NodeId>,
    /// The primary's WAL progress, to notice a standby that stopped acknowledging (`None`:
    /// not checked).
    pub progress: Option<Progress>,
}

/// The primary's WAL position at a moment, and how long a standby may stay behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Now, on the monotonic clock.
    pub now: Instant,
    /// `pg_current_wal_lsn()`.
    pub position: Lsn,
    /// How long a standby may stay behind a position before it counts as not acknowledging.
    pub ack_timeout: Duration,
}

/// One step towards the wanted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// Write `/sync/{GROUP}` with this primary and these standbys.
    Publish(BTreeSet<NodeId>),
    /// Delete `/sync/{GROUP}` (synchronous mode is off).
    Unpublish,
    /// Set `synchronous_standby_names` (and reload).
    SetStandbyNames(String),
    /// Remember the primary's current WAL position as what `node` must reach.
    Confirm(NodeId),
}

/// The `synchronous_standby_names` value that waits for exactly `node`.
pub fn standby_name(node: NodeId) -> String {
    format!("\"{node}\"")
}

/// The primary's synchronous-replication bookkeeping.
#[derive(Debug, Default)]
pub struct SyncKeeper {
    /// A standby being confirmed, and the position it must reach.
    pending: Option<(NodeId, Lsn)>,
    degraded: bool,
    /// `/sync` was written by this keeper (this term as primary): only then does its content
    /// describe our commits.
    owned: bool,
    /// Synchronous mode is off and nothing of it is left: no need to look again while off.
    off_settled: bool,
    /// Standbys behind the primary: since when, and the primary position they must reach.
    behind: BTreeMap<NodeId, (Instant, Lsn)>,
    /// Standbys not waited for at the last step because they stopped acknowledging.
    stalled: BTreeSet<NodeId>,
}

impl SyncKeeper {
    /// Whether synchronous mode was off and fully undone at the last step: while the mode stays
    /// off there is nothing to read or change.
    pub fn off_settled(&self) -> bool {
        self.off_settled
    }

    /// Records that `step` was carried out.
    pub fn done(&mut self, step: &SyncStep) {
        match step {
            SyncStep::Publish(_) => self.owned = true,
            SyncStep::Unpublish => self.owned = false,
            _ => {}
        }
    }

    /// Records the position `node` must reach (after a [`SyncStep::Confirm`]).
    pub fn confirming(&mut self, node: NodeId, position: Lsn) {
        self.pending = Some((node, position));
    }

    /// Whether no synchronous standby is in force (commits are asynchronous in `on` mode, or
    /// wait in `strict` mode).
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// Standbys left out at the last step in `on` mode because they stopped acknowledging.
    pub fn stalled_nodes(&self) -> &BTreeSet<NodeId> {
        &self.stalled
    }

    /// Standbys that have stayed behind a primary position for longer than the ack timeout.
    pub fn stalled(&self, progress: Option<Progress>) -> BTreeSet<NodeId> {
        let Some(p) = progress else {
            return BTreeSet::new();
        };
        self.behind
            .iter()
            .filter(|(_, (since, _))| p.now.saturating_duration_since(*since) >= p.ack_timeout)
            .map(|(node, _)| *node)
            .collect()
    }

    /// Updates which standbys are behind, from their flushed positions.
    fn track_acknowledgements(&mut self, inputs: &SyncInputs) {
        let Some(p) = inputs.progress else {
            self.behind.clear();
            return;
        };
        self.behind
            .retain(|node, _| inputs.connected.iter().any(|c| c.node == *node));
        for c in &inputs.connected {
            let flush = c.flush.unwrap_or(Lsn::ZERO);
            match self.behind.get(&c.node) {
                // Still short of what it was behind on: the clock keeps running.
                Some((_, target)) if flush < *target => {}
                // Caught up with that position: behind only on what came since, from now.
                _ if flush < p.position => {
                    self.behind.insert(c.node, (p.now, p.position));
                }
                _ => {
                    self.behind.remove(&c.node);
                }
            }
        }
    }

    /// The next step, or `None` when everything is as wanted.
    pub fn step(&mut self, inputs: &SyncInputs) -> Option<SyncStep> {
        let me = inputs.me;
        self.off_settled = false;
        if inputs.mode == SyncMode::Off {
            self.pending = None;
            self.degraded = false;
            if inputs.published.is_some() || self.owned {
                return Some(SyncStep::Unpublish);
            }
            if !inputs.standby_names.is_empty() {
                return Some(SyncStep::SetStandbyNames(String::new()));
            }
            self.off_settled = true;
            return None;
        }
        // A document of a previous primary (or of an earlier term of ours) says nothing about
        // our commits: start empty.
        let published: BTreeSet<NodeId> = match &inputs.published {
            Some(doc) if doc.primary == me && self.owned => doc.standbys.clone(),
            _ => return Some(SyncStep::Publish(BTreeSet::new())),
        };
        self.track_acknowledgements(inputs);
        // `on` does not wait on a standby that stopped acknowledging; `strict` does.
        self.stalled = match inputs.mode {
            SyncMode::On => self.stalled(inputs.progress),
            _ => BTreeSet::new(),
        };
        let stalled = &self.stalled;
        let usable = |c: &&Connected| {
            c.streaming && inputs.allowed.contains(&c.node) && !stalled.contains(&c.node)
        };
        let usable: Vec<&Connected> = inputs.connected.iter().filter(usable).collect();
        // Stick to the standby in /sync, else the one PostgreSQL already waits for, else the
        // one with the most WAL: changing costs rounds in which nobody can be promoted.
        let desired = usable
            .iter()
            .find(|c| published.contains(&c.node))
            .or_else(|| {
                usable
                    .iter()
                    .find(|c| standby_name(c.node) == inputs.standby_names)
            })
            .or_else(|| {
                usable
                    .iter()
                    .max_by_key(|c| (c.flush, std::cmp::Reverse(c.node)))
            })
            .map(|c| c.node);

        // 1. Shrink /sync before anything stops waiting for the removed node.
        let kept: BTreeSet<NodeId> = published
            .iter()
            .copied()
            .filter(|n| Some(*n) == desired)
            .collect();
        if kept != published {
            return Some(SyncStep::Publish(kept));
        }
        // 2. Make PostgreSQL wait for the desired standby (or degrade).
        let wanted_names = match (desired, inputs.mode) {
            (Some(node), _) => standby_name(node),
            (None, SyncMode::Strict) => "*".to_owned(),
            (None, _) => String::new(),
        };
        self.degraded = desired.is_none();
        if inputs.standby_names != wanted_names {
            self.pending = None;
            return Some(SyncStep::SetStandbyNames(wanted_names));
        }
        // 3. Grow /sync once the standby is synchronous and has caught up.
        let node = desired?;
        if published.contains(&node) {
            return None;
        }
        let connected = usable.iter().find(|c| c.node == node)?;
        if !connected.synchronous {
            self.pending = None;
            return None;
        }
        match self.pending {
            Some((pending, at)) if pending == node => {
                if connected.flush.is_some_and(|flush| flush >= at) {
                    self.pending = None;
                    Some(SyncStep::Publish(BTreeSet::from([node])))
                } else {
                    None
                }
            }
            _ => Some(SyncStep::Confirm(node)),
        }
    }
}

/// Whether `node` may be promoted under synchronous replication, given `/sync/{GROUP}`:
/// anyone while it does not exist (no commit waited for a standby yet), its primary and
/// standbys while it is valid, and nobody while it is unreadable (it may have named anyone).
pub fn may_promote(sync: &Fetched<SyncState>, node: NodeId) -> bool {
    match sync {
        Fetched::Absent => true,
        Fetched::Valid(s) => s.primary == node || s.standbys.contains(&node),
        Fetched::Unreadable(_) => false,
    }
}
#[cfg(test)]
mod tests;
