//! A group's promotion history as the CLI shows it: `/history/{GROUP}` and the promotions
//! recorded beside it while it was unreadable, merged, with what could not be read.

use serde::Serialize;
use zgres_schema::documents::{LockRelease, Promotion};
use zgres_schema::{Fetched, HistoryView, NodeId, Znode};

use super::{CtlError, Inventory};

/// A group's promotions as the CLI shows them.
#[derive(Debug, Clone, Serialize)]
pub struct GroupHistory {
    /// Every readable promotion, oldest first.
    pub entries: Vec<Promotion>,
    /// Why parts of the history could not be read (znode and reason).
    pub errors: Vec<String>,
    /// The last time the lock was given up with nobody writing under it (`/released/{GROUP}`):
    /// a node that took it then needed no takeover wait.
    pub last_quiet_release: Option<QuietRelease>,
}

/// A lock given up with nobody writing under it, as `/released/{GROUP}` records it.
#[derive(Debug, Clone, Serialize)]
pub struct QuietRelease {
    /// The node that gave it up.
    pub node: NodeId,
    /// When (the record's modification time, ms since the epoch).
    pub at_ms: i64,
}

impl Inventory {
    /// The group's promotion history: every readable entry, and what could not be read (an
    /// unreadable `/history` is kept as found; promotions are then recorded beside it).
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn history(&self, group: &str) -> Result<GroupHistory, CtlError> {
        let group = self.group_name(group)?;
        let released_path = self.layout.path(&Znode::Released(group.clone()));
        let path = self.layout.path(&Znode::History(group));
        let mut view = HistoryView::default();
        if let Some((data, _)) = self.get(&path).await? {
            view.document = Fetched::decode(&path, Some(&data));
            let mut children = self.session.children(&path).await?.unwrap_or_default();
            children.sort();
            // Only the promotions recorded beside an unreadable history, as the deadmen read them.
            for child in children
                .into_iter()
                .filter(|c| c.starts_with(zgres_schema::paths::HISTORY_BESIDE_NAME))
            {
                let child_path = format!("{path}/{child}");
                if let Some((data, _)) = self.get(&child_path).await? {
                    view.beside.push(Fetched::decode(&child_path, Some(&data)));
                }
            }
        }
        let mut errors: Vec<String> = std::iter::once(&view.document)
            .filter_map(|d| d.error().map(ToString::to_string))
            .chain(
                view.beside
                    .iter()
                    .filter_map(|p| p.error().map(ToString::to_string)),
            )
            .collect();
        let mut last_quiet_release = None;
        if let Some((data, stat)) = self.get(&released_path).await? {
            match Fetched::<LockRelease>::decode(&released_path, Some(&data)) {
                Fetched::Valid(record) => {
                    last_quiet_release = Some(QuietRelease {
                        node: record.node,
                        at_ms: stat.mtime,
                    })
                }
                other => errors.extend(other.error().map(ToString::to_string)),
            }
        }
        Ok(GroupHistory {
            entries: view.entries().into_iter().cloned().collect(),
            errors,
            last_quiet_release,
        })
    }
}
