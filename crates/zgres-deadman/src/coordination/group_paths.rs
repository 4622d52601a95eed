//! The paths every round reads, formatted once per session: formatting them again each round
//! was a visible part of an idle deadman's own work.

use std::sync::Arc;

use zgres_schema::{Dir, GroupName, NodeId, ZkLayout, Znode};

/// This node's group's znodes a round reads (shared, so handing one out copies nothing).
#[derive(Debug, Clone)]
pub(super) struct GroupPaths {
    pub(super) lock: Arc<str>,
    pub(super) switchover: Arc<str>,
    /// This node's `/request/{GROUP}_{NODE}`.
    pub(super) own_request: Arc<str>,
    pub(super) config: Arc<str>,
    pub(super) db_id: Arc<str>,
    pub(super) sync: Arc<str>,
    pub(super) state_dir: Arc<str>,
    /// `{GROUP}_`: how this group's state znodes' names begin.
    pub(super) state_prefix: Arc<str>,
    /// This node's own state znode's name in the state directory.
    pub(super) own_state_name: Arc<str>,
}

impl GroupPaths {
    /// The paths of `group`'s znodes under `layout`, for node `me`.
    pub(super) fn new(layout: &ZkLayout, group: &GroupName, me: NodeId) -> Self {
        let path = |znode: Znode| Arc::<str>::from(layout.path(&znode));
        GroupPaths {
            lock: path(Znode::Lock(group.clone())),
            switchover: path(Znode::Switchover(group.clone())),
            own_request: path(Znode::Request(group.clone(), me)),
            config: path(Znode::Config(group.clone())),
            db_id: path(Znode::DatabaseId(group.clone())),
            sync: path(Znode::Sync(group.clone())),
            state_dir: layout.dir(Dir::State).into(),
            state_prefix: format!("{group}_").into(),
            own_state_name: format!("{group}_{me}").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paths_are_the_layouts() {
        let layout = ZkLayout::default();
        let group = GroupName::new("main").unwrap();
        let me: NodeId = "127.0.0.1:5432".parse().unwrap();
        let paths = GroupPaths::new(&layout, &group, me);
        assert_eq!(&*paths.lock, layout.path(&Znode::Lock(group.clone())));
        assert_eq!(
            &*paths.own_request,
            layout.path(&Znode::Request(group.clone(), me))
        );
        assert_eq!(
            format!("{}/{}", paths.state_dir, paths.own_state_name),
            layout.path(&Znode::State(group.clone(), me))
        );
        assert!(paths.own_state_name.starts_with(&*paths.state_prefix));
    }
}
