//! When the next round runs, and whose wake-up it may share.
//!
//! An idle deadman wakes for two periodic things: the ZooKeeper client's keep-alive ping (its
//! answer, every fifth of the session timeout) and the round (every loop interval). On a small
//! VM each wake-up of the process costs tens of microseconds whatever it then does, so a round
//! run on the wake-up a ping's answer causes anyway saves its own. A periodic round — one due
//! only because the loop interval passed — therefore keeps its cadence (one per loop interval,
//! counted from the last one's due time, not from when it happened to run) but may run up to
//! half a ping gap before or after its due time, on the first answer from ZooKeeper in that
//! window; its own timer runs it at the window's end if no answer came. The window is at most
//! a quarter of the loop interval wide on each side. Rounds an event triggers (a watch,
//! PostgreSQL's exit, a reload) still run at once, and rounds the core times itself (an
//! election's poll, a retry, a deadline: `wake_at`) are never moved later.

use std::time::{Duration, Instant};

use super::Next;

/// When the next round runs: on the first answer from ZooKeeper from
/// [`shares_from`](RoundTime::shares_from) on, else by its own timer at
/// [`at_latest`](RoundTime::at_latest). Both are the same when the round may share nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTime {
    /// When the round is due; the cadence of periodic rounds continues from here.
    pub due: Instant,
    /// From when on an answer from ZooKeeper runs the round.
    pub shares_from: Instant,
    /// When the round's own timer runs it.
    pub at_latest: Instant,
}

impl RoundTime {
    /// A round at `at`, sharing nothing.
    fn exactly(at: Instant) -> RoundTime {
        RoundTime {
            due: at,
            shares_from: at,
            at_latest: at,
        }
    }
}

