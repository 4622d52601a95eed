//! The fence's deadline arithmetic, shared by the deadman's fence thread and the fence keeper
//! process: when a primary whose ZooKeeper session is not confirmed is asked to shut down, when
//! it is killed, and whether it may still call itself a primary.
//!
//! The rule: with `t_ok` the send time of the last ZooKeeper request that got a reply, a primary
//! is killed no later than `t_ok + budget`, where `budget = session_timeout - margin`. The server
//! cannot expire the session before `t_ok + session_timeout`, so no other node can hold the lock
//! while this one still accepts writes. A graceful window ([`grace_for`]) before the deadline
//! asks for a fast shutdown first, so the walsenders can ship what was acknowledged.
//!
//! Times are nanoseconds on the host's monotonic clock, passed in; nothing here reads a clock.

use std::time::Duration;

/// Longest graceful-shutdown window before the deadline: a fast shutdown of a primary with
/// little dirty data takes well under a second.
pub const MAX_GRACE: Duration = Duration::from_secs(2);

/// The graceful window for a fence budget: a third of it, at most [`MAX_GRACE`], so that the
/// session has two thirds of the budget to be confirmed before anything is stopped.
pub fn grace_for(budget: Duration) -> Duration {
    (budget / 3).min(MAX_GRACE)
}

/// The deadline for a session last confirmed at `t_ok_ns` (the send time of the last request
/// that got a reply): `t_ok + budget`.
pub fn deadline_ns(t_ok_ns: u64, budget: Duration) -> u64 {
    t_ok_ns.saturating_add(budget.as_nanos() as u64)
}

/// Whether a fence may be armed at `now_ns` with `deadline_ns`: only while the deadline is
/// ahead, so that PostgreSQL never starts or is promoted as a primary past it.
pub fn may_arm(now_ns: u64, deadline_ns: u64) -> bool {
    now_ns < deadline_ns
}

/// The fence's state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceState {
    /// Whether a deadline is enforced.
    pub armed: bool,
    /// When PostgreSQL is killed unless the session is confirmed again (`t_ok + budget`).
    pub deadline_ns: u64,
    /// PostgreSQL's process group (0 when none is running).
    pub pgid: i32,
    /// How long before the deadline a fast shutdown is asked for.
    pub grace_ns: u64,
}

/// What a fencer should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStep {
    /// Nothing is enforced: sleep until told otherwise.
    Idle,
    /// Nothing is due before this moment (ns).
    WaitUntil(u64),
    /// Ask the postmaster (`pgid`, never 0) for a fast shutdown (once per deadline), then wait
    /// for the deadline.
    Demote,
    /// The deadline passed: kill PostgreSQL's process group.
    Kill,
}

/// What the fence heartbeat does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Send a cheap request now: nothing confirmed the session for `stale_after`.
    Send,
    /// Look again after this long.
    Sleep(Duration),
    /// Look again once a confirmation is wanted: nothing to do until then, so no timer.
    UntilWanted,
}

/// The heartbeat's plan at `now_ns` with the last confirmation at `last_ok_ns`: it fills only
/// gaps of `stale_after` that answered pings and other requests left, and only while a
/// confirmation is `wanted` (the lock is ours or the fence armed). It sleeps until the moment
/// the session would turn stale (at least a quarter of `stale_after`, so it never polls); while
/// not wanted (a replica) it waits for that to change without a timer, since each idle wake-up
/// costs a replica CPU for nothing.
pub fn heartbeat(now_ns: u64, last_ok_ns: u64, stale_after: Duration, wanted: bool) -> Heartbeat {
    if !wanted {
        return Heartbeat::UntilWanted;
    }
    let stale_at = last_ok_ns.saturating_add(stale_after.as_nanos() as u64);
    if now_ns >= stale_at {
        Heartbeat::Send
    } else {
        Heartbeat::Sleep(Duration::from_nanos(stale_at - now_ns).max(stale_after / 4))
    }
}

impl FenceState {
    /// Nothing enforced.
    pub const DISARMED: FenceState = FenceState {
        armed: false,
        deadline_ns: 0,
        pgid: 0,
        grace_ns: 0,
    };

    /// When the graceful shutdown is asked for.
    pub fn demote_at_ns(&self) -> u64 {
        self.deadline_ns.saturating_sub(self.grace_ns)
    }

