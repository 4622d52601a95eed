//! Where each znode lives under the configurable root.
//!
//! | path | document |
//! |---|---|
//! | `{root}/state/{GROUP}_{NODE}` | [`crate::documents::NodeState`] (ephemeral) |
//! | `{root}/conn/{GROUP}_{NODE}` | [`crate::documents::ConnInfo`] (ephemeral) |
//! | `{root}/lock/{GROUP}` | [`crate::documents::Lock`] (ephemeral) |
//! | `{root}/static/{GROUP}-db-id` | [`crate::documents::DatabaseId`] |
//! | `{root}/history/{GROUP}` | [`crate::documents::History`] |
//! | `{root}/history/{GROUP}/promotion-NNNNNNNNNN` | [`crate::documents::Promotion`], recorded beside an unreadable history |
//! | `{root}/config/{GROUP}` | [`crate::documents::GroupConfig`] |
//! | `{root}/sync/{GROUP}` | [`crate::documents::SyncState`] |
//! | `{root}/switchover/{GROUP}` | [`crate::documents::Switchover`] |
//! | `{root}/request/{GROUP}_{NODE}` | [`crate::documents::NodeRequest`] |
//! | `{root}/pg_settings/{GROUP}` | [`crate::pg_settings::PgSettingsCatalog`] |
//! | `{root}/released/{GROUP}` | [`crate::documents::LockRelease`] |

use std::fmt;

use crate::ids::{GroupName, IdError, NodeId};

/// A directory directly under the root: each holds one kind of znode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// `state`: the nodes' published states.
    State,
    /// `conn`: the healthy nodes' connection info.
    Conn,
    /// `lock`: the groups' leader locks.
    Lock,
    /// `static`: the groups' database identifiers.
    Static,
    /// `history`: the groups' promotion histories.
    History,
    /// `config`: the groups' configs.
    Config,
    /// `sync`: the groups' synchronous standby sets.
    Sync,
    /// `switchover`: pending switchover and failover requests.
    Switchover,
    /// `request`: pending operator requests to one node (restart).
    Request,
    /// `pg_settings`: the parameters each group's primary accepts.
    PgSettings,
    /// `released`: the last lock each group's holder released with nobody writing under it.
    Released,
}

impl Dir {
    /// Every directory, in the order of the table above.
    pub const ALL: [Dir; 11] = [
        Dir::State,
        Dir::Conn,
        Dir::Lock,
        Dir::Static,
        Dir::History,
        Dir::Config,
        Dir::Sync,
        Dir::Switchover,
        Dir::Request,
        Dir::PgSettings,
        Dir::Released,
    ];

    /// The directory's name under the root.
    pub fn name(self) -> &'static str {
        match self {
            Dir::State => "state",
            Dir::Conn => "conn",
            Dir::Lock => "lock",
            Dir::Static => "static",
            Dir::History => "history",
            Dir::Config => "config",
            Dir::Sync => "sync",
            Dir::Switchover => "switchover",
            Dir::Request => "request",
            Dir::PgSettings => "pg_settings",
            Dir::Released => "released",
        }
    }
}

const DB_ID_SUFFIX: &str = "-db-id";

/// Why a root or a znode path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The configured root is not an absolute ZooKeeper path.
    #[error("invalid ZooKeeper root {0:?}: it must start with '/', not end with '/', and have no empty, '.' or '..' components")]
    Root(String),
    /// The path is not under the root.
    #[error("znode {path}: not under the zgres root {root}")]
    OutsideRoot {
        /// The rejected path.
        path: String,
        /// The configured root.
        root: String,
    },
    /// The path is under the root but is not one of the znodes zgres defines.
    #[error("znode {0}: not a zgres znode")]
    Unknown(String),
    /// The path has the right shape but a bad group name or node id.
    #[error("znode {path}: {source}")]
    BadId {
        /// The rejected path.
        path: String,
        /// What is wrong with the id in it.
        source: IdError,
    },
}

/// One zgres znode, identified by what it is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Znode {
    /// A node's state, written by its deadman.
    State(GroupName, NodeId),
    /// A healthy node's connection info, written by its deadman.
    Conn(GroupName, NodeId),
    /// The group's primary lock.
    Lock(GroupName),
    /// The group's PostgreSQL system identifier.
    DatabaseId(GroupName),
    /// The group's promotion history.
    History(GroupName),
    /// The group's dynamic configuration.
    Config(GroupName),
    /// The group's synchronous standby set in force.
    Sync(GroupName),
    /// A requested switchover or failover.
    Switchover(GroupName),
    /// An operator's pending request to one node.
    Request(GroupName, NodeId),
    /// The parameters the group's primary accepts.
    PgSettings(GroupName),
    /// The last lock the group's holder released with nobody writing under it.
    Released(GroupName),
}

