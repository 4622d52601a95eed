//! The snapshot kept up to date change by change: only the znodes that changed are decoded and
//! only their groups are assembled again, so a change in one of 10,000 groups costs one group's
//! work. [`super::build`] is the same builder fed a whole tree; the tests check that both
//! always agree.

use std::collections::{BTreeMap, BTreeSet};

use zgres_schema::{GroupName, NodeId, ZkLayout};

use super::{decode_entry, put_group, Entry, GroupParts, RawTree, RawZnode, Skipped, Snapshot};

/// A snapshot with what it was built from, updated one znode at a time.
#[derive(Debug)]
pub struct SnapshotBuilder {
    layout: ZkLayout,
    groups: Vec<GroupName>,
    entries: BTreeMap<String, Entry>,
    parts: BTreeMap<GroupName, GroupParts>,
    /// Groups whose parts changed since the snapshot was last assembled, with the nodes
    /// their conn_info had then.
    dirty: BTreeMap<GroupName, BTreeSet<NodeId>>,
    /// The unusable znodes, by path.
    skipped: BTreeMap<String, Skipped>,
    snapshot: Snapshot,
}

impl SnapshotBuilder {
    /// An empty builder for `groups` (all when empty) under `layout`.
    pub fn new(layout: ZkLayout, groups: Vec<GroupName>) -> Self {
        SnapshotBuilder {
            layout,
            groups,
            entries: BTreeMap::new(),
            parts: BTreeMap::new(),
            dirty: BTreeMap::new(),
            skipped: BTreeMap::new(),
            snapshot: Snapshot {
                v: 1,
                ..Snapshot::default()
            },
        }
    }

    /// Brings the builder to the whole `tree` (after a reconnect, when events may have been
    /// lost): znodes no longer there are removed, the rest updated. Groups that end up as they
    /// were do not count as changed.
    pub fn reset(&mut self, tree: &RawTree) {
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|path| !tree.contains_key(*path))
            .cloned()
            .collect();
        for path in gone {
            self.update(&path, None);
        }
        for (path, znode) in tree {
            self.update(path, Some(znode));
        }
    }

    /// Takes the znode at `path` into account: as it is now, or `None` when it is gone.
    pub fn update(&mut self, path: &str, znode: Option<&RawZnode>) {
        let new = znode.map_or(Entry::Ignored, |z| {
            decode_entry(&self.layout, path, z, &self.groups)
        });
        let old = match &new {
            Entry::Ignored => self.entries.remove(path),
            _ => self.entries.insert(path.to_owned(), new.clone()),
        };
        if old.as_ref() == Some(&new) {
            return;
        }
        match &new {
            Entry::Skipped(skipped) => {
                self.skipped.insert(path.to_owned(), skipped.clone());
            }
            _ => {
                self.skipped.remove(path);
            }
        }
        if let Some(old) = old {
            self.apply(&old, false);
        }
        self.apply(&new, true);
    }

    /// Adds (`present`) or removes what `entry` contributes to its group.
    fn apply(&mut self, entry: &Entry, present: bool) {
        let group = match entry {
            Entry::Lock(group, _) | Entry::Conn(group, _, _) => group,
            Entry::Skipped(_) | Entry::Ignored => return,
        };
        let parts = self.parts.entry(group.clone()).or_default();
        self.dirty
            .entry(group.clone())
            .or_insert_with(|| parts.conns.keys().copied().collect());
        match (entry, present) {
            (Entry::Lock(_, node), true) => parts.holder = Some(*node),
            (Entry::Lock(_, _), false) => parts.holder = None,
            (Entry::Conn(_, node, conn), true) => {
                parts.conns.insert(*node, conn.clone());
            }
            (Entry::Conn(_, node, _), false) => {
                parts.conns.remove(node);
            }
            _ => {}
        }
    }

    /// Assembles again the groups whose znodes changed since the last call; returns whether
    /// the snapshot differs from what it was then (a change may undo another).
    pub fn assemble(&mut self) -> bool {
        let mut differs = false;
        for (group, old_nodes) in std::mem::take(&mut self.dirty) {
            let before = (
                self.snapshot.groups.get(&group).cloned(),
                self.snapshot.masters.get(&group).copied(),
            );
            let parts = self.parts.get(&group).cloned().unwrap_or_default();
            put_group(&mut self.snapshot, &group, old_nodes.into_iter(), &parts);
            if parts.is_empty() {
                self.parts.remove(&group);
            }
            // The group's entry and master determine its conn_info and databases entries.
            differs |= before
                != (
                    self.snapshot.groups.get(&group).cloned(),
                    self.snapshot.masters.get(&group).copied(),
                );
        }
        differs
    }

    /// The snapshot, assembled again for the groups that changed since the last call.
    pub fn snapshot(&mut self) -> &Snapshot {
        self.assemble();
        &self.snapshot
    }

    /// The unusable znodes of the tree, by path.
    pub fn skipped(&self) -> Vec<Skipped> {
        self.skipped.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::build;
    use super::super::tests::{conn, lock};
    use super::*;

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            prop_oneof![Just("a"), Just("b")].prop_map(|g| format!("/zgres/lock/{g}")),
            (prop_oneof![Just("a"), Just("b")], 1u8..4)
                .prop_map(|(g, i)| format!("/zgres/conn/{g}_10.0.0.{i}:5432")),
            Just("/zgres/conn/a_bad".to_owned()),
            Just("/zgres/state".to_owned()),
        ]
    }

    fn data() -> impl Strategy<Value = Option<RawZnode>> {
        let content = prop_oneof![
            (1u8..4).prop_map(conn),
            (1u8..4).prop_map(lock),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::option::of(
            (content, proptest::bool::weighted(0.9))
                .prop_map(|(data, ephemeral)| RawZnode { data, ephemeral }),
        )
    }

    proptest! {
        /// Fed change by change, resynchronised from the whole tree now and then, with
        /// snapshots taken at any point, the builder always agrees with a build of the whole
        /// tree as it is then.
        #[test]
        fn change_by_change_equals_a_full_build(
            changes in proptest::collection::vec(
                (path(), data(), any::<bool>(), proptest::bool::weighted(0.1)),
                0..40,
            ),
            only_a: bool,
        ) {
            let layout = ZkLayout::default();
            let groups = if only_a { vec![GroupName::new("a").unwrap()] } else { vec![] };
            let mut builder = SnapshotBuilder::new(layout.clone(), groups.clone());
            let mut tree = RawTree::new();
            for (path, data, look, resync) in changes {
                match &data {
                    Some(d) => tree.insert(path.clone(), d.clone()),
                    None => tree.remove(&path),
                };
                if resync {
                    // As after a reconnect: the whole tree, changes since unknown.
                    builder.reset(&tree);
                } else {
                    builder.update(&path, data.as_ref());
                }
                if look {
                    let (full, skipped) = build(&layout, &tree, &groups);
                    prop_assert_eq!(builder.snapshot(), &full);
                    prop_assert_eq!(builder.skipped(), skipped);
                }
            }
            let (full, _) = build(&layout, &tree, &groups);
            prop_assert_eq!(builder.snapshot(), &full);
        }
    }
}
