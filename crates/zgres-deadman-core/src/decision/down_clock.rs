//! The restart bound's clock: how long the lock holder's PostgreSQL has been down or silent.

use std::time::Instant;

/// When the lock holder's PostgreSQL stopped running or answering.
///
/// A PostgreSQL that exits is seen at once (its exit wakes the deadman). One that hangs
/// (storage that stops answering, SIGSTOP) is seen only when a probe gives up, a probe timeout
/// — plus whatever else the round was waiting on — after its last answer. So an outage that
/// begins with PostgreSQL still running is dated from the previous observation, if PostgreSQL
/// answered in it: the bound runs from the last answer, not from the first probe that gave up.
/// Only the observation just before counts, so an answer from before a restart never does.
#[derive(Debug, Default)]
pub(super) struct DownClock {
    /// When the outage being timed began.
    since: Option<Instant>,
    /// When the previous observation saw PostgreSQL answer.
    previous_answer: Option<Instant>,
    /// When the current observation saw it answer (the next one's `previous_answer`).
    answer: Option<Instant>,
}

impl DownClock {
    /// Notes the observation at `now`, in which PostgreSQL `answered` or not. Called once per
    /// observation, before anything else.
    pub(super) fn observe(&mut self, now: Instant, answered: bool) {
        self.previous_answer = self.answer;
        self.answer = answered.then_some(now);
    }

    /// Stops timing: the outage is over, or not the bound's concern (the lock is not ours, the
    /// group is paused, the lock was given up).
    pub(super) fn stop(&mut self) {
        self.since = None;
    }

    /// When the outage began; an outage first seen at `now` begins now, or at the previous
    /// answer if PostgreSQL is still `running` (it hangs).
    pub(super) fn since(&mut self, now: Instant, running: bool) -> Instant {
        *self
            .since
            .get_or_insert(match (running, self.previous_answer) {
                (true, Some(answered)) => answered,
                _ => now,
            })
    }

    /// When the outage being timed began, if one is.
    pub(super) fn timing(&self) -> Option<Instant> {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_hang_is_dated_from_the_last_answer_and_a_crash_from_its_sighting() {
        let t0 = Instant::now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        let mut hang = DownClock::default();
        hang.observe(t0, true);
        hang.observe(later(6), false);
        assert_eq!(hang.since(later(6), true), t0);
        hang.observe(later(9), false);
        assert_eq!(
            hang.since(later(9), true),
            t0,
            "kept while the outage lasts"
        );

        let mut crash = DownClock::default();
        crash.observe(t0, true);
        crash.observe(later(2), false);
        assert_eq!(crash.since(later(2), false), later(2));
    }

    #[test]
    fn an_answer_older_than_the_previous_observation_never_dates_an_outage() {
        let t0 = Instant::now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        let mut clock = DownClock::default();
        clock.observe(t0, true);
        clock.observe(later(2), false);
        clock.observe(later(60), false);
        assert_eq!(clock.since(later(60), true), later(60));
        clock.stop();
        assert_eq!(clock.timing(), None);
    }
}
