//! The faults a run injects, and how they are drawn from the seed.
//!
//! An episode is one fault, or two that overlap: the second starts while the first still
//! holds. At most one fault of an episode touches the ZooKeeper ensemble itself (a member
//! killed, the quorum lost), so an episode never kills all three members.

use std::fmt;
use std::time::Duration;

use zgres_sim::rng::Rng;

/// One fault, on one node or on the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of a whole node: its PostgreSQL, then its deadman (the supervisor restarts it).
    KillNode(usize),
    /// kill -9 of a node's PostgreSQL alone.
    KillPostgres(usize),
    /// SIGSTOP of a node's deadman (not its fence keeper), then SIGCONT.
    PauseDeadman(usize),
    /// Every ZooKeeper link of a node cut both ways.
    ZookeeperCut(usize),
    /// Every ZooKeeper link of a node cut and restored at random intervals.
    ZookeeperFlap(usize),
    /// Every ZooKeeper link of a node cut one way: requests held, replies pass.
    ZookeeperRequestsHeld(usize),
    /// Every ZooKeeper link of a node cut one way: replies held, requests pass.
    ZookeeperRepliesHeld(usize),
    /// Latency on every ZooKeeper link of a node.
    ZookeeperLatency(usize, Duration),
    /// SIGUSR2 to a node's deadman: it re-executes its binary (an upgrade), keeping
    /// PostgreSQL and its ZooKeeper session. An operation: it must never cause a failover.
    ReexecDeadman(usize),
    /// `zgresctl restart GROUP --force`: every node restarted, replicas first, the primary in
    /// place keeping the lock. An operation: it must never cause a failover. Holds until the
    /// command returns.
    RollingRestart,
    /// No peer reaches a node's PostgreSQL (standbys, pg_rewind, pgbouncer): its inbound
    /// proxy holds everything. Its own WAL receiver and its ZooKeeper links still work.
    ReplicationCut(usize),
    /// The WAL stream from one node to one peer cut: the peer's WAL receiver reaches the node
    /// but its traffic is held both ways. Other connections between them still work.
    StreamCut {
        /// The node streamed from.
        from: usize,
        /// The peer whose stream is cut.
        to: usize,
    },
    /// A node's disk (its data directory with `pg_wal`, on a tmpfs of its own) filled to
    /// the last byte, emptied again at the end. Drawn only when the run could mount one.
    DiskFull(usize),
    /// The group paused, a node's deadman stopped (SIGTERM) once it sees the pause and left
    /// to the supervisor to start again, the group resumed at the end. An operation: it must
    /// never cause a failover.
    PausedStop(usize),
    /// One ZooKeeper member killed, started again at the end.
    ZookeeperMemberDown(usize),
    /// Two of the three ZooKeeper members killed (no quorum), all but the one named; started
    /// again at the end.
    ZookeeperQuorumLost(usize),
    /// One ZooKeeper member cut from the other two (its clients still reach it), joined again
    /// at the end: a follower answers its clients' pings until it notices, the leader loses
    /// its quorum. One node's deadman is stranded on it (its links to the other members cut
    /// too): connected to it at that moment, its pings are still answered; connected
    /// elsewhere, it cannot reach a working member.
    ZookeeperMemberCut {
        /// The member cut from its peers.
        member: usize,
        /// The node whose deadman reaches only that member.
        stranded: usize,
    },
    /// Every process of a node's PostgreSQL stopped (hung storage), continued at the end:
    /// longer than the restart bound, so a frozen primary is handed over. Drawn only when
    /// named in `--only` ([`zgres_testkit::freeze`]).
    FreezePostgres(usize),
}

/// The kinds, for the figures per kind.
pub const KINDS: [&str; 18] = [
    "kill-node",
    "kill-postgres",
    "pause-deadman",
    "zk-cut",
    "zk-flap",
    "zk-requests-held",
    "zk-replies-held",
    "zk-latency",
    "replication-cut",
    "deadman-reexec",
    "rolling-restart",
    "stream-cut",
    "disk-full",
    "paused-stop",
    "zk-member-down",
    "zk-quorum-lost",
    "zk-member-cut",
    "pg-freeze",
];

/// Kinds drawn only when named (`--only`): they change what a default run draws otherwise.
const NAMED_ONLY: [usize; 1] = [17];

/// The index in [`KINDS`] of the kind named `name`.
pub fn kind_index(name: &str) -> Option<usize> {
    KINDS.iter().position(|k| *k == name)
}

