//! When the shell runs the next round, when it may disarm the fence, and how long a failed
//! rewind waits: timing rules of the core, decided from values the shell passes in.

use std::time::{Duration, Instant};

use zgres_schema::NodeId;

use super::{Ineligible, LockView};

/// How often an election re-reads the group while it waits for peers' fresh positions.
const ELECTION_POLL: Duration = Duration::from_millis(50);
/// How often a PostgreSQL that runs but does not answer yet (starting, recovering) is probed.
const STARTING_POLL: Duration = Duration::from_millis(100);
/// How long a failed pg_rewind waits before it is tried again the first time; each further
/// failure in a row waits that much longer, up to [`REWIND_RETRY_MAX`]. Most failures are the
/// source not reachable yet (a network cut that is healing, a primary still starting): short
/// waits bring the node back soon after it heals, and a lasting failure is tried every few
/// seconds, not hammered. (The simulator measured 30 s doubling waits as a 6.6 s p99 recovery
/// after a replication cut, against 3.6 s with these.)
pub const REWIND_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two pg_rewind attempts.
pub const REWIND_RETRY_MAX: Duration = Duration::from_secs(5);

/// The wait after the `failures`-th failed pg_rewind in a row (1 for the first).
pub fn rewind_retry_after(failures: u32) -> Duration {
    (REWIND_RETRY * failures.max(1)).min(REWIND_RETRY_MAX)
}
/// How long a failed bootstrap waits before this node tries again the first time; each further
/// failure in a row waits twice as long, up to [`BOOTSTRAP_RETRY_MAX`]. A bootstrap fails
/// mostly on a setting (initdb's arguments, the bootstrap command) or a full disk, which no
/// quick retry mends: tried again at once, it would run initdb, and take and give up the lock
/// in ZooKeeper, many times a second. Another node may try meanwhile.
pub const BOOTSTRAP_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two bootstrap attempts of one node.
pub const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(60);

/// The wait after the `failures`-th failed bootstrap in a row (1 for the first).
pub fn bootstrap_retry_after(failures: u32) -> Duration {
    doubling(BOOTSTRAP_RETRY, BOOTSTRAP_RETRY_MAX, failures)
}

/// `first` after the first failure, doubled for each further one in a row, at most `max`.
fn doubling(first: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.max(1).saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(max)
}

/// How long a failed clone waits before it is tried again the first time; each further
/// failure in a row waits twice as long, up to [`CLONE_RETRY_MAX`]. A clone that fails late
/// (this node's disk full, the connection cut) has copied much of the primary for nothing, and
/// is wiped: tried again every round, it would stream the whole database from the primary
/// over and over.
pub const CLONE_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between two clone attempts.
pub const CLONE_RETRY_MAX: Duration = Duration::from_secs(60);

/// The wait after the `failures`-th failed clone in a row (1 for the first).
pub fn clone_retry_after(failures: u32) -> Duration {
    doubling(CLONE_RETRY, CLONE_RETRY_MAX, failures)
}

/// A step tried again after a failure, not before a pause that grows with each failure in a
/// row (a rewind, a bootstrap, a clone).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Retry {
    /// No new attempt before this.
    not_before: Option<Instant>,
    /// Failures in a row.
    failures: u32,
    /// Who held the lock when the step last failed (the primary a clone or rewind copies from,
    /// directly or through a replica), if another node did.
    under: Option<NodeId>,
}

impl Retry {
    /// The step failed at `now`, with `under` holding the lock: the next attempt waits
    /// `wait_after(failures in a row)`, which is returned.
    pub(super) fn failed(
        &mut self,
        now: Instant,
        wait_after: fn(u32) -> Duration,
        under: Option<NodeId>,
    ) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = wait_after(self.failures);
        self.not_before = Some(now + wait);
        self.under = under;
        wait
    }

    /// Whether the pause after a failure is still on at `now`.
    pub(super) fn paused(&self, now: Instant) -> bool {
        self.not_before.is_some_and(|at| now < at)
    }

    /// Whether the pause after a failure is still on at `now` with `holder` holding the lock:
    /// a step that failed under another holder is tried again at once under a new one (after
    /// a failover, the dead primary was likely why a clone or rewind failed). The failures in
    /// a row still count: the next failure waits longer.
    pub(super) fn paused_under(&self, now: Instant, holder: NodeId) -> bool {
        self.paused(now) && self.under.map_or(true, |under| under == holder)
    }

    /// When the pause ends (for the next round's wake-up), if one was set.
    pub(super) fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// Whether the last attempt failed (no success since).
    pub(super) fn failing(&self) -> bool {
        self.failures > 0
    }

    /// The step (or what it led to) succeeded: the next failure waits the shortest pause.
    pub(super) fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// How long a node whose `pre_promote` callback vetoed its promotion stays out of elections.
