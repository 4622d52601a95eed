//! The simulation loop: real time advances in small steps; each step expires ZooKeeper
//! sessions, applies faults, runs each node's fence keeper, ZooKeeper pings and deadman rounds
//! (in a seeded random order), streams WAL, writes, and checks the invariants.

use std::time::{Duration, Instant};

use zgres_deadman_core::decision::{next_round, round_time, LockView, RoundInputs, RoundOutcome};
use zgres_schema::documents::{Switchover, SwitchoverKind, SyncMode};
use zgres_schema::SystemId;

use crate::checker::{self, Violation};
use crate::faults::{self, Fault, Kind};
use crate::node::{Clock, Node, Process};
use crate::postgres::{Phase, Wal};
use crate::record::Record;
use crate::rng::Rng;
use crate::settings::{Bug, Settings};
use crate::zookeeper::ZooKeeper;

pub(crate) const SYSTEM: SystemId = SystemId(7);
/// How long PostgreSQL takes from start to answering.
pub(crate) const STARTUP_MS: u64 = 50;

/// One schedule being run.
pub struct World {
    pub(crate) t: u64,
    pub(crate) rng: Rng,
    pub(crate) settings: Settings,
    pub(crate) zk: ZooKeeper,
    pub(crate) nodes: Vec<Node>,
    faults: Vec<Fault>,
    /// What the run recorded: writes, violations, counts and availability.
    pub record: Record,
    /// Print every round (`ZGRES_SIM_TRACE` set), to follow one seed.
    trace: bool,
}

impl World {
    /// The group as it starts: every node stopped on the same WAL, node 0's data directory a
    /// primary's, the others standbys'; the deadmen start within half a second.
    pub fn new(seed: u64, settings: Settings) -> World {
        let mut rng = Rng::new(seed);
        let epoch = Instant::now();
        let timing = settings.deadman;
        let budget = Duration::from_millis(timing.session_timeout_ms - timing.margin_ms);
        let deciders = crate::node::DeciderTiming {
            takeover_wait: settings.takeover_wait(),
            restart_timeout: Duration::from_millis(timing.restart_timeout_ms),
        };
        let nodes = (0..settings.nodes)
            .map(|i| {
                let drift = settings.max_drift_ppm as i64;
                let clock = Clock {
                    rate_ppm: rng.range(0, 2 * drift as u64 + 1) as i64 - drift,
                };
                let mut node = Node::new(i, Wal::first(), i != 0, clock, budget, epoch, deciders);
                node.deadman.timers = crate::node::Timers::at(rng.range(0, 500));
                node
            })
            .collect();
        let faults = faults::schedule(&mut rng, seed, &settings);
        World {
            t: 0,
            rng,
            zk: ZooKeeper::new(settings.nodes, timing.session_timeout_ms),
            nodes,
            faults,
            record: Record::default(),
            trace: std::env::var_os("ZGRES_SIM_TRACE").is_some(),
            settings,
        }
    }

    /// Runs the schedule to its end (faults, then the healing time) and checks the end state.
    pub fn run(&mut self) {
        // The healing time counts from the end of the last fault (a fault may outlast
        // `duration_ms`).
        let last_fault = self.faults.iter().map(|f| f.until).max().unwrap_or(0);
        let end = self.settings.duration_ms.max(last_fault) + self.settings.heal_ms;
        while self.t <= end && self.record.violations.is_empty() {
            self.step();
            self.t += self.settings.step_ms;
        }
        if self.record.violations.is_empty() {
            self.check_end();
        }
    }

