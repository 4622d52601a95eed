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
    /// Faults per schedule.
    pub faults: usize,
    /// Operator switchover requests per schedule (to a named node or to the best one), drawn
    /// from their own stream of the seed, so they leave the faults of a seed as they are.
    pub switchovers: usize,
    /// Host clocks run up to this fast or slow (parts per million).
    pub max_drift_ppm: u64,
    /// The group's `synchronous_mode`.
    pub mode: zgres_schema::documents::SyncMode,
    /// A deliberate mistake to find.
    pub bug: Option<Bug>,
}

impl Default for Settings {
    /// The deadman's defaults: 4 s session, 1 s margin, 1 s loop; 3 nodes; 4 faults and 2
    /// switchover requests in 40 s.
    fn default() -> Self {
        Settings {
            nodes: 3,
            session_timeout_ms: 4_000,
            margin_ms: 1_000,
            loop_interval_ms: 1_000,
            duration_ms: 40_000,
            heal_ms: 40_000,
            step_ms: 10,
            faults: 4,
            switchovers: 2,
            max_drift_ppm: 5_000,
            mode: zgres_schema::documents::SyncMode::Off,
            bug: None,
        }
    }
}