impl Znode {
    /// The group the znode belongs to.
    pub fn group(&self) -> &GroupName {
        match self {
            Znode::State(g, _)
            | Znode::Conn(g, _)
            | Znode::Lock(g)
            | Znode::DatabaseId(g)
            | Znode::History(g)
            | Znode::Config(g)
            | Znode::Sync(g)
            | Znode::Switchover(g)
            | Znode::Request(g, _)
            | Znode::PgSettings(g)
            | Znode::Released(g) => g,
        }
    }
}

/// The zgres layout under one root (default `/zgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkLayout {
    root: String,
}

impl Default for ZkLayout {
    fn default() -> Self {
        ZkLayout {
            root: Self::DEFAULT_ROOT.to_owned(),
        }
    }
}

impl ZkLayout {
    /// The root used when none is configured.
    pub const DEFAULT_ROOT: &'static str = "/zgres";

    /// A layout under `root`.
    ///
    /// # Errors
    /// [`PathError::Root`] unless `root` is `/` or an absolute path like `/a/b` with no empty,
    /// `.` or `..` components and no trailing `/`.
    pub fn new(root: &str) -> Result<Self, PathError> {
        let valid = root == "/"
            || (root.starts_with('/')
                && root[1..]
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0')));
        if valid {
            Ok(ZkLayout {
                root: if root == "/" {
                    String::new()
                } else {
                    root.to_owned()
                },
            })
        } else {
            Err(PathError::Root(root.chars().take(200).collect()))
        }
    }

    /// The root, as configured (`/` for the ZooKeeper root itself).
    pub fn root(&self) -> &str {
        if self.root.is_empty() {
            "/"
        } else {
            &self.root
        }
    }

    /// The directory holding one kind of znode, e.g. `dir(Dir::State)` is `/zgres/state`.
    pub fn dir(&self, dir: Dir) -> String {
        format!("{}/{}", self.root, dir.name())
    }

    /// The full path of `znode`.
    pub fn path(&self, znode: &Znode) -> String {
        let r = &self.root;
        match znode {
            Znode::State(g, n) => format!("{r}/state/{g}_{n}"),
            Znode::Conn(g, n) => format!("{r}/conn/{g}_{n}"),
            Znode::Lock(g) => format!("{r}/lock/{g}"),
            Znode::DatabaseId(g) => format!("{r}/static/{g}{DB_ID_SUFFIX}"),
            Znode::History(g) => format!("{r}/history/{g}"),
            Znode::Config(g) => format!("{r}/config/{g}"),
            Znode::Sync(g) => format!("{r}/sync/{g}"),
            Znode::Switchover(g) => format!("{r}/switchover/{g}"),
            Znode::Request(g, n) => format!("{r}/request/{g}_{n}"),
            Znode::PgSettings(g) => format!("{r}/pg_settings/{g}"),
            Znode::Released(g) => format!("{r}/released/{g}"),
        }
    }

    /// The prefix of the persistent sequential znodes that record promotions beside an
    /// unreadable `/history/{GROUP}` (as its children), so that it is never overwritten.
    pub fn history_beside_prefix(&self, group: &GroupName) -> String {
        format!(
            "{}/{HISTORY_BESIDE_NAME}",
            self.path(&Znode::History(group.clone()))
        )
    }

    /// Which znode `path` is.
    ///
    /// # Errors
    /// [`PathError::OutsideRoot`], [`PathError::Unknown`] or [`PathError::BadId`]; never panics,
    /// whatever the input.
    pub fn parse(&self, path: &str) -> Result<Znode, PathError> {
        let rest = path
            .strip_prefix(self.root.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| PathError::OutsideRoot {
                path: path.to_owned(),
                root: self.root().to_owned(),
            })?;
        let unknown = || PathError::Unknown(path.to_owned());
        let (dir, name) = rest.split_once('/').ok_or_else(unknown)?;
        if name.contains('/') {
            return Err(unknown());
        }
        let bad_id = |source| PathError::BadId {
            path: path.to_owned(),
            source,
        };
        let group = |text: &str| GroupName::new(text).map_err(bad_id);
        let member = |text: &str| -> Result<(GroupName, NodeId), PathError> {
            let (g, n) = text.split_once('_').ok_or_else(unknown)?;
            Ok((group(g)?, n.parse().map_err(bad_id)?))
        };
        Ok(match dir {
            "state" => member(name).map(|(g, n)| Znode::State(g, n))?,
            "conn" => member(name).map(|(g, n)| Znode::Conn(g, n))?,
            "lock" => Znode::Lock(group(name)?),
            "static" => {
                Znode::DatabaseId(group(name.strip_suffix(DB_ID_SUFFIX).ok_or_else(unknown)?)?)
            }
            "history" => Znode::History(group(name)?),
            "config" => Znode::Config(group(name)?),
            "sync" => Znode::Sync(group(name)?),
            "switchover" => Znode::Switchover(group(name)?),
            "request" => member(name).map(|(g, n)| Znode::Request(g, n))?,
            "pg_settings" => Znode::PgSettings(group(name)?),
            "released" => Znode::Released(group(name)?),
            _ => return Err(unknown()),
        })
    }
}

/// Name prefix of the promotions recorded beside an unreadable history.
pub const HISTORY_BESIDE_NAME: &str = "promotion-";

impl fmt::Display for ZkLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_znodes(g: &GroupName, n: NodeId) -> Vec<Znode> {
        vec![
            Znode::State(g.clone(), n),
            Znode::Conn(g.clone(), n),
            Znode::Lock(g.clone()),
            Znode::DatabaseId(g.clone()),
            Znode::History(g.clone()),
            Znode::Config(g.clone()),
            Znode::Sync(g.clone()),
            Znode::Switchover(g.clone()),
            Znode::Request(g.clone(), n),
            Znode::PgSettings(g.clone()),
            Znode::Released(g.clone()),
        ]
    }

