//! A running standby that cannot follow the primary: its timeline is behind the primary's and
//! its position has not moved for [`STUCK_AFTER`]. That is what a standby looks like when it
//! received WAL on the old timeline past the point where the new primary's timeline forked
//! (it was ahead of the replica that was promoted): PostgreSQL then refuses the new timeline
//! and retries for ever. It is stopped and rewound to the primary (pg_rewind finds the fork;
//! a standby that was not diverged after all is simply restarted).
//!
//! A lagging standby that still streams moves and is left alone, however far behind.

use std::time::{Duration, Instant};

use zgres_schema::{Lsn, Timeline};

/// How long a standby behind the primary's timeline may make no progress before it is rewound.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

/// Tracks whether the local standby follows the primary.
#[derive(Debug, Default)]
pub(super) struct FollowWatch {
    /// The position it has been at, behind the primary's timeline, and since when.
    stuck: Option<(Lsn, Instant)>,
    /// It was stopped to be rewound: the next start is a rewind.
    pub(super) rewind_wanted: bool,
}

impl FollowWatch {
    /// Observes a running standby at `mine` (its timeline and position) while the primary
    /// publishes `primary_timeline`; true once it has been stuck behind for [`STUCK_AFTER`].
    pub(super) fn is_stuck(
        &mut self,
        now: Instant,
        mine: Option<(Timeline, Lsn)>,
        primary_timeline: Option<Timeline>,
    ) -> bool {
        let behind = match (mine, primary_timeline) {
            (Some((timeline, position)), Some(primary)) if timeline < primary => Some(position),
            _ => None,
        };
        match (behind, self.stuck) {
            (None, _) => {
                self.stuck = None;
                false
            }
            (Some(position), Some((at, since))) if position == at => {
                now.duration_since(since) >= STUCK_AFTER
            }
            (Some(position), _) => {
                self.stuck = Some((position, now));
                false
            }
        }
    }

    /// When the standby will count as stuck if nothing changes.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.stuck.map(|(_, since)| since + STUCK_AFTER)
    }

    /// Forgets the observations (the standby stopped or moved on).
    pub(super) fn forget(&mut self) {
        self.stuck = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(t: u32) -> Timeline {
        Timeline::new(t).unwrap()
    }

    #[test]
    fn only_a_standby_behind_the_primary_timeline_that_does_not_move_is_stuck() {
        let t = Instant::now();
        let mut w = FollowWatch::default();
        // Behind, not moving: stuck after STUCK_AFTER, not before.
        assert!(!w.is_stuck(t, Some((tl(1), Lsn(50))), Some(tl(2))));
        assert!(!w.is_stuck(t + STUCK_AFTER / 2, Some((tl(1), Lsn(50))), Some(tl(2))));
        assert_eq!(w.deadline(), Some(t + STUCK_AFTER));
        assert!(w.is_stuck(t + STUCK_AFTER, Some((tl(1), Lsn(50))), Some(tl(2))));
        // Moving: a lagging standby catching up, the clock starts again.
        let mut w = FollowWatch::default();
        for i in 0..10 {
            let now = t + STUCK_AFTER * i;
            assert!(!w.is_stuck(now, Some((tl(1), Lsn(50 + u64::from(i)))), Some(tl(2))));
        }
        // On the primary's timeline: never.
        let mut w = FollowWatch::default();
        assert!(!w.is_stuck(t, Some((tl(2), Lsn(50))), Some(tl(2))));
        assert!(!w.is_stuck(t + STUCK_AFTER * 3, Some((tl(2), Lsn(50))), Some(tl(2))));
        assert_eq!(w.deadline(), None);
    }
}
