//! One simulated database node: its host clock, its PostgreSQL, and the deadman's shell as a
//! model (session, fence, published state) around the real decision core.

use std::time::{Duration, Instant};

use zgres_deadman_core::decision::{Decider, ShutdownPlan};
use zgres_deadman_core::fence_deadline::{self, grace_for, FenceState};
use zgres_deadman_core::synchronous::SyncKeeper;
use zgres_schema::documents::Tags;
use zgres_schema::NodeId;

use crate::postgres::{Phase, Postgres, Wal};
use crate::zookeeper::SessionId;

/// A host's monotonic clock: runs `rate_ppm` parts per million fast (negative: slow).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Drift in parts per million.
    pub rate_ppm: i64,
}

impl Clock {
    /// The host's reading, in ns, at real time `t` (ms).
    pub fn ns(&self, t: u64) -> u64 {
        let ns = t as i128 * 1_000_000;
        (ns + ns * self.rate_ppm as i128 / 1_000_000) as u64
    }
}

/// What a node's decider is given from the schedule's settings.
#[derive(Debug, Clone, Copy)]
pub struct DeciderTiming {
    /// The deadman's takeover wait, from its settings: also published in its state.
    pub takeover_wait: Duration,
    /// Its primary restart bound.
    pub restart_timeout: Duration,
}

/// The decider a deadman process starts with: the default tags, a 2 s election wait (the
/// deadman's default), the schedule's restart bound and takeover wait.
fn new_decider(id: NodeId, timing: DeciderTiming) -> Decider {
    Decider::new(
        id,
        Tags::default(),
        timing.restart_timeout,
        Duration::from_secs(2),
    )
    .with_takeover_wait(timing.takeover_wait)
}

/// A node's network links that are cut at the moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cuts {
    /// The deadman's link to ZooKeeper (both ways).
    pub zookeeper: bool,
    /// Its PostgreSQL's replication links to every peer (both ways).
    pub replication: bool,
    /// With `zookeeper`: the deadman's ZooKeeper member is cut from its leader rather than
    /// from the deadman, and answers its pings until this real time (ms).
    pub pings_answered_until: Option<u64>,
}

/// Whether the deadman process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// Running.
    Running,
    /// SIGSTOPped until this real time (ms).
    StoppedUntil(u64),
    /// Killed; the supervisor starts it again at this real time (ms).
    DeadUntil(u64),
}

/// The deadman's fence as the shell keeps it: `t_ok`, the budget, the state the keeper enforces.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    /// Host time (ns) of the send of the last request that got a reply.
    pub t_ok_ns: u64,
    /// `session_timeout - margin`.
    pub budget: Duration,
    /// What the keeper enforces.
    pub state: FenceState,
    /// The deadline a fast shutdown was already asked for.
    pub demoted_for: Option<u64>,
    /// The session it was armed in: only that session's answers confirm it while armed (as
    /// `fence::SessionFence`).
    pub armed_in: SessionId,
}

impl Fence {
    /// Not armed, never confirmed (a deadman process that just started).
    pub fn disarmed(budget: Duration) -> Fence {
        Fence {
            t_ok_ns: 0,
            budget,
            state: FenceState::DISARMED,
            demoted_for: None,
            armed_in: 0,
        }
    }

    /// Arms it over a running PostgreSQL if the session was confirmed recently enough at host
    /// time `now_ns` (as `FenceClock::arm`), for `session`.
    pub fn arm(&mut self, now_ns: u64, session: Option<SessionId>) -> bool {
        let deadline = fence_deadline::deadline_ns(self.t_ok_ns, self.budget);
        if !fence_deadline::may_arm(now_ns, deadline) {
            return false;
        }
        self.state = FenceState {
            armed: true,
            deadline_ns: deadline,
            pgid: 1,
            grace_ns: grace_for(self.budget).as_nanos() as u64,
        };
        self.armed_in = session.unwrap_or(0);
        true
    }

    /// A confirmation by an answer of `session`: the deadline moves with `t_ok` while armed,
    /// if armed in that session.
    pub fn confirmed(&mut self, sent_ns: u64, session: SessionId) {
        if self.state.armed && self.armed_in != session {
            return;
        }
        self.t_ok_ns = self.t_ok_ns.max(sent_ns);
        if self.state.armed {
            self.state.deadline_ns = fence_deadline::deadline_ns(self.t_ok_ns, self.budget);
        }
    }
}

/// One node.
pub struct Node {
    /// Its index in the world.
    pub index: usize,
    /// Its id.
    pub id: NodeId,
    /// Its machine: clock and network links.
    pub host: Host,
    /// Its PostgreSQL.
    pub pg: Postgres,
    /// The deadman process and what it holds in memory.
    pub deadman: Deadman,
    /// The fence.
    pub fence: Fence,
    /// The client's commit waiting for a synchronous standby.
    pub pending_commit: Option<crate::checker::Write>,
}