    #[test]
    fn paths_match_the_design_table() {
        let layout = ZkLayout::default();
        let g = GroupName::new("main").unwrap();
        let v4: NodeId = "10.0.0.1:5432".parse().unwrap();
        let v6: NodeId = "[fd00::5]:5433".parse().unwrap();
        assert_eq!(
            layout.path(&Znode::State(g.clone(), v4)),
            "/zgres/state/main_10.0.0.1:5432"
        );
        assert_eq!(
            layout.path(&Znode::Conn(g.clone(), v6)),
            "/zgres/conn/main_[fd00::5]:5433"
        );
        assert_eq!(layout.path(&Znode::Lock(g.clone())), "/zgres/lock/main");
        assert_eq!(
            layout.path(&Znode::DatabaseId(g.clone())),
            "/zgres/static/main-db-id"
        );
        assert_eq!(
            layout.path(&Znode::Switchover(g.clone())),
            "/zgres/switchover/main"
        );
        assert_eq!(
            layout.path(&Znode::Request(g.clone(), v4)),
            "/zgres/request/main_10.0.0.1:5432"
        );
        assert_eq!(layout.dir(Dir::State), "/zgres/state");
    }

    #[test]
    fn every_znode_round_trips_under_several_roots() {
        let g = GroupName::new("db.prod-1").unwrap();
        for root in ["/", "/zgres", "/a/b/c"] {
            let layout = ZkLayout::new(root).unwrap();
            for n in ["127.0.0.1:5432", "[::1]:6543"] {
                for z in all_znodes(&g, n.parse().unwrap()) {
                    let path = layout.path(&z);
                    assert!(path.starts_with(&format!("{}/", layout.root().trim_end_matches('/'))));
                    assert_eq!(layout.parse(&path).unwrap(), z, "{path}");
                }
            }
        }
    }

    #[test]
    fn bad_roots_and_paths_are_rejected_with_the_path_named() {
        for root in ["", "zgres", "/zgres/", "//", "/a//b", "/a/./b", "/.."] {
            assert!(ZkLayout::new(root).is_err(), "{root:?}");
        }
        let layout = ZkLayout::default();
        for path in [
            "/other/lock/main",
            "/zgreslock/main",
            "/zgres/lock",
            "/zgres/lock/main/x",
            "/zgres/bogus/main",
            "/zgres/state/main",
            "/zgres/state/ma_in_10.0.0.1:1",
            "/zgres/state/main_db1:5432",
            "/zgres/static/main",
            "/zgres/lock/a_b",
        ] {
            let err = layout.parse(path).unwrap_err();
            assert!(err.to_string().contains(path), "{err} should name {path}");
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_paths_never_panics(s in "(/zgres/(state|conn|lock|static|config)/)?\\PC{0,50}") {
            let _ = ZkLayout::default().parse(&s);
        }
    }
}
