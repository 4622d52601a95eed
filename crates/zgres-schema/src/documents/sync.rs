//! `/sync/{GROUP}`: what the primary claims of its synchronous standbys.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::codec::Document;
use crate::ids::NodeId;

/// `/sync/{GROUP}`: the synchronous standby set in force. The claim it makes: every commit the
/// primary acknowledged is on at least `quorum` of `standbys` (on all of them when `quorum` is
/// absent). A standby may be promoted only when enough of the set is seen to be sure it has
/// every such commit (see `zgres_deadman_core::synchronous::promotable`).
///
/// Version 1 (no `quorum`: all of `standbys`) is still written when it says the same, so
/// older deadmen keep reading it; a document with a `quorum` is version 2, which they refuse
/// (and then promote nobody) rather than misread as "any listed standby".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSyncState", into = "RawSyncState")]
pub struct SyncState {
    /// The primary that set it.
    pub primary: NodeId,
    /// Standbys that hold every acknowledged commit, `quorum` of them at least.
    pub standbys: BTreeSet<NodeId>,
    /// How many of `standbys` hold each acknowledged commit, when fewer than all of them.
    pub quorum: Option<u32>,
}

impl SyncState {
    /// A claim that every acknowledged commit is on all of `standbys`.
    pub fn all_of(primary: NodeId, standbys: BTreeSet<NodeId>) -> Self {
        SyncState {
            primary,
            standbys,
            quorum: None,
        }
    }

    /// How many of `standbys` hold each acknowledged commit.
    pub fn holders(&self) -> usize {
        self.quorum
            .map_or(self.standbys.len(), |q| q as usize)
            .min(self.standbys.len())
    }
}

/// `/sync` as JSON spells it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawSyncState {
    primary: NodeId,
    standbys: BTreeSet<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quorum: Option<u32>,
}

impl TryFrom<RawSyncState> for SyncState {
    type Error = String;
    fn try_from(raw: RawSyncState) -> Result<Self, Self::Error> {
        match raw.quorum {
            Some(q) if q as usize > raw.standbys.len() => Err(format!(
                "quorum {q} is more than the {} standbys listed",
                raw.standbys.len()
            )),
            // "All of them" is spelt without a quorum, so it stays readable to version 1.
            quorum => Ok(SyncState {
                primary: raw.primary,
                quorum: quorum.filter(|q| *q as usize != raw.standbys.len()),
                standbys: raw.standbys,
            }),
        }
    }
}

impl From<SyncState> for RawSyncState {
    fn from(state: SyncState) -> Self {
        RawSyncState {
            primary: state.primary,
            quorum: state.quorum.filter(|q| *q as usize != state.standbys.len()),
            standbys: state.standbys,
        }
    }
}

impl Document for SyncState {
    const VERSION: u64 = 2;
    const OLDEST_READ: u64 = 1;

    fn version(&self) -> u64 {
        match self.quorum {
            Some(q) if q as usize != self.standbys.len() => 2,
            _ => 1,
        }
    }
}
