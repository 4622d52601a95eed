//! What `/sync` claims, how PostgreSQL's setting spells the standbys it waits for, and who
//! may be promoted under a claim.

use std::collections::BTreeSet;

use zgres_schema::documents::{SyncMethod, SyncState};
use zgres_schema::{Fetched, Lsn, NodeId};

/// "Every acknowledged commit is on at least `holders` of `standbys`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The standbys.
    pub standbys: BTreeSet<NodeId>,
    /// How many of them hold each acknowledged commit (at most `standbys.len()`).
    pub holders: usize,
}

impl Claim {
    /// The claim of nothing: always true, and nobody may be promoted under it.
    pub fn nothing() -> Claim {
        Claim {
            standbys: BTreeSet::new(),
            holders: 0,
        }
    }

    /// Every acknowledged commit is on all of `standbys`.
    pub fn all_of(standbys: BTreeSet<NodeId>) -> Claim {
        let holders = standbys.len();
        Claim { standbys, holders }
    }

    /// What a `/sync` document claims.
    pub fn of(doc: &SyncState) -> Claim {
        Claim {
            standbys: doc.standbys.clone(),
            holders: doc.holders(),
        }
    }

    /// The claim true both of the commits acknowledged under this one and of those
    /// acknowledged under a setting that waits for `target`: every standby of either, and the
    /// smaller number of holders.
    pub fn widened_for(&self, target: &Claim) -> Claim {
        Claim {
            standbys: self.standbys.union(&target.standbys).copied().collect(),
            holders: self.holders.min(target.holders),
        }
    }

    /// The `/sync` document of `primary` for this claim.
    pub fn document(&self, primary: NodeId) -> SyncState {
        SyncState {
            primary,
            quorum: Some(u32::try_from(self.holders).unwrap_or(u32::MAX)),
            standbys: self.standbys.clone(),
        }
    }
}

/// The `synchronous_standby_names` value that waits for exactly `node`.
pub fn standby_name(node: NodeId) -> String {
    format!("\"{node}\"")
}

/// The `synchronous_standby_names` value that makes every new commit wait for `claim`:
/// `FIRST k` naming exactly the `k` standbys (one standby alone by its quoted name, as
/// before), or `ANY k` naming them all. Node ids are `IP:PORT`, quoted: nothing to escape.
pub fn standby_names(method: SyncMethod, claim: &Claim) -> String {
    let list = claim
        .standbys
        .iter()
        .map(|n| standby_name(*n))
        .collect::<Vec<_>>()
        .join(",");
    match method {
        SyncMethod::First if claim.standbys.len() == 1 => list,
        SyncMethod::First => format!("FIRST {} ({list})", claim.standbys.len()),
        SyncMethod::Any => format!("ANY {} ({list})", claim.holders),
    }
}

/// A peer's published position, from a state written after the lock vanished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witness {
    /// The peer.
    pub node: NodeId,
    /// The furthest WAL it has (received or replayed).
    pub position: Lsn,
}

/// Whether a node may be promoted under `/sync` (see [`promotable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotable {
    /// It holds every acknowledged commit.
    Yes,
    /// Not under this `/sync`, whoever publishes what: it is not listed, the claim says
    /// nothing of it (no holders), or `/sync` is unreadable.
    Never,
    /// Listed, but too few of the listed standbys are seen at or behind it yet.
    Unseen,
}

/// Whether `node`, at `position`, may be promoted under synchronous replication, given
/// `/sync/{GROUP}` and the `witnesses` (fresh peer positions):
/// - anyone while `/sync` does not exist (no commit waited for a standby yet), nobody while
///   it is unreadable (it may have named anyone);
/// - its primary;
/// - a listed standby that sees, itself included, `|S| - q + 1` listed standbys at or behind
///   its position: each acknowledged commit is on `q` of the `|S|`, so on one of those, and
///   WAL is a sequence, so on `node` too. With `q = |S|` that is `node` alone; with `q = 0`
///   nobody.
pub fn promotable(
    sync: &Fetched<SyncState>,
    node: NodeId,
    position: Lsn,
    witnesses: &[Witness],
) -> Promotable {
    let s = match sync {
        Fetched::Absent => return Promotable::Yes,
        Fetched::Unreadable(_) => return Promotable::Never,
        Fetched::Valid(s) => s,
    };
    if s.primary == node {
        return Promotable::Yes;
    }
    if !s.standbys.contains(&node) || s.holders() == 0 {
        return Promotable::Never;
    }
    let needed = s.standbys.len() + 1 - s.holders();
    let behind_me = witnesses
        .iter()
        .filter(|w| w.node != node && s.standbys.contains(&w.node) && w.position <= position)
        .map(|w| w.node)
        .collect::<BTreeSet<_>>()
        .len();
    if 1 + behind_me >= needed {
        Promotable::Yes
    } else {
        Promotable::Unseen
    }
}

/// Whether `/sync` lists `node` (or names it as its primary): only such a node can ever be
/// promoted under it, so only it ranks against candidates.
pub fn is_listed(sync: &Fetched<SyncState>, node: NodeId) -> bool {
    match sync {
        Fetched::Absent => true,
        Fetched::Unreadable(_) => false,
        Fetched::Valid(s) => s.primary == node || s.standbys.contains(&node),
    }
}
