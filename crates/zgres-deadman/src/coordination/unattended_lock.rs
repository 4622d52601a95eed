//! The lock left unattended at a paused shutdown: this session's ephemeral lock turned into a
//! persistent znode with the same content, so that the primary left running keeps it while no
//! deadman watches it (nobody else takes over, even once the group is resumed), and turned back
//! into an ephemeral one by the node's next deadman. Both in one transaction: the lock is never
//! absent, not even for an instant in which an election could start.

use zgres_schema::documents::Lock;
use zgres_zk::{CreateKind, Outcome};

use super::{Coordinator, Result};

impl Coordinator {
    /// Makes this session's lock persistent (a paused shutdown that leaves the primary running).
    /// `Ok(false)` when this session does not hold the lock or it changed meanwhile (nothing
    /// was written).
    ///
    /// # Errors
    /// As any request; the lock may then be either kind, so the caller must stop PostgreSQL.
    pub async fn leave_lock(&mut self) -> Result<bool> {
        let path = self.lock_path();
        self.cache.invalidate(&path);
        let Some((data, stat)) = self.session.get(&path).await? else {
            return Ok(false);
        };
        if stat.ephemeral_owner != self.session.session_id().0 {
            return Ok(false);
        }
        let outcome = self
            .session
            .replace(&path, stat.version, &data, CreateKind::Persistent)
            .await?;
        Ok(outcome.is_done())
    }

    /// Takes back the persistent lock naming this node (left at a paused shutdown) as an
    /// ephemeral one of this session, with the same content. `Ok(false)` when there is no such
    /// lock any more (released by an operator, or changed): nothing was written.
    ///
    /// # Errors
    /// As any request; the next round reads the lock again.
    pub async fn reclaim_lock(&mut self) -> Result<bool> {
        let path = self.lock_path();
        self.cache.invalidate(&path);
        let Some((data, stat)) = self.session.get(&path).await? else {
            return Ok(false);
        };
        let ours = self.decoder.decode::<Lock>(&path, &data).into_valid();
        if stat.ephemeral_owner != 0 || ours.map(|l| l.node) != Some(self.me) {
            return Ok(false);
        }
        let sent = crate::fence::monotonic_ns();
        match self
            .session
            .replace(&path, stat.version, &data, CreateKind::Ephemeral)
            .await?
        {
            Outcome::Done(()) => {
                self.fence.confirm(sent);
                self.held_lock = ours;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
