//! Reading and changing what zgres keeps in ZooKeeper, for the CLI.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use zgres_schema::documents::{GroupConfig, Lock, NodeState};
use zgres_schema::pg_settings::PgSettingsCatalog;
use zgres_schema::{decode, encode, GroupName, NodeId, ZkLayout, Znode};

pub use crate::error::{ConfigInputError, CtlError, Refusal, Usage};
pub use crate::node_match::{resolve_node, NodeMatch};

mod acl;
mod dsn;
mod hand_over;
mod history;
mod node_request;
mod remove;
mod unlock;
pub use acl::AclReport;
pub use dsn::Dsn;
pub use hand_over::HandOver;
pub use history::GroupHistory;
pub use node_request::{PendingRequest, RequestDone};
use zgres_zk::client as zk;
use zgres_zk::{CreateKind, ZkSession, ZkSettings};

/// A connected CLI session.
pub struct Inventory {
    session: ZkSession,
    layout: ZkLayout,
    /// The connect string, for messages.
    hosts: String,
}

/// One node as the CLI shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The node.
    pub node: NodeId,
    /// Whether it holds the group lock.
    pub leader: bool,
    /// Its published state (None when unreadable).
    pub state: Option<NodeState>,
    /// Why its state could not be read, if so.
    pub error: Option<String>,
    /// Bytes of WAL it lags behind the primary's published write position.
    pub lag_bytes: Option<u64>,
    /// How long ago its state was last written, when that is longer than its deadman's refresh
    /// interval allows (twice the interval plus [`STALE_SLACK_MS`] for clock skew): the deadman
    /// is stuck or its host's clock is off, and the state may no longer be true.
    pub stale_for_ms: Option<u64>,
}

/// Clock skew between hosts tolerated before a state counts as stale.
pub const STALE_SLACK_MS: u64 = 5_000;

/// How long ago `state` was written, if longer than its refresh interval allows at `now_ms`.
pub fn stale_for(state: &NodeState, now_ms: u64) -> Option<u64> {
    let refresh = state.refresh_ms?;
    let age = now_ms.saturating_sub(state.updated_at_ms);
    (age > 2 * refresh + STALE_SLACK_MS).then_some(age)
}

/// One group as the CLI shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// The group.
    pub group: GroupName,
    /// Lock holder, when the lock is readable.
    pub leader: Option<NodeId>,
    /// The lock was left persistent at a paused shutdown: no deadman watches the primary, and
    /// no failover happens until its deadman is back (or `zgresctl unlock`).
    pub lock_unattended: bool,
    /// The group's config (defaults when absent; `None` when unreadable).
    pub config: Option<GroupConfig>,
    /// Why the group's config cannot be read, if so (the deadmen keep the last valid one).
    pub config_error: Option<String>,
    /// Its nodes, ordered by id.
    pub nodes: Vec<NodeView>,
    /// Operators' requests waiting for a node's deadman (restart, reload, reinit).
    pub requests: Vec<PendingRequest>,
}

impl Inventory {
    /// Connects (at most `timeout`) as the digest identity `auth`, over TLS when `tls` is set.
    ///
    /// # Errors
    /// [`CtlError::Unreachable`] or a bad root.
    pub async fn connect(
        connect: &str,
        root: &str,
        (auth, tls): (Option<zgres_zk::DigestAuth>, Option<zgres_zk::ZkTls>),
        readers: &[String],
        timeout: Duration,
    ) -> Result<Self, CtlError> {
        let settings = ZkSettings::from_values(connect, root, timeout).map_err(|problems| {
            // The first problem, named by the option that carries it.
            let first = problems.iter().next();
            Usage::Connection {
                option: match first.map(|p| p.key.as_str()) {
                    Some("zookeeper.connect") => "--zookeeper".into(),
                    Some("zookeeper.root") => "--root".into(),
                    other => other.unwrap_or("--zookeeper").to_owned(),
                },
                reason: first.map_or_else(String::new, |p| p.reason.clone()),
            }
        })?;
        let settings = settings
            .with_auth(auth)
            .with_tls(tls)
            .with_readers(readers)
            .map_err(Usage::from)?;
        let session = ZkSession::connect(&settings, None, timeout).await?;
        Ok(Inventory {
            session,
            layout: settings.layout,
            hosts: settings.connect,
        })
    }

