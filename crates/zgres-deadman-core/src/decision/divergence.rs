//! A running standby that cannot follow the primary: its timeline is behind the primary's and
//! its position has not moved for [`STUCK_AFTER`]. That is what a standby looks like when it
//! received WAL on the old timeline past the point where the new primary's timeline forked
//! (it was ahead of the replica that was promoted): PostgreSQL then refuses the new timeline
//! and retries for ever. It is stopped and rewound to the primary (pg_rewind finds the fork;
//! a standby that was not diverged after all is simply restarted).
//!
//! A lagging standby that still streams moves and is left alone, however far behind.
//!
//! When the group's history shows where the next timeline began, a diverged standby is known
//! at once, without waiting: it is on an older timeline with WAL past that point
//! ([`FollowWatch::has_diverged`]). The wait remains for what the history cannot show (an
//! unreadable history, a position recorded past the true fork).

use std::time::{Duration, Instant};

use zgres_schema::{Lsn, Timeline};

use super::observation::TimelineStart;

/// How long a standby behind the primary's timeline may make no progress before it is rewound.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

/// Tracks whether the local standby follows the primary.
#[derive(Debug, Default)]
pub(super) struct FollowWatch {
    /// The position it has been at, behind the primary's timeline, and since when.
    stuck: Option<(Lsn, Instant)>,
    /// It was stopped to be rewound: the next start is a rewind.
    pub(super) rewind_wanted: bool,
    /// That rewind was asked for and not reported failed (yet).
    rewind_asked: bool,
    /// Where the history last showed it diverged.
    diverged_at: Option<(Timeline, Lsn)>,
    /// Where it was when a rewind the history called for was carried out (asked for and not
    /// reported failed). The history is not acted on twice for the same place: a recorded
    /// start before the true fork (the new primary replayed a little more after it was
    /// probed) would otherwise stop a standby that pg_rewind found in order, round after round.
    rewound_from: Option<(Timeline, Lsn)>,
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

    /// The rewind `rewind_wanted` called for is being asked for.
    pub(super) fn rewinding(&mut self) {
        self.rewind_wanted = false;
        self.rewind_asked = true;
        self.rewound_from = self.diverged_at.take();
    }

    /// The standby is being started: any rewind asked for before it succeeded.
    pub(super) fn starting(&mut self) {
        self.rewind_asked = false;
    }

    /// The rewind asked for failed: the standby, which still cannot follow, is not started
    /// as it is but rewound again once the retry delay passed. Found by the simulator
    /// (seed 5616): it was started again, and took another 10 s without progress, restarted
    /// by each primary change, to be caught.
    pub(super) fn rewind_failed(&mut self) {
        if std::mem::take(&mut self.rewind_asked) {
            self.rewind_wanted = true;
            self.diverged_at = self.rewound_from.take();
        }
    }

    /// Whether the running standby at `mine` (timeline, position) holds WAL past the point
    /// where the next timeline began, as `starts` records it: it can then never follow, and
    /// is rewound at once. Once per position: see `diverged_at`.
    pub(super) fn has_diverged(
        &mut self,
        mine: Option<(Timeline, Lsn)>,
        starts: &[TimelineStart],
    ) -> bool {
        let Some((timeline, position)) = mine else {
            return false;
        };
        let next = starts
            .iter()
            .find(|s| s.timeline.get() == timeline.get().saturating_add(1));
        let diverged = next.is_some_and(|next| position > next.lsn);
        if !diverged || self.rewound_from == mine {
            return false;
        }
        self.diverged_at = mine;
        true
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

    fn starts(list: &[(u32, u64)]) -> Vec<TimelineStart> {
        list.iter()
            .map(|&(t, lsn)| TimelineStart {
                timeline: tl(t),
                lsn: Lsn(lsn),
            })
            .collect()
    }

    #[test]
    fn a_standby_past_the_next_timelines_start_has_diverged_at_once() {
        let history = starts(&[(1, 0), (2, 100), (3, 250)]);
        let mut w = FollowWatch::default();
        assert!(
            w.has_diverged(Some((tl(1), Lsn(120))), &history),
            "timeline 2 began at 100: WAL on 1 up to 120 is not on it"
        );
        w.rewinding();
        w.rewind_failed();
        assert!(
            w.has_diverged(Some((tl(1), Lsn(120))), &history),
            "a failed rewind changed nothing: still diverged"
        );
        w.rewinding();
        w.starting();
        assert!(
            !w.has_diverged(Some((tl(1), Lsn(120))), &history),
            "not twice at the same position once rewound (pg_rewind found it in order)"
        );
        let mut w = FollowWatch::default();
        assert!(
            !w.has_diverged(Some((tl(1), Lsn(100))), &history),
            "at the fork: follows"
        );
        assert!(
            !w.has_diverged(Some((tl(1), Lsn(90))), &history),
            "before it: follows"
        );
        assert!(w.has_diverged(Some((tl(2), Lsn(251))), &history));
        assert!(
            !w.has_diverged(Some((tl(3), Lsn(900))), &history),
            "on the newest timeline: nothing to fork from"
        );
        assert!(!w.has_diverged(None, &history));
        assert!(
            !FollowWatch::default().has_diverged(Some((tl(1), Lsn(120))), &[]),
            "no history read: the wait decides"
        );
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
