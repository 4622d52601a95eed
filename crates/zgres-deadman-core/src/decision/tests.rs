//! Tests of the decision core; the helpers here build observations.

use std::collections::BTreeMap;

use proptest::prelude::*;
use zgres_schema::documents::WalPositions;

use super::*;
use zgres_schema::documents::{
    GroupConfig, NodeAction, NodeRequest, NodeState, Role, Switchover, SyncMode, SyncState,
};
use zgres_schema::{SystemId, Timeline};

const SYS: SystemId = SystemId(7);

fn node(i: u8) -> NodeId {
    format!("10.0.0.{i}:5432").parse().unwrap()
}

fn tl(t: u32) -> Timeline {
    Timeline::new(t).unwrap()
}

fn decider(i: u8) -> Decider {
    Decider::new(
        node(i),
        Tags::default(),
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
}

fn standby(lsn: u64) -> LocalPostgres {
    LocalPostgres {
        running: true,
        data_dir: DataDirKind::Standby,
        probe: Some(Probe {
            in_recovery: true,
            timeline: Some(tl(1)),
            system_id: SYS,
            write_lsn: None,
            receive_lsn: Some(Lsn(lsn)),
            replay_lsn: Some(Lsn(lsn)),
            upstream: None,
            member_slot: false,
            oldest_kept: None,
            restores_from_archive: false,
        }),
        control: None,
        streaming: None,
        recovering_from: None,
    }
}

/// A running standby at `lsn` whose `primary_conninfo` names node `upstream`.
fn standby_of(lsn: u64, upstream: u8) -> LocalPostgres {
    let mut pg = standby(lsn);
    if let Some(p) = pg.probe.as_mut() {
        p.upstream = Some(node(upstream));
    }
    pg
}

/// A running primary; nodes 1 to 9 (every node these tests name) stream from it.
fn primary() -> LocalPostgres {
    LocalPostgres {
        running: true,
        data_dir: DataDirKind::Primary,
        probe: Some(Probe {
            in_recovery: false,
            timeline: Some(tl(1)),
            system_id: SYS,
            write_lsn: Some(Lsn(1000)),
            receive_lsn: None,
            replay_lsn: None,
            upstream: None,
            member_slot: false,
            oldest_kept: None,
            restores_from_archive: false,
        }),
        control: None,
        streaming: Some((1..10).map(node).collect()),
        recovering_from: None,
    }
}

fn stopped(kind: DataDirKind) -> LocalPostgres {
    LocalPostgres {
        running: false,
        data_dir: kind,
        probe: None,
        control: Some((tl(1), Lsn(0))),
        streaming: None,
        recovering_from: None,
    }
}

/// Node 2's state as the lock holder: a primary on timeline 1 at LSN 100 (the operator
/// request tests' primary).
fn holder_on_timeline_1() -> NodeState {
    let mut holder = peer_state(2, Role::Primary, 100);
    holder.timeline = Some(tl(1));
    holder
}

fn peer_state(i: u8, role: Role, lsn: u64) -> NodeState {
    NodeState {
        warnings: vec![],
        name: None,
        refresh_ms: None,
        takeover_wait_ms: None,
        node: node(i),
        role,
        problems: vec![],
        timeline: Some(tl(1)),
        system_id: Some(SYS),
        wal: match role {
            Role::Primary => WalPositions {
                write: Some(Lsn(lsn)),
                ..Default::default()
            },
            _ => WalPositions {
                receive: Some(Lsn(lsn)),
                replay: Some(Lsn(lsn)),
                oldest_kept: None,
                write: None,
            },
        },
        upstream: None,
        tags: Tags::default(),
        meta: BTreeMap::new(),
        slots: BTreeMap::new(),
        pending_restart: Vec::new(),
        updated_at_ms: 0,
    }
}

fn obs(now: Instant, lock: LockView, postgres: LocalPostgres, peers: Vec<Peer>) -> Observation {
    Observation {
        now,
        lock,
        db_id: Fetched::Valid(SYS),
        config: GroupConfig::default(),
        peers,
        postgres,
        vetoed: false,
        group_timeline: None,
        timeline_starts: Vec::new(),
        switchover: None,
        wall_ms: 0,
        sync: Fetched::Absent,
        node_request: Fetched::Absent,
        standby_source: None,
        quiet_release: false,
    }
}

fn fresh(state: NodeState) -> Peer {
    Peer { state, fresh: true }
}

fn empty() -> LocalPostgres {
    LocalPostgres {
        running: false,
        data_dir: DataDirKind::Empty,
        probe: None,
        control: None,
        streaming: None,
        recovering_from: None,
    }
}

mod elections;
mod hung_primary;
mod lifecycle;
mod member_slots;
mod missing_wal;
mod properties;
mod provisioning_failure;
mod published;
mod quiet_release;
mod quorum;
mod requests;
mod rewind_failure;
mod rolling_restart;
mod shutdown_hand_over;
mod standby_cluster;
mod takeover;
mod unattended_lock;