impl Fault {
    /// The kind's name (one of [`KINDS`]).
    pub fn kind(&self) -> &'static str {
        let index = match self {
            Fault::KillNode(_) => 0,
            Fault::KillPostgres(_) => 1,
            Fault::PauseDeadman(_) => 2,
            Fault::ZookeeperCut(_) => 3,
            Fault::ZookeeperFlap(_) => 4,
            Fault::ZookeeperRequestsHeld(_) => 5,
            Fault::ZookeeperRepliesHeld(_) => 6,
            Fault::ZookeeperLatency(..) => 7,
            Fault::ReplicationCut(_) => 8,
            Fault::ReexecDeadman(_) => 9,
            Fault::RollingRestart => 10,
            Fault::StreamCut { .. } => 11,
            Fault::DiskFull(_) => 12,
            Fault::PausedStop(_) => 13,
            Fault::ZookeeperMemberDown(_) => 14,
            Fault::ZookeeperQuorumLost(_) => 15,
            Fault::ZookeeperMemberCut { .. } => 16,
            Fault::FreezePostgres(_) => 17,
        };
        KINDS[index]
    }

    /// The node it strikes, if it strikes one.
    pub fn node(&self) -> Option<usize> {
        match *self {
            Fault::KillNode(n)
            | Fault::KillPostgres(n)
            | Fault::PauseDeadman(n)
            | Fault::ZookeeperCut(n)
            | Fault::ZookeeperFlap(n)
            | Fault::ZookeeperRequestsHeld(n)
            | Fault::ZookeeperRepliesHeld(n)
            | Fault::ZookeeperLatency(n, _)
            | Fault::ReplicationCut(n)
            | Fault::ReexecDeadman(n)
            | Fault::DiskFull(n)
            | Fault::PausedStop(n)
            | Fault::FreezePostgres(n)
            | Fault::StreamCut { from: n, .. } => Some(n),
            Fault::RollingRestart
            | Fault::ZookeeperMemberDown(_)
            | Fault::ZookeeperQuorumLost(_)
            | Fault::ZookeeperMemberCut { .. } => None,
        }
    }

    /// Whether it is an operator's operation (an upgrade, a restart), which must never cause
    /// a failover when it runs alone.
    pub fn is_operation(&self) -> bool {
        matches!(
            self,
            Fault::ReexecDeadman(_) | Fault::RollingRestart | Fault::PausedStop(_)
        )
    }

    fn strikes_the_ensemble(&self) -> bool {
        matches!(
            self,
            Fault::ZookeeperMemberDown(_)
                | Fault::ZookeeperQuorumLost(_)
                | Fault::ZookeeperMemberCut { .. }
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ZookeeperLatency(n, d) => write!(f, "zk-latency n{n} {}ms", d.as_millis()),
            Fault::ZookeeperMemberDown(m) => write!(f, "zk-member-down zk{m}"),
            Fault::ZookeeperMemberCut { member, stranded } => {
                write!(f, "zk-member-cut zk{member} (n{stranded} stranded on it)")
            }
            Fault::RollingRestart => f.write_str("rolling-restart"),
            Fault::StreamCut { from, to } => write!(f, "stream-cut n{from}->n{to}"),
            Fault::ZookeeperQuorumLost(kept) => write!(f, "zk-quorum-lost (zk{kept} kept)"),
            other => write!(f, "{} n{}", other.kind(), other.node().unwrap_or(0)),
        }
    }
}

/// A fault with when it starts (after the episode's start) and how long it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// The fault.
    pub fault: Fault,
    /// From the episode's start.
    pub starts_after: Duration,
    /// How long it holds (zero for a kill, which the supervisor repairs).
    pub holds_for: Duration,
}

impl Scheduled {
    /// When it ends, from the episode's start.
    pub fn ends_after(&self) -> Duration {
        self.starts_after + self.holds_for
    }
}

/// A random delay in `low..high` drawn from `rng`.
pub fn random_delay(rng: &mut Rng, low: Duration, high: Duration) -> Duration {
    Duration::from_millis(rng.range(low.as_millis() as u64, high.as_millis() as u64))
}

/// Draws episodes of one or two overlapping faults for a group of `nodes` nodes whose
/// ZooKeeper session times out after `session`.
#[derive(Debug, Clone)]
pub struct Nemesis {
    /// The episodes' faults, targets and timing: drawn once per episode, so a seed always
    /// gives the same plan.
    plan: Rng,
    /// Draws whose number depends on how the run goes (a flap's toggles): a stream of their
    /// own, so they never shift the plan.
    jitter: Rng,
    nodes: usize,
    session: Duration,
    /// Whether the nodes have disks of their own to fill.
    disk_full: bool,
    /// Indexes into [`KINDS`] to draw from alone (empty: every kind).
    only: Vec<usize>,
}

