//! The checker: invariants stated over the simulation's ground truth (which PostgreSQL accepts
//! writes when, which writes were acknowledged, what ZooKeeper recorded), never over what the
//! deadmen believe, and sharing no code with the decision core.

use zgres_schema::{Lsn, Timeline};

use crate::faults::Kind;
use crate::postgres::{Segment, Wal};

/// An acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The node that acknowledged it.
    pub node: usize,
    /// The timeline segment it was written on.
    pub segment: Segment,
    /// Its position.
    pub lsn: Lsn,
    /// When (real ms).
    pub at: u64,
}

/// What a schedule broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two PostgreSQL servers accepted writes at the same moment.
    TwoWritablePrimaries {
        /// When.
        at: u64,
        /// Which nodes.
        nodes: Vec<usize>,
    },
    /// `/history` recorded a timeline not above the one before.
    HistoryNotIncreasing {
        /// The timelines in recorded order.
        timelines: Vec<u32>,
    },
    /// In synchronous mode, acknowledged commits the final primary does not have.
    LostAcknowledgedWrites {
        /// How many.
        count: usize,
        /// The first of them.
        first: Write,
    },
    /// After a fault that ended while no other was active, the group took longer than the
    /// bound to be whole again (issue 15's recovery bound: two session timeouts; the
    /// simulated pg_rewind takes no time).
    SlowRecovery {
        /// The fault.
        kind: Kind,
        /// From its end to the group whole again.
        after_ms: u64,
        /// The bound.
        bound_ms: u64,
    },
    /// The group had not come back to exactly one writable primary, the lock holder, with every
    /// other node streaming from it, at the end of the healing time.
    NotRecovered {
        /// What it looked like.
        state: String,
    },
}

/// Checks that at most one node is writable at `at`.
pub fn single_writer(at: u64, writable: &[usize]) -> Option<Violation> {
    (writable.len() > 1).then(|| Violation::TwoWritablePrimaries {
        at,
        nodes: writable.to_vec(),
    })
}

/// Checks every measured recovery (fault kind, ms from its end to the group whole) against
/// `bound_ms`; the slowest one over it, if any.
pub fn recovered_in_time(times: &[(Kind, u64)], bound_ms: u64) -> Option<Violation> {
    times
        .iter()
        .filter(|(_, ms)| *ms > bound_ms)
        .max_by_key(|(_, ms)| *ms)
        .map(|&(kind, after_ms)| Violation::SlowRecovery {
            kind,
            after_ms,
            bound_ms,
        })
}

/// Checks that `/history` timelines strictly increase.
pub fn history_increases(timelines: &[Timeline]) -> Option<Violation> {
    let increasing = timelines.windows(2).all(|w| w[0] < w[1]);
    (!increasing).then(|| Violation::HistoryNotIncreasing {
        timelines: timelines.iter().map(|t| t.get()).collect(),
    })
}

/// The acknowledged writes that `survivor` (the final primary's WAL) does not hold.
pub fn lost<'a>(writes: &'a [Write], survivor: &Wal) -> Vec<&'a Write> {
    writes
        .iter()
        .filter(|w| !survivor.holds(&w.segment, w.lsn))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_fail_when_they_should() {
        assert!(single_writer(5, &[0]).is_none());
        assert!(single_writer(5, &[0, 2]).is_some());
        let tl = |t| Timeline::new(t).unwrap();
        assert!(history_increases(&[tl(2), tl(3)]).is_none());
        assert!(recovered_in_time(&[(Kind::Pause, 8_000)], 8_000).is_none());
        assert_eq!(
            recovered_in_time(&[(Kind::Pause, 8_001), (Kind::KillNode, 9_000)], 8_000),
            Some(Violation::SlowRecovery {
                kind: Kind::KillNode,
                after_ms: 9_000,
                bound_ms: 8_000
            })
        );
        assert!(history_increases(&[tl(3), tl(3)]).is_some());
    }
}