/// A node's machine.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Its clock.
    pub clock: Clock,
    /// The `Instant` the clock counts from.
    pub epoch: Instant,
    /// Which of its network links are cut.
    pub cut: Cuts,
}

impl Host {
    /// The host's `Instant` at real time `t`.
    pub fn instant(&self, t: u64) -> Instant {
        self.epoch + Duration::from_nanos(self.clock.ns(t))
    }
}

/// The deadman process: whether it runs, and what it keeps in memory (a new process starts
/// with all of it new but its timing and the lock version it saw, which a watch re-reads).
pub struct Deadman {
    /// Whether it runs.
    pub process: Process,
    /// The pure core.
    pub decider: Decider,
    /// Its ZooKeeper session, if any.
    pub session: Option<SessionId>,
    /// When its loop runs the next round and its ZooKeeper client pings.
    pub timers: Timers,
    /// What it saw of the lock.
    pub lock_seen: LockSeen,
    /// The primary's synchronous-replication bookkeeping (the real core's).
    pub sync_keeper: SyncKeeper,
    /// What a shutdown would do, as of the last round that saw ZooKeeper (the real core's
    /// `shutdown_plan`).
    pub on_shutdown: ShutdownPlan,
    /// Its timing settings: given to every decider it starts with (the takeover wait is also
    /// published in its state).
    pub timing: DeciderTiming,
}

impl Deadman {
    /// A running process that has not yet connected or decided anything.
    fn new(id: NodeId, timing: DeciderTiming) -> Deadman {
        Deadman {
            process: Process::Running,
            decider: new_decider(id, timing),
            session: None,
            timers: Timers::default(),
            lock_seen: LockSeen::default(),
            sync_keeper: SyncKeeper::default(),
            on_shutdown: ShutdownPlan::STOP,
            timing,
        }
    }

    /// A new process at `t`: a new decider, no session, a round at once. The ZooKeeper
    /// client's ping schedule and the lock version seen are kept (a watch re-reads the lock).
    fn restart(&mut self, id: NodeId, t: u64) {
        let next_ping = self.timers.next_ping;
        let lock_version = self.lock_seen.version;
        *self = Deadman::new(id, self.timing);
        self.timers = Timers {
            next_ping,
            ..Timers::at(t)
        };
        self.lock_seen.version = lock_version;
    }
}

/// When a deadman's loop and its ZooKeeper client act next (real ms), as the shell schedules
/// them: a periodic round runs on the first answered ping from `round_shares_from` on, else at
/// `round_at` (`decision::round_time`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timers {
    /// When the next round's own timer runs it.
    pub round_at: u64,
    /// From when on an answered ping runs the next round.
    pub round_shares_from: u64,
    /// The next round's due time on the host's clock.
    pub round_due: Option<Instant>,
    /// The last round's due time, if its timer or a shared answer ran it (not an event).
    pub last_due: Option<Instant>,
    /// When the ZooKeeper client next pings.
    pub next_ping: u64,
}

impl Timers {
    /// A round at `t` sharing nothing, and a ping at once.
    pub fn at(t: u64) -> Timers {
        Timers {
            round_at: t,
            round_shares_from: t,
            ..Timers::default()
        }
    }
}

/// What a deadman saw of the lock.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockSeen {
    /// The lock version its last round saw (a change wakes the node, as a watch would).
    pub version: u64,
    /// The creation zxid of the lock it last saw held by another session (as the shell's
    /// `coordination::lock_release` keeps it).
    pub other_czxid: Option<u64>,
}

impl Node {
    /// A node with a stopped PostgreSQL holding `wal`.
    pub fn new(
        index: usize,
        wal: Wal,
        standby: bool,
        clock: Clock,
        budget: Duration,
        epoch: Instant,
        timing: DeciderTiming,
    ) -> Node {
        let id: NodeId = format!("10.0.0.{}:5432", index + 1)
            .parse()
            .expect("a valid id");
        Node {
            index,
            id,
            host: Host {
                clock,
                epoch,
                cut: Cuts::default(),
            },
            pg: Postgres {
                phase: Phase::Stopped,
                wal,
                standby_signal: standby,
                upstream: None,
                standby_names: String::new(),
            },
            deadman: Deadman::new(id, timing),
            fence: Fence::disarmed(budget),
            pending_commit: None,
        }
    }

    /// Whether the deadman runs at `t` (waking a stopped one whose time is up).
    pub fn deadman_runs(&mut self, t: u64) -> bool {
        match self.deadman.process {
            Process::Running => true,
            Process::StoppedUntil(until) | Process::DeadUntil(until) if t >= until => {
                if matches!(self.deadman.process, Process::DeadUntil(_)) {
                    // A new process, and with it a disarmed fence.
                    self.deadman.restart(self.id, t);
                    self.fence = Fence::disarmed(self.fence.budget);
                }
                self.deadman.process = Process::Running;
                true
            }
            _ => false,
        }
    }
}