    /// Whether, at `now_ns`, the node may call itself a writable primary: armed over a running
    /// PostgreSQL, and the graceful shutdown not due yet.
    pub fn may_serve_as_primary(&self, now_ns: u64) -> bool {
        self.armed && self.pgid > 0 && now_ns < self.demote_at_ns()
    }

    /// What is due at `now_ns`, given the deadline for which a fast shutdown was already asked
    /// for (`demoted_for`; it is asked once per deadline, and a confirmation that moves the
    /// deadline allows another). With no PostgreSQL to ask, only the deadline is waited for.
    pub fn step(&self, now_ns: u64, demoted_for: Option<u64>) -> FenceStep {
        let demote_pending = self.pgid > 0 && demoted_for != Some(self.deadline_ns);
        if !self.armed {
            FenceStep::Idle
        } else if now_ns >= self.deadline_ns {
            FenceStep::Kill
        } else if !demote_pending {
            FenceStep::WaitUntil(self.deadline_ns)
        } else if now_ns >= self.demote_at_ns() {
            FenceStep::Demote
        } else {
            FenceStep::WaitUntil(self.demote_at_ns())
        }
    }

    /// Whether `self` differs from `sent` (the state last sent to the keeper as a line) only
    /// by a later deadline: a confirmation. Such a change may reach the keeper through its
    /// deadline board, read when a step falls due, instead of a line that wakes it; anything
    /// else (arming, disarming, a new target or grace, an earlier deadline) needs a line.
    pub fn only_later_than(&self, sent: &FenceState) -> bool {
        self.armed
            && sent.armed
            && self.pgid == sent.pgid
            && self.grace_ns == sent.grace_ns
            && self.deadline_ns > sent.deadline_ns
    }

    /// This state with the deadline a board shows, when that is later: how a keeper learns
    /// confirmations it was not sent as lines. The board always holds the deadline in force
    /// when it was written, and an earlier deadline always comes with a line, so the later of
    /// the two is the deadline in force. A disarmed state stays disarmed.
    pub fn with_board_deadline(self, board_deadline_ns: Option<u64>) -> FenceState {
        match board_deadline_ns {
            Some(board) if self.armed && board > self.deadline_ns => FenceState {
                deadline_ns: board,
                ..self
            },
            _ => self,
        }
    }

    /// This state as one line of the deadman → keeper protocol: `arm DEADLINE_NS PGID GRACE_NS`
    /// or `disarm`.
    pub fn to_keeper_line(&self) -> String {
        if self.armed {
            format!("arm {} {} {}\n", self.deadline_ns, self.pgid, self.grace_ns)
        } else {
            "disarm\n".to_owned()
        }
    }

