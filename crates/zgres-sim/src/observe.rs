//! What a simulated deadman observes each round, and the state it publishes: built from the
//! models as the real shell builds them from ZooKeeper and PostgreSQL.

use zgres_deadman_core::decision::{
    wants_timeline_starts, DataDirKind, LocalPostgres, LockView, Observation, Peer, Probe,
    TimelineStart,
};
use zgres_schema::documents::{GroupConfig, NodeState, SyncMode, WalPositions};
use zgres_schema::Fetched;

use crate::postgres::Phase;
use crate::world::{World, SYSTEM};
use crate::zookeeper::PERSISTENT;

impl World {
    /// What node `i`'s deadman sees this round (as `daemon/round.rs` builds it).
    pub(crate) fn observation(&mut self, i: usize) -> Observation {
        let t = self.t;
        let node = &self.nodes[i];
        let pg = &node.pg;
        let probe = pg.answers(t).then(|| {
            let primary = pg.is_primary();
            let end = Some(pg.wal.end);
            Probe {
                in_recovery: !primary,
                timeline: Some(pg.wal.current().timeline),
                system_id: SYSTEM,
                write_lsn: end.filter(|_| primary),
                receive_lsn: end.filter(|_| !primary),
                replay_lsn: end.filter(|_| !primary),
                upstream: pg.upstream.map(|u| self.nodes[u].id),
                // The simulation models no slots: streaming never depends on one.
                member_slot: false,
                oldest_kept: None,
                restores_from_archive: false,
            }
        });
        let running = pg.phase != Phase::Stopped;
        let lock = match (
            node.host.cut.zookeeper,
            node.deadman.session,
            self.zk.lock.held,
        ) {
            (true, _, _) | (false, None, _) => LockView::Unknown,
            (false, Some(_), None) => LockView::Free,
            (false, Some(s), Some(l)) if l.session == s => LockView::Ours,
            (false, Some(_), Some(l)) if l.session == PERSISTENT && l.node == node.id => {
                LockView::Unattended
            }
            (false, Some(_), Some(l)) => LockView::Other(Some(l.node)),
        };
        // As `coordination::lock_release`: a lock released quietly counts only if it is the
        // one this deadman saw held, and no lock came and went since (the lock directory's
        // pzxid, with one group the last lock deletion while the lock is free).
        match (lock, self.zk.lock.held) {
            (LockView::Other(_) | LockView::Unattended, Some(l)) => {
                self.nodes[i].deadman.lock_seen.other_czxid = Some(l.czxid)
            }
            (LockView::Ours, _) => self.nodes[i].deadman.lock_seen.other_czxid = None,
            _ => {}
        }
        let quiet_release = lock == LockView::Free
            && self.zk.lock.released.is_some_and(|(czxid, mzxid)| {
                Some(czxid) == self.nodes[i].deadman.lock_seen.other_czxid
                    && Some(mzxid) == self.zk.lock.gone_zxid
            });
        let peers = if lock == LockView::Unknown {
            Vec::new()
        } else {
            self.zk
                .states
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, s)| s.clone())
                .map(|(state, zxid)| Peer {
                    state,
                    fresh: self.zk.lock.gone_zxid.is_some_and(|gone| zxid > gone),
                })
                .collect()
        };
        // As the shell: read only by a primary holding the lock while a request waits for it.
        let waiting = self
            .zk
            .switchover
            .as_ref()
            .is_some_and(|s| s.stopped_lsn.is_none());
        let streaming = (waiting
            && lock == LockView::Ours
            && probe.is_some_and(|p| !p.in_recovery))
        .then(|| {
            self.connected(i)
                .into_iter()
                .filter(|c| c.streaming)
                .map(|c| c.node)
                .collect()
        });
        // As the shell: where the timelines began, only for a standby behind its primary.
        let standby_timeline = probe.filter(|p| p.in_recovery).and_then(|p| p.timeline);
        let timeline_starts = if wants_timeline_starts(lock, &peers, standby_timeline) {
            self.zk
                .history
                .iter()
                .map(|&(timeline, lsn, _)| TimelineStart { timeline, lsn })
                .collect()
        } else {
            Vec::new()
        };
        let node = &self.nodes[i];
        let pg = &node.pg;
        Observation {
            now: node.host.instant(t),
            lock,
            db_id: Fetched::Valid(SYSTEM),
            config: GroupConfig {
                synchronous_mode: self.settings.mode,
                synchronous_node_count: u32::try_from(self.settings.acknowledgers.count)
                    .ok()
                    .and_then(std::num::NonZeroU32::new)
                    .unwrap_or(std::num::NonZeroU32::MIN),
                synchronous_method: self.settings.acknowledgers.method,
                paused: self.zk.paused,
                ..GroupConfig::default()
            },
            peers,
            postgres: LocalPostgres {
                running,
                data_dir: if pg.standby_signal {
                    DataDirKind::Standby
                } else {
                    DataDirKind::Primary
                },
                probe,
                control: (!running).then(|| (pg.wal.current().timeline, pg.wal.end)),
                streaming,
                recovering_from: None,
            },
            vetoed: false,
            group_timeline: self.zk.history.last().map(|h| h.0),
            timeline_starts,
            switchover: self
                .zk
                .switchover
                .clone()
                .filter(|_| lock != LockView::Unknown),
            wall_ms: t,
            sync: match (&self.zk.sync, self.settings.mode, lock) {
                (_, _, LockView::Unknown) | (_, SyncMode::Off, _) | (None, _, _) => Fetched::Absent,
                (Some(state), _, _) => Fetched::Valid(state.clone()),
            },
            // Operators' restart requests are not simulated.
            node_request: Fetched::Absent,
            standby_source: None,
            quiet_release,
        }
    }

    /// The state node `i` publishes (as `daemon/node_state.rs` builds it).
    pub(crate) fn state_of(
        &self,
        i: usize,
        obs: &Observation,
        role: zgres_schema::documents::Role,
        problems: Vec<String>,
    ) -> NodeState {
        let probe = obs.postgres.probe;
        NodeState {
            node: self.nodes[i].id,
            name: None,
            role,
            problems,
            warnings: Vec::new(),
            timeline: probe
                .and_then(|p| p.timeline)
                .or(obs.postgres.control.map(|c| c.0)),
            system_id: Some(SYSTEM),
            wal: WalPositions {
                write: probe.and_then(|p| p.write_lsn),
                receive: probe.and_then(|p| p.receive_lsn),
                replay: probe.and_then(|p| p.replay_lsn),
                oldest_kept: None,
            },
            upstream: probe.filter(|p| p.in_recovery).and_then(|p| p.upstream),
            tags: Default::default(),
            meta: Default::default(),
            slots: Default::default(),
            pending_restart: Vec::new(),
            updated_at_ms: self.t,
            refresh_ms: None,
            takeover_wait_ms: Some(self.nodes[i].deadman.timing.takeover_wait.as_millis() as u64),
        }
    }
}
