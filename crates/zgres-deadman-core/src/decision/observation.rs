//! What the core is given each round: the lock, the peers, the local PostgreSQL, the group's
//! documents.

use std::collections::BTreeSet;
use std::time::Instant;

use zgres_schema::documents::{GroupConfig, NodeRequest, NodeState, Switchover, SyncState};
use zgres_schema::{Fetched, Lsn, NodeId, SystemId, Timeline};

/// Who holds the group's lock, as last read from ZooKeeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockView {
    /// The session is not confirmed, so the lock's state is unknown. Nothing is decided.
    Unknown,
    /// Nobody holds it.
    Free,
    /// This node's current session holds it.
    Ours,
    /// Another session holds it; `None` when its content is unreadable (garbage). A
    /// persistent lock naming another node (left at that node's paused shutdown) is held too.
    Other(Option<NodeId>),
    /// A persistent lock naming this node, belonging to no session: this node's deadman left
    /// it when it stopped in a paused group with PostgreSQL running as the primary (see
    /// [`super::shutdown_plan`]). Nobody else takes over while it exists; this node reclaims it.
    Unattended,
}

/// Whether the data directory is set up to start as a standby (`standby.signal`) or a primary,
/// holds no database yet, or was left unusable by an interrupted pg_rewind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirKind {
    /// No database yet (no `PG_VERSION`): to be bootstrapped or cloned.
    Empty,
    /// Starts as a primary.
    Primary,
    /// Starts as a standby.
    Standby,
    /// A pg_rewind stopped after it began changing files (its source went away, it was
    /// killed): the directory mixes two servers' files and a second pg_rewind cannot repair
    /// it (it may even succeed on a wrong picture of the old WAL). Never started or rewound;
    /// wiped and cloned again only when `provisioning.reclone_on_rewind_failure` allows it.
    Damaged,
}

/// What a query to the local PostgreSQL returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Current timeline.
    pub timeline: Option<Timeline>,
    /// System identifier.
    pub system_id: SystemId,
    /// `pg_current_wal_lsn()` (primary only).
    pub write_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()` (standby only).
    pub receive_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` (standby only).
    pub replay_lsn: Option<Lsn>,
    /// The primary the standby is configured to follow (from `primary_conninfo`).
    pub upstream: Option<NodeId>,
    /// The standby streams with this node's member slot (`primary_slot_name`).
    pub member_slot: bool,
    /// Where the oldest WAL segment in `pg_wal` begins (primary only): what a standby can
    /// still stream from.
    pub oldest_kept: Option<Lsn>,
    /// A standby with a `restore_command`: it can fetch WAL the primary no longer has from
    /// an archive, so missing WAL on the primary is not its problem.
    pub restores_from_archive: bool,
}

impl Probe {
    /// The furthest WAL position this node has.
    pub fn position(&self) -> Option<Lsn> {
        [self.write_lsn, self.receive_lsn, self.replay_lsn]
            .into_iter()
            .flatten()
            .max()
    }
}

/// The local PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPostgres {
    /// The postmaster is running (our child process).
    pub running: bool,
    /// How the data directory would start.
    pub data_dir: DataDirKind,
    /// The last probe, if PostgreSQL answered.
    pub probe: Option<Probe>,
    /// Timeline and checkpoint position from `pg_controldata`, for a stopped server.
    pub control: Option<(Timeline, Lsn)>,
    /// The standbys `pg_stat_replication` shows streaming from this running primary, when it
    /// was read: the shell reads it while a switchover request is pending, since a hand-over
    /// is only made to a node that is streaming at that moment. `None` when not read.
    pub streaming: Option<BTreeSet<NodeId>>,
    /// For a running standby that does not answer (recovering, not yet consistent): the
    /// furthest its WAL can come from without streaming — the end of the newest segment
    /// written in its own `pg_wal`, or its last checkpoint when that is further. Read by the
    /// shell only then; `None` otherwise.
    pub recovering_from: Option<Lsn>,
}

/// A peer of the group, as its `/state` znode shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// Its published state.
    pub state: NodeState,
    /// Written after the lock was last seen to vanish (by ZooKeeper's ordering), so its
    /// positions are current enough to compare in an election.
    pub fresh: bool,
}

