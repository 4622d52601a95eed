//! The shape of every schedule, and the deliberate mistakes the checker must find.

/// A deliberate mistake, to show the checker finds it (never used by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Fence PostgreSQL only when the client learns that its session expired, instead of at
    /// `t_ok + budget` on the host's clock.
    FenceFromExpiry,
    /// Publish a standby in `/sync` as soon as PostgreSQL calls it synchronous, without
    /// waiting for it to flush what the primary had acknowledged before (`SyncKeeper`'s
    /// confirm step skipped).
    SkipSyncConfirm,
    /// At a paused stop, leave the primary running without making its lock persistent first
    /// (the lock goes with the closed session).
    ForgetPausedLock,
    /// Promote a node that took over an expired lock at once, without the takeover wait
    /// (`decision::takeover`): a primary whose ZooKeeper member was cut from its leader still
    /// has its fence confirmed by that member.
    NoTakeoverWait,
    /// Release the lock quietly whenever PostgreSQL is stopped, whether or not the core says
    /// every earlier holder is fenced: a node that gives the lock up while still in its own
    /// takeover wait lets the next holder promote while the primary before may still write.
    QuietEveryRelease,
    /// Let a new ZooKeeper session's answers confirm a fence armed in the session before it
    /// (whose lock went with it): a primary on a member cut from its leader reconnects
    /// elsewhere and keeps a hung PostgreSQL unfenced.
    NewSessionConfirmsFence,
}

/// The ZooKeeper ensemble's timing, as the deadmen declare it in `[zookeeper]`.
#[derive(Debug, Clone, Copy)]
pub struct Ensemble {
    /// `tickTime`.
    pub tick_ms: u64,
    /// `syncLimit` in ticks: a member cut from its leader answers its clients' pings for
    /// `sync_limit × tick_ms` before it drops them.
    pub sync_limit: u32,
}

impl Ensemble {
    /// How long a member cut from its leader goes on answering pings.
    pub fn follower_timeout_ms(&self) -> u64 {
        self.tick_ms * u64::from(self.sync_limit)
    }
}

/// The deadmen's timing settings, as `[zookeeper]` and `[timing]` set them.
#[derive(Debug, Clone, Copy)]
pub struct DeadmanTiming {
    /// ZooKeeper session timeout.
    pub session_timeout_ms: u64,
    /// The fence margin (`session_timeout - margin` is the fence budget).
    pub margin_ms: u64,
    /// The deadman's loop interval.
    pub loop_interval_ms: u64,
    /// `primary_restart_timeout`: how long a lock holder's PostgreSQL may stay down or
    /// silent before it gives the lock up.
    pub restart_timeout_ms: u64,
}

/// The shape of every schedule.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Nodes in the group.
    pub nodes: usize,
    /// The deadmen's timing settings.
    pub deadman: DeadmanTiming,
    /// Faults happen from 5 s to this time.
    pub duration_ms: u64,
    /// Then this long without faults, at the end of which the group must be whole.
    pub heal_ms: u64,
    /// The simulation's time step.
    pub step_ms: u64,
    /// What happens to the group: how many faults and operator requests of each kind.
    pub mix: Mix,
    /// Host clocks run up to this fast or slow (parts per million).
    pub max_drift_ppm: u64,
    /// The group's `synchronous_mode`.
    pub mode: zgres_schema::documents::SyncMode,
    /// `synchronous_node_count` and `synchronous_method` (in `on` and `strict` mode).
    pub acknowledgers: zgres_deadman_core::synchronous::Acknowledgers,
    /// A deliberate mistake to find.
    pub bug: Option<Bug>,
    /// The ensemble's timing (`tickTime`, `syncLimit`).
    pub ensemble: Ensemble,
}

