//! The snapshot handed to plugins: every followed group's primary and healthy replicas, built
//! purely from the raw znode contents (no I/O here).
//!
//! JSON form (`"v": 1`), written atomically for executable plugins:
//!
//! ```json
//! {
//!   "v": 1,
//!   "groups": {
//!     "main": {
//!       "primary":  {"node": "10.0.0.1:5432", "host": "10.0.0.1", "port": 5432, "tags": {...}},
//!       "replicas": [{"node": "10.0.0.2:5432", "host": "10.0.0.2", "port": 5432, "tags": {...}}]
//!     }
//!   },
//!   "masters":   {"main": "10.0.0.1:5432"},
//!   "conn_info": {"main_10.0.0.1:5432": {"host": "10.0.0.1", "port": 5432, ...}, ...},
//!   "databases": {"main": ["10.0.0.1:5432", "10.0.0.2:5432"]}
//! }
//! ```
//!
//! `masters`, `conn_info` and `databases` keep the zgres-apply keys: the lock holder per group,
//! the connection info of every healthy node by znode name, and the healthy nodes per group.
//! A group's `primary` is set only when the lock holder is healthy (has `/conn`) and its `/conn`
//! says it runs as a primary: writes are never routed to a node that is not known to be up, nor
//! to a replica still being promoted (it is listed with the replicas until then).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zgres_schema::documents::{ConnInfo, Lock, Role, Tags};
use zgres_schema::{decode, GroupName, NodeId, ZkLayout, Znode};

/// One healthy node, as plugins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The node id.
    pub node: NodeId,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: u16,
    /// Database name hint, if the node publishes one.
    #[serde(default)]
    pub dbname: Option<String>,
    /// The node's tags (`noloadbalance`, ...).
    pub tags: Tags,
    /// The port of the node's health API on `host`, if it serves one (`null` otherwise, so
    /// templates can test it).
    #[serde(default)]
    pub api_port: Option<u16>,
}

/// One group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// The healthy lock holder.
    pub primary: Option<Endpoint>,
    /// Healthy nodes other than the primary, ordered by node id.
    pub replicas: Vec<Endpoint>,
}

/// Everything plugins get. Always the whole picture, never a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Schema version of this document.
    pub v: u32,
    /// Followed groups by name.
    pub groups: BTreeMap<GroupName, GroupSnapshot>,
    /// zgres-apply: lock holder per group.
    pub masters: BTreeMap<GroupName, NodeId>,
    /// zgres-apply: connection info of every healthy node, keyed `{GROUP}_{NODE}`.
    pub conn_info: BTreeMap<String, ConnInfo>,
    /// zgres-apply: healthy nodes per group.
    pub databases: BTreeMap<GroupName, Vec<NodeId>>,
}

/// A znode as read from ZooKeeper: its data, and whether it is ephemeral (a `/lock` or `/conn`
/// that is not outlives its writer and is not used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawZnode {
    /// The content.
    pub data: Vec<u8>,
    /// Owned by a session (`ephemeralOwner` ≠ 0).
    pub ephemeral: bool,
}

impl From<Vec<u8>> for RawZnode {
    /// An ephemeral znode with `data`, as deadmen write them.
    fn from(data: Vec<u8>) -> Self {
        RawZnode {
            data,
            ephemeral: true,
        }
    }
}

/// Raw znodes by full path, as read from ZooKeeper.
pub type RawTree = BTreeMap<String, RawZnode>;

/// Something in the tree that could not be used; reported, then left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The znode.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What one znode of the tree contributes.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// A followed group's lock, naming its holder.
    Lock(GroupName, NodeId),
    /// A followed group's healthy node.
    Conn(GroupName, NodeId, ConnInfo),
    /// Unusable: reported, left out.
    Skipped(Skipped),
    /// Not ours to use (a directory, another kind of znode, an unfollowed group).
    Ignored,
}

