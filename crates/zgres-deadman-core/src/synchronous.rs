//! Synchronous replication, kept by the primary as a pure state machine: what
//! `synchronous_standby_names` should be and what `/sync/{GROUP}` may claim.
//!
//! `/sync` claims that every commit PostgreSQL acknowledged is on at least `q` of the standbys
//! `S` it lists ([`SyncState::holders`]). PostgreSQL's setting waits, for every new commit,
//! for `k` of the standbys `N` it names: `FIRST k` names exactly the `k` chosen (all of them
//! acknowledge), `ANY k` names every usable standby (any `k` acknowledge). The invariant —
//! the claim holds at every moment — is kept by this order, one step per round:
//! 1. before the setting changes from `N` to `N*`, the claim widens to `(S ∪ N*, min(q, k*))`,
//!    which both the commits acknowledged so far and those acknowledged under either setting
//!    satisfy;
//! 2. the setting changes;
//! 3. once PostgreSQL reports the new setting in force (exactly `N*` are `sync` or `quorum`),
//!    the primary notes its own WAL position `P`; once every node of `N*` has flushed past
//!    `P`, every commit before `P` is on all of them and every later one on `k*` of them, so
//!    the claim narrows to `(N*, k*)`.
//!
//! Who may be promoted follows from the claim ([`promotable`]): a listed standby that sees
//! `|S| - q + 1` listed standbys (itself included) at or behind its own position. Some of
//! them holds each acknowledged commit, so it does too. With `q = |S|` (`FIRST`, and the
//! single standby zgres always kept before) that is any listed standby.
//!
//! With no standby available, `on` turns replication asynchronous (and says so); `strict` sets
//! `*`, so commits wait for any standby to come back.
//!
//! A standby can be connected and streaming yet acknowledge nothing (its WAL receiver stopped,
//! its host hung): commits then wait on it until the walsender times out, a minute by default.
//! In `on` mode a standby whose flushed position has stayed behind a position the primary had
//! `synchronous_ack_timeout` ago counts as unavailable, so `on` degrades within that bound;
//! `strict` keeps waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use zgres_schema::documents::{SyncMethod, SyncMode, SyncState};
use zgres_schema::{Lsn, NodeId};

mod claim;

pub use claim::{is_listed, promotable, standby_name, standby_names, Claim, Promotable, Witness};

/// A standby connected to the primary, from `pg_stat_replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The node (its `application_name` is its node id).
    pub node: NodeId,
    /// `state = 'streaming'`.
    pub streaming: bool,
    /// `sync_state` is `sync` or `quorum`: the setting in force waits for it.
    pub synchronous: bool,
    /// `flush_lsn`.
    pub flush: Option<Lsn>,
}

/// How many standbys acknowledge each commit, and how they are chosen (`/config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledgers {
    /// `synchronous_node_count`.
    pub count: usize,
    /// `synchronous_method`.
    pub method: SyncMethod,
}

impl Default for Acknowledgers {
    fn default() -> Self {
        Acknowledgers {
            count: 1,
            method: SyncMethod::First,
        }
    }
}

/// What the primary sees this round.
#[derive(Debug, Clone)]
pub struct SyncInputs {
    /// The group's mode.
    pub mode: SyncMode,
    /// How many standbys acknowledge, and how.
    pub acknowledgers: Acknowledgers,
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
    /// Write `/sync/{GROUP}` with this primary and this claim.
    Publish(Claim),
    /// Delete `/sync/{GROUP}` (synchronous mode is off).
    Unpublish,
    /// Set `synchronous_standby_names` (and reload).
    SetStandbyNames(String),
    /// Remember the primary's current WAL position as what every chosen standby must reach
    /// (see [`SyncKeeper::confirming`]).
    Confirm,
}

/// The primary's synchronous-replication bookkeeping.
#[derive(Debug, Default)]
pub struct SyncKeeper {
    /// The standbys being confirmed, and the position each must reach.
    pending: Option<(BTreeSet<NodeId>, Lsn)>,
    /// What [`SyncStep::Confirm`] was asked for: the standbys the position is for.
    confirm_for: BTreeSet<NodeId>,
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
    /// Since when the claim waits to be narrowed (the new setting to be in force, or the
    /// standbys to catch up): the next rounds come sooner meanwhile, for a while.
    settling_since: Option<Instant>,
}