/// When the round after one that ended at `now` runs (`None`: at once).
///
/// `last_due` is the due time of the round that just ran if its timer or a shared answer ran
/// it (`None` if an event did); `ping_gap` is the session's idle ping gap (`None` without a
/// session: nothing to share). A [`Next::Later`] round continues the cadence from `last_due`
/// when that round ran within its window, else starts one loop interval from `now`; it may
/// share an answer within `min(ping_gap / 2, loop_interval / 4)` of its due time, and never
/// runs after `wake_at`. Any other [`Next`] runs exactly when [`Next::pause_until`] says.
pub fn round_time(
    next: Next,
    loop_interval: Duration,
    wake_at: Option<Instant>,
    now: Instant,
    last_due: Option<Instant>,
    ping_gap: Option<Duration>,
) -> Option<RoundTime> {
    let pause = next.pause_until(loop_interval, wake_at, now)?;
    let plain = RoundTime::exactly(now + pause);
    let (Next::Later, Some(ping_gap)) = (next, ping_gap) else {
        return Some(plain);
    };
    let shift = (ping_gap / 2).min(loop_interval / 4);
    // Continue the cadence if the round that just ran was the periodic one: its due time is
    // within the shift of now (it ran in its window and took less than the rest of the loop
    // interval). Otherwise (an event ran it, or it took long) a new cadence starts now.
    let due = last_due
        .map(|last| last + loop_interval)
        .filter(|due| *due <= now + loop_interval + shift)
        .filter(|due| due.checked_sub(shift).is_some_and(|opens| opens > now))
        .unwrap_or(now + loop_interval);
    let window_opens = due - shift;
    // The core's own deadline comes before the window opens: that round shares nothing.
    if window_opens <= now || wake_at.is_some_and(|wake| wake <= window_opens) {
        return Some(plain);
    }
    Some(RoundTime {
        due,
        shares_from: window_opens,
        at_latest: wake_at.map_or(due + shift, |wake| wake.min(due + shift)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOOP: Duration = Duration::from_secs(2);
    const PING_GAP: Duration = Duration::from_millis(800);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_idle_round_shares_the_ping_answer_within_half_a_gap_of_its_due_time() {
        let now = Instant::now();
        let t = round_time(Next::Later, LOOP, None, now, None, Some(PING_GAP)).unwrap();
        assert_eq!(t.due, now + LOOP);
        assert_eq!(t.shares_from, now + LOOP - ms(400));
        assert_eq!(t.at_latest, now + LOOP + ms(400));
    }

    #[test]
    fn periodic_rounds_keep_their_cadence_wherever_in_the_window_they_ran() {
        let start = Instant::now();
        let mut last_due = None;
        let mut now = start;
        // Ran early, late, early, exactly: the due times stay one loop interval apart.
        for (i, offset) in [-390i64, 390, -10, 0, 399].into_iter().enumerate() {
            let t = round_time(Next::Later, LOOP, None, now, last_due, Some(PING_GAP)).unwrap();
            assert_eq!(t.due, start + LOOP * (i as u32 + 1), "round {i}");
            let ran = if offset < 0 {
                t.due - ms(offset.unsigned_abs())
            } else {
                t.due + ms(offset as u64)
            };
            now = ran + ms(3); // the round itself takes a few milliseconds
            last_due = Some(t.due);
        }
    }

    #[test]
    fn an_event_between_rounds_starts_a_new_cadence() {
        let start = Instant::now();
        let t = round_time(Next::Later, LOOP, None, start, None, Some(PING_GAP)).unwrap();
        // A watch fired half-way: that round ran by the event, so no due time is carried.
        let event = start + ms(1000);
        let next = round_time(Next::Later, LOOP, None, event, None, Some(PING_GAP)).unwrap();
        assert_eq!(next.due, event + LOOP);
        // And a due time whose next window has already opened is not carried either.
        let late = t.due + LOOP - ms(100);
        let after = round_time(Next::Later, LOOP, None, late, Some(t.due), Some(PING_GAP)).unwrap();
        assert_eq!(after.due, late + LOOP);
    }

    #[test]
    fn urgent_rounds_and_rounds_without_a_session_share_nothing() {
        let now = Instant::now();
        for next in [Next::Soon, Next::Starting] {
            let t = round_time(next, LOOP, None, now, None, Some(PING_GAP)).unwrap();
            assert_eq!(t.shares_from, t.at_latest);
            assert_eq!(Some(t.at_latest - now), next.pause(LOOP));
        }
        assert_eq!(
            round_time(Next::Now, LOOP, None, now, None, Some(PING_GAP)),
            None
        );
        let t = round_time(Next::Later, LOOP, None, now, None, None).unwrap();
        assert_eq!(t, RoundTime::exactly(now + LOOP));
    }

    #[test]
    fn a_short_loop_interval_bounds_the_shift() {
        let now = Instant::now();
        let t = round_time(Next::Later, ms(400), None, now, None, Some(PING_GAP)).unwrap();
        assert_eq!(t.at_latest - t.due, ms(100));
    }

    proptest! {
        /// Whatever the inputs: never after the core's next time-based decision, never more
        /// than the shift away from the due time, sharing only from `now` on (and only for a
        /// periodic round), and a round that shares nothing runs exactly when `pause_until`
        /// says (an urgent round's fixed poll may exceed a tiny loop interval).
        #[test]
        fn a_round_is_never_later_than_the_core_asks(
            next in prop_oneof![Just(Next::Now), Just(Next::Soon), Just(Next::Starting), Just(Next::Later)],
            loop_ms in 1u64..10_000,
            wake_in in proptest::option::of(0u64..20_000),
            last_due_ago in proptest::option::of(-5_000i64..20_000),
            gap_ms in proptest::option::of(1u64..20_000),
        ) {
            let now = Instant::now() + Duration::from_secs(60);
            let loop_interval = ms(loop_ms);
            let wake_at = wake_in.map(|w| now + ms(w));
            let last_due = last_due_ago.map(|a| if a >= 0 { now - ms(a as u64) } else { now + ms(a.unsigned_abs()) });
            let gap = gap_ms.map(ms);
            let time = round_time(next, loop_interval, wake_at, now, last_due, gap);
            let plain = next.pause_until(loop_interval, wake_at, now);
            prop_assert_eq!(time.is_none(), plain.is_none());
            let Some(t) = time else { return Ok(()) };
            prop_assert!(t.shares_from >= now);
            prop_assert!(t.shares_from <= t.at_latest);
            if let Some(wake) = wake_at {
                prop_assert!(t.at_latest <= wake.max(now));
            }
            let shift = gap.map_or(Duration::ZERO, |g| (g / 2).min(loop_interval / 4));
            prop_assert!(t.at_latest <= t.due + shift);
            prop_assert!(t.due <= t.shares_from + shift);
            // A periodic round: at most the loop interval plus twice the shift from now.
            if next == Next::Later {
                prop_assert!(t.at_latest <= now + loop_interval + shift * 2);
            }
            if t.shares_from < t.at_latest {
                prop_assert_eq!(next, Next::Later);
                prop_assert!(t.shares_from > now);
            } else {
                prop_assert_eq!(Some(t.at_latest - now), plain);
            }
        }
    }
}
