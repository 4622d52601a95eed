//! Faults drawn from the schedule's seed: what happens to which node, from when, for how long.
//! They may overlap.

use crate::rng::Rng;
use crate::settings::Settings;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The node's deadman cannot reach ZooKeeper (both directions).
    ZooKeeperCut,
    /// The deadman is SIGSTOPped (the fence keeper, a separate process, keeps running).
    Pause,
    /// kill -9 of the whole node (deadman, keeper, PostgreSQL); the supervisor restarts the
    /// deadman when the fault ends.
    KillNode,
    /// PostgreSQL crashes; the deadman lives.
    CrashPostgres,
    /// The node's replication links are cut, both ways, to every peer: no WAL streams to or
    /// from it, no pg_rewind against it; its deadman still reaches ZooKeeper.
    ReplicationCut,
    /// Not a fault: an operator asks for a switchover to `node` (`zgresctl switchover --to`).
    SwitchoverTo,
    /// Not a fault: an operator asks for a switchover to the best replica.
    Switchover,
    /// Not a fault: an operator asks for a failover to `node` (`zgresctl failover --to`).
    FailoverTo,
    /// The ZooKeeper member the node's deadman uses is cut from the ensemble's leader: it
    /// answers the deadman's pings (confirming its fence) for the follower timeout, while the
    /// leader hears nothing of the session; then it drops the deadman. Reads and writes get
    /// nowhere throughout.
    MemberCut,
    /// Not a fault: an operator pauses the group, stops `node`'s deadman once it has had time
    /// to see the pause ([`PAUSED_STOP_AFTER_MS`] later), starts it again and resumes the group
    /// at the end. The deadman leaves PostgreSQL running (a primary under a lock left
    /// persistent) and the new one takes it over.
    PausedStop,
    /// Not a fault: an operator stops `node`'s deadman in a running group (`systemctl stop`:
    /// SIGTERM), and it is started again at the end. A primary stops PostgreSQL and hands its
    /// lock to a streaming standby.
    Stop,
    /// The node's PostgreSQL hangs (SIGSTOP, storage that blocks): it runs but answers no probe,
    /// commits nothing and sends or receives no WAL until the end, unless killed meanwhile.
    PgHang,
    /// The node's `pre_promote` callback vetoes every promotion until the end (a health check
    /// of the operator's that fails): the deadman gives the lock up and sits out.
    Veto,
}

/// How long after pausing the group a paused stop stops the deadman: two default rounds.
pub const PAUSED_STOP_AFTER_MS: u64 = 2_000;

/// A fault window.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// What.
    pub kind: Kind,
    /// To which node.
    pub node: usize,
    /// From (real ms).
    pub from: u64,
    /// Until (real ms).
    pub until: u64,
}

/// Every fault and operator request of `seed`'s schedule, from 5 s to `duration_ms`: the
/// faults on nodes from `rng` (the schedule's main stream, after the nodes' clocks), each
/// other kind from a stream of its own, so adding a kind leaves the others of a seed as they
/// were.
pub fn schedule(rng: &mut Rng, seed: u64, settings: &Settings) -> Vec<Fault> {
    let (nodes, session) = (settings.nodes, settings.deadman.session_timeout_ms);
    let window = (5_000, settings.duration_ms);
    let mix = settings.mix;
    let mut faults = draw(rng, mix.faults, nodes, window, session);
    let mut operator = Rng::new(seed ^ 0x5157_C40F);
    faults.extend(draw_switchovers(
        &mut operator,
        mix.switchovers,
        nodes,
        window,
    ));
    let mut links = Rng::new(seed ^ 0x11AC_C075);
    let replication = Kind::ReplicationCut;
    faults.extend(draw_cuts(
        &mut links,
        replication,
        mix.replication_cuts,
        nodes,
        window,
        session,
    ));
    let mut failovers = Rng::new(seed ^ 0xFA11_0FE5);
    faults.extend(draw_failovers(&mut failovers, mix.failovers, nodes, window));
    let mut stops = Rng::new(seed ^ 0x5705_9A05);
    faults.extend(draw_paused_stops(
        &mut stops,
        mix.paused_stops,
        nodes,
        window,
        session,
    ));
    let mut operator_stops = Rng::new(seed ^ 0x0057_0905);
    faults.extend((0..mix.stops).map(|_| {
        let lengths = (session, session * 4);
        lasting_for(&mut operator_stops, Kind::Stop, nodes, window, lengths)
    }));
    let mut hangs = Rng::new(seed ^ 0x4A46_0F12);
    faults.extend((0..mix.pg_hangs).map(|_| {
        let lengths = (session / 2, session * 4);
        lasting_for(&mut hangs, Kind::PgHang, nodes, window, lengths)
    }));
    let mut vetoes = Rng::new(seed ^ 0x7E70_0BAD);
    faults.extend((0..mix.vetoes).map(|_| {
        let lengths = (session / 2, session * 4);
        lasting_for(&mut vetoes, Kind::Veto, nodes, window, lengths)
    }));
    let mut members = Rng::new(seed ^ 0x3E3B_E2C7);
    faults.extend(draw_cuts(
        &mut members,
        Kind::MemberCut,
        mix.member_cuts,
        nodes,
        window,
        session,
    ));
    faults
}