impl Nemesis {
    /// A nemesis drawing from `seed`; disk-full faults only when `disk_full` (the nodes have
    /// disks of their own).
    pub fn new(seed: u64, nodes: usize, session: Duration, disk_full: bool) -> Self {
        Nemesis {
            plan: Rng::new(seed),
            jitter: Rng::new(seed ^ 0x6A09_E667_F3BC_C908),
            nodes,
            session,
            disk_full,
            only: Vec::new(),
        }
    }

    /// Draws only the kinds `only` names (indexes into [`KINDS`]), where they can be drawn; a
    /// fault that none of them can be (a second fault on the ensemble, a disk-full without
    /// disks) is drawn from every kind.
    pub fn with_only(mut self, only: Vec<usize>) -> Self {
        self.only = only;
        self
    }

    /// A random delay in `low..high` outside the plan (a flapping cut's next toggle).
    pub fn jitter(&mut self, low: Duration, high: Duration) -> Duration {
        random_delay(&mut self.jitter, low, high)
    }

    /// The next episode: one fault, and with a chance of two in five a second that starts
    /// while the first holds (never a second one on the ensemble).
    pub fn episode(&mut self) -> Vec<Scheduled> {
        let first = self.fault(true);
        let mut episode = vec![Scheduled {
            fault: first,
            starts_after: Duration::ZERO,
            holds_for: self.holds_for(first),
        }];
        if self.plan.chance(400) {
            let second = self.fault(!first.strikes_the_ensemble());
            let window = episode[0].holds_for.max(Duration::from_millis(200));
            let starts_after = random_delay(&mut self.plan, Duration::ZERO, window);
            episode.push(Scheduled {
                fault: second,
                starts_after,
                holds_for: self.holds_for(second),
            });
        }
        episode
    }

    fn fault(&mut self, ensemble_allowed: bool) -> Fault {
        // Indexes into KINDS: the node faults, then disk-full, then the ensemble's.
        let mut kinds: Vec<u64> = (0..12).collect();
        if self.disk_full {
            kinds.push(12);
        }
        kinds.push(13);
        if ensemble_allowed {
            kinds.extend([14, 15, 16]);
        }
        kinds.extend(
            NAMED_ONLY
                .iter()
                .filter(|k| self.only.contains(k))
                .map(|&k| k as u64),
        );
        if !self.only.is_empty() {
            let kept: Vec<u64> = kinds
                .iter()
                .copied()
                .filter(|&k| self.only.contains(&(k as usize)))
                .collect();
            if !kept.is_empty() {
                kinds = kept;
            }
        }
        let node = self.plan.range(0, self.nodes as u64) as usize;
        let peer = (node + 1 + self.plan.range(0, self.nodes as u64 - 1) as usize) % self.nodes;
        match kinds[self.plan.range(0, kinds.len() as u64) as usize] {
            0 => Fault::KillNode(node),
            1 => Fault::KillPostgres(node),
            2 => Fault::PauseDeadman(node),
            3 => Fault::ZookeeperCut(node),
            4 => Fault::ZookeeperFlap(node),
            5 => Fault::ZookeeperRequestsHeld(node),
            6 => Fault::ZookeeperRepliesHeld(node),
            7 => Fault::ZookeeperLatency(node, Duration::from_millis(self.plan.range(50, 500))),
            8 => Fault::ReplicationCut(node),
            9 => Fault::ReexecDeadman(node),
            10 => Fault::RollingRestart,
            11 => Fault::StreamCut {
                from: node,
                to: peer,
            },
            12 => Fault::DiskFull(node),
            13 => Fault::PausedStop(node),
            14 => Fault::ZookeeperMemberDown(self.plan.range(0, 3) as usize),
            17 => Fault::FreezePostgres(node),
            15 => Fault::ZookeeperQuorumLost(self.plan.range(0, 3) as usize),
            _ => Fault::ZookeeperMemberCut {
                member: self.plan.range(0, 3) as usize,
                stranded: node,
            },
        }
    }

