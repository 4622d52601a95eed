//! Fencing: stop PostgreSQL from accepting writes before ZooKeeper can expire our session.
//!
//! The rule: with `t_ok` the send time of the last ZooKeeper request that got a reply, a primary
//! is killed no later than `t_ok + session_timeout - margin`. The server cannot expire the session
//! before `t_ok + session_timeout` (it heard from us after `t_ok`), so no other node can hold
//! the lock while this one still accepts writes.
//!
//! Two independent fencers watch the same deadline, neither of which any blocking call in the
//! daemon can delay:
//! - [`FenceThread`]: a dedicated OS thread of the deadman that touches only atomics, the
//!   monotonic clock and `kill(2)`;
//! - the fence keeper ([`run_keeper`]): a separate small process fed with the deadline over a
//!   pipe. It keeps working while the deadman is stopped (SIGSTOP) or wedged, and fences at once
//!   if the deadman dies while armed (its end of the pipe closes).
//!
//! "Fence" means `SIGKILL` to PostgreSQL's whole process group: the postmaster and every
//! backend, so no backend can finish one more commit.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;

/// Longest the fence thread sleeps while armed. It is woken early whenever the deadline could
/// have moved closer, so this is only a backstop.
const ARMED_NAP: Duration = Duration::from_millis(200);
/// Longest the fence thread sleeps while disarmed (arming wakes it).
const DISARMED_NAP: Duration = Duration::from_secs(1);

/// Nanoseconds on `CLOCK_MONOTONIC`: never jumps, and is the same clock in every process on the
/// host, so deadlines can be handed to the keeper process as plain numbers.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make the fence fire early.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The fencing deadline, shared lock-free between the daemon and the fence thread.
#[derive(Debug, Default)]
pub struct FenceClock {
    last_ok_ns: AtomicU64,
    budget_ns: AtomicU64,
    armed: AtomicBool,
    target_pgid: AtomicI32,
    fired: AtomicU64,
    /// The fence thread, woken when the deadline may have come closer.
    fence_thread: OnceLock<Thread>,
    /// Signalled on every change, for the task that feeds the keeper.
    changed: tokio::sync::Notify,
}

/// A snapshot of the fence state, for the keeper and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceState {
    /// Whether a deadline is enforced.
    pub armed: bool,
    /// When PostgreSQL is killed unless the session is confirmed again.
    pub deadline_ns: u64,
    /// PostgreSQL's process group (0 when none is running).
    pub pgid: i32,
}

impl FenceClock {
    /// A disarmed clock whose deadline is `budget` after each confirmation.
    pub fn new(budget: Duration) -> Self {
        let clock = FenceClock::default();
        clock.set_budget(budget);
        clock
    }

    /// Sets the budget (`session_timeout - margin`), e.g. after the server granted a timeout.
    pub fn set_budget(&self, budget: Duration) {
        self.budget_ns
            .store(budget.as_nanos() as u64, Ordering::SeqCst);
        self.wake();
    }

