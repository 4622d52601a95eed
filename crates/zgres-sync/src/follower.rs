//! Follows the zgres tree in ZooKeeper with one persistent recursive watch.
//!
//! Events are treated as "this path may have changed": the path is re-read (level-triggered).
//! After a reconnect, or with a new session, everything is re-read, so events lost while
//! disconnected do no harm.

use std::collections::BTreeSet;
use std::time::Duration;

use zgres_schema::Dir;
use zgres_zk::client as zk;
use zgres_zk::{ConnectError, ZkError, ZkSession, ZkSettings};

use crate::snapshot::{RawTree, RawZnode};

/// The directories whose znodes make up the snapshot.
const FOLLOWED_DIRS: [Dir; 2] = [Dir::Lock, Dir::Conn];

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A ZooKeeper problem while following. All are retried; when [`FollowError::session_ended`]
/// a new session is needed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// No session could be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A request failed.
    #[error(transparent)]
    Request(#[from] ZkError),
}

impl FollowError {
    /// Whether the session expired or was closed (a new one is needed).
    pub fn session_ended(&self) -> bool {
        matches!(self, FollowError::Request(e) if e.session_ended())
    }
}

/// What a refresh changed in the tree.
#[derive(Debug, PartialEq, Eq)]
pub enum Changes {
    /// Everything may have changed (the tree was read afresh).
    All,
    /// These paths changed (or vanished).
    Paths(Vec<String>),
}

/// What a watch event asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Re-read this path.
    Path(String),
    /// Re-read everything (reconnected: events may have been lost).
    All,
    /// The session is over; open a new one.
    SessionEnded,
    /// Nothing relevant.
    Nothing,
}

/// One session following the tree.
pub struct Follower {
    session: ZkSession,
    watcher: zk::PersistentWatcher,
    config: ZkSettings,
    tree: RawTree,
    dirty: BTreeSet<String>,
    reread_all: bool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("session", &self.session.session_id())
            .field("znodes", &self.tree.len())
            .finish()
    }
}

impl Follower {
    /// Opens a session and sets the recursive watch on the root. The tree starts empty and
    /// marked for a full read.
    ///
    /// # Errors
    /// [`FollowError`] when ZooKeeper cannot be reached.
    pub async fn connect(config: &ZkSettings) -> Result<Self, FollowError> {
        let session = ZkSession::connect(config, None, REQUEST_TIMEOUT).await?;
        let watcher = session
            .watch(config.layout.root(), zk::AddWatchMode::PersistentRecursive)
            .await?;
        tracing::info!(session = ?session.session_id(), root = %config.layout, "following ZooKeeper");
        Ok(Follower {
            session,
            watcher,
            config: config.clone(),
            tree: RawTree::new(),
            dirty: BTreeSet::new(),
            reread_all: true,
        })
    }

    /// Waits for the next watch event and says what it means. Cancel-safe.
    pub async fn next_change(&mut self) -> Change {
        let event = self.watcher.changed().await;
        match event.event_type {
            zk::EventType::Session => match event.session_state {
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    Change::All
                }
                zk::SessionState::Disconnected => Change::Nothing,
                _ => Change::SessionEnded,
            },
            _ => {
                let followed = FOLLOWED_DIRS.iter().any(|d| {
                    event
                        .path
                        .starts_with(&format!("{}/", self.config.layout.dir(*d)))
                });
                if followed {
                    Change::Path(event.path)
                } else {
                    Change::Nothing
                }
            }
        }
    }

    /// Records a change, to be read by the next [`Follower::refresh`].
    pub fn note(&mut self, change: Change) {
        match change {
            Change::Path(path) => {
                self.dirty.insert(path);
            }
            Change::All => self.reread_all = true,
            Change::SessionEnded | Change::Nothing => {}
        }
    }

    /// Re-reads what changed (everything after a reconnect) and returns the current tree and
    /// what changed in it.
    ///
    /// # Errors
    /// [`FollowError`]; what was not read stays marked for the next try.
    pub async fn refresh(&mut self) -> Result<(&RawTree, Changes), FollowError> {
        let mut changes = Changes::Paths(Vec::new());
        if self.reread_all {
            changes = Changes::All;
            let mut tree = RawTree::new();
            for dir in FOLLOWED_DIRS {
                let dir = self.config.layout.dir(dir);
                let children = self.session.children(&dir).await?.unwrap_or_default();
                for child in children {
                    let path = format!("{dir}/{child}");
                    if let Some(znode) = self.read(&path).await? {
                        tree.insert(path, znode);
                    }
                }
            }
            self.tree = tree;
            self.reread_all = false;
            self.dirty.clear();
        }
        while let Some(path) = self.dirty.first().cloned() {
            match self.read(&path).await? {
                Some(znode) => self.tree.insert(path.clone(), znode),
                None => self.tree.remove(&path),
            };
            self.dirty.remove(&path);
            if let Changes::Paths(paths) = &mut changes {
                paths.push(path);
            }
        }
        Ok((&self.tree, changes))
    }

    async fn read(&self, path: &str) -> Result<Option<RawZnode>, FollowError> {
        Ok(self.session.get(path).await?.map(|(data, stat)| RawZnode {
            data,
            ephemeral: stat.ephemeral_owner != 0,
        }))
    }
}