    /// Pauses and cuts hold 0.5–3 session timeouts (both sides of the fence deadline and of
    /// the session expiry); flapping and latency up to 4; the quorum is lost for up to two.
    fn holds_for(&mut self, fault: Fault) -> Duration {
        let s = self.session.as_millis() as u64;
        let ms = match fault {
            Fault::KillNode(_)
            | Fault::KillPostgres(_)
            | Fault::ReexecDeadman(_)
            | Fault::RollingRestart => 0,
            Fault::PauseDeadman(_)
            | Fault::ZookeeperCut(_)
            | Fault::ZookeeperRequestsHeld(_)
            | Fault::ZookeeperRepliesHeld(_) => self.plan.range(s / 2, 3 * s),
            Fault::ReplicationCut(_) | Fault::StreamCut { .. } | Fault::DiskFull(_) => {
                self.plan.range(s / 2, 4 * s)
            }
            Fault::ZookeeperFlap(_) | Fault::ZookeeperLatency(..) => self.plan.range(s, 4 * s),
            Fault::ZookeeperMemberDown(_) | Fault::ZookeeperMemberCut { .. } => {
                self.plan.range(s / 2, 4 * s)
            }
            // Long enough for the stop and, mostly, the supervisor's start (0.2–3 s) before
            // the group is resumed; sometimes the resume comes first.
            Fault::PausedStop(_) => self.plan.range(s, 4 * s),
            Fault::ZookeeperQuorumLost(_) => self.plan.range(s / 4, 2 * s),
            // At the fast profile's 2 s session, past the handover of a frozen primary: the
            // restart bound (10 s in both profiles, from its last answer), one probe timeout
            // (3 s) and the takeover wait (2.2 s). Thawed before it, a backend left running
            // would commit before the new primary's first write and show only as a loss,
            // which asynchronous mode allows. A frozen replica is only noticed.
            Fault::FreezePostgres(_) => self.plan.range(8 * s, 10 * s),
        };
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_episodes_and_every_kind_comes_up() {
        let draw = |seed| {
            let mut n = Nemesis::new(seed, 3, Duration::from_secs(2), true);
            (0..300).map(|_| n.episode()).collect::<Vec<_>>()
        };
        let episodes = draw(7);
        assert_eq!(episodes, draw(7));
        assert_ne!(episodes, draw(8));
        for kind in KINDS
            .iter()
            .filter(|k| !NAMED_ONLY.contains(&kind_index(k).unwrap()))
        {
            assert!(
                episodes.iter().flatten().any(|s| s.fault.kind() == *kind),
                "{kind} never drawn"
            );
        }
        assert!(episodes.iter().any(|e| e.len() == 2), "nothing overlaps");
    }

    #[test]
    fn only_the_named_kinds_are_drawn_where_they_can_be() {
        let cut = kind_index("zk-member-cut").unwrap();
        let mut n = Nemesis::new(3, 3, Duration::from_secs(2), true).with_only(vec![cut]);
        for _ in 0..200 {
            let e = n.episode();
            assert!(
                matches!(e[0].fault, Fault::ZookeeperMemberCut { .. }),
                "{e:?}"
            );
            // A second fault cannot strike the ensemble too: drawn from every kind.
            assert!(e.iter().skip(1).all(|s| !s.fault.strikes_the_ensemble()));
        }
        assert_eq!(kind_index("no-such-kind"), None);
    }

    #[test]
    fn a_kind_drawn_only_when_named_is_drawn_then_and_never_otherwise() {
        let freeze = kind_index("pg-freeze").unwrap();
        let mut named = Nemesis::new(5, 3, Duration::from_secs(2), true).with_only(vec![freeze]);
        let mut default = Nemesis::new(5, 3, Duration::from_secs(2), true);
        for _ in 0..500 {
            assert!(matches!(named.episode()[0].fault, Fault::FreezePostgres(_)));
            assert!(default
                .episode()
                .iter()
                .all(|s| !matches!(s.fault, Fault::FreezePostgres(_))));
        }
    }

    #[test]
    fn without_disks_of_their_own_no_disk_is_filled() {
        let mut n = Nemesis::new(7, 3, Duration::from_secs(2), false);
        for _ in 0..1_000 {
            assert!(n
                .episode()
                .iter()
                .all(|s| !matches!(s.fault, Fault::DiskFull(_))));
        }
    }

    #[test]
    fn draws_outside_the_plan_never_shift_it() {
        let mut quiet = Nemesis::new(9, 3, Duration::from_secs(2), true);
        let mut busy = quiet.clone();
        for i in 0..100 {
            for _ in 0..(i % 7) {
                busy.jitter(Duration::ZERO, Duration::from_secs(1));
            }
            assert_eq!(quiet.episode(), busy.episode(), "episode {i}");
        }
    }

    #[test]
    fn an_episode_never_strikes_the_ensemble_twice_and_overlaps_its_first_fault() {
        let mut n = Nemesis::new(1, 3, Duration::from_secs(2), true);
        for _ in 0..2_000 {
            let e = n.episode();
            let ensemble = e.iter().filter(|s| s.fault.strikes_the_ensemble()).count();
            assert!(ensemble <= 1, "{e:?}");
            if let [first, second] = &e[..] {
                assert!(second.starts_after <= first.holds_for.max(Duration::from_millis(200)));
            }
            for s in &e {
                if let Fault::StreamCut { from, to } = s.fault {
                    assert!(from != to && to < 3, "{s:?}");
                }
                assert!(s.holds_for <= Duration::from_secs(8), "{s:?}");
                if let Fault::ZookeeperQuorumLost(_) = s.fault {
                    assert!(s.holds_for <= Duration::from_secs(4), "{s:?}");
                }
            }
        }
    }
}
