//! A standby whose next WAL is gone from the primary: its position is before the oldest WAL
//! segment the primary still keeps, and has not moved for [`MISSING_WAL_AFTER`]. Without a
//! replication slot the primary recycles WAL once `wal_keep_size` is exceeded, so a standby
//! stopped for long enough can never stream again: PostgreSQL retries for ever and logs
//! `requested WAL segment ... has already been removed` on the primary.
//!
//! The wait tells that apart from a standby that was just started: it first replays the WAL
//! it still has in its own `pg_wal` (its position moves), which may reach past the primary's
//! oldest segment. Once confirmed, the standby is wiped and cloned again when
//! `provisioning.reclone_on_missing_wal` allows it, and otherwise reported as a problem.

use std::time::{Duration, Instant};

use zgres_schema::Lsn;

/// How long a standby's position may stay before the primary's oldest kept WAL without
/// moving before the WAL it needs is declared gone.
pub const MISSING_WAL_AFTER: Duration = Duration::from_secs(10);

/// The WAL a standby needs, and where the primary's kept WAL begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingWal {
    /// Where the standby is (it needs the WAL from here on).
    pub needed: Lsn,
    /// The start of the oldest WAL segment the primary keeps.
    pub oldest_kept: Lsn,
}

impl MissingWal {
    /// The problem a node with missing WAL publishes, with what the operator can do.
    pub fn problem(&self) -> String {
        format!(
            "the WAL this standby needs is gone from the primary (it needs {}, the primary keeps WAL from {}): re-clone it with zgresctl reinit, or set provisioning.reclone_on_missing_wal",
            self.needed, self.oldest_kept
        )
    }
}

/// Tracks whether the local standby's next WAL is still on the primary.
#[derive(Debug, Default)]
pub(super) struct MissingWalWatch {
    /// Where the standby has replayed to while before the primary's oldest kept WAL, and
    /// since when.
    behind_since: Option<(Lsn, Instant)>,
    /// Confirmed, until the standby moves or the primary keeps older WAL again.
    confirmed: Option<MissingWal>,
}

impl MissingWalWatch {
    /// Observes a running standby at `position` (the furthest it received or replayed),
    /// having replayed to `replayed`, while the primary it follows keeps WAL from
    /// `oldest_kept`; the missing WAL once that has lasted [`MISSING_WAL_AFTER`] without the
    /// replay moving. Progress is judged on the replay alone: the received position of a
    /// standby that cannot stream comes and goes (unset, then the start of the segment it
    /// asks for at each attempt), which must not restart the wait.
    pub(super) fn observe(
        &mut self,
        now: Instant,
        position: Option<Lsn>,
        replayed: Option<Lsn>,
        oldest_kept: Option<Lsn>,
    ) -> Option<MissingWal> {
        let behind = position
            .zip(oldest_kept)
            .filter(|(mine, oldest)| mine < oldest);
        let progress = replayed.or(position);
        self.confirmed = match (behind, progress, self.behind_since) {
            (Some((needed, oldest_kept)), Some(at_now), Some((at, since))) if at_now == at => {
                (now.duration_since(since) >= MISSING_WAL_AFTER).then_some(MissingWal {
                    needed,
                    oldest_kept,
                })
            }
            (Some(_), Some(at_now), _) => {
                self.behind_since = Some((at_now, now));
                None
            }
            _ => {
                self.behind_since = None;
                None
            }
        };
        self.confirmed
    }

    /// Not a running standby following a primary (stopped, promoted, wiped): start afresh.
    pub(super) fn forget(&mut self) {
        *self = MissingWalWatch::default();
    }

    /// The missing WAL confirmed by the last observation, if any.
    pub(super) fn confirmed(&self) -> Option<MissingWal> {
        self.confirmed
    }

    /// When the wait now running ends, for the shell's next wake-up.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.behind_since, self.confirmed) {
            (Some((_, since)), None) => Some(since + MISSING_WAL_AFTER),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lsn(n: u64) -> Lsn {
        Lsn(n)
    }

