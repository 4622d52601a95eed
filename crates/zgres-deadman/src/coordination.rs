//! The deadman's view of and writes to ZooKeeper.
//!
//! Every read goes through [`zgres_schema::decode`]; a malformed peer document is logged (once
//! per distinct error) and that peer is left out, never trusted and never a crash.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use zgres_schema::documents::{
    ConnInfo, DatabaseId, GroupConfig, History, Lock, NodeState, Promotion, Switchover, SyncMode,
    SyncState,
};
use zgres_schema::{
    decode, encode, Document, GroupName, NodeId, SystemId, Timeline, ZkLayout, Znode,
};
use zookeeper_client as zk;

use crate::config::ZookeeperConfig;
use crate::decision::{LockView, Peer};
use crate::fence::{monotonic_ns, FenceClock};

/// A ZooKeeper operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    /// The session is gone; a new one is needed (and every ephemeral of ours is gone).
    #[error("ZooKeeper session expired")]
    SessionExpired,
    /// Connection trouble or a timeout: retry.
    #[error("ZooKeeper: {0}")]
    Retryable(zk::Error),
    /// Could not connect at all within the timeout.
    #[error("cannot connect to ZooKeeper at {connect}: {error}")]
    Connect {
        /// The connect string.
        connect: String,
        /// Why.
        error: String,
    },
    /// A document of ours could not be encoded (a bug).
    #[error("{0}")]
    Encode(#[from] zgres_schema::codec::EncodeError),
}

impl From<zk::Error> for CoordinationError {
    fn from(e: zk::Error) -> Self {
        match e {
            zk::Error::SessionExpired | zk::Error::ClientClosed => {
                CoordinationError::SessionExpired
            }
            other => CoordinationError::Retryable(other),
        }
    }
}

type Result<T, E = CoordinationError> = std::result::Result<T, E>;

/// Requests get this long before they count as failed (the client keeps the session).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the group looks like in ZooKeeper at one moment.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// The lock.
    pub lock: LockView,
    /// Peers with a readable state.
    pub peers: Vec<Peer>,
    /// `/static/{GROUP}-db-id`.
    pub db_id: Option<SystemId>,
    /// `/config/{GROUP}`, defaults when absent or unreadable.
    pub config: GroupConfig,
    /// The newest timeline in `/history/{GROUP}` (read only while the lock is free).
    pub group_timeline: Option<Timeline>,
    /// `/switchover/{GROUP}`, when a readable request exists.
    pub switchover: Option<Switchover>,
    /// `/sync/{GROUP}` and its version, read only in synchronous mode.
    pub sync: Option<(SyncState, i32)>,
}

/// How many promotions `/history/{GROUP}` keeps (the oldest are dropped).
const HISTORY_LIMIT: usize = 1000;

/// One ZooKeeper session of the deadman.
pub struct Coordinator {
    client: zk::Client,
    layout: ZkLayout,
    group: GroupName,
    me: NodeId,
    fence: Arc<FenceClock>,
    /// Last decode error logged per path, so a bad znode is reported once, not every loop.
    reported: HashMap<String, String>,
    /// pzxid of the lock directory when the lock was last seen free.
    lock_gone_zxid: Option<i64>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("session", &self.client.session_id())
            .field("group", &self.group)
            .finish()
    }
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

async fn timed<T>(
    f: impl std::future::Future<Output = std::result::Result<T, zk::Error>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(CoordinationError::Retryable(zk::Error::Timeout)),
    }
}