    /// Records that a request sent at `sent_ns` got a reply. Never moves the clock back.
    pub fn confirm(&self, sent_ns: u64) {
        self.last_ok_ns.fetch_max(sent_ns, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Sets the process group to kill (PostgreSQL's), or 0 for none.
    pub fn set_target(&self, pgid: i32) {
        self.target_pgid.store(pgid, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Wakes the fence thread and the keeper feeder: something they act on changed.
    fn wake(&self) {
        if let Some(thread) = self.fence_thread.get() {
            thread.unpark();
        }
        self.changed.notify_one();
    }

    /// Resolves after the state changed (or at once if it changed since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Starts enforcing the deadline. Returns false (and stays disarmed) when the deadline has
    /// already passed: the caller must not start or promote a primary then.
    pub fn arm(&self) -> bool {
        if monotonic_ns() >= self.deadline_ns() {
            return false;
        }
        self.armed.store(true, Ordering::SeqCst);
        // The deadline may have passed between the check and the store; the fence thread sees
        // the armed flag and fires, which is the safe outcome.
        self.wake();
        true
    }

    /// Stops enforcing the deadline (PostgreSQL no longer runs as a primary).
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Whether the deadline is enforced.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    /// How many times the fence fired.
    pub fn fired_count(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }

    /// `t_ok`: send time of the last request known to have been answered.
    pub fn last_ok_ns(&self) -> u64 {
        self.last_ok_ns.load(Ordering::SeqCst)
    }

    /// `t_ok + budget`.
    pub fn deadline_ns(&self) -> u64 {
        self.last_ok_ns
            .load(Ordering::SeqCst)
            .saturating_add(self.budget_ns.load(Ordering::SeqCst))
    }

    /// Current state.
    pub fn state(&self) -> FenceState {
        FenceState {
            armed: self.is_armed(),
            deadline_ns: self.deadline_ns(),
            pgid: self.target_pgid.load(Ordering::SeqCst),
        }
    }

    /// If armed and `now_ns` is at or past the deadline: disarms and returns the process group
    /// to kill (0 if none runs). Exactly one caller gets `Some` per arming.
    pub fn due(&self, now_ns: u64) -> Option<i32> {
        if !self.is_armed() || now_ns < self.deadline_ns() {
            return None;
        }
        self.armed
            .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        self.fired.fetch_add(1, Ordering::SeqCst);
        Some(self.target_pgid.load(Ordering::SeqCst))
    }
}

/// Kills a process group with SIGKILL; ignores a group that is already gone.
pub fn kill_group(pgid: i32) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// The in-process fence: a dedicated thread that kills PostgreSQL when the deadline passes.
#[derive(Debug)]
pub struct FenceThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FenceThread {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the OS cannot create a thread.
    pub fn spawn(clock: Arc<FenceClock>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("fence".into())
            .spawn(move || {
                let _ = clock.fence_thread.set(std::thread::current());
                while !stop_flag.load(Ordering::SeqCst) {
                    let now = monotonic_ns();
                    if let Some(pgid) = clock.due(now) {
                        // Kill first; only then log, which may block.
                        kill_group(pgid);
                        tracing::error!(
                            pgid,
                            "FENCED: ZooKeeper session not confirmed in time; killed PostgreSQL"
                        );
                    }
                    std::thread::park_timeout(nap(&clock, now));
                }
            })?;
        Ok(FenceThread {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for FenceThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

/// How long the fence thread may sleep: until the deadline when armed (it only moves later,
/// except through `set_budget`/`arm`, which wake the thread), capped as a backstop.
fn nap(clock: &FenceClock, now_ns: u64) -> Duration {
    if clock.is_armed() {
        Duration::from_nanos(clock.deadline_ns().saturating_sub(now_ns))
            .clamp(Duration::from_micros(100), ARMED_NAP)
    } else {
        DISARMED_NAP
    }
}

/// One line of the deadman → keeper protocol: `arm DEADLINE_NS PGID` or `disarm`.
pub fn keeper_line(state: FenceState) -> String {
    if state.armed {
        format!("arm {} {}\n", state.deadline_ns, state.pgid)
    } else {
        "disarm\n".to_owned()
    }
}

fn parse_keeper_line(line: &str) -> Option<FenceState> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "disarm" => Some(FenceState {
            armed: false,
            deadline_ns: 0,
            pgid: 0,
        }),
        "arm" => Some(FenceState {
            armed: true,
            deadline_ns: words.next()?.parse().ok()?,
            pgid: words.next()?.parse().ok()?,
        }),
        _ => None,
    }
}

/// The fence keeper process's main loop: reads protocol lines from `input` until EOF, kills
/// the armed process group when its deadline passes, and at once if `input` closes while armed
/// (the deadman died). Returns how many times it fenced.
pub fn run_keeper(input: impl BufRead + Send + 'static, mut log: impl Write) -> u64 {
    let (tx, rx) = std::sync::mpsc::channel::<Option<FenceState>>();
    // Reading is blocking; a reader thread turns it into messages the timer loop can wait on.
    std::thread::spawn(move || {
        for line in input.lines() {
            let Ok(line) = line else { break };
            if let Some(state) = parse_keeper_line(&line) {
                if tx.send(Some(state)).is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(None);
    });
    let mut current: Option<FenceState> = None;
    let mut fenced = 0;
    loop {
        let wait = match current {
            // Only a message can move the deadline, and a message ends the wait.
            Some(s) if s.armed => {
                Duration::from_nanos(s.deadline_ns.saturating_sub(monotonic_ns()))
            }
            _ => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Some(state)) => current = Some(state),
            Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(s) = current.filter(|s| s.armed) {
                    kill_group(s.pgid);
                    fenced += 1;
                    let _ = writeln!(
                        log,
                        "zgres fence keeper: deadman gone while armed; killed PostgreSQL group {}",
                        s.pgid
                    );
                }
                return fenced;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(s) = current.filter(|s| s.armed && monotonic_ns() >= s.deadline_ns) {
            kill_group(s.pgid);
            fenced += 1;
            current = None;
            let _ = writeln!(
                log,
                "zgres fence keeper: deadline passed; killed PostgreSQL group {}",
                s.pgid
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fires_once_at_the_deadline_and_only_when_armed() {
        let clock = FenceClock::new(Duration::from_secs(3));
        clock.confirm(1_000);
        clock.set_target(42);
        let deadline = 1_000 + 3_000_000_000;
        assert_eq!(clock.due(deadline), None, "disarmed clocks never fire");
        clock.armed.store(true, Ordering::SeqCst);
        assert_eq!(clock.due(deadline - 1), None);
        assert_eq!(clock.due(deadline), Some(42));
        assert_eq!(clock.due(deadline + 1), None, "fires once per arming");
        assert_eq!(clock.fired_count(), 1);
    }

    #[test]
    fn cannot_arm_past_the_deadline() {
        let clock = FenceClock::new(Duration::from_millis(1));
        clock.confirm(monotonic_ns().saturating_sub(1_000_000_000));
        assert!(!clock.arm());
        clock.confirm(monotonic_ns());
        assert!(clock.arm());
    }

    #[test]
    fn keeper_protocol_round_trips() {
        let s = FenceState {
            armed: true,
            deadline_ns: 123,
            pgid: 77,
        };
        assert_eq!(parse_keeper_line(&keeper_line(s)), Some(s));
        assert_eq!(parse_keeper_line("garbage 1 2"), None);
        assert_eq!(parse_keeper_line("arm x 1"), None);
    }

    #[test]
    fn keeper_fences_when_its_input_closes_while_armed() {
        // A process group we own and may kill: a sleeping child in its own group.
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let far = monotonic_ns() + 3_600_000_000_000;
        let input = format!("arm {far} {}\n", child.id());
        let fenced = run_keeper(std::io::Cursor::new(input), std::io::sink());
        assert_eq!(fenced, 1);
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed");
    }

    #[test]
    fn keeper_does_nothing_after_disarm() {
        let far = monotonic_ns() + 3_600_000_000_000;
        let input = format!("arm {far} 999999\ndisarm\n");
        assert_eq!(run_keeper(std::io::Cursor::new(input), std::io::sink()), 0);
    }

    proptest! {
        /// Whatever the order of confirmations and checks, the fence never lets an armed clock
        /// run past `max(confirmed) + budget` without firing.
        #[test]
        fn never_past_the_deadline_unfenced(
            events in proptest::collection::vec((any::<bool>(), 0u64..10_000), 1..50)
        ) {
            let budget = 1_000;
            let clock = FenceClock::new(Duration::from_nanos(budget));
            clock.armed.store(true, Ordering::SeqCst);
            let mut now = 0u64;
            let mut max_confirmed = 0u64;
            for (is_confirm, step) in events {
                now += step;
                if is_confirm {
                    let sent = now.saturating_sub(step / 2);
                    clock.confirm(sent);
                    max_confirmed = max_confirmed.max(sent);
                } else {
                    let fired = clock.due(now).is_some();
                    if now >= max_confirmed + budget {
                        prop_assert!(fired || !clock.is_armed());
                    } else {
                        prop_assert!(!fired);
                    }
                    if fired { return Ok(()); }
                }
            }
        }
    }
}
