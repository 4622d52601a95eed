//! Exponential backoff with jitter, for reconnecting to ZooKeeper.
//!
//! Jitter spreads the reconnects of many daemons that lost ZooKeeper at the same moment (a
//! restarted ensemble, a network blip) so they do not arrive in lockstep.

use std::time::Duration;

/// Delays that double from `initial` up to `max`; each delay drawn is between half and all of
/// the current step ("equal jitter"). [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and never above `max` (`max` is raised to `initial`
    /// when smaller).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            step: initial,
        }
    }

    /// The next delay to wait: between half of the current step and the step itself. The step
    /// then doubles, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=spread))
    }

    /// Starts again from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_stay_within_half_and_all_of_each_step() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let steps = [100, 200, 400, 500, 500, 500];
        for step in steps {
            let step = Duration::from_millis(step);
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn delays_are_spread_not_in_lockstep() {
        let delays: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(delays.len() > 10, "only {} distinct delays", delays.len());
    }
}
