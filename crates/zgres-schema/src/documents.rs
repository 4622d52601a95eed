//! The JSON documents stored in each znode (see [`crate::paths`] for where).
//!
//! Times are milliseconds since the Unix epoch, written by the host that wrote the document. They
//! are for humans and history; no safety decision compares them across hosts (ZooKeeper's own
//! ordering is used for that).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::Document;
use crate::ids::{GroupName, NodeId, NodeName, SystemId, Timeline};
use crate::lsn::Lsn;
use crate::pg_settings::ClusterPostgres;
use crate::slots::PermanentSlots;

/// What PostgreSQL on a node is doing, as its deadman last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Running, not in recovery.
    Primary,
    /// Running in recovery (streaming or replaying archived WAL).
    Replica,
    /// Not running.
    Stopped,
    /// The deadman cannot tell (e.g. PostgreSQL does not answer).
    Unknown,
}

/// Operator-set tags of a node; same meaning as Patroni's tags of those names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tags {
    /// Never promote this node.
    pub nofailover: bool,
    /// Keep this node out of read-only load balancing.
    pub noloadbalance: bool,
    /// Never make this node a synchronous standby.
    pub nosync: bool,
    /// Prefer this replica as the source when a new node clones the group (a base backup
    /// from a standby spares the primary).
    pub clonefrom: bool,
    /// Among equally advanced candidates, the higher priority wins; 0 never promotes (as
    /// pg_auto_failover's candidate priority 0).
    pub priority: u32,
    /// Stream from this member (by `node.name`) rather than from the primary, while it is a
    /// healthy replica of the primary; from the primary otherwise (cascading replication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<crate::NodeName>,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            nofailover: false,
            noloadbalance: false,
            nosync: false,
            clonefrom: false,
            priority: Tags::DEFAULT_PRIORITY,
            replicatefrom: None,
        }
    }
}

impl Tags {
    /// Priority of a node that sets none.
    pub const DEFAULT_PRIORITY: u32 = 100;

    /// Whether this node must never become the primary: tagged `nofailover`, or priority 0.
    pub fn never_promoted(&self) -> bool {
        self.nofailover || self.priority == 0
    }
}

/// WAL positions of a node. A primary fills `write`; a replica fills `receive` and `replay`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WalPositions {
    /// `pg_current_wal_lsn()` on a primary.
    pub write: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()` on a replica.
    pub receive: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` on a replica.
    pub replay: Option<Lsn>,
    /// On a primary: where the oldest WAL segment it keeps begins. A standby behind it can no
    /// longer stream from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_kept: Option<Lsn>,
}

/// `/state/{GROUP}_{NODE}`: a node's state, kept current by its deadman (ephemeral).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node this state describes (must match the znode name).
    pub node: NodeId,
    /// Its short name for people (`node.name` in the deadman's config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<NodeName>,
    /// What PostgreSQL is doing.
    pub role: Role,
    /// Why the node is unhealthy; empty when healthy.
    #[serde(default)]
    pub problems: Vec<String>,
    /// What an operator should know that does not make the node unhealthy (e.g. an
    /// unreadable `/config`, with the last valid one kept in force).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// PostgreSQL's current timeline, when known.
    #[serde(default)]
    pub timeline: Option<Timeline>,
    /// PostgreSQL's system identifier, when known.
    #[serde(default)]
    pub system_id: Option<SystemId>,
    /// WAL positions.
    #[serde(default)]
    pub wal: WalPositions,
    /// The primary a standby is configured to stream from (its `primary_conninfo`), when it is
    /// a zgres node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<NodeId>,
    /// Operator tags.
    #[serde(default)]
    pub tags: Tags,
    /// Metadata added by deadman plugins (e.g. `{"az": "eu-west-1a"}`).
    #[serde(default)]
    pub meta: BTreeMap<String, serde_json::Value>,
    /// The physical replication slots this node's PostgreSQL has, with their `restart_lsn`
    /// (unset for a slot that reserves no WAL): a standby streams with its slot only once its
    /// upstream lists it here, and replicas keep copies of the primary's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<crate::SlotName, Option<Lsn>>,
    /// Settings that changed but wait for a restart: `postgresql.NAME` for a PostgreSQL
    /// parameter waiting for PostgreSQL to restart (`pg_settings.pending_restart`), any other
    /// dotted key for a setting of the deadman's file waiting for the deadman to restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<String>,
    /// When the deadman wrote this document.
    pub updated_at_ms: u64,
    /// How often the deadman republishes an unchanged state (`timing.state_refresh_ms`), so
    /// readers can tell a state that stopped being refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_ms: Option<u64>,
    /// How long a node taking over this node's lock after it expired must wait at least
    /// before it promotes: the takeover wait this node's own `[zookeeper]` timing gives (its
    /// fence margin and session timeout are the old primary's side of it). Bounded by readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover_wait_ms: Option<u64>,
}

impl NodeState {
    /// Healthy means no problems reported.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Document for NodeState {
    const VERSION: u64 = 1;
}

