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
//! Operators ask for switchovers and failovers at random moments, stop a node's deadman in a
//! paused group (`Mix::paused_stops`), and a node's replication links may be cut while it
//! still reaches ZooKeeper. The ZooKeeper member a deadman uses may be cut from the ensemble's
//! leader (`Mix::member_cuts`): it answers the deadman's pings, so its fence stays confirmed,
//! for `syncLimit` ticks while the leader hears nothing of the session.
//!
//! Not modelled yet: ZooKeeper request latency and lost replies (each request is answered in
//! the step it is sent), a member cut from its leader answering reads with stale data (the
//! deadman is modelled as learning nothing then), a full disk.
#![forbid(unsafe_code)]

mod act;
mod availability;
pub mod checker;
pub mod faults;
mod keepalive;
pub mod node;
mod observe;
mod paused_stop;
pub mod postgres;
pub mod record;
mod replication;
pub mod rng;
mod settings;
pub mod world;
pub mod zookeeper;

pub use settings::{Bug, DeadmanTiming, Ensemble, Mix, Settings};

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
    /// Promotions and requests.
    pub tally: record::Tally,
    /// The longest time without a writable primary after the first one, in ms.
    pub longest_without_primary_ms: u64,
    /// The faults, for a report.
    pub faults: Vec<faults::Fault>,
    /// For each fault that ended alone: its kind and the ms from its end until the group was
    /// whole again (one writable primary holding the lock, every other node streaming from it).
    pub recoveries: Vec<(faults::Kind, u64)>,
}

/// Runs the schedule of `seed`.
pub fn run(seed: u64, settings: Settings) -> Outcome {
    let mut world = world::World::new(seed, settings);
    world.run();
    let lost_writes = world
        .survivor()
        .map_or(0, |wal| checker::lost(&world.record.writes, wal).len());
    Outcome {
        seed,
        violations: world.record.violations.clone(),
        writes: world.record.writes.len(),
        lost_writes,
        tally: world.record.tally,
        longest_without_primary_ms: world.record.outage.longest_ms,
        faults: world.faults().to_vec(),
        recoveries: world.record.recovery.times.clone(),
    }
}