    async fn children(&self, dir: zgres_schema::Dir) -> Result<Vec<String>, CtlError> {
        let dir = self.layout.dir(dir);
        Ok(self.session.children(&dir).await?.unwrap_or_default())
    }

    async fn get(&self, path: &str) -> Result<Option<(Vec<u8>, zk::Stat)>, CtlError> {
        Ok(self.session.get(path).await?)
    }

    /// Every group (or only `only`), with its nodes.
    ///
    /// # Errors
    /// ZooKeeper failures; [`CtlError::NoGroups`] when the root holds no group;
    /// [`CtlError::UnknownGroup`] when `only` does not exist.
    pub async fn groups(&self, only: Option<&str>) -> Result<Vec<GroupView>, CtlError> {
        let mut members: BTreeMap<GroupName, Vec<NodeId>> = BTreeMap::new();
        for child in self.children(zgres_schema::Dir::State).await? {
            let path = format!("{}/{child}", self.layout.dir(zgres_schema::Dir::State));
            if let Ok(Znode::State(group, node)) = self.layout.parse(&path) {
                members.entry(group).or_default().push(node);
            }
        }
        for child in self.children(zgres_schema::Dir::Lock).await? {
            if let Ok(group) = GroupName::new(&child) {
                members.entry(group).or_default();
            }
        }
        for child in self.children(zgres_schema::Dir::Config).await? {
            if let Ok(group) = GroupName::new(&child) {
                members.entry(group).or_default();
            }
        }
        if members.is_empty() {
            return Err(CtlError::NoGroups {
                root: self.layout.root().to_owned(),
                hosts: self.hosts.clone(),
            });
        }
        if let Some(only) = only {
            members.retain(|g, _| g.as_str() == only);
            if members.is_empty() {
                return Err(CtlError::UnknownGroup(only.to_owned()));
            }
        }
        let mut pending = self.pending_requests().await?;
        let mut groups = Vec::new();
        for (group, mut nodes) in members {
            nodes.sort();
            let lock_path = self.layout.path(&Znode::Lock(group.clone()));
            let leader = match self.get(&lock_path).await? {
                Some((data, _)) => decode::<Lock>(&lock_path, &data).ok().map(|l| l.node),
                None => None,
            };
            let lock_unattended = self.lock_unattended(&lock_path).await?;
            let (config, config_error) = match self.config(&group).await {
                Ok((config, _)) => (Some(config), None),
                Err(CtlError::Decode(e)) => (None, Some(e.to_string())),
                Err(e) => return Err(e),
            };
            let mut views = Vec::new();
            for node in nodes {
                let path = self.layout.path(&Znode::State(group.clone(), node));
                let (state, error) = match self.get(&path).await? {
                    Some((data, _)) => match decode::<NodeState>(&path, &data) {
                        Ok(s) => (Some(s), None),
                        Err(e) => (None, Some(e.to_string())),
                    },
                    None => (None, Some("gone".into())),
                };
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                views.push(NodeView {
                    node,
                    leader: leader == Some(node),
                    stale_for_ms: state.as_ref().and_then(|s| stale_for(s, now_ms)),
                    state,
                    error,
                    lag_bytes: None,
                });
            }
            let primary_write = views
                .iter()
                .find(|v| v.leader)
                .and_then(|v| v.state.as_ref()?.wal.write);
            for v in &mut views {
                if let (Some(primary), Some(s)) = (primary_write, &v.state) {
                    let mine = [s.wal.receive, s.wal.replay].into_iter().flatten().max();
                    v.lag_bytes = mine.map(|m| primary.bytes_after(m));
                }
            }
            let requests = pending.remove(&group).unwrap_or_default();
            groups.push(GroupView {
                group,
                leader,
                lock_unattended,
                config,
                config_error,
                nodes: views,
                requests,
            });
        }
        Ok(groups)
    }

    /// One node's full state.
    ///
    /// # Errors
    /// [`CtlError::UnknownGroup`] / [`CtlError::UnknownNode`].
    pub async fn node(&self, group: &str, node: &str) -> Result<NodeView, CtlError> {
        let view = self.groups(Some(group)).await?.remove(0);
        let (found, _) = resolve_node(&view, node)?;
        Ok(found.clone())
    }