/// `/conn/{GROUP}_{NODE}`: how to reach a healthy node (ephemeral; never holds a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// Host or address clients connect to.
    pub host: String,
    /// PostgreSQL port.
    pub port: u16,
    /// Database name hint for clients, if the operator set one.
    #[serde(default)]
    pub dbname: Option<String>,
    /// The node's tags, so proxies can honour `noloadbalance`.
    #[serde(default)]
    pub tags: Tags,
    /// What the node's PostgreSQL runs as (`primary` or `replica`), so proxies send writes only
    /// to a lock holder that is already a primary (not to a replica still being promoted).
    /// Absent in documents of older deadmen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The port of the node's health API (on `host`), when it serves one, so a proxy can check
    /// a replica's lag before sending it reads. Absent in documents of older deadmen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
}

impl Document for ConnInfo {
    const VERSION: u64 = 1;
}

/// `/lock/{GROUP}`: held (ephemeral) by the one node allowed to accept writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The primary.
    pub node: NodeId,
    /// The timeline it took the lock on.
    pub timeline: Timeline,
}

impl Document for Lock {
    const VERSION: u64 = 1;
}

/// `/released/{GROUP}`: the last lock its holder released with nobody writing under it — its
/// PostgreSQL stopped, and every holder before it fenced (it was past its takeover wait) —
/// written in the same transaction that deleted the lock. A node that saw that very lock held
/// (its creation zxid) and then free may take it over without the takeover wait, since no
/// primary can still be writing; any other lock that vanished is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRelease {
    /// The released lock's creation zxid (`czxid`): which lock this record is about.
    pub lock_czxid: i64,
    /// The node that released it, for the log.
    pub node: NodeId,
}

impl Document for LockRelease {
    const VERSION: u64 = 1;
}

/// `/static/{GROUP}-db-id`: the group's PostgreSQL system identifier, created once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseId {
    /// `pg_control_system().system_identifier` of the first primary.
    pub system_id: SystemId,
}

impl Document for DatabaseId {
    const VERSION: u64 = 1;
}

/// Why a node became primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionReason {
    /// The group's first primary.
    Bootstrap,
    /// Automatic: the previous primary's lock vanished.
    Failover,
    /// Planned, requested by an operator.
    Switchover,
    /// Forced by an operator (`zgresctl failover`).
    ManualFailover,
}

/// One promotion in a group's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    /// The new primary's timeline.
    pub timeline: Timeline,
    /// The WAL position at which the new timeline starts.
    pub lsn: Lsn,
    /// Why it happened.
    pub reason: PromotionReason,
    /// When the new primary wrote this entry.
    pub at_ms: u64,
    /// The new primary.
    pub new_primary: NodeId,
    /// The previous primary, when known.
    #[serde(default)]
    pub old_primary: Option<NodeId>,
}

impl Document for Promotion {
    const VERSION: u64 = 1;
}

/// `/history/{GROUP}`: every promotion, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Promotions, oldest first.
    pub entries: Vec<Promotion>,
}

impl Document for History {
    const VERSION: u64 = 1;
    // Up to a thousand promotions of ~200 bytes each.
    const MAX_BYTES: usize = crate::codec::MAX_DOCUMENT_BYTES;
}

/// How commits wait for standbys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Asynchronous replication.
    #[default]
    Off,
    /// Synchronous while a standby is available, asynchronous (and said so) otherwise.
    On,
    /// Synchronous always: commits wait when no standby is available.
    Strict,
}

/// How `synchronous_node_count` standbys acknowledge a commit (PostgreSQL's
/// `synchronous_standby_names` methods).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMethod {
    /// `FIRST k`: the same k standbys acknowledge every commit, so each of them may be
    /// promoted.
    #[default]
    First,
    /// `ANY k` (quorum commit): any k of the standbys acknowledge each commit, so a commit
    /// waits only for the fastest k; a standby may be promoted only when enough of them are
    /// seen to be sure it is the most advanced.
    Any,
}