impl Settings {
    /// The takeover wait the deadmen derive from these settings (zero with
    /// [`Bug::NoTakeoverWait`]). The model's client pings every third of the session timeout.
    pub fn takeover_wait(&self) -> std::time::Duration {
        use std::time::Duration;
        use zgres_deadman_core::decision::{takeover_wait, TakeoverTiming};
        if self.bug == Some(Bug::NoTakeoverWait) {
            return Duration::ZERO;
        }
        takeover_wait(TakeoverTiming {
            tick: Duration::from_millis(self.ensemble.tick_ms),
            sync_limit: self.ensemble.sync_limit,
            idle_ping_gap: Duration::from_millis(self.deadman.session_timeout_ms / 3),
            fence_margin: Duration::from_millis(self.deadman.margin_ms),
        })
    }
}

/// How many faults and operator requests of each kind a schedule has. Each kind after the
/// first is drawn from its own stream of the seed, so adding one leaves the others of a seed
/// as they were.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Faults on a node: ZooKeeper cuts, SIGSTOP of a deadman, kill -9 of a node, PostgreSQL
    /// crashes.
    pub faults: usize,
    /// Operator switchover requests (to a named node or to the best one).
    pub switchovers: usize,
    /// Cuts of a node's replication links (both ways, to every peer; ZooKeeper still reached).
    pub replication_cuts: usize,
    /// Operator failover requests naming a node (`zgresctl failover --to`), made as zgresctl
    /// makes them: only while the named node publishes itself a healthy replica.
    pub failovers: usize,
    /// Operator stops of a node's deadman in a paused group (none by default: the named seeds
    /// found before they were modelled replay as they did).
    pub paused_stops: usize,
    /// Operator stops of a node's deadman in a running group, each started again 1 to 4
    /// session timeouts later (none by default, as paused stops).
    pub stops: usize,
    /// Cuts of the ZooKeeper member a node's deadman uses from the ensemble's leader: the
    /// member answers the deadman's pings for the follower timeout, then drops it.
    pub member_cuts: usize,
    /// Hangs of a node's PostgreSQL: running, but answering nothing (no probe, no commit, no
    /// WAL sent or received) for 0.5 to 4 session timeouts, unless killed meanwhile (none by
    /// default, as stops).
    pub pg_hangs: usize,
    /// Stretches in which a node's `pre_promote` callback vetoes its promotions, 0.5 to 4
    /// session timeouts long (none by default, as stops).
    pub vetoes: usize,
}

impl Mix {
    /// Only the faults on nodes and the switchover requests (the mix before replication cuts
    /// and failover requests were modelled): named seeds found then replay as they did.
    pub fn classic(faults: usize, switchovers: usize) -> Mix {
        Mix {
            faults,
            switchovers,
            replication_cuts: 0,
            failovers: 0,
            paused_stops: 0,
            stops: 0,
            member_cuts: 0,
            pg_hangs: 0,
            vetoes: 0,
        }
    }
}

impl Default for Mix {
    /// 4 faults, 2 switchover requests, 1 replication cut, 1 failover request and 1 member
    /// cut.
    fn default() -> Self {
        Mix {
            replication_cuts: 1,
            failovers: 1,
            member_cuts: 1,
            ..Mix::classic(4, 2)
        }
    }
}

impl Default for Settings {
    /// The deadman's defaults: 4 s session, 1 s margin, 1 s loop, 10 s restart bound; 3 nodes; the default
    /// [`Mix`] in 40 s; an ensemble at `tickTime` 200 ms, `syncLimit` 5.
    fn default() -> Self {
        Settings {
            nodes: 3,
            deadman: DeadmanTiming {
                session_timeout_ms: 4_000,
                margin_ms: 1_000,
                loop_interval_ms: 1_000,
                restart_timeout_ms: 10_000,
            },
            duration_ms: 40_000,
            heal_ms: 40_000,
            step_ms: 10,
            mix: Mix::default(),
            max_drift_ppm: 5_000,
            mode: zgres_schema::documents::SyncMode::Off,
            acknowledgers: Default::default(),
            bug: None,
            ensemble: Ensemble {
                tick_ms: 200,
                sync_limit: 5,
            },
        }
    }
}
