//! `zgresctl unlock`: releases a lock left persistent at a paused shutdown (see the deadman's
//! `decision::shutdown_plan`), for a node whose deadman will not come back to take it.

use zgres_schema::documents::Lock;
use zgres_schema::Znode;

use super::{decode, CtlError, Inventory, Refusal};

impl Inventory {
    /// Deletes `group`'s lock if it is a persistent one (left at a paused shutdown); refuses a
    /// lock a live session holds (it goes with that session). Returns the node it named (`None`
    /// when its content is unreadable).
    ///
    /// # Errors
    /// [`Refusal::NoLockLeft`], [`Refusal::LockHeld`]; ZooKeeper failures (`NoAuth` without the
    /// writer identity when ACLs are on).
    pub async fn unlock_group(&self, group: &str) -> Result<Option<String>, CtlError> {
        let name = self.group_name(group)?;
        let path = self.layout.path(&Znode::Lock(name));
        let Some((data, stat)) = self.get(&path).await? else {
            return Err(Refusal::NoLockLeft(group.to_owned()).into());
        };
        let named = decode::<Lock>(&path, &data)
            .ok()
            .map(|l| l.node.to_string());
        if stat.ephemeral_owner != 0 {
            return Err(Refusal::LockHeld {
                group: group.to_owned(),
                holder: named.unwrap_or_else(|| "an unreadable holder".to_owned()),
            }
            .into());
        }
        // Only the version read: a deadman that took it back meanwhile keeps it.
        if !self
            .session
            .delete(&path, Some(stat.version))
            .await?
            .is_done()
        {
            return Err(Refusal::NoLockLeft(group.to_owned()).into());
        }
        Ok(named)
    }

    /// Whether `group`'s lock was left persistent at a paused shutdown.
    pub(super) async fn lock_unattended(&self, path: &str) -> Result<bool, CtlError> {
        Ok(self
            .get(path)
            .await?
            .is_some_and(|(_, stat)| stat.ephemeral_owner == 0))
    }
}