/// `count` faults on `nodes` nodes, starting within `window` ms after the group settled, each
/// lasting 0.2 to 3 session timeouts.
pub fn draw(
    rng: &mut Rng,
    count: usize,
    nodes: usize,
    window: (u64, u64),
    session_timeout_ms: u64,
) -> Vec<Fault> {
    (0..count)
        .map(|_| {
            let kind = match rng.range(0, 4) {
                0 => Kind::ZooKeeperCut,
                1 => Kind::Pause,
                2 => Kind::KillNode,
                _ => Kind::CrashPostgres,
            };
            lasting(rng, kind, nodes, window, session_timeout_ms)
        })
        .collect()
}

/// `count` switchover requests at random moments of `window`, half of them naming a node.
pub fn draw_switchovers(
    rng: &mut Rng,
    count: usize,
    nodes: usize,
    window: (u64, u64),
) -> Vec<Fault> {
    (0..count)
        .map(|_| {
            let from = rng.range(window.0, window.1);
            Fault {
                kind: if rng.chance(500) {
                    Kind::SwitchoverTo
                } else {
                    Kind::Switchover
                },
                node: rng.range(0, nodes as u64) as usize,
                from,
                until: from,
            }
        })
        .collect()
}

/// `count` faults of `kind` (replication cuts, member cuts) on `nodes` nodes within
/// `window`, each lasting 0.2 to 3 session timeouts.
pub fn draw_cuts(
    rng: &mut Rng,
    kind: Kind,
    count: usize,
    nodes: usize,
    window: (u64, u64),
    session_timeout_ms: u64,
) -> Vec<Fault> {
    (0..count)
        .map(|_| lasting(rng, kind, nodes, window, session_timeout_ms))
        .collect()
}

/// A `kind` fault on a random node, from a random moment of `window`, lasting 0.2 to 3
/// session timeouts (drawn in that order: seeds replay as they did).
fn lasting(
    rng: &mut Rng,
    kind: Kind,
    nodes: usize,
    window: (u64, u64),
    session_timeout_ms: u64,
) -> Fault {
    let lengths = (session_timeout_ms / 5, session_timeout_ms * 3);
    lasting_for(rng, kind, nodes, window, lengths)
}

/// A `kind` fault on a random node, from a random moment of `window`, lasting between
/// `lengths` ms (drawn in that order).
fn lasting_for(
    rng: &mut Rng,
    kind: Kind,
    nodes: usize,
    window: (u64, u64),
    lengths: (u64, u64),
) -> Fault {
    let from = rng.range(window.0, window.1);
    let length = rng.range(lengths.0, lengths.1);
    Fault {
        kind,
        node: rng.range(0, nodes as u64) as usize,
        from,
        until: from + length,
    }
}

/// `count` paused stops on `nodes` nodes within `window`, each lasting 1 to 4 session
/// timeouts (the deadman is stopped [`PAUSED_STOP_AFTER_MS`] after the pause).
pub fn draw_paused_stops(
    rng: &mut Rng,
    count: usize,
    nodes: usize,
    window: (u64, u64),
    session_timeout_ms: u64,
) -> Vec<Fault> {
    (0..count)
        .map(|_| {
            let lengths = (session_timeout_ms, session_timeout_ms * 4);
            let mut stop = lasting_for(rng, Kind::PausedStop, nodes, window, lengths);
            stop.until += PAUSED_STOP_AFTER_MS;
            stop
        })
        .collect()
}

/// `count` failover requests at random moments of `window`, each naming a node.
pub fn draw_failovers(rng: &mut Rng, count: usize, nodes: usize, window: (u64, u64)) -> Vec<Fault> {
    (0..count)
        .map(|_| {
            let from = rng.range(window.0, window.1);
            Fault {
                kind: Kind::FailoverTo,
                node: rng.range(0, nodes as u64) as usize,
                from,
                until: from,
            }
        })
        .collect()
}

/// When the cut of `kind` on `node` that is under way at `t` began, taking overlapping cuts
/// as one: a member cut from its leader by two overlapping faults is cut from the first one's
/// start (it dropped its clients once, and does not answer their pings again when the second
/// fault begins). `None` when no such cut is under way.
pub fn cut_since(faults: &[Fault], node: usize, kind: Kind, t: u64) -> Option<u64> {
    let same = |f: &&Fault| f.node == node && f.kind == kind;
    let mut since = faults
        .iter()
        .filter(same)
        .filter(|f| (f.from..f.until).contains(&t))
        .map(|f| f.from)
        .min()?;
    while let Some(earlier) = faults
        .iter()
        .filter(same)
        .filter(|f| f.from < since && f.until >= since)
        .map(|f| f.from)
        .min()
    {
        since = earlier;
    }
    Some(since)
}
