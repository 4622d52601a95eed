//! `zgresctl acl apply`: moves existing znodes to the ACL policy of the identity zgresctl runs
//! as (see `zgres_zk::auth`), for a tree created before authentication was turned on.

use serde::Serialize;
use zgres_schema::Dir;
use zgres_zk::Outcome;

use super::{CtlError, Inventory, Refusal};

/// What `acl apply` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AclReport {
    /// Znodes looked at.
    pub checked: usize,
    /// Znodes whose ACL was replaced.
    pub changed: usize,
    /// Znodes whose ACL someone else changed meanwhile (left as they are; run it again).
    pub conflicts: Vec<String>,
}

impl Inventory {
    /// Refuses when the root grants read-only access to identities the new policy leaves
    /// out: run without the deadmen's `--zk-reader` list, the command would lock zgres-sync
    /// and monitoring out of the whole tree.
    async fn refuse_to_drop_readers(
        &self,
        stored: &[zgres_zk::client::Acl],
    ) -> Result<(), CtlError> {
        let current = self
            .session
            .acl(self.layout.root())
            .await?
            .unwrap_or_default();
        let dropped: Vec<String> = current
            .iter()
            .filter(|acl| acl.permission() == zgres_zk::client::Permission::READ)
            .filter(|acl| !stored.contains(acl))
            .map(|acl| format!("{}:{}", acl.scheme(), acl.id()))
            .collect();
        if dropped.is_empty() {
            Ok(())
        } else {
            Err(Refusal::AclWouldDropReaders(dropped).into())
        }
    }

    /// Puts the policy on the root, the zgres directories and every znode below them
    /// (`group: None`), or only on `group`'s znodes (and the root and directories). Znodes
    /// already carrying the policy are left alone, so running it again changes nothing.
    /// Unless `drop_readers`, refused when the tree's readers are not all in the policy.
    ///
    /// # Errors
    /// [`Refusal::AclWouldDropReaders`]; ZooKeeper failures, e.g. refused on a znode this
    /// identity may not administer.
    pub async fn apply_acls(
        &self,
        group: Option<&str>,
        drop_readers: bool,
    ) -> Result<AclReport, CtlError> {
        let group = group.map(|g| self.group_name(g)).transpose()?;
        let mut report = AclReport::default();
        let stored = self.session.stored_policy(self.layout.root()).await?;
        if !drop_readers {
            self.refuse_to_drop_readers(&stored).await?;
        }
        let mut pending = vec![self.layout.root().to_owned()];
        let dirs: Vec<String> = Dir::ALL.iter().map(|d| self.layout.dir(*d)).collect();
        while let Some(path) = pending.pop() {
            self.apply_one(&path, &stored, &mut report).await?;
            let children = self.session.children(&path).await?.unwrap_or_default();
            let is_root = path == self.layout.root();
            let is_dir = dirs.contains(&path);
            for child in children {
                let full = format!("{}/{child}", path.trim_end_matches('/'));
                let wanted = match (&group, is_root, is_dir) {
                    (None, _, _) => true,
                    // Under the root: only the zgres directories.
                    (Some(_), true, _) => dirs.contains(&full),
                    // In a directory: only this group's znodes (`G`, `G_NODE`, `G-db-id`).
                    (Some(g), _, true) => {
                        let g = g.as_str();
                        child == g
                            || child.starts_with(&format!("{g}_"))
                            || child == format!("{g}-db-id")
                    }
                    // Below a group's znode (its history): everything.
                    (Some(_), false, false) => true,
                };
                if wanted {
                    pending.push(full);
                }
            }
        }
        Ok(report)
    }

    async fn apply_one(
        &self,
        path: &str,
        stored: &[zgres_zk::client::Acl],
        report: &mut AclReport,
    ) -> Result<(), CtlError> {
        report.checked += 1;
        match self.session.apply_acl(path, stored).await? {
            Outcome::Done(true) => report.changed += 1,
            Outcome::BadVersion => report.conflicts.push(path.to_owned()),
            // Unchanged, or gone meanwhile (an ephemeral whose deadman left).
            Outcome::Done(false) | Outcome::NotFound | Outcome::Exists => {}
        }
        Ok(())
    }
}