    fn step(&mut self) {
        let t = self.t;
        self.zk.expire(t);
        self.apply_faults();
        self.paused_stops();
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.range(0, i as u64 + 1) as usize);
        }
        for &i in &order {
            self.keep_fence(i);
            if !self.nodes[i].deadman_runs(t) {
                continue;
            }
            let answered = self.ping(i);
            let woken = !self.nodes[i].host.cut.zookeeper
                && self.nodes[i].deadman.lock_seen.version != self.zk.lock.version;
            let timers = &mut self.nodes[i].deadman.timers;
            // As the shell: the round's timer, or an answered ping in its window, runs it
            // periodically; a watch runs it at once and starts a new cadence.
            let periodic = t >= timers.round_at || (answered && t >= timers.round_shares_from);
            if periodic || woken {
                timers.last_due = timers.round_due.filter(|_| periodic);
                self.round(i);
            }
        }
        self.stream();
        self.write();
        let writable: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].pg.writable(t))
            .collect();
        self.record
            .violations
            .extend(checker::single_writer(t, &writable));
        self.record.outage.observe(t, !writable.is_empty());
        self.record
            .recovery
            .note_faults(t, self.settings.step_ms, &self.faults);
        // `whole` walks every node: only while a fault waits for it.
        if self.record.recovery.waiting() && self.whole() {
            self.record.recovery.whole_at(t);
        }
    }

    fn apply_faults(&mut self) {
        let t = self.t;
        let step = self.settings.step_ms;
        for i in 0..self.nodes.len() {
            let cut = |kind| {
                self.faults
                    .iter()
                    .any(|f| f.node == i && f.kind == kind && (f.from..f.until).contains(&t))
            };
            // A member cut from its leader answers pings until it notices, then drops the
            // deadman: to the deadman, a cut link that pings still cross for a while.
            let follower_timeout = self.settings.ensemble.follower_timeout_ms();
            let member_cut = faults::cut_since(&self.faults, i, Kind::MemberCut, t);
            let node = &self.nodes[i];
            let answering = node.host.cut.pings_answered_until.is_some_and(|u| t <= u);
            if let (None, true, Some(session)) = (member_cut, answering, node.deadman.session) {
                // The member rejoins its leader before it noticed the cut: its report of the
                // sessions it kept alive reaches the leader; one that expired meanwhile is
                // closed on the member too, which drops its client at once.
                if !self.zk.heard(session, t) {
                    self.nodes[i].deadman.session = None;
                }
            }
            let cuts = &mut self.nodes[i].host.cut;
            cuts.zookeeper = cut(Kind::ZooKeeperCut) || member_cut.is_some();
            cuts.replication = cut(Kind::ReplicationCut);
            cuts.pings_answered_until = member_cut
                .filter(|_| !cut(Kind::ZooKeeperCut))
                .map(|since| since + follower_timeout);
        }
        let starting: Vec<Fault> = self
            .faults
            .iter()
            .filter(|f| f.from <= t && t < f.from + step)
            .copied()
            .collect();
        for f in starting {
            if f.kind == Kind::Stop {
                self.stop_deadman(f.node, f.until);
                continue;
            }
            let node = &mut self.nodes[f.node];
            match f.kind {
                Kind::ZooKeeperCut | Kind::MemberCut => {}
                Kind::Pause => {
                    if node.deadman.process == Process::Running {
                        node.deadman.process = Process::StoppedUntil(f.until);
                    }
                }
                Kind::KillNode => {
                    node.pg.stop();
                    node.pending_commit = None;
                    node.deadman.process = Process::DeadUntil(f.until);
                    node.fence.state = zgres_deadman_core::fence_deadline::FenceState::DISARMED;
                }
                Kind::SwitchoverTo | Kind::Switchover if self.zk.switchover.is_none() => {
                    let to = (f.kind == Kind::SwitchoverTo).then_some(node.id);
                    self.zk.switchover = Some(Switchover {
                        kind: SwitchoverKind::Switchover,
                        from: None,
                        to,
                        scheduled_at_ms: None,
                        requested_at_ms: t,
                        stopped_lsn: None,
                    });
                }
                Kind::SwitchoverTo | Kind::Switchover => {}
                Kind::FailoverTo => self.request_failover(f.node),
                Kind::ReplicationCut => {}
                Kind::PausedStop => self.zk.paused = true,
                Kind::Stop => {}
                Kind::Veto => {}
                Kind::PgHang => {
                    if let Phase::Running { ready_at, .. } = &mut node.pg.phase {
                        *ready_at = (*ready_at).max(f.until);
                    }
                }
                Kind::CrashPostgres => {
                    node.pg.stop();
                    node.pending_commit = None;
                }
            }
        }
    }

    /// `zgresctl failover --to NODE`: written only when no request is pending and the node's
    /// `/state` shows a healthy replica, as zgresctl checks before writing.
    fn request_failover(&mut self, i: usize) {
        let healthy_replica = self.zk.states[i].as_ref().is_some_and(|(state, _)| {
            state.role == zgres_schema::documents::Role::Replica && state.problems.is_empty()
        });
        if self.zk.switchover.is_some() || !healthy_replica {
            return;
        }
        self.record.tally.failover_requests += 1;
        self.zk.switchover = Some(Switchover {
            kind: SwitchoverKind::Failover,
            from: None,
            to: Some(self.nodes[i].id),
            scheduled_at_ms: None,
            requested_at_ms: self.t,
            stopped_lsn: None,
        });
    }

    /// Whether WAL can flow between nodes `a` and `b` (neither has its replication cut).
    pub(crate) fn linked(&self, a: usize, b: usize) -> bool {
        !self.nodes[a].host.cut.replication && !self.nodes[b].host.cut.replication
    }

    /// One deadman round: connect if need be, observe, let the core decide, act, schedule.
    fn round(&mut self, i: usize) {
        let t = self.t;
        {
            let node = &mut self.nodes[i];
            node.deadman.lock_seen.version = self.zk.lock.version;
            if !node.host.cut.zookeeper {
                match node.deadman.session.filter(|&s| self.zk.heard(s, t)) {
                    Some(alive) => node.fence.confirmed(node.host.clock.ns(t), alive),
                    None => {
                        // Expired (or never opened): a new session, which confirms a fence
                        // armed in the old one only with the bug.
                        let new = self.zk.open(t);
                        node.deadman.session = Some(new);
                        let confirms_as = if self.settings.bug == Some(Bug::NewSessionConfirmsFence)
                        {
                            node.fence.armed_in
                        } else {
                            new
                        };
                        node.fence.confirmed(node.host.clock.ns(t), confirms_as);
                    }
                }
            }
        }
        let obs = self.observation(i);
        let decision = self.nodes[i]
            .deadman
            .decider
            .decide_round(&obs, RoundInputs::default());
        if obs.lock != LockView::Unknown {
            // As the shell: only a round that read the group updates the plan.
            self.nodes[i].deadman.on_shutdown = self.nodes[i].deadman.decider.shutdown_plan(&obs);
        }
        if self.trace {
            let pg = &self.nodes[i].pg;
            eprintln!(
                "t={t} n{i} lock={:?} wal={:?}@{} up={:?} actions={:?} why={:?} sync={:?} peers={:?}",
                obs.lock,
                pg.wal.current(),
                pg.wal.end.0,
                pg.upstream,
                decision.actions,
                decision.ineligible,
                obs.sync.valid().map(|s| (s.standbys.iter().map(ToString::to_string).collect::<Vec<_>>(), s.holders())),
                obs.peers
                    .iter()
                    .map(|p| (p.state.node.to_string(), p.fresh, p.state.wal.receive.or(p.state.wal.replay)))
                    .collect::<Vec<_>>()
            );
        }
        if decision.disarm_fence {
            self.nodes[i].fence.state = zgres_deadman_core::fence_deadline::FenceState::DISARMED;
        }
        if obs.lock != LockView::Unknown {
            let state = self.state_of(
                i,
                &obs,
                decision.published.role,
                decision.published.problems.clone(),
            );
            self.zk.publish(i, state);
        }
        let mut again = false;
        for action in &decision.actions {
            again |= self.act(i, action);
        }
        // As the shell: the lock as this round observed it (its session was heard above).
        let ours = obs.lock == LockView::Ours;
        let sync_progress = self.keep_synchronous(i, decision.sync_eligible.clone(), ours);
        let node = &mut self.nodes[i];
        let next = next_round(&RoundOutcome {
            act_again: again,
            sync_progress,
            ineligible: decision.ineligible,
            lock: obs.lock,
            postgres_running: node.pg.phase != Phase::Stopped,
            postgres_answered: obs.postgres.probe.is_some(),
        });
        let ping_gap = Duration::from_millis(self.ping_gap_ms());
        let node = &mut self.nodes[i];
        let time = round_time(
            next,
            Duration::from_millis(self.settings.deadman.loop_interval_ms),
            decision.wake_at,
            obs.now,
            node.deadman.timers.last_due,
            node.deadman.session.map(|_| ping_gap),
        );
        // Back to real time from the host's clock (its drift over one pause is below a ms).
        let after = |at: Instant| at.saturating_duration_since(obs.now).as_millis() as u64;
        let step = self.settings.step_ms;
        node.deadman.timers.round_at = t + time.map_or(0, |r| after(r.at_latest)).max(step);
        node.deadman.timers.round_shares_from =
            t + time.map_or(0, |r| after(r.shares_from)).max(step);
        node.deadman.timers.round_due = time.map(|r| r.due);
    }

    /// After the healing time: the group whole (see `whole`) and whole again within two
    /// session timeouts of every fault that ended alone; `/history` increasing; in
    /// synchronous mode no acknowledged commit lost.
    fn check_end(&mut self) {
        let timelines: Vec<_> = self.zk.history.iter().map(|h| h.0).collect();
        self.record
            .violations
            .extend(checker::history_increases(&timelines));
        let bound_ms = 2 * self.settings.deadman.session_timeout_ms;
        self.record.violations.extend(checker::recovered_in_time(
            &self.record.recovery.times,
            bound_ms,
        ));
        if self.settings.mode != SyncMode::Off {
            if let Some(wal) = self.survivor() {
                let lost = checker::lost(&self.record.writes, wal);
                if let Some(first) = lost.first() {
                    let violation = Violation::LostAcknowledgedWrites {
                        count: lost.len(),
                        first: **first,
                    };
                    self.record.violations.push(violation);
                }
            }
        }
        let holder = self.zk.lock.held.map(|l| l.node);
        // Whole: also every standby pointed at the primary and linked to it, not only holding
        // a prefix of its WAL.
        let recovered = self.whole();
        if !recovered {
            let state = self
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "n{}: {:?} {:?} upstream {:?} process {:?}",
                        n.index,
                        n.pg.phase,
                        n.pg.wal.current(),
                        n.pg.upstream,
                        n.deadman.process
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            self.record.violations.push(Violation::NotRecovered {
                state: format!("lock {holder:?}; {state}"),
            });
        }
    }

    /// Whether the group is whole: one writable primary holding the lock, and every other node
    /// a running standby streaming from it (pointed at it, linked to it, its WAL a prefix).
    fn whole(&self) -> bool {
        let t = self.t;
        let mut writable = (0..self.nodes.len()).filter(|&i| self.nodes[i].pg.writable(t));
        let (Some(p), None) = (writable.next(), writable.next()) else {
            return false;
        };
        self.zk
            .lock
            .held
            .is_some_and(|l| l.node == self.nodes[p].id)
            && (0..self.nodes.len()).filter(|&j| j != p).all(|j| {
                let pg = &self.nodes[j].pg;
                pg.answers(t)
                    && !pg.is_primary()
                    && pg.upstream == Some(p)
                    && self.linked(p, j)
                    && self.nodes[p].pg.wal.extends(&pg.wal)
            })
    }

    /// The final primary's WAL, if there is exactly one writable primary.
    pub fn survivor(&self) -> Option<&Wal> {
        let mut writable = self.nodes.iter().filter(|n| n.pg.writable(self.t));
        match (writable.next(), writable.next()) {
            (Some(n), None) => Some(&n.pg.wal),
            _ => None,
        }
    }

    /// The faults of this schedule, for a report.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }
}
