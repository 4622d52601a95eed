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

    /// While the standby has been behind the primary's timeline without moving for a fifth
    /// of [`STUCK_AFTER`] (not just switching timelines after a failover), what its state
    /// says about it, so the operator sees it before and while it is rewound.
    pub(super) fn warning(&self, now: Instant) -> Option<String> {
        let (position, since) = self.stuck?;
        // No running count in the text: the state is republished only when it changes.
        (now.duration_since(since) >= STUCK_AFTER / 5).then(|| {
            format!(
                "cannot follow the primary's timeline: behind it at {position} and not moving; \
                 it is stopped and rewound after {} s without progress",
                STUCK_AFTER.as_secs()
            )
        })
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

    #[test]
    fn a_standby_stuck_behind_says_so_only_after_a_moment() {
        let start = Instant::now();
        let mut watch = FollowWatch::default();
        let mine = Some((tl(1), Lsn(1000)));
        assert!(!watch.is_stuck(start, mine, Some(tl(2))));
        assert_eq!(
            watch.warning(start + STUCK_AFTER / 10),
            None,
            "switching timelines"
        );
        let said = watch.warning(start + STUCK_AFTER / 2).unwrap();
        assert!(
            said.contains("cannot follow the primary's timeline"),
            "{said}"
        );
        assert!(!watch.is_stuck(start, Some((tl(2), Lsn(1000))), Some(tl(2))));
        assert_eq!(watch.warning(start + STUCK_AFTER / 2), None, "caught up");
    }

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