    /// Parses one protocol line; `None` for anything else (ignored by the keeper).
    pub fn from_keeper_line(line: &str) -> Option<FenceState> {
        let mut words = line.split_whitespace();
        match words.next()? {
            "disarm" => Some(FenceState::DISARMED),
            "arm" => Some(FenceState {
                armed: true,
                deadline_ns: words.next()?.parse().ok()?,
                pgid: words.next()?.parse().ok()?,
                // A keeper of a newer build fed by an older deadman: no graceful step.
                grace_ns: words.next().map_or(Some(0), |w| w.parse().ok())?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grace_is_a_third_of_the_budget_capped() {
        assert_eq!(
            grace_for(Duration::from_millis(1_500)),
            Duration::from_millis(500)
        );
        assert_eq!(grace_for(Duration::from_secs(30)), MAX_GRACE);
    }

    #[test]
    fn demote_once_per_deadline_then_kill_at_it() {
        let s = FenceState {
            armed: true,
            deadline_ns: 3_000,
            pgid: 42,
            grace_ns: 1_000,
        };
        assert_eq!(s.step(1_999, None), FenceStep::WaitUntil(2_000));
        assert_eq!(s.step(2_000, None), FenceStep::Demote);
        assert_eq!(s.step(2_000, Some(3_000)), FenceStep::WaitUntil(3_000));
        assert_eq!(
            s.step(2_500, Some(2_000)),
            FenceStep::Demote,
            "an earlier deadline's shutdown does not count for this one"
        );
        assert_eq!(s.step(3_000, Some(3_000)), FenceStep::Kill);
        assert_eq!(FenceState::DISARMED.step(u64::MAX, None), FenceStep::Idle);
    }

    /// Found in review: with no PostgreSQL running, `Demote` stayed due (nothing to signal, so
    /// it was never marked done) and the fence thread polled every 100 µs until the deadline.
    #[test]
    fn armed_without_postgres_waits_for_the_deadline_without_polling() {
        let s = FenceState {
            armed: true,
            deadline_ns: 3_000,
            pgid: 0,
            grace_ns: 1_000,
        };
        assert_eq!(s.step(1_000, None), FenceStep::WaitUntil(3_000));
        assert_eq!(s.step(2_500, None), FenceStep::WaitUntil(3_000));
        assert_eq!(s.step(3_000, None), FenceStep::Kill);
    }

    proptest! {
        /// The heartbeat sends only when wanted and stale, and never sleeps past the moment
        /// the session turns stale by more than a quarter of `stale_after`, nor less than it.
        #[test]
        fn heartbeat_fills_only_stale_gaps(now in 0..10_000_000u64, last_ok in 0..10_000_000u64, stale_ms in 1..2_000u64, wanted: bool) {
            let stale_after = Duration::from_millis(stale_ms);
            let stale_at = last_ok + stale_after.as_nanos() as u64;
            match heartbeat(now, last_ok, stale_after, wanted) {
                Heartbeat::Send => prop_assert!(wanted && now >= stale_at),
                Heartbeat::Sleep(d) if wanted => {
                    prop_assert!(now < stale_at);
                    prop_assert!(d >= stale_after / 4);
                    prop_assert!(d <= Duration::from_nanos(stale_at - now).max(stale_after / 4));
                }
                Heartbeat::Sleep(_) => prop_assert!(false, "a timer while not wanted"),
                Heartbeat::UntilWanted => prop_assert!(!wanted),
            }
        }
    }

    fn state() -> impl Strategy<Value = FenceState> {
        (any::<bool>(), 0..10_000u64, -1..100i32, 0..5_000u64).prop_map(
            |(armed, deadline_ns, pgid, grace_ns)| FenceState {
                armed,
                deadline_ns,
                pgid,
                grace_ns,
            },
        )
    }

    proptest! {
        /// Never a primary once the shutdown is due, and never killed before the deadline;
        /// armed and past the deadline is always a kill.
        #[test]
        fn steps_respect_the_deadline(s in state(), now in 0..20_000u64, demoted in proptest::option::of(0..10_000u64)) {
            if s.may_serve_as_primary(now) {
                prop_assert!(s.armed && now < s.demote_at_ns());
            }
            match s.step(now, demoted) {
                FenceStep::Kill => prop_assert!(s.armed && now >= s.deadline_ns),
                FenceStep::Demote => prop_assert!(s.armed && s.pgid > 0 && now >= s.demote_at_ns() && now < s.deadline_ns),
                FenceStep::WaitUntil(at) => prop_assert!(s.armed && at > now && at <= s.deadline_ns),
                FenceStep::Idle => prop_assert!(!s.armed),
            }
        }

        /// A keeper told only of the changes that are not [`FenceState::only_later_than`] the
        /// last line, and reading the board (the true deadline) at any moment, holds exactly
        /// the true state whenever it reads: never a later deadline (it would fence late), nor
        /// an earlier one (early), nor another target.
        #[test]
        fn a_lazily_fed_keeper_holds_the_true_state(
            changes in proptest::collection::vec((state(), any::<bool>()), 1..40)
        ) {
            let mut line = FenceState::DISARMED;
            for (truth, keeper_reads) in changes {
                // The deadman: the board first, then a line when one is needed.
                let board = Some(truth.deadline_ns);
                if !truth.only_later_than(&line) {
                    line = truth;
                }
                if keeper_reads {
                    let held = line.with_board_deadline(board);
                    if truth.armed {
                        prop_assert_eq!(held, truth);
                    } else {
                        prop_assert!(!held.armed);
                    }
                }
            }
        }

        /// The keeper protocol round-trips every state it carries.
        #[test]
        fn keeper_lines_round_trip(s in state()) {
            let parsed = FenceState::from_keeper_line(&s.to_keeper_line()).unwrap();
            if s.armed {
                prop_assert_eq!(parsed, s);
            } else {
                prop_assert_eq!(parsed, FenceState::DISARMED);
            }
        }
    }
}
