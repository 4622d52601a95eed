//! A deterministic simulator of the deadman's pure core (`zgres-deadman-core`).
//!
//! Three nodes run the real [`Decider`](zgres_deadman_core::decision::Decider) and the real fence
//! arithmetic ([`FenceState`](zgres_deadman_core::fence_deadline::FenceState)) against models: a
//! ZooKeeper server that expires sessions on its own clock and deletes the ephemeral lock, a
//! PostgreSQL with timelines, promotion, streaming, fast shutdown and pg_rewind, host clocks
//! that drift, and faults drawn from a seed (ZooKeeper cuts, SIGSTOP of a deadman, kill -9 of a
//! node, PostgreSQL crashes), overlapping at random. An independent checker watches the ground
//! truth: never two writable primaries, `/history` increasing, and back to one primary with
//! every node streaming once the faults end. The same seed replays the same schedule.
//!
//! In synchronous mode (`on`, `strict`) the primary runs the real `SyncKeeper`, a commit is
//! acknowledged once a synchronous standby has it, and no acknowledged commit may be missing
//! from the final primary.
//!
//! Not modelled yet: switchover requests,
//! replication-link cuts, ZooKeeper request latency and lost replies (each request is answered
//! in the step it is sent).
#![forbid(unsafe_code)]

pub mod checker;
pub mod faults;
pub mod node;
pub mod postgres;
mod replication;
pub mod rng;
pub mod world;
pub mod zookeeper;

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
    /// Host clocks run up to this fast or slow (parts per million).
    pub max_drift_ppm: u64,
    /// The group's `synchronous_mode`.
    pub mode: zgres_schema::documents::SyncMode,
    /// A deliberate mistake to find.
    pub bug: Option<Bug>,
}

impl Default for Settings {
    /// The deadman's defaults: 4 s session, 1 s margin, 1 s loop; 3 nodes; 4 faults in 40 s.
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
            max_drift_ppm: 5_000,
            mode: zgres_schema::documents::SyncMode::Off,
            bug: None,
        }
    }
}

/// What one schedule did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its seed.
    pub seed: u64,
    /// Invariants it broke (empty: none).
    pub violations: Vec<checker::Violation>,
    /// Acknowledged writes.
    pub writes: usize,
    /// Acknowledged writes the final primary does not have (asynchronous replication loses
    /// what the standbys had not received: counted; in synchronous mode a violation).
    pub lost_writes: usize,
    /// Promotions.
    pub promotions: usize,
    /// The faults, for a report.
    pub faults: Vec<faults::Fault>,
}

/// Runs the schedule of `seed`.
pub fn run(seed: u64, settings: Settings) -> Outcome {
    let mut world = world::World::new(seed, settings);
    world.run();
    let lost_writes = world
        .survivor()
        .map_or(0, |wal| checker::lost(&world.writes, wal).len());
    Outcome {
        seed,
        violations: world.violations.clone(),
        writes: world.writes.len(),
        lost_writes,
        promotions: world.promotions,
        faults: world.faults().to_vec(),
    }
}
