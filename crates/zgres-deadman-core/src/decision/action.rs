//! What the core asks the shell to do, and why a node does not contend for the lock.

use zgres_schema::documents::PromotionReason;
use zgres_schema::{Lsn, NodeId, SystemId, Timeline};

/// What the deadman should do next. The daemon executes actions in order and observes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Try to create the lock (atomic; may lose the race).
    AcquireLock,
    /// Delete the lock.
    ReleaseLock {
        /// Nobody can be writing under it: this node's PostgreSQL is down (or stopped by the
        /// actions before this one) and every earlier holder is fenced (this node was past its
        /// takeover wait). The shell records so with the deletion, and the next holder need
        /// not wait the takeover wait ([`super::Observation::quiet_release`]).
        quiet: bool,
    },
    /// Arm the fence, then turn the persistent lock this node's deadman left at a paused
    /// shutdown back into an ephemeral one of this session, in one transaction.
    ReclaimLock,
    /// Start PostgreSQL as a primary (only while the lock is ours).
    StartPrimary,
    /// Start PostgreSQL as a standby following `upstream` (or its configured primary).
    StartStandby {
        /// The primary to follow.
        upstream: Option<NodeId>,
        /// Stream with this node's member slot on `upstream` (`primary_slot_name`); without
        /// an upstream, the configured slot stays too.
        slot: bool,
    },
    /// Promote the running standby (only while the lock is ours).
    Promote {
        /// Why, for the group's history.
        reason: PromotionReason,
        /// Synchronous mode is `strict`: make commits wait for any standby (`*`) before the
        /// promotion, so the new primary acknowledges none that only it holds.
        wait_for_a_standby: bool,
    },
    /// Point the running standby at another primary.
    Repoint {
        /// The new primary.
        upstream: NodeId,
        /// Stream with this node's member slot on `upstream` (`primary_slot_name`).
        slot: bool,
    },
    /// Stop PostgreSQL; `immediate` when it must stop accepting writes now.
    StopPostgres {
        /// Kill at once rather than a fast shutdown.
        immediate: bool,
        /// Why, for the log.
        reason: &'static str,
    },
    /// Publish this node's state now (peers are waiting for fresh positions).
    PublishState,
    /// Create the group's database in the empty data directory (initdb or the configured
    /// command); only while the lock is ours and the group has no database yet.
    Bootstrap,
    /// Fill the empty data directory with a base backup of `source` (the primary).
    CloneFrom {
        /// The node to copy.
        source: NodeId,
    },
    /// Make the stopped former primary's data directory a standby of `source`, rewinding
    /// (pg_rewind) whatever it wrote that `source` never saw.
    Rewind {
        /// The new primary.
        source: NodeId,
    },
    /// Planned hand-over: stop PostgreSQL (fast, so standbys receive all WAL), record the
    /// stop position and `candidate` in the request, and release the lock.
    StepDown {
        /// The node that is to take over.
        candidate: NodeId,
    },
    /// The group has no recorded database and this node is its running primary: publish
    /// `system_id` as the group's (create-only), and if that is the group's now, start the
    /// history with this first timeline.
    RecordDatabase {
        /// The running primary's system identifier.
        system_id: SystemId,
        /// Its timeline.
        timeline: Option<Timeline>,
        /// Its WAL position.
        lsn: Lsn,
    },
    /// The switchover request is fulfilled (this node is the new primary): delete it.
    FinishSwitchover,
    /// The switchover request cannot be carried out: delete it.
    DropSwitchover {
        /// Why, for the log.
        reason: &'static str,
    },
    /// Restart PostgreSQL in place, in its current role: a fast stop, then a start. A
    /// `primary` keeps the lock throughout and starts again only with the fence armed.
    RestartPostgres {
        /// It runs as the primary holding the lock.
        primary: bool,
    },
    /// Re-read the deadman's configuration file, as SIGHUP does, and have a running
    /// PostgreSQL re-read its own files.
    ReloadConfiguration,
    /// Stop PostgreSQL (fast) and empty the data directory of this replica (an operator's
    /// reinit, or WAL it needs gone from the primary); the next rounds clone it again from the
    /// primary. Never on the primary.
    WipeDataDirectory {
        /// Why, for the log.
        reason: &'static str,
    },
    /// The operator's request to this node was carried out: delete it.
    FinishNodeRequest,
    /// This node's part of a rolling restart is done: write the request of the next node
    /// (restart at once, then the rest).
    PassRestartOn {
        /// The node to restart next.
        next: NodeId,
        /// The nodes after it, in order.
        then: Vec<NodeId>,
    },
    /// The operator's request to this node cannot be carried out: delete it (the reason is
    /// logged).
    DropNodeRequest {
        /// Why, for the log.
        reason: &'static str,
    },
}

