//! Fencing: stop PostgreSQL from accepting writes before ZooKeeper can expire our session.
//!
//! The rule and its arithmetic live in the pure core ([`zgres_deadman_core::fence_deadline`]):
//! with `t_ok` the send time of the last ZooKeeper request that got a reply, a primary is killed
//! no later than `t_ok + session_timeout - margin`. This module keeps that state lock-free and
//! runs the two fencers that enforce it.
//!
//! Two independent fencers watch the same deadline, neither of which any blocking call in the
//! daemon can delay:
//! - [`FenceThread`]: a dedicated OS thread of the deadman that touches only atomics, the
//!   monotonic clock and `kill(2)`;
//! - the fence keeper ([`run_keeper`]): a separate small process fed with the deadline over a
//!   pipe. It keeps working while the deadman is stopped (SIGSTOP) or wedged, and fences at once
//!   if the deadman dies while armed (its end of the pipe closes).
//!
//! Fencing is graceful first: at `deadline - grace` both fencers ask the postmaster for a fast
//! shutdown (SIGINT). New commits stop at once, and the walsenders ship the WAL of every commit
//! already acknowledged to the standbys still connected before PostgreSQL exits, so a
//! partitioned primary loses nothing a standby could have had. At the deadline itself comes
//! the backstop: `SIGKILL` to PostgreSQL's whole process group (postmaster and every backend),
//! whether or not the shutdown finished. The health API stops calling the node a primary from
//! `deadline - grace` on (see [`FenceClock::may_serve_as_primary`]).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;

use zgres_deadman_core::fence_deadline;
pub use zgres_deadman_core::fence_deadline::{grace_for, FenceState, FenceStep, MAX_GRACE};

/// Longest the fence thread sleeps: only a backstop. It sleeps until the next step is due,
/// and whatever could bring a step closer (arming, a new budget, a new target, stopping)
/// wakes it; confirmations only move the deadline later, so they need not.
const BACKSTOP_NAP: Duration = Duration::from_secs(10);
/// Nanoseconds on `CLOCK_MONOTONIC`: never jumps, and is the same clock in every process on the
/// host, so deadlines can be handed to the keeper process as plain numbers.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make the fence fire early.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// [`monotonic_ns`] at `at`, an earlier moment on the same clock (`Instant` is
/// `CLOCK_MONOTONIC` on Linux; the conversion only ever errs earlier, towards fencing sooner).
pub fn monotonic_ns_at(at: std::time::Instant) -> u64 {
    monotonic_ns().saturating_sub(at.elapsed().as_nanos() as u64)
}

/// The fencing deadline, shared lock-free between the daemon and the fence thread.
#[derive(Debug, Default)]
pub struct FenceClock {
    last_ok_ns: AtomicU64,
    budget_ns: AtomicU64,
    grace_ns: AtomicU64,
    /// The deadline for which the graceful shutdown was last asked for (at most once each).
    demoted_for_ns: AtomicU64,
    armed: AtomicBool,
    target_pgid: AtomicI32,
    fired: AtomicU64,
    /// Who a change wakes: the fence thread, the keeper feeder, the heartbeat.
    listeners: listeners::Listeners,
    /// Which session's answers confirm the armed fence ([`SessionFence`]).
    sessions: session_fence::SessionGenerations,
}

impl FenceClock {
    /// A disarmed clock whose deadline is `budget` after each confirmation.
    pub fn new(budget: Duration) -> Self {
        let clock = FenceClock::default();
        clock.set_budget(budget);
        clock
    }

    /// Sets the budget (`session_timeout - margin`), e.g. after the server granted a timeout,
    /// and the graceful window that goes with it ([`grace_for`]).
    pub fn set_budget(&self, budget: Duration) {
        self.budget_ns
            .store(budget.as_nanos() as u64, Ordering::SeqCst);
        self.grace_ns
            .store(grace_for(budget).as_nanos() as u64, Ordering::SeqCst);
        self.listeners.wake_all();
    }

    /// Records that a request sent at `sent_ns` got a reply. Never moves the clock back.
    pub fn confirm(&self, sent_ns: u64) {
        self.last_ok_ns.fetch_max(sent_ns, Ordering::SeqCst);
        // Wakes the heartbeat (if it waits) while the runtime is awake anyway for the reply.
        self.listeners.notify_confirmed();
        // A disarmed deadline concerns nobody (arming notifies); an idle replica's pings
        // should not wake anything.
        if self.is_armed() {
            self.listeners.notify_changed();
        }
    }

    /// Sets the process group to kill (PostgreSQL's), or 0 for none.
    pub fn set_target(&self, pgid: i32) {
        self.target_pgid.store(pgid, Ordering::SeqCst);
        // With a PostgreSQL to ask, a graceful shutdown may now be due before the deadline the
        // fence thread sleeps towards.
        self.listeners.wake_all();
    }

    /// Resolves after the state changed (or at once if it changed since the last call).
    /// For one consumer, the keeper feeder.
    pub async fn changed(&self) {
        self.listeners.changed().await;
    }

    /// Resolves after a confirmation (or at once if one came since the last call). For one
    /// consumer, the heartbeat.
    pub async fn confirmed(&self) {
        self.listeners.confirmed().await;
    }

    /// Starts enforcing the deadline. Returns false (and stays disarmed) when the deadline has
    /// already passed: the caller must not start or promote a primary then.
    pub fn arm(&self) -> bool {
        if !fence_deadline::may_arm(monotonic_ns(), self.deadline_ns()) {
            return false;
        }
        self.sessions.arming();
        self.armed.store(true, Ordering::SeqCst);
        // The deadline may have passed between the check and the store; the fence thread sees
        // the armed flag and fires, which is the safe outcome.
        self.listeners.wake_all();
        true
    }