    #[test]
    fn a_standby_stuck_before_the_oldest_kept_wal_is_confirmed_after_the_wait() {
        let t0 = Instant::now();
        let mut watch = MissingWalWatch::default();
        assert_eq!(
            watch.observe(t0, Some(lsn(100)), Some(lsn(100)), Some(lsn(200))),
            None
        );
        assert_eq!(watch.deadline(), Some(t0 + MISSING_WAL_AFTER));
        let almost = t0 + MISSING_WAL_AFTER - Duration::from_millis(1);
        assert_eq!(
            watch.observe(almost, Some(lsn(100)), Some(lsn(100)), Some(lsn(200))),
            None
        );
        let missing = watch
            .observe(
                t0 + MISSING_WAL_AFTER,
                Some(lsn(100)),
                Some(lsn(100)),
                Some(lsn(200)),
            )
            .unwrap();
        assert_eq!(missing.needed, lsn(100));
        assert_eq!(missing.oldest_kept, lsn(200));
        assert!(missing.problem().contains("zgresctl reinit"));
        assert_eq!(watch.confirmed(), Some(missing));
        assert_eq!(watch.deadline(), None);
    }

    #[test]
    fn a_standby_replaying_its_own_wal_is_left_alone() {
        let t0 = Instant::now();
        let mut watch = MissingWalWatch::default();
        watch.observe(t0, Some(lsn(100)), Some(lsn(100)), Some(lsn(200)));
        // It moved: the wait starts again from its new position.
        let later = t0 + MISSING_WAL_AFTER;
        assert_eq!(
            watch.observe(later, Some(lsn(150)), Some(lsn(150)), Some(lsn(200))),
            None
        );
        // It reached the primary's kept WAL: nothing is missing.
        assert_eq!(
            watch.observe(
                later + MISSING_WAL_AFTER,
                Some(lsn(200)),
                Some(lsn(200)),
                Some(lsn(200))
            ),
            None
        );
        assert_eq!(watch.deadline(), None);
    }

    #[test]
    fn a_received_position_that_comes_and_goes_does_not_restart_the_wait() {
        // The walreceiver's position is set when it starts an attempt and may be unset
        // between attempts; judging progress on it would restart the wait each time.
        let t0 = Instant::now();
        let mut watch = MissingWalWatch::default();
        let step = MISSING_WAL_AFTER / 4;
        for (i, received) in [None, Some(150), None, Some(150), None, Some(150)]
            .into_iter()
            .enumerate()
        {
            let at = t0 + step * i as u32;
            let position = received.map(lsn).max(Some(lsn(100)));
            let seen = watch.observe(at, position, Some(lsn(100)), Some(lsn(200)));
            assert_eq!(seen.is_some(), at >= t0 + MISSING_WAL_AFTER, "step {i}");
        }
    }

    proptest! {
        /// Whatever the sequence of observations, missing WAL is only ever reported for a
        /// standby before the primary's oldest kept WAL that has not moved for the wait.
        #[test]
        fn only_a_standby_that_stayed_behind_for_the_wait_is_reported(
            steps in proptest::collection::vec((0u64..4_000, 0u64..4, 0u64..4), 1..40)
        ) {
            let t0 = Instant::now();
            let mut watch = MissingWalWatch::default();
            let mut elapsed = 0;
            let mut history: Vec<(u64, u64, u64)> = Vec::new();
            for (advance_ms, mine, oldest) in steps {
                elapsed += advance_ms;
                let now = t0 + Duration::from_millis(elapsed);
                let reported = watch.observe(now, Some(lsn(mine)), Some(lsn(mine)), Some(lsn(oldest)));
                history.push((elapsed, mine, oldest));
                if let Some(missing) = reported {
                    prop_assert!(missing.needed < missing.oldest_kept);
                    prop_assert_eq!(missing.needed, lsn(mine));
                    // The same position, behind, for the whole wait.
                    let window_start = elapsed.saturating_sub(MISSING_WAL_AFTER.as_millis() as u64);
                    let behind_since = history
                        .iter()
                        .rev()
                        .take_while(|(_, m, o)| *m == mine && m < o)
                        .last()
                        .map(|(at, _, _)| *at)
                        .unwrap();
                    prop_assert!(behind_since <= window_start);
                }
            }
        }
    }
}