/// How long after a change of standbys the primary looks again every few tens of
/// milliseconds (not every loop interval) for the claim to be narrowed: a new primary's
/// standbys reconnect within a fraction of a second, and until the claim is narrowed fewer
/// standbys (or none) may be promoted.
pub const SETTLE_POLL_FOR: Duration = Duration::from_secs(5);

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

    /// Records the position the standbys of the last [`SyncStep::Confirm`] must reach.
    pub fn confirming(&mut self, position: Lsn) {
        self.pending = Some((std::mem::take(&mut self.confirm_for), position));
    }

    /// Whether the claim waits to be narrowed and began waiting less than
    /// [`SETTLE_POLL_FOR`] before `now`: the shell then runs its next round soon.
    pub fn settling(&self, now: Instant) -> bool {
        self.settling_since
            .is_some_and(|since| now.saturating_duration_since(since) < SETTLE_POLL_FOR)
    }

    /// Notes that the claim waits to be narrowed (from the round's `now`, when known).
    fn wait_to_settle(&mut self, inputs: &SyncInputs) -> Option<SyncStep> {
        if let Some(p) = inputs.progress {
            self.settling_since.get_or_insert(p.now);
        }
        None
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
            self.settling_since = None;
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
        // our commits: start from a claim of nothing.
        let published = match &inputs.published {
            Some(doc) if doc.primary == me && self.owned => Claim::of(doc),
            _ => return Some(SyncStep::Publish(Claim::nothing())),
        };
        self.track_acknowledgements(inputs);
        // `on` does not wait on a standby that stopped acknowledging; `strict` does.
        self.stalled = match inputs.mode {
            SyncMode::On => self.stalled(inputs.progress),
            _ => BTreeSet::new(),
        };
        let target = self.target(inputs, &published);
        self.degraded = target.standbys.is_empty();
        let wanted_names = match (self.degraded, inputs.mode) {
            (true, SyncMode::Strict) => "*".to_owned(),
            (true, _) => String::new(),
            (false, _) => standby_names(inputs.acknowledgers.method, &target),
        };
        // 1. Widen the claim to what both settings keep true, before the setting changes.
        if inputs.standby_names != wanted_names {
            self.pending = None;
            let widened = published.widened_for(&target);
            if widened != published {
                return Some(SyncStep::Publish(widened));
            }
            // 2. Change the setting.
            return Some(SyncStep::SetStandbyNames(wanted_names));
        }
        // 3. Narrow the claim once the new setting is in force and everyone caught up.
        if published == target {
            self.pending = None;
            self.settling_since = None;
            return None;
        }
        if target.standbys.is_empty() {
            // Degraded: nothing to confirm; the claim of nothing is always true.
            return Some(SyncStep::Publish(target));
        }
        let in_force = inputs
            .connected
            .iter()
            .all(|c| c.synchronous == target.standbys.contains(&c.node))
            && target.standbys.iter().all(|n| {
                inputs
                    .connected
                    .iter()
                    .any(|c| c.node == *n && c.synchronous)
            });
        if !in_force {
            self.pending = None;
            return self.wait_to_settle(inputs);
        }
        match &self.pending {
            Some((set, at)) if *set == target.standbys => {
                let caught_up = target.standbys.iter().all(|n| {
                    inputs
                        .connected
                        .iter()
                        .any(|c| c.node == *n && c.flush.is_some_and(|f| f >= *at))
                });
                if caught_up {
                    self.pending = None;
                    Some(SyncStep::Publish(target))
                } else {
                    self.wait_to_settle(inputs)
                }
            }
            _ => {
                self.confirm_for = target.standbys.clone();
                Some(SyncStep::Confirm)
            }
        }
    }

    /// The claim wanted: the standbys PostgreSQL should wait for and how many of them.
    fn target(&self, inputs: &SyncInputs, published: &Claim) -> Claim {
        let stalled = &self.stalled;
        let mut usable: Vec<&Connected> = inputs
            .connected
            .iter()
            .filter(|c| {
                c.streaming && inputs.allowed.contains(&c.node) && !stalled.contains(&c.node)
            })
            .collect();
        let count = inputs.acknowledgers.count.max(1);
        match inputs.acknowledgers.method {
            SyncMethod::First => {
                // Stick to the standbys in /sync, then those PostgreSQL already waits for,
                // then the most advanced: changing costs rounds in which fewer can be
                // promoted.
                usable.sort_by_key(|c| {
                    (
                        std::cmp::Reverse(published.standbys.contains(&c.node)),
                        std::cmp::Reverse(c.synchronous),
                        std::cmp::Reverse(c.flush),
                        c.node,
                    )
                });
                let standbys: BTreeSet<NodeId> =
                    usable.iter().take(count).map(|c| c.node).collect();
                Claim::all_of(standbys)
            }
            SyncMethod::Any => {
                let standbys: BTreeSet<NodeId> = usable.iter().map(|c| c.node).collect();
                let holders = count.min(standbys.len());
                Claim { standbys, holders }
            }
        }
    }
}

#[cfg(test)]
mod tests;