/// `/config/{GROUP}`: the group's dynamic configuration, edited with `zgresctl config`.
/// Every field has a default, so `{"v":1}` is a complete document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupConfig {
    /// Synchronous replication mode.
    pub synchronous_mode: SyncMode,
    /// A replica further behind the last known primary position than this does not promote.
    pub maximum_lag_on_failover_bytes: u64,
    /// While paused, deadmen take no automatic action.
    pub paused: bool,
    /// How many standbys acknowledge each commit in synchronous mode (at least 1).
    pub synchronous_node_count: std::num::NonZeroU32,
    /// `first` (the same standbys always) or `any` (a quorum of all standbys).
    pub synchronous_method: SyncMethod,
    /// In synchronous mode `on`: how long a connected standby may leave commits waiting
    /// (its flushed position behind a position the primary had that long ago) before the
    /// primary stops waiting for it and degrades to asynchronous. `strict` always waits.
    pub synchronous_ack_timeout_ms: u64,
    /// Cluster-wide PostgreSQL parameters and `pg_hba.conf` lines (each checked when decoded:
    /// a hostile entry makes the whole document unreadable, and the last valid one stays).
    #[serde(skip_serializing_if = "ClusterPostgres::is_empty")]
    pub postgresql: ClusterPostgres,
    /// Keep a physical replication slot on the primary for every member (and copies on the
    /// replicas, for the next primary), so a replica that was down resumes streaming however
    /// much WAL was written meanwhile.
    pub member_slots: bool,
    /// A member's slot is dropped once the member has been absent (no `/state`) this long:
    /// a slot retains WAL without bound.
    pub member_slots_ttl_ms: u64,
    /// Slots every primary keeps (Patroni's permanent slots), by name.
    #[serde(skip_serializing_if = "PermanentSlots::is_empty")]
    pub slots: PermanentSlots,
    /// A standby cluster: the group follows a primary outside it, and its lock holder is a
    /// "standby leader" (streaming from that primary, never promoted) whose members cascade
    /// from it. Removing it promotes the standby leader: the group becomes a normal one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<StandbyOf>,
}

/// What a standby cluster follows (`standby_cluster` in `/config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StandbyOf {
    /// A PostgreSQL server by address (`{"node": "10.0.0.5:5432"}`), e.g. a primary not
    /// managed by zgres. Reached with the group's replication user and password.
    Node(NodeId),
    /// Whichever node holds the lock of another group in the same ZooKeeper root
    /// (`{"group": "main"}`): the standby leader follows that group's failovers.
    Group(GroupName),
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            synchronous_mode: SyncMode::Off,
            maximum_lag_on_failover_bytes: 1024 * 1024,
            paused: false,
            synchronous_node_count: std::num::NonZeroU32::MIN,
            synchronous_method: SyncMethod::First,
            synchronous_ack_timeout_ms: 3_000,
            postgresql: ClusterPostgres::default(),
            member_slots: true,
            member_slots_ttl_ms: 30 * 60 * 1000,
            slots: PermanentSlots::default(),
            standby_cluster: None,
        }
    }
}

impl Document for GroupConfig {
    const VERSION: u64 = 2;
    const OLDEST_READ: u64 = 1;

    /// Version 2 only for a standby cluster: a deadman that does not know `standby_cluster`
    /// must refuse the document (and keep the configuration in force) rather than read it as
    /// a normal group's and promote.
    fn version(&self) -> u64 {
        if self.standby_cluster.is_some() {
            2
        } else {
            1
        }
    }
}

/// Planned or forced change of primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchoverKind {
    /// Planned: the old primary stops writes and the candidate catches up fully.
    Switchover,
    /// Forced: promote even though the primary is not handing over.
    Failover,
}

/// `/switchover/{GROUP}`: a requested switchover or failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switchover {
    /// Planned or forced.
    pub kind: SwitchoverKind,
    /// The primary expected to step down; the request is void if another node holds the lock.
    #[serde(default)]
    pub from: Option<NodeId>,
    /// The node to promote; the best candidate when absent.
    #[serde(default)]
    pub to: Option<NodeId>,
    /// Not before this time; at once when absent.
    #[serde(default)]
    pub scheduled_at_ms: Option<u64>,
    /// When the operator asked.
    pub requested_at_ms: u64,
    /// Written by the old primary once it has stopped: the position of its shutdown
    /// checkpoint, which the candidate must have received before it takes the lock.
    #[serde(default)]
    pub stopped_lsn: Option<Lsn>,
}

impl Document for Switchover {
    const VERSION: u64 = 1;
}

/// What an operator asks one node's deadman to do (`zgresctl restart`, `reload`, `reinit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAction {
    /// Restart PostgreSQL in place, in the same role: a primary keeps the lock.
    Restart,
    /// Re-read the deadman's configuration file (as SIGHUP does) and have PostgreSQL re-read
    /// its own files (`pg_reload_conf()`).
    Reload,
    /// Wipe a replica's data directory and clone it again from the primary (refused on the
    /// primary).
    Reinit,
}

/// `/request/{GROUP}_{NODE}`: an operator's request to one node's deadman, deleted by it once
/// carried out (or dropped, with the reason in its log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequest {
    /// What to do.
    pub action: NodeAction,
    /// When the operator asked.
    pub requested_at_ms: u64,
    /// Not before this time (ms since the epoch); at once when absent.
    #[serde(default)]
    pub scheduled_at_ms: Option<u64>,
    /// A rolling restart of the group (`zgresctl restart GROUP --scheduled T`): the nodes to
    /// restart after this one, in order. Once this node runs again (a standby receiving WAL,
    /// a primary holding the lock), its deadman writes the request of the first of them, with
    /// the rest, at once; so one node restarts at a time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<crate::NodeId>,
}

impl Document for NodeRequest {
    const VERSION: u64 = 1;
}

mod sync;

pub use sync::SyncState;

#[cfg(test)]
mod tests;