pub const PROMOTION_VETO_WAIT: Duration = Duration::from_secs(10);

/// When the next round should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At once: an action changed something worth observing.
    Now,
    /// Shortly: an election is waiting for peers, or synchronous replication is converging.
    Soon,
    /// Soon: PostgreSQL runs but does not answer yet.
    Starting,
    /// After the loop interval (or an event).
    Later,
}

impl Next {
    /// How long to wait for an event before the next round; `None`: run it at once.
    pub fn pause(self, loop_interval: Duration) -> Option<Duration> {
        match self {
            Next::Now => None,
            Next::Soon => Some(ELECTION_POLL),
            Next::Starting => Some(STARTING_POLL),
            Next::Later => Some(loop_interval),
        }
    }

    /// As [`Next::pause`], but never past `wake_at` (the core's next time-based decision),
    /// as seen at `now`.
    pub fn pause_until(
        self,
        loop_interval: Duration,
        wake_at: Option<Instant>,
        now: Instant,
    ) -> Option<Duration> {
        let pause = self.pause(loop_interval)?;
        Some(wake_at.map_or(pause, |at| pause.min(at.saturating_duration_since(now))))
    }
}

/// What a round did, as far as scheduling the next one cares.
#[derive(Debug, Clone, Copy)]
pub struct RoundOutcome {
    /// An action asked for its effect to be observed at once.
    pub act_again: bool,
    /// Synchronous replication took a step and has more to do.
    pub sync_progress: bool,
    /// Why this node did not contend, if it did not.
    pub ineligible: Option<Ineligible>,
    /// The lock as observed.
    pub lock: LockView,
    /// PostgreSQL runs (after the actions).
    pub postgres_running: bool,
    /// PostgreSQL answered the round's probe.
    pub postgres_answered: bool,
}

/// When to run the next round after `round`.
pub fn next_round(round: &RoundOutcome) -> Next {
    if round.act_again {
        Next::Now
    } else if round.sync_progress
        || (round.ineligible == Some(Ineligible::WaitingForPeers) && round.lock == LockView::Free)
    {
        Next::Soon
    } else if round.postgres_running && !round.postgres_answered {
        Next::Starting
    } else {
        Next::Later
    }
}

/// Rounds in a row that may run at once ([`Next::Now`]) before the loop paces itself. A
/// failover takes a handful (acquire, start or promote, record); more means an action that
/// fails the same way each time and asks to be looked at again at once.
pub const ROUNDS_AT_ONCE: u32 = 20;

/// The loop's backstop against deciding in a hot loop: after [`ROUNDS_AT_ONCE`] rounds in a
/// row that asked to run again at once, each further one waits [`Next::Soon`] instead, until a
/// round asks for anything else. No rule of the core should need it; if one does, it costs
/// ZooKeeper and PostgreSQL tens of requests a second instead of thousands, and the log says so.
#[derive(Debug, Default)]
pub struct Pacing {
    at_once: u32,
}

impl Pacing {
    /// The timing of the next round, given what [`next_round`] asked for.
    pub fn pace(&mut self, asked: Next) -> Next {
        if asked != Next::Now {
            self.at_once = 0;
            return asked;
        }
        self.at_once = self.at_once.saturating_add(1);
        if self.at_once > ROUNDS_AT_ONCE {
            Next::Soon
        } else {
            Next::Now
        }
    }