    /// `group` checked as a group name.
    ///
    /// # Errors
    /// A usage error naming what is wrong with it.
    pub fn group_name(&self, group: &str) -> Result<GroupName, CtlError> {
        Ok(GroupName::new(group).map_err(Usage::from)?)
    }

    /// The group's dynamic config and the znode version it was read at (None: absent).
    ///
    /// # Errors
    /// ZooKeeper failures or an unreadable config.
    pub async fn config(&self, group: &GroupName) -> Result<(GroupConfig, Option<i32>), CtlError> {
        let path = self.layout.path(&Znode::Config(group.clone()));
        match self.get(&path).await? {
            Some((data, stat)) => Ok((decode(&path, &data)?, Some(stat.version))),
            None => Ok((GroupConfig::default(), None)),
        }
    }

    /// The group's config as stored, text and version, for editing one that cannot be
    /// decoded (`None`: absent).
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn config_text(&self, group: &GroupName) -> Result<Option<(String, i32)>, CtlError> {
        let path = self.layout.path(&Znode::Config(group.clone()));
        Ok(self
            .get(&path)
            .await?
            .map(|(data, stat)| (String::from_utf8_lossy(&data).into_owned(), stat.version)))
    }

    /// What the group's primary last published of its PostgreSQL's `pg_settings`, with the
    /// znode's path (`None`: not published yet).
    ///
    /// # Errors
    /// ZooKeeper failures or an unreadable catalog.
    pub async fn pg_settings(
        &self,
        group: &GroupName,
    ) -> Result<(Option<PgSettingsCatalog>, String), CtlError> {
        let path = self.layout.path(&Znode::PgSettings(group.clone()));
        let catalog = match self.get(&path).await? {
            Some((data, _)) => Some(decode(&path, &data)?),
            None => None,
        };
        Ok((catalog, path))
    }

    /// Changes the group's config with `edit`, compare-and-set against the version read;
    /// with `create`, also of a group that does not exist yet.
    ///
    /// # Errors
    /// [`CtlError::Conflict`] when someone changed it meanwhile; [`CtlError::UnknownGroup`]
    /// for a group with no node, lock or config (unless `create`).
    pub async fn update_config(
        &self,
        group: &str,
        create: bool,
        edit: impl FnOnce(&mut GroupConfig) -> Result<(), CtlError>,
    ) -> Result<GroupConfig, CtlError> {
        if !create {
            self.groups(Some(group)).await?;
        }
        let name = self.group_name(group)?;
        let (mut config, version) = self.config(&name).await?;
        edit(&mut config)?;
        self.write_config(&name, &config, version).await?;
        Ok(config)
    }

    /// Writes the group's config if it is still at `version` (`None`: absent).
    ///
    /// # Errors
    /// [`CtlError::Conflict`] when someone changed it meanwhile.
    pub async fn write_config(
        &self,
        name: &GroupName,
        config: &GroupConfig,
        version: Option<i32>,
    ) -> Result<(), CtlError> {
        let data = encode(config)?;
        let name = name.clone();
        let path = self.layout.path(&Znode::Config(name));
        let written = match version {
            Some(v) => self.session.set(&path, &data, Some(v)).await?.is_done(),
            None => {
                self.session
                    .mkdir(&self.layout.dir(zgres_schema::Dir::Config))
                    .await?;
                self.session
                    .create(&path, &data, CreateKind::Persistent)
                    .await?
                    .is_done()
            }
        };
        if written {
            Ok(())
        } else {
            Err(CtlError::Conflict(path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_past_twice_its_refresh_interval_is_stale() {
        let state: NodeState = decode(
            "/zgres/state/main_10.0.0.1:5432",
            br#"{"v":1,"node":"10.0.0.1:5432","role":"primary","updated_at_ms":100000,"refresh_ms":10000}"#,
        )
        .unwrap();
        assert_eq!(stale_for(&state, 100_000 + 25_000), None);
        assert_eq!(stale_for(&state, 100_000 + 25_001), Some(25_001));
        let old_deadman = NodeState {
            refresh_ms: None,
            takeover_wait_ms: None,
            ..state
        };
        assert_eq!(
            stale_for(&old_deadman, u64::MAX),
            None,
            "unknown interval: never stale"
        );
    }
}
