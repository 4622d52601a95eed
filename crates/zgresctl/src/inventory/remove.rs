//! `zgresctl remove`: deletes what a group leaves in ZooKeeper once none of its deadmen runs.

use zgres_schema::{Dir, Znode};

use super::{CtlError, Inventory, Refusal};

impl Inventory {
    /// Deletes every znode of `group` (its config, history, database id, pending requests and
    /// `/sync`), refusing while any of its deadmen is alive: a `/state`, `/conn` or `/lock` of
    /// the group still exists (they are ephemeral, so they go with the deadman's session).
    /// Returns the znodes deleted; running it again deletes nothing.
    ///
    /// # Errors
    /// [`Refusal::GroupAlive`] naming a live znode; ZooKeeper failures (`NoAuth` without the
    /// writer identity when ACLs are on).
    pub async fn remove_group(&self, group: &str) -> Result<Vec<String>, CtlError> {
        let name = self.group_name(group)?;
        let member = |dir: Dir| {
            let prefix = format!("{group}_");
            let dir_path = self.layout.dir(dir);
            async move {
                let children = self.session.children(&dir_path).await?.unwrap_or_default();
                Ok::<_, CtlError>(
                    children
                        .into_iter()
                        .filter(|c| c.starts_with(&prefix))
                        .map(|c| format!("{dir_path}/{c}"))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let lock = self.layout.path(&Znode::Lock(name.clone()));
        let mut alive = member(Dir::State).await?;
        alive.extend(member(Dir::Conn).await?);
        if self.get(&lock).await?.is_some() {
            alive.push(lock);
        }
        if let Some(live) = alive.into_iter().next() {
            return Err(Refusal::GroupAlive {
                group: group.to_owned(),
                live,
            }
            .into());
        }
        let history = self.layout.path(&Znode::History(name.clone()));
        let mut doomed = member(Dir::Request).await?;
        let mut beside = self.session.children(&history).await?.unwrap_or_default();
        beside.sort();
        doomed.extend(beside.into_iter().map(|c| format!("{history}/{c}")));
        doomed.extend([
            history,
            self.layout.path(&Znode::Switchover(name.clone())),
            self.layout.path(&Znode::Sync(name.clone())),
            self.layout.path(&Znode::Config(name.clone())),
            self.layout.path(&Znode::PgSettings(name.clone())),
            self.layout.path(&Znode::Released(name.clone())),
            self.layout.path(&Znode::DatabaseId(name)),
        ]);
        let mut deleted = Vec::new();
        for path in doomed {
            if self.session.delete(&path, None).await?.is_done() {
                deleted.push(path);
            }
        }
        Ok(deleted)
    }
}
