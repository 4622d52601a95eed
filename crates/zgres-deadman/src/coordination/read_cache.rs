//! The deadman's reads of the group, cached and kept true by persistent watches.
//!
//! A znode is read once and then again only when its watch says it changed, so an idle group
//! costs ZooKeeper no periodic reads. Every path is watched *before* its first read, so no
//! change between the two is missed. Whenever events may have been lost (a reconnect: the
//! client's auto watch reset does not replay them, ZOOKEEPER-4698) and every
//! [`RESYNC_INTERVAL`] as a safety net, everything is read afresh. Writes of our own invalidate
//! what they wrote at once, so a compare-and-set never builds on our own stale read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use zgres_zk::client as zk;
use zgres_zk::{ZkError, ZkSession};

/// Everything is re-read at least this often, whatever the watches say.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(120);

/// What the watch tasks found stale since the cache last looked.
#[derive(Debug, Default)]
struct Stale {
    paths: HashSet<String>,
    all: bool,
}

/// Shared between the cache and its watch tasks.
#[derive(Debug, Default)]
struct Signals {
    stale: Mutex<Stale>,
    /// Woken on every change, so the loop runs a round at once.
    changed: Notify,
}

impl Signals {
    fn mark(&self, path: Option<&str>) {
        if let Ok(mut stale) = self.stale.lock() {
            match path {
                Some(path) => {
                    stale.paths.insert(path.to_owned());
                }
                None => stale.all = true,
            }
        }
        self.changed.notify_one();
    }
}

/// A read's result as cached: the data and stat, or `None` when the znode does not exist.
type Data = Option<(Vec<u8>, zk::Stat)>;

/// Cached `get` and `children` results of one session, with a watch task per path read.
#[derive(Debug)]
pub struct ReadCache {
    data: HashMap<String, Data>,
    children: HashMap<String, Option<Vec<String>>>,
    watches: HashMap<String, JoinHandle<()>>,
    signals: Arc<Signals>,
    resync_at: Instant,
}

impl Default for ReadCache {
    fn default() -> Self {
        ReadCache {
            data: HashMap::new(),
            children: HashMap::new(),
            watches: HashMap::new(),
            signals: Arc::default(),
            resync_at: Instant::now() + RESYNC_INTERVAL,
        }
    }
}

impl Drop for ReadCache {
    fn drop(&mut self) {
        for task in self.watches.values() {
            task.abort();
        }
    }
}

/// Whether a read came from the cache or from ZooKeeper just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Served from the cache; no request was sent.
    Cache,
    /// Read from ZooKeeper by this call.
    Server,
}

impl ReadCache {
    /// Resolves once something watched changed (or events may have been lost) since the last
    /// call returned. Cancel-safe.
    pub async fn changed(&self) {
        self.signals.changed.notified().await;
    }

    /// What the cache holds for `path` (existing znodes only), without reading or checking
    /// for staleness.
    pub fn peek(&self, path: &str) -> Option<&(Vec<u8>, zk::Stat)> {
        self.data.get(path)?.as_ref()
    }

    /// Forgets what `path` holds (after we wrote it, or before a read that must be fresh).
    pub fn invalidate(&mut self, path: &str) {
        self.data.remove(path);
        self.children.remove(path);
    }

    /// Drops whatever the watches reported stale, and everything when due for a resync.
    fn apply_stale(&mut self) {
        let (paths, all) = match self.signals.stale.lock() {
            Ok(mut stale) => (
                std::mem::take(&mut stale.paths),
                std::mem::take(&mut stale.all),
            ),
            Err(_) => (HashSet::new(), true),
        };
        if all || Instant::now() >= self.resync_at {
            self.data.clear();
            self.children.clear();
            self.resync_at = Instant::now() + RESYNC_INTERVAL;
            return;
        }
        for path in paths {
            self.invalidate(&path);
        }
    }

    /// Sets a persistent watch on `path` unless one is set, and starts its task.
    async fn watch(&mut self, session: &ZkSession, path: &str) -> Result<(), ZkError> {
        if self.watches.contains_key(path) {
            return Ok(());
        }
        let watcher = session.watch(path, zk::AddWatchMode::Persistent).await?;
        let task = tokio::spawn(forward(watcher, path.to_owned(), self.signals.clone()));
        self.watches.insert(path.to_owned(), task);
        Ok(())
    }

    /// The znode's data and stat (`None`: it does not exist), and where the answer came from.
    ///
    /// # Errors
    /// As [`ZkSession::get`] and [`ZkSession::watch`]; nothing is cached then.
    pub async fn get(
        &mut self,
        session: &ZkSession,
        path: &str,
    ) -> Result<(Data, Source), ZkError> {
        self.apply_stale();
        if let Some(data) = self.data.get(path) {
            return Ok((data.clone(), Source::Cache));
        }
        self.watch(session, path).await?;
        let data = session.get(path).await?;
        self.data.insert(path.to_owned(), data.clone());
        Ok((data, Source::Server))
    }

    /// The znode's children (`None`: it does not exist).
    ///
    /// # Errors
    /// As [`ZkSession::children`] and [`ZkSession::watch`]; nothing is cached then.
    pub async fn children(
        &mut self,
        session: &ZkSession,
        path: &str,
    ) -> Result<Option<Vec<String>>, ZkError> {
        self.apply_stale();
        if let Some(children) = self.children.get(path) {
            return Ok(children.clone());
        }
        self.watch(session, path).await?;
        let children = session.children(path).await?;
        self.children.insert(path.to_owned(), children.clone());
        Ok(children)
    }
}

/// Marks `path` stale on each of its events; everything stale after a reconnect (events may
/// have been lost); ends with the session.
async fn forward(mut watcher: zk::PersistentWatcher, path: String, signals: Arc<Signals>) {
    loop {
        let event = watcher.changed().await;
        match (event.event_type, event.session_state) {
            (zk::EventType::Session, zk::SessionState::Disconnected) => {}
            (
                zk::EventType::Session,
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly,
            ) => signals.mark(None),
            (zk::EventType::Session, _) => {
                // Terminal (expired, closed, auth failed): no more events will come.
                signals.mark(None);
                return;
            }
            _ => {
                tracing::debug!(znode = %path, event = ?event.event_type, "watched znode changed");
                signals.mark(Some(&path));
            }
        }
    }
}