/// Decodes one znode of the tree. A `/lock` or `/conn` is used only if ephemeral, and a
/// `/conn` only if it passes [`ConnInfo::check`] for its node.
fn decode_entry(layout: &ZkLayout, path: &str, znode: &RawZnode, groups: &[GroupName]) -> Entry {
    let data = &znode.data[..];
    let skipped = |reason: String| {
        Entry::Skipped(Skipped {
            path: path.to_owned(),
            reason,
        })
    };
    let parsed = match layout.parse(path) {
        Ok(z) => z,
        // Directories and foreign znodes are expected in the tree; only report paths that
        // look like ours but are malformed.
        Err(e @ zgres_schema::PathError::BadId { .. }) => return skipped(e.to_string()),
        Err(_) => return Entry::Ignored,
    };
    if !(groups.is_empty() || groups.contains(parsed.group())) {
        return Entry::Ignored;
    }
    let persistent =
        || skipped("not ephemeral: it would outlive its writer, so it is not used".to_owned());
    match parsed {
        // The deadmen leave a lock persistent at a paused shutdown: no deadman watches that
        // primary then (nor publishes its `/conn`), so nothing is routed to it either way.
        Znode::Lock(_) if !znode.ephemeral => skipped(
            "not ephemeral: left by a deadman stopped in a paused group (or forged); no primary is routed to until that node's deadman takes it back".to_owned(),
        ),
        Znode::Conn(..) if !znode.ephemeral => persistent(),
        Znode::Lock(group) => match decode::<Lock>(path, data) {
            Ok(lock) => Entry::Lock(group, lock.node),
            Err(e) => skipped(e.to_string()),
        },
        Znode::Conn(group, node) => match decode::<ConnInfo>(path, data) {
            Ok(conn) => match conn.check(node) {
                Ok(()) => Entry::Conn(group, node, conn),
                Err(problem) => skipped(problem.to_string()),
            },
            Err(e) => skipped(e.to_string()),
        },
        _ => Entry::Ignored,
    }
}

/// One group's lock holder and healthy nodes, as decoded.
#[derive(Debug, Clone, Default)]
struct GroupParts {
    holder: Option<NodeId>,
    conns: BTreeMap<NodeId, ConnInfo>,
}

impl GroupParts {
    fn is_empty(&self) -> bool {
        self.holder.is_none() && self.conns.is_empty()
    }
}

/// Removes `group` from `snapshot` (with the conn_info of `nodes`), then adds it again from
/// `parts` unless they are empty.
fn put_group(
    snapshot: &mut Snapshot,
    group: &GroupName,
    old_nodes: impl Iterator<Item = NodeId>,
    parts: &GroupParts,
) {
    for node in old_nodes {
        snapshot.conn_info.remove(&format!("{group}_{node}"));
    }
    snapshot.masters.remove(group);
    snapshot.databases.remove(group);
    snapshot.groups.remove(group);
    if parts.is_empty() {
        return;
    }
    if let Some(holder) = parts.holder {
        snapshot.masters.insert(group.clone(), holder);
    }
    let mut entry = GroupSnapshot::default();
    for (node, conn) in &parts.conns {
        snapshot
            .conn_info
            .insert(format!("{group}_{node}"), conn.clone());
        let endpoint = Endpoint {
            node: *node,
            host: conn.host.clone(),
            port: conn.port,
            dbname: conn.dbname.clone(),
            tags: conn.tags.clone(),
            api_port: conn.api_port,
        };
        // The writer entry: the lock holder once it runs as a primary. While it is still
        // being promoted it serves reads like any replica. (A `/conn` without a role comes
        // from a deadman older than the field: its holder counts as the primary, as before.)
        let writer = parts.holder == Some(*node) && conn.role.map_or(true, |r| r == Role::Primary);
        if writer {
            entry.primary = Some(endpoint);
        } else {
            entry.replicas.push(endpoint);
        }
    }
    if !parts.conns.is_empty() {
        snapshot
            .databases
            .insert(group.clone(), parts.conns.keys().copied().collect());
    }
    // A group with a lock but no healthy node still appears, with no primary.
    snapshot.groups.insert(group.clone(), entry);
}

