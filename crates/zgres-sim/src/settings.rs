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
}

/// The shape of every schedule.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Nodes in the group.
    pub nodes: usize,
    /// ZooKeeper session timeout.
    pub session_timeout_ms: u64,
    /// The fence margin (`session_timeout - margin` is the fence budget).
    pub margin_ms: u64,
    /// The deadman's loop interval.
    pub loop_interval_ms: u64,
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
        }
    }
}

impl Default for Mix {
    /// 4 faults, 2 switchover requests, 1 replication cut and 1 failover request.
    fn default() -> Self {
        Mix {
            replication_cuts: 1,
            failovers: 1,
            ..Mix::classic(4, 2)
        }
    }
}

impl Default for Settings {
    /// The deadman's defaults: 4 s session, 1 s margin, 1 s loop; 3 nodes; the default
    /// [`Mix`] in 40 s.
    fn default() -> Self {
        Settings {
            nodes: 3,
            session_timeout_ms: 4_000,
            margin_ms: 1_000,
            loop_interval_ms: 1_000,
            duration_ms: 40_000,
            heal_ms: 40_000,
            step_ms: 10,
            mix: Mix::default(),
            max_drift_ppm: 5_000,
            mode: zgres_schema::documents::SyncMode::Off,
            acknowledgers: Default::default(),
            bug: None,
        }
    }
}