/// Where a recorded timeline began: a promotion in `/history/{GROUP}`, as the new primary
/// recorded it (its position when it was promoted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineStart {
    /// The timeline the promotion created.
    pub timeline: Timeline,
    /// Where it forked off the timeline before it.
    pub lsn: Lsn,
}

/// Whether the shell should read where the group's timelines began
/// ([`Observation::timeline_starts`]): only for a running standby (on `standby`'s timeline)
/// behind the timeline the lock holder publishes among `peers`, the one case a decision uses
/// them, so an idle group never decodes its history.
pub fn wants_timeline_starts(lock: LockView, peers: &[Peer], standby: Option<Timeline>) -> bool {
    let LockView::Other(Some(holder)) = lock else {
        return false;
    };
    let primary = peers
        .iter()
        .find(|p| p.state.node == holder)
        .and_then(|p| p.state.timeline);
    standby
        .zip(primary)
        .is_some_and(|(mine, theirs)| mine < theirs)
}

/// Whether the shell should read every peer's state while another node holds the lock (it
/// reads only the holder's otherwise): for a stopped node with an empty data directory, which
/// chooses the replica to clone from (the `clonefrom` tag), and for a node that `cascades`
/// (its `replicatefrom` tag), which watches the member it names.
pub fn wants_every_peer(running: bool, data_dir: DataDirKind, cascades: bool) -> bool {
    (!running && data_dir == DataDirKind::Empty) || cascades
}

/// Everything the deadman knows at one moment.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Now, on the monotonic clock.
    pub now: Instant,
    /// The group's lock.
    pub lock: LockView,
    /// The group's published system identifier. Unreadable means the group has a database
    /// of unknown identity: nothing is bootstrapped or cloned then.
    pub db_id: Fetched<SystemId>,
    /// The group configuration in force (see [`crate::group_config`]).
    pub config: GroupConfig,
    /// Peers whose `/state` exists and decoded (not this node).
    pub peers: Vec<Peer>,
    /// The local PostgreSQL.
    pub postgres: LocalPostgres,
    /// A health plugin vetoes this node: it must not become primary.
    pub vetoed: bool,
    /// The newest timeline recorded in `/history/{GROUP}` (read during elections).
    pub group_timeline: Option<Timeline>,
    /// Where the recorded timelines began, read only when [`wants_timeline_starts`] (empty
    /// otherwise, or when `/history` is unreadable).
    pub timeline_starts: Vec<TimelineStart>,
    /// A pending switchover or failover request (`/switchover/{GROUP}`).
    pub switchover: Option<Switchover>,
    /// Wall-clock milliseconds since the epoch, only to honour a scheduled switchover time.
    pub wall_ms: u64,
    /// `/sync/{GROUP}` (read in synchronous mode): who may be promoted. Unreadable: nobody.
    pub sync: Fetched<SyncState>,
    /// `/request/{GROUP}_{NODE}`: an operator's pending request to this node.
    pub node_request: Fetched<NodeRequest>,
    /// In a standby cluster, what its standby leader streams from, resolved by the shell: the
    /// address `standby_cluster` names, or the lock holder of the group it names (`None`
    /// while that group has none, and outside a standby cluster).
    pub standby_source: Option<NodeId>,
    /// The lock is free, and its last holder — the one this node saw — released it with
    /// nobody writing under it (`Action::ReleaseLock { quiet: true }`, recorded with the
    /// deletion): no takeover wait is needed. `false` for a lock that merely vanished.
    pub quiet_release: bool,
}

/// Every kind of [`LockView`], for property tests.
#[cfg(test)]
pub(crate) fn any_lock_view() -> impl proptest::strategy::Strategy<Value = LockView> {
    use proptest::prelude::*;
    prop_oneof![
        Just(LockView::Unknown),
        Just(LockView::Free),
        Just(LockView::Ours),
        Just(LockView::Unattended),
        Just(LockView::Other(None)),
        Just(LockView::Other(Some("10.0.0.2:5432".parse().unwrap()))),
    ]
}