/// Builds the snapshot from the `/lock` and `/conn` znodes in `tree`, for `groups` (all when
/// empty). Never fails: unusable znodes are returned in the second element.
pub fn build(layout: &ZkLayout, tree: &RawTree, groups: &[GroupName]) -> (Snapshot, Vec<Skipped>) {
    let mut builder = SnapshotBuilder::new(layout.clone(), groups.to_vec());
    builder.reset(tree);
    let skipped = builder.skipped();
    (builder.snapshot().clone(), skipped)
}

mod builder;
mod file_text;

pub use builder::SnapshotBuilder;
pub use file_text::SnapshotFileText;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zgres_schema::encode;

    fn layout() -> ZkLayout {
        ZkLayout::default()
    }

    fn node(i: u8) -> NodeId {
        format!("10.0.0.{i}:5432").parse().unwrap()
    }

    /// A `/conn` document for node `10.0.0.{i}:5432` (also for the builder's tests).
    pub(super) fn conn(i: u8) -> Vec<u8> {
        encode(&ConnInfo {
            role: None,
            api_port: None,
            host: format!("10.0.0.{i}"),
            port: 5432,
            dbname: None,
            tags: Tags::default(),
        })
        .unwrap()
    }

    /// A `/lock` document naming node `10.0.0.{i}:5432`.
    pub(super) fn lock(i: u8) -> Vec<u8> {
        encode(&Lock {
            node: node(i),
            timeline: zgres_schema::Timeline::FIRST,
        })
        .unwrap()
    }

    #[test]
    fn primary_is_the_healthy_lock_holder_and_the_rest_are_replicas() {
        let mut tree = RawTree::new();
        tree.insert("/zgres/lock/main".into(), lock(2).into());
        for i in 1..=3 {
            tree.insert(format!("/zgres/conn/main_10.0.0.{i}:5432"), conn(i).into());
        }
        tree.insert("/zgres/state".into(), vec![].into());
        let (s, skipped) = build(&layout(), &tree, &[]);
        assert!(skipped.is_empty(), "{skipped:?}");
        let main = &s.groups[&GroupName::new("main").unwrap()];
        assert_eq!(main.primary.as_ref().unwrap().node, node(2));
        assert_eq!(
            main.replicas.iter().map(|r| r.node).collect::<Vec<_>>(),
            [node(1), node(3)]
        );
        assert_eq!(s.masters[&GroupName::new("main").unwrap()], node(2));
        assert_eq!(s.conn_info.len(), 3);
        assert_eq!(s.databases[&GroupName::new("main").unwrap()].len(), 3);
    }

    /// A `/conn` for node `10.0.0.{i}:5432` that says what it runs as.
    fn conn_as(i: u8, role: Role) -> Vec<u8> {
        let mut info: ConnInfo = zgres_schema::decode("/c", &conn(i)).unwrap();
        info.role = Some(role);
        encode(&info).unwrap()
    }

    #[test]
    fn a_lock_holder_still_being_promoted_gets_no_writes_until_it_says_primary() {
        let main = GroupName::new("main").unwrap();
        let mut tree = RawTree::new();
        tree.insert("/zgres/lock/main".into(), lock(2).into());
        tree.insert(
            "/zgres/conn/main_10.0.0.1:5432".into(),
            conn_as(1, Role::Replica).into(),
        );
        tree.insert(
            "/zgres/conn/main_10.0.0.2:5432".into(),
            conn_as(2, Role::Replica).into(),
        );
        let (s, _) = build(&layout(), &tree, &[]);
        assert!(s.groups[&main].primary.is_none(), "{s:?}");
        assert_eq!(
            s.groups[&main].replicas.len(),
            2,
            "it serves reads meanwhile"
        );
        tree.insert(
            "/zgres/conn/main_10.0.0.2:5432".into(),
            conn_as(2, Role::Primary).into(),
        );
        let (s, _) = build(&layout(), &tree, &[]);
        assert_eq!(s.groups[&main].primary.as_ref().unwrap().node, node(2));
        assert_eq!(s.groups[&main].replicas.len(), 1);
    }

    #[test]
    fn an_unhealthy_lock_holder_is_not_a_primary() {
        let mut tree = RawTree::new();
        tree.insert("/zgres/lock/main".into(), lock(2).into());
        tree.insert("/zgres/conn/main_10.0.0.1:5432".into(), conn(1).into());
        let (s, _) = build(&layout(), &tree, &[]);
        let main = &s.groups[&GroupName::new("main").unwrap()];
        assert!(main.primary.is_none());
        assert_eq!(main.replicas.len(), 1);
    }

    #[test]
    fn garbage_is_skipped_and_reported_and_unfollowed_groups_left_out() {
        let mut tree = RawTree::new();
        tree.insert("/zgres/lock/main".into(), b"garbage".to_vec().into());
        tree.insert("/zgres/conn/main_10.0.0.1:5432".into(), vec![0xff].into());
        tree.insert("/zgres/conn/main_db1:5432".into(), conn(1).into());
        tree.insert("/zgres/conn/other_10.0.0.5:5432".into(), conn(5).into());
        let (s, skipped) = build(&layout(), &tree, &[GroupName::new("main").unwrap()]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(s.groups.is_empty());
    }

    #[test]
    fn persistent_and_foreign_connection_info_is_skipped_naming_the_rule() {
        let foreign = ConnInfo {
            role: None,
            api_port: None,
            host: "10.9.9.9".into(),
            port: 5432,
            dbname: None,
            tags: Default::default(),
        };
        let mut tree = RawTree::new();
        tree.insert(
            "/zgres/lock/main".into(),
            RawZnode {
                data: lock(1),
                ephemeral: false,
            },
        );
        tree.insert(
            "/zgres/conn/main_10.0.0.1:5432".into(),
            RawZnode {
                data: conn(1),
                ephemeral: false,
            },
        );
        tree.insert(
            "/zgres/conn/main_10.0.0.2:5432".into(),
            encode(&foreign).unwrap().into(),
        );
        tree.insert("/zgres/conn/main_10.0.0.3:5432".into(), conn(3).into());
        let (s, skipped) = build(&layout(), &tree, &[]);
        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{skipped:?}");
        assert_eq!(
            reasons
                .iter()
                .filter(|r| r.contains("not ephemeral"))
                .count(),
            2
        );
        assert!(reasons
            .iter()
            .any(|r| r.contains("10.9.9.9 is not the address")));
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("stopped in a paused group")),
            "a persistent lock's reason names the paused stop: {reasons:?}"
        );
        let main = &s.groups[&GroupName::new("main").unwrap()];
        assert!(main.primary.is_none(), "a persistent lock names no primary");
        assert_eq!(main.replicas.len(), 1);
        assert_eq!(main.replicas[0].node, node(3));
    }

    proptest! {
        #[test]
        fn any_tree_builds_without_panicking(
            entries in proptest::collection::btree_map(
                prop_oneof![
                    Just("/zgres/lock/main".to_owned()),
                    (1u8..4).prop_map(|i| format!("/zgres/conn/main_10.0.0.{i}:5432")),
                    "/zgres/[a-z]{1,6}/[a-z_:.0-9]{0,12}",
                ],
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..40),
                    (1u8..4).prop_map(conn),
                    (1u8..4).prop_map(lock),
                ],
                0..8,
            )
        ) {
            let tree: RawTree = entries.into_iter().map(|(p, d)| (p, d.into())).collect();
            let (s, _) = build(&layout(), &tree, &[]);
            for group in s.groups.values() {
                if let Some(p) = &group.primary {
                    prop_assert!(!group.replicas.iter().any(|r| r.node == p.node));
                }
            }
        }
    }
}