impl Coordinator {
    /// Opens a session, creates the zgres directories if missing, and sets the fence budget
    /// from the session timeout the server granted.
    ///
    /// # Errors
    /// [`CoordinationError::Connect`] when no server answers within the session timeout.
    pub async fn connect(
        config: &ZookeeperConfig,
        group: GroupName,
        me: NodeId,
        fence: Arc<FenceClock>,
    ) -> Result<Self> {
        let connect_error = |error: String| CoordinationError::Connect {
            connect: config.connect.clone(),
            error,
        };
        let sent = monotonic_ns();
        let client = tokio::time::timeout(
            config.session_timeout,
            zk::Client::connector()
                .with_session_timeout(config.session_timeout)
                .connect(&config.connect),
        )
        .await
        .map_err(|_| connect_error("timed out".into()))?
        .map_err(|e| connect_error(e.to_string()))?;
        let granted = client.session_timeout();
        if granted != config.session_timeout {
            tracing::warn!(
                asked = ?config.session_timeout,
                ?granted,
                "ZooKeeper granted a different session timeout; fencing follows the granted one"
            );
        }
        fence.set_budget(granted.saturating_sub(config.fence_margin));
        fence.confirm(sent);
        let coordinator = Coordinator {
            client,
            layout: config.layout.clone(),
            group,
            me,
            fence,
            reported: HashMap::new(),
            lock_gone_zxid: None,
        };
        for dir in zgres_schema::paths::DIRECTORIES {
            timed(
                coordinator
                    .client
                    .mkdir(&coordinator.layout.dir(dir), &persistent()),
            )
            .await?;
        }
        tracing::info!(session = ?coordinator.client.session_id(), ?granted, "ZooKeeper session established");
        Ok(coordinator)
    }

    /// A clone of the client, for the heartbeat task.
    pub fn client(&self) -> zk::Client {
        self.client.clone()
    }

    /// The lock's path.
    pub fn lock_path(&self) -> String {
        self.layout.path(&Znode::Lock(self.group.clone()))
    }

    fn path(&self, znode: Znode) -> String {
        self.layout.path(&znode)
    }

    /// A persistent watch on the lock: fires on its creation, change and deletion.
    ///
    /// # Errors
    /// As any request.
    pub async fn watch_lock(&self) -> Result<zk::PersistentWatcher> {
        timed(
            self.client
                .watch(&self.lock_path(), zk::AddWatchMode::Persistent),
        )
        .await
    }

    fn report<T>(
        &mut self,
        path: &str,
        result: std::result::Result<T, zgres_schema::DecodeError>,
    ) -> Option<T> {
        match result {
            Ok(doc) => {
                self.reported.remove(path);
                Some(doc)
            }
            Err(e) => {
                let text = e.to_string();
                if self.reported.get(path) != Some(&text) {
                    tracing::error!(error = %text, "ignoring unreadable znode");
                    self.reported.insert(path.to_owned(), text);
                }
                None
            }
        }
    }