    /// Whether the last [`Pacing::pace`] was the first to slow the loop down in this run (to
    /// log it once).
    pub fn began_pacing(&self) -> bool {
        self.at_once == ROUNDS_AT_ONCE + 1
    }
}

/// Whether the fence may be disarmed: only once PostgreSQL cannot be a primary any more
/// (it is stopped) and this node does not hold the lock.
pub fn fence_may_disarm(lock: LockView, postgres_running: bool) -> bool {
    lock != LockView::Ours && !postgres_running
}

/// Whether the session must keep being confirmed for the fence (by the heartbeat, between the
/// round's own requests): while the lock is ours (a promotion or a primary start arms the fence,
/// which needs a recent confirmation) and while the fence is armed. A replica's idle session
/// needs no requests: the client's own pings keep it alive.
pub fn confirmation_wanted(lock: LockView, fence_armed: bool) -> bool {
    fence_armed || lock == LockView::Ours
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::decision::observation::any_lock_view as lock_view;

    #[test]
    fn clone_retries_double_up_to_a_minute() {
        let waits: Vec<u64> = (1..=7).map(|n| clone_retry_after(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(clone_retry_after(u32::MAX), CLONE_RETRY_MAX);
    }

    #[test]
    fn a_run_of_rounds_at_once_is_paced_after_the_limit_until_one_asks_otherwise() {
        let mut pacing = Pacing::default();
        for _ in 0..ROUNDS_AT_ONCE {
            assert_eq!(pacing.pace(Next::Now), Next::Now);
            assert!(!pacing.began_pacing());
        }
        assert_eq!(pacing.pace(Next::Now), Next::Soon);
        assert!(pacing.began_pacing());
        assert_eq!(pacing.pace(Next::Now), Next::Soon);
        assert!(!pacing.began_pacing(), "said once per run");
        assert_eq!(pacing.pace(Next::Later), Next::Later);
        assert_eq!(pacing.pace(Next::Now), Next::Now);
    }

    proptest! {
        /// The fence is never disarmed while PostgreSQL may still accept writes: while it runs,
        /// whatever the lock, or while the lock is ours.
        #[test]
        fn never_disarmed_while_postgres_may_accept_writes(lock in lock_view(), running: bool) {
            if running || lock == LockView::Ours {
                prop_assert!(!fence_may_disarm(lock, running));
            } else {
                prop_assert!(fence_may_disarm(lock, running));
            }
        }

        /// A node that holds the lock or runs under an armed fence always keeps its session
        /// confirmed.
        #[test]
        fn the_holder_and_an_armed_fence_keep_confirming(lock in lock_view(), armed: bool) {
            prop_assert_eq!(confirmation_wanted(lock, armed), armed || lock == LockView::Ours);
        }

        /// An action to observe always wins; otherwise a waiting election or converging
        /// synchronous replication is polled quickly, a starting PostgreSQL soon, the rest
        /// after the loop interval. No outcome waits longer than the loop interval.
        #[test]
        fn rounds_are_scheduled_by_urgency(
            act_again: bool, sync_progress: bool, waiting: bool, lock in lock_view(),
            postgres_running: bool, postgres_answered: bool,
        ) {
            let round = RoundOutcome {
                act_again,
                sync_progress,
                ineligible: waiting.then_some(Ineligible::WaitingForPeers),
                lock,
                postgres_running,
                postgres_answered,
            };
            let next = next_round(&round);
            let interval = Duration::from_secs(1);
            prop_assert!(next.pause(interval).map_or(true, |p| p <= interval));
            // Never past the core's next time-based decision.
            let now = Instant::now();
            let soon = now + Duration::from_millis(30);
            prop_assert!(next
                .pause_until(interval, Some(soon), now)
                .map_or(true, |p| p <= Duration::from_millis(30)));
            if act_again {
                prop_assert_eq!(next, Next::Now);
            } else if sync_progress || (waiting && lock == LockView::Free) {
                prop_assert_eq!(next, Next::Soon);
            } else if postgres_running && !postgres_answered {
                prop_assert_eq!(next, Next::Starting);
            } else {
                prop_assert_eq!(next, Next::Later);
            }
        }
    }
}
