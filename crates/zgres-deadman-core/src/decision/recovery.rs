//! Bringing a node back after failures: the retry timers of rewind, bootstrap and clone, a
//! vetoed promotion's sit-out, and the watches on a standby that does not follow.

use std::time::{Duration, Instant};

use super::schedule::Retry;
use super::{
    bootstrap_retry_after, clone_retry_after, divergence, missing_wal, rewind_retry_after, Decider,
    PROMOTION_VETO_WAIT,
};

/// Steps that bring the node back after a failure, and when they may be tried again.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// pg_rewind after a failure (failures in a row reset when a standby is started).
    pub(super) rewind: Retry,
    /// After the `pre_promote` callback vetoed a promotion, no contending before this.
    pub(super) contend: Option<Instant>,
    /// Bootstrap after a failure (reset once PostgreSQL runs and answers).
    pub(super) bootstrap: Retry,
    /// Clone after a failure (reset once PostgreSQL runs and answers).
    pub(super) clone: Retry,
    /// Whether the running standby follows the primary's timeline.
    pub(super) follow: divergence::FollowWatch,
    /// Whether the WAL the running standby needs is still on the primary.
    pub(super) missing_wal: missing_wal::MissingWalWatch,
    /// When a data directory may be wiped and cloned again (else only reported).
    pub(super) reclone: Reclone,
    /// A pg_rewind failed and re-cloning is allowed: the directory is wiped next.
    pub(super) wipe_after_rewind_failure: bool,
}

/// When the operator allows a data directory to be wiped and cloned again
/// (`[provisioning]` settings of the same names).
#[derive(Debug, Default, Clone, Copy)]
pub struct Reclone {
    /// A standby whose WAL is gone from the primary.
    pub on_missing_wal: bool,
    /// A node whose pg_rewind failed, or an interrupted one left damaged.
    pub on_rewind_failure: bool,
}

impl Decider {
    /// Input: the pg_rewind asked for failed at `now`; the next attempt waits
    /// [`REWIND_RETRY`](super::REWIND_RETRY), doubled for each further failure in a row ([`rewind_retry_after`]),
    /// unless another node holds the lock by then (a failover): then it is tried at once.
    pub fn rewind_failed(&mut self, now: Instant) {
        self.retry.wipe_after_rewind_failure = self.retry.reclone.on_rewind_failure;
        self.retry
            .rewind
            .failed(now, rewind_retry_after, self.last_primary.node());
        // A standby stopped because it could not follow stays stopped until it is rewound.
        self.retry.follow.rewind_failed();
    }

    /// Input: the operator's `pre_promote` callback vetoed this node's promotion at `now`. The
    /// next round gives the lock up (quietly: this node never wrote under it), and the node
    /// does not contend for it again for [`PROMOTION_VETO_WAIT`], so the others get their turn.
    pub fn promotion_vetoed(&mut self, now: Instant) {
        self.retry.contend = Some(now + PROMOTION_VETO_WAIT);
    }

    /// Input: the bootstrap asked for failed at `now`. The next round gives the lock up, and
    /// the node does not try again for [`BOOTSTRAP_RETRY`](super::BOOTSTRAP_RETRY), doubled for each further failure in
    /// a row ([`bootstrap_retry_after`]).
    /// Returns how long the node waits.
    pub fn bootstrap_failed(&mut self, now: Instant) -> Duration {
        self.retry
            .bootstrap
            .failed(now, bootstrap_retry_after, None)
    }

    /// Input: the clone asked for failed at `now`. The node does not try again for
    /// [`CLONE_RETRY`](super::CLONE_RETRY), doubled for each further failure in a row ([`clone_retry_after`]),
    /// unless another node holds the lock by then (a failover): then it tries at once.
    /// Returns how long it waits.
    pub fn clone_failed(&mut self, now: Instant) -> Duration {
        self.retry
            .clone
            .failed(now, clone_retry_after, self.last_primary.node())
    }

    /// Whether a vetoed promotion keeps this node out of elections at `now`.
    pub(super) fn promotion_veto_holds(&self, now: Instant) -> bool {
        self.retry.contend.is_some_and(|at| now < at)
    }
}
