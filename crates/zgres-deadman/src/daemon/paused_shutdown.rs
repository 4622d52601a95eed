//! The paused shutdown: a deadman stopped while its group is paused leaves PostgreSQL running
//! under its guardian ([`crate::guardian`]) for the next deadman to take over, instead of
//! stopping it; a primary's lock is left persistent first, so nobody takes over a primary no
//! deadman watches.

use super::Daemon;
use crate::decision::ShutdownPlan;

impl Daemon {
    /// Carries out the core's shutdown plan when it leaves PostgreSQL running; returns whether
    /// PostgreSQL was left running. Any step that fails makes it false: the caller then stops
    /// PostgreSQL as in any other shutdown. Bounded by the guardian's answer timeout and one
    /// ZooKeeper transaction.
    ///
    /// Order: the guardian detaches first (if the deadman died after that, its fence keeper,
    /// still armed, would kill PostgreSQL), then the lock is made persistent, then (by the
    /// caller) the fence is disarmed.
    pub(super) async fn leave_postgres_running(&mut self) -> bool {
        let ShutdownPlan::LeaveRunning { persist_lock } = self.core.on_shutdown else {
            return false;
        };
        let Some(pid) = self.pg.process.pid() else {
            return false;
        };
        if !self.pg.process.detach().await {
            tracing::error!(pid, "the group is paused, but the postmaster guardian did not let PostgreSQL outlive this deadman; stopping it");
            return false;
        }
        if persist_lock {
            let Some(session) = self.zk.session.as_mut() else {
                tracing::warn!("the group is paused, but there is no ZooKeeper session to keep the primary's lock; stopping postgres");
                return false;
            };
            match session.coordinator.leave_lock().await {
                Ok(true) => tracing::warn!(
                    znode = %session.coordinator.lock_path(),
                    "the group is paused: the lock is left persistent for the primary left running; this node's next deadman takes it back (zgresctl unlock releases it if this node is gone for good)"
                ),
                Ok(false) => {
                    tracing::warn!("the lock is no longer this session's; stopping postgres");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot leave the lock persistent; stopping postgres");
                    return false;
                }
            }
        }
        tracing::warn!(
            pid,
            "the group is paused: PostgreSQL is left running for the next deadman to take over"
        );
        true
    }
}