/// Why this node does not contend for a free lock (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    /// Tagged `nofailover`, or `priority = 0`.
    NoFailoverTag,
    /// PostgreSQL is not running and answering as a standby.
    NotAStandby,
    /// Gave up the lock after failing to restart; waits for others.
    GaveUp,
    /// Its `pre_promote` callback vetoed its promotion a moment ago; waits for others.
    PromotionVetoed,
    /// Its bootstrap of the group's first database failed a moment ago; it tries again after
    /// a pause ([`super::bootstrap_retry_after`]), others may meanwhile.
    BootstrapFailed,
    /// System identifier differs from the group's.
    WrongSystem,
    /// Further behind the last known primary position than allowed.
    TooFarBehind,
    /// A peer is better placed.
    PeerIsBetter(NodeId),
    /// Still waiting for peers to publish fresh positions.
    WaitingForPeers,
    /// The group is paused.
    Paused,
    /// A health plugin vetoes this node.
    Vetoed,
    /// No data directory yet, and the group already has a database (or a node with data):
    /// this node waits for a primary to clone.
    NoData,
    /// The node's timeline is behind the newest one in the group's history.
    TimelineBehind,
    /// An operator's request names another node.
    RequestNamesOther(NodeId),
    /// The named switchover candidate (this node) has not yet received all WAL of the stopped
    /// primary.
    CatchingUp,
    /// Synchronous mode is on and `/sync` does not list this node.
    NotSynchronous,
    /// `/sync` claims a quorum (`ANY k`, or a change of standbys under way) and, past the
    /// election wait, this node does not see enough listed standbys at or behind its position
    /// to be sure it holds every acknowledged commit.
    QuorumUnseen,
    /// An interrupted pg_rewind left its data directory unusable
    /// ([`super::DataDirKind::Damaged`]).
    DataDirDamaged,
}

impl Ineligible {
    /// Whether this keeps the node from taking a free lock for as long as the lock stays free:
    /// nothing it waits for can happen without a primary (`/sync` and the group's timeline
    /// change only under one), or only an operator can change it (tags, the system id).
    /// A request naming such a node would hold every other node back for nothing.
    pub fn lasts_while_the_lock_is_free(self) -> bool {
        match self {
            Ineligible::NoFailoverTag
            | Ineligible::GaveUp
            | Ineligible::WrongSystem
            | Ineligible::TimelineBehind
            | Ineligible::NotSynchronous
            | Ineligible::QuorumUnseen
            | Ineligible::DataDirDamaged => true,
            // Passing (a veto, a retry, a wait, a peer), up to the operator's group-wide
            // choice (paused), or not about this node's eligibility at all.
            Ineligible::NotAStandby
            | Ineligible::PromotionVetoed
            | Ineligible::BootstrapFailed
            | Ineligible::TooFarBehind
            | Ineligible::PeerIsBetter(_)
            | Ineligible::WaitingForPeers
            | Ineligible::Paused
            | Ineligible::Vetoed
            | Ineligible::NoData
            | Ineligible::RequestNamesOther(_)
            | Ineligible::CatchingUp => false,
        }
    }
}