    /// Stops enforcing the deadline (PostgreSQL no longer runs as a primary).
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.listeners.notify_changed();
    }

    /// Whether the deadline is enforced.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    /// How many times the fence fired.
    pub fn fired_count(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }

    /// The budget: how long after `t_ok` the deadline falls.
    pub fn budget(&self) -> Duration {
        Duration::from_nanos(self.budget_ns.load(Ordering::SeqCst))
    }

    /// `t_ok`: send time of the last request known to have been answered.
    pub fn last_ok_ns(&self) -> u64 {
        self.last_ok_ns.load(Ordering::SeqCst)
    }

    /// `t_ok + budget`.
    pub fn deadline_ns(&self) -> u64 {
        fence_deadline::deadline_ns(self.last_ok_ns.load(Ordering::SeqCst), self.budget())
    }

    /// Current state.
    pub fn state(&self) -> FenceState {
        FenceState {
            armed: self.is_armed(),
            deadline_ns: self.deadline_ns(),
            pgid: self.target_pgid.load(Ordering::SeqCst),
            grace_ns: self.grace_ns.load(Ordering::SeqCst),
        }
    }

    /// Whether, at `now_ns`, this node may call itself a writable primary (see
    /// [`FenceState::may_serve_as_primary`]). Computed from atomics only, so the health API
    /// answers truthfully even while the loop is stuck.
    pub fn may_serve_as_primary(&self, now_ns: u64) -> bool {
        self.state().may_serve_as_primary(now_ns)
    }

    /// If armed and `now_ns` is at or past `deadline - grace`: returns the postmaster to ask
    /// for a fast shutdown, once per deadline (a confirmation that moves the deadline allows
    /// another).
    pub fn demote_due(&self, now_ns: u64) -> Option<i32> {
        let state = self.state();
        let demoted_for = Some(self.demoted_for_ns.load(Ordering::SeqCst));
        // `Demote` is only ever due with a PostgreSQL to ask (pgid > 0).
        if state.step(now_ns, demoted_for) != FenceStep::Demote {
            return None;
        }
        let before = self
            .demoted_for_ns
            .swap(state.deadline_ns, Ordering::SeqCst);
        (before != state.deadline_ns).then_some(state.pgid)
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

/// Kills PostgreSQL whole with SIGKILL: the process group its postmaster `pgid` leads and every
/// process of the instance outside it (see [`instance`]); `known_dir` names the instance when
/// the postmaster may already be gone. Returns whether anything was there to kill.
pub fn kill_postgres(pgid: i32, known_dir: Option<&std::path::Path>) -> bool {
    let killed = instance::kill_instance(pgid, known_dir);
    if killed.strays > 0 {
        tracing::warn!(
            pgid,
            strays = killed.strays,
            "killed PostgreSQL processes outside the postmaster's group (backends outlive their postmaster)"
        );
    }
    killed.any()
}

/// Asks the postmaster `pid` for a fast shutdown (SIGINT); returns whether it was there.
pub fn ask_fast_shutdown(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGINT).is_ok()
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
                clock.listeners.register_fence_thread();
                // The armed target's data directory, read while its postmaster lives: a kill
                // after the postmaster died (with its deadman's guardian) still finds the
                // backends it left.
                let mut known = instance::KnownInstance::default();
                while !stop_flag.load(Ordering::SeqCst) {
                    let state = clock.state();
                    if state.armed {
                        known.learn(state.pgid);
                    }
                    let now = monotonic_ns();
                    let deadline = clock.deadline_ns();
                    if let Some(pid) = clock.demote_due(now) {
                        // Signal first; only then log, which may block.
                        if ask_fast_shutdown(pid) {
                            tracing::error!(
                                pid,
                                deadline_in_ms = deadline.saturating_sub(now) / 1_000_000,
                                "FENCING: ZooKeeper session not confirmed; fast shutdown of PostgreSQL (standbys receive its WAL)"
                            );
                        }
                    }
                    if let Some(pgid) = clock.due(now) {
                        if kill_postgres(pgid, known.dir(pgid)) {
                            tracing::error!(
                                pgid,
                                late_by_ms = now.saturating_sub(deadline) / 1_000_000,
                                "FENCED: ZooKeeper session not confirmed by the deadline; killed PostgreSQL's process group"
                            );
                        } else {
                            tracing::warn!("fence deadline passed with no PostgreSQL left to kill");
                        }
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

/// How long the fence thread may sleep: until the next step when armed (the deadline only moves
/// later, except through `set_budget`/`arm`/`set_target`, which wake the thread), capped as a
/// backstop. While confirmations keep coming it wakes about once per budget, finds the deadline
/// moved and sleeps again.
fn nap(clock: &FenceClock, now_ns: u64) -> Duration {
    let demoted_for = Some(clock.demoted_for_ns.load(Ordering::SeqCst));
    match clock.state().step(now_ns, demoted_for) {
        FenceStep::Idle => BACKSTOP_NAP,
        FenceStep::WaitUntil(at) => Duration::from_nanos(at.saturating_sub(now_ns))
            .clamp(Duration::from_micros(100), BACKSTOP_NAP),
        FenceStep::Demote | FenceStep::Kill => Duration::from_micros(100),
    }
}

/// Blocks the signals an operator or systemd sends the deadman (SIGHUP, SIGINT, SIGTERM,
/// SIGUSR1, SIGUSR2) for this process and the threads it starts: the fence keeper, which must
/// outlive every one of them, calls it first (SIGKILL cannot be blocked).
pub fn keep_signals_away() {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(signal);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

pub mod board;
pub mod instance;
pub mod keeper;
mod keeper_main;
mod listeners;
mod session_fence;
pub use keeper_main::run_keeper;
pub use session_fence::SessionFence;

#[cfg(test)]
mod tests;