    async fn read<T: Document>(&mut self, path: &str) -> Result<Option<(T, zk::Stat)>> {
        match timed(self.client.get_data(path)).await {
            Ok((data, stat)) => Ok(self
                .report(path, decode::<T>(path, &data))
                .map(|d| (d, stat))),
            Err(CoordinationError::Retryable(zk::Error::NoNode)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the lock, the peers' states, the db-id and the group config. Every successful read
    /// also confirms the session for the fence.
    ///
    /// # Errors
    /// As any request; then nothing is decided this round.
    pub async fn view(&mut self) -> Result<GroupView> {
        let sent = monotonic_ns();
        let lock_path = self.lock_path();
        let lock = match timed(self.client.get_data(&lock_path)).await {
            Ok((data, stat)) => {
                self.lock_gone_zxid = None;
                if stat.ephemeral_owner == self.client.session_id().0 {
                    LockView::Ours
                } else {
                    let holder = self.report(&lock_path, decode::<Lock>(&lock_path, &data));
                    LockView::Other(holder.map(|l| l.node))
                }
            }
            Err(CoordinationError::Retryable(zk::Error::NoNode)) => {
                if self.lock_gone_zxid.is_none() {
                    let (_, dir) = timed(self.client.get_data(&self.layout.dir("lock"))).await?;
                    self.lock_gone_zxid = Some(dir.pzxid);
                }
                LockView::Free
            }
            Err(e) => return Err(e),
        };
        self.fence.confirm(sent);

        let switchover_path = self.path(Znode::Switchover(self.group.clone()));
        let switchover = self
            .read::<Switchover>(&switchover_path)
            .await?
            .map(|(s, _)| s);

        let config_path = self.path(Znode::Config(self.group.clone()));
        let config = self
            .read::<GroupConfig>(&config_path)
            .await?
            .map(|(c, _)| c)
            .unwrap_or_default();
        let synchronous = config.synchronous_mode != SyncMode::Off;

        // Read only the states a decision can use: every peer's during an election, a
        // requested switchover or in synchronous mode, the holder's while following (for its
        // WAL position and health), none otherwise.
        let prefix = format!("{}_", self.group);
        let state_dir = self.layout.dir("state");
        let children = match lock {
            LockView::Free => timed(self.client.list_children(&state_dir)).await?,
            LockView::Ours if switchover.is_some() || synchronous => {
                timed(self.client.list_children(&state_dir)).await?
            }
            LockView::Other(Some(holder)) => vec![format!("{prefix}{holder}")],
            _ => vec![],
        };
        let mut peers = Vec::new();
        for child in children.iter().filter(|c| c.starts_with(&prefix)) {
            let path = format!("{state_dir}/{child}");
            let Some((state, stat)) = self.read::<NodeState>(&path).await? else {
                continue;
            };
            // A state must name the node of its znode, and be ephemeral: a persistent one
            // outlives its writer and would vouch for a node that may be long gone.
            let problem = match self.layout.parse(&path) {
                _ if stat.ephemeral_owner == 0 => Some(("v", "not ephemeral".to_owned())),
                Ok(Znode::State(_, node)) if node == state.node => None,
                _ => Some((
                    "node",
                    format!("{} does not match the znode name", state.node),
                )),
            };
            if let Some((field, message)) = problem {
                let kind = zgres_schema::DecodeErrorKind::Field {
                    field: field.into(),
                    message,
                };
                let error = zgres_schema::DecodeError {
                    path: path.clone(),
                    kind,
                };
                self.report::<()>(&path, Err(error));
                continue;
            }
            if state.node == self.me {
                continue;
            }
            let fresh = self.lock_gone_zxid.is_some_and(|gone| stat.mzxid > gone);
            peers.push(Peer { state, fresh });
        }

        let db_id_path = self.path(Znode::DatabaseId(self.group.clone()));
        let db_id = self
            .read::<DatabaseId>(&db_id_path)
            .await?
            .map(|(d, _)| d.system_id);
        let sync = if synchronous {
            let path = self.path(Znode::Sync(self.group.clone()));
            self.read::<SyncState>(&path)
                .await?
                .map(|(s, stat)| (s, stat.version))
        } else {
            None
        };
        let group_timeline = if lock == LockView::Free {
            let path = self.path(Znode::History(self.group.clone()));
            self.read::<History>(&path)
                .await?
                .and_then(|(h, _)| h.entries.iter().map(|p| p.timeline).max())
        } else {
            None
        };
        Ok(GroupView {
            lock,
            peers,
            db_id,
            config,
            group_timeline,
            switchover,
            sync,
        })
    }

    /// Writes `/sync/{GROUP}` if it is still at `version` (`None`: if it does not exist), or
    /// deletes it with `state = None`. Compare-and-set, so a write based on a stale read fails.
    ///
    /// # Errors
    /// As any request; `BadVersion`/`NodeExists` when it changed since it was read.
    pub async fn publish_sync(
        &mut self,
        state: Option<&SyncState>,
        version: Option<i32>,
    ) -> Result<()> {
        let path = self.path(Znode::Sync(self.group.clone()));
        match (state, version) {
            (Some(state), Some(v)) => timed(self.client.set_data(&path, &encode(state)?, Some(v)))
                .await
                .map(drop),
            (Some(state), None) => timed(self.client.create(&path, &encode(state)?, &persistent()))
                .await
                .map(drop),
            (None, v) => match timed(self.client.delete(&path, v)).await {
                Err(CoordinationError::Retryable(zk::Error::NoNode)) => Ok(()),
                other => other,
            },
        }
    }

    /// Starts `/history/{GROUP}` with `first` (the group's first primary) unless it exists.
    ///
    /// # Errors
    /// As any request.
    pub async fn start_history(&mut self, first: &Promotion) -> Result<()> {
        let path = self.path(Znode::History(self.group.clone()));
        let history = History {
            entries: vec![first.clone()],
        };
        match timed(self.client.create(&path, &encode(&history)?, &persistent())).await {
            Ok(_) | Err(CoordinationError::Retryable(zk::Error::NodeExists)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Appends `promotion` to `/history/{GROUP}` (compare-and-set, retried on a concurrent
    /// change). An unreadable history is replaced, and says so in the log.
    ///
    /// # Errors
    /// As any request.
    pub async fn record_promotion(&mut self, promotion: &Promotion) -> Result<()> {
        let path = self.path(Znode::History(self.group.clone()));
        // Only this group's primaries write here, so a conflict is rare; a few tries suffice.
        for _ in 0..5 {
            let (mut history, version) = match timed(self.client.get_data(&path)).await {
                Ok((data, stat)) => {
                    let history = self
                        .report(&path, decode::<History>(&path, &data))
                        .unwrap_or_default();
                    (history, Some(stat.version))
                }
                Err(CoordinationError::Retryable(zk::Error::NoNode)) => (History::default(), None),
                Err(e) => return Err(e),
            };
            history.entries.push(promotion.clone());
            let excess = history.entries.len().saturating_sub(HISTORY_LIMIT);
            history.entries.drain(..excess);
            let data = encode(&history)?;
            let written = match version {
                Some(v) => timed(self.client.set_data(&path, &data, Some(v)))
                    .await
                    .map(drop),
                None => timed(self.client.create(&path, &data, &persistent()))
                    .await
                    .map(drop),
            };
            match written {
                Err(CoordinationError::Retryable(
                    zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode,
                )) => continue,
                other => return other,
            }
        }
        Err(CoordinationError::Retryable(zk::Error::BadVersion))
    }

    /// Writes (or with `None`, deletes) `/switchover/{GROUP}`.
    ///
    /// # Errors
    /// As any request.
    pub async fn set_switchover(&mut self, request: Option<&Switchover>) -> Result<()> {
        let path = self.path(Znode::Switchover(self.group.clone()));
        match request {
            Some(request) => {
                let data = encode(request)?;
                match timed(self.client.set_data(&path, &data, None)).await {
                    Err(CoordinationError::Retryable(zk::Error::NoNode)) => {
                        timed(self.client.create(&path, &data, &persistent()))
                            .await
                            .map(drop)
                    }
                    other => other.map(drop),
                }
            }
            None => match timed(self.client.delete(&path, None)).await {
                Err(CoordinationError::Retryable(zk::Error::NoNode)) => Ok(()),
                other => other,
            },
        }
    }

    /// Creates or updates this node's state (ephemeral).
    ///
    /// # Errors
    /// As any request.
    pub async fn publish_state(&mut self, state: &NodeState) -> Result<()> {
        let path = self.path(Znode::State(self.group.clone(), self.me));
        self.put_ephemeral(&path, &encode(state)?).await
    }

    async fn put_ephemeral(&self, path: &str, data: &[u8]) -> Result<()> {
        match timed(self.client.set_data(path, data, None)).await {
            Err(CoordinationError::Retryable(zk::Error::NoNode)) => {
                match timed(self.client.create(path, data, &ephemeral())).await {
                    Err(CoordinationError::Retryable(zk::Error::NodeExists)) => {
                        timed(self.client.set_data(path, data, None))
                            .await
                            .map(drop)
                    }
                    other => other.map(drop),
                }
            }
            other => other.map(drop),
        }
    }

    /// Makes `/conn` exist with `conn` (healthy) or not exist (`None`). It never changes while
    /// it exists, so it is only created or deleted.
    ///
    /// # Errors
    /// As any request.
    pub async fn set_conn(&mut self, conn: Option<&ConnInfo>) -> Result<()> {
        let path = self.path(Znode::Conn(self.group.clone(), self.me));
        let result = match conn {
            Some(conn) => timed(self.client.create(&path, &encode(conn)?, &ephemeral()))
                .await
                .map(drop),
            None => timed(self.client.delete(&path, None)).await,
        };
        match result {
            Err(CoordinationError::Retryable(zk::Error::NodeExists | zk::Error::NoNode)) => Ok(()),
            other => other,
        }
    }

    /// Tries to take the lock. `Ok(true)` when taken (and the fence confirmed as of the send
    /// time), `Ok(false)` when someone else has it.
    ///
    /// # Errors
    /// As any request.
    pub async fn acquire_lock(&mut self, lock: &Lock) -> Result<bool> {
        let sent = monotonic_ns();
        match timed(
            self.client
                .create(&self.lock_path(), &encode(lock)?, &ephemeral()),
        )
        .await
        {
            Ok(_) => {
                self.fence.confirm(sent);
                Ok(true)
            }
            Err(CoordinationError::Retryable(zk::Error::NodeExists)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the lock if this session holds it.
    ///
    /// # Errors
    /// As any request.
    pub async fn release_lock(&mut self) -> Result<()> {
        let path = self.lock_path();
        match timed(self.client.check_stat(&path)).await? {
            Some(stat) if stat.ephemeral_owner == self.client.session_id().0 => {
                match timed(self.client.delete(&path, Some(stat.version))).await {
                    Err(CoordinationError::Retryable(
                        zk::Error::NoNode | zk::Error::BadVersion,
                    )) => Ok(()),
                    other => other,
                }
            }
            _ => Ok(()),
        }
    }

    /// Creates `/static/{GROUP}-db-id` with `system_id` unless it exists; returns what is
    /// there afterwards.
    ///
    /// # Errors
    /// As any request.
    pub async fn publish_db_id(&mut self, system_id: SystemId) -> Result<Option<SystemId>> {
        let path = self.path(Znode::DatabaseId(self.group.clone()));
        let doc = encode(&DatabaseId { system_id })?;
        match timed(self.client.create(&path, &doc, &persistent())).await {
            Ok(_) => {
                tracing::info!(%system_id, "published the group's system identifier");
                Ok(Some(system_id))
            }
            Err(CoordinationError::Retryable(zk::Error::NodeExists)) => Ok(self
                .read::<DatabaseId>(&path)
                .await?
                .map(|(d, _)| d.system_id)),
            Err(e) => Err(e),
        }
    }

    /// Removes this node's ephemerals and ends the session (clean shutdown).
    pub async fn close(self) {
        for znode in [
            Znode::Conn(self.group.clone(), self.me),
            Znode::State(self.group.clone(), self.me),
        ] {
            let _ = timed(self.client.delete(&self.layout.path(&znode), None)).await;
        }
        // Dropping the last client handle closes the session (the heartbeat task's handle is
        // aborted by the caller first).
    }
}

/// Makes sure the session is confirmed for the fence at least every `interval` (with a cheap
/// request, timed from its send) when nothing else confirmed it. Runs until the client's session ends or the task is dropped.
pub async fn heartbeat(
    client: zk::Client,
    path: String,
    fence: Arc<FenceClock>,
    interval: Duration,
) {
    loop {
        // The daemon's own rounds confirm the session too; only fill the gaps between them.
        let sent = monotonic_ns();
        if sent.saturating_sub(fence.last_ok_ns()) >= interval.as_nanos() as u64 / 2 {
            match timed(client.check_stat(&path)).await {
                Ok(_) => fence.confirm(sent),
                Err(CoordinationError::SessionExpired) => return,
                Err(_) => {}
            }
        }
        tokio::time::sleep(interval / 2).await;
    }
}
