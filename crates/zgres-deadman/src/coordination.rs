//! The deadman's view of and writes to ZooKeeper.
//!
//! Every read goes through [`zgres_schema::decode`]; a malformed peer document is logged (once
//! per distinct error) and that peer is left out, never trusted and never a crash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zgres_schema::documents::{ConnInfo, DatabaseId, Lock, NodeState, Switchover, SyncState};
use zgres_schema::{
    encode, DecodeError, Document, Fetched, GroupName, NodeId, SystemId, Timeline,
    UnreadableFilter, ZkLayout, Znode,
};
use zookeeper_client as zk;

use crate::config::ZookeeperConfig;
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

mod group_view;
mod history;

pub use group_view::GroupView;

type Result<T, E = CoordinationError> = std::result::Result<T, E>;

/// Requests get this long before they count as failed (the client keeps the session).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One ZooKeeper session of the deadman.
pub struct Coordinator {
    client: zk::Client,
    layout: ZkLayout,
    group: GroupName,
    me: NodeId,
    fence: Arc<FenceClock>,
    /// Bad contents already reported, so each is logged once, not every round.
    reported: UnreadableFilter,
    /// Counts each distinct unreadable content reported (a metric; shared across sessions).
    unreadable_total: Arc<AtomicU64>,
    /// The lock content this session created.
    held_lock: Option<Lock>,
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
    /// Opens a session — or resumes `resume`, a session the client gave up on (after an
    /// outage the server may still hold it, with our ephemerals and the lock) — creates the
    /// zgres directories if missing, and sets the fence budget from the session timeout the
    /// server granted. Each distinct unreadable content met afterwards is logged once and
    /// counted in `unreadable_total`.
    ///
    /// # Errors
    /// [`CoordinationError::Connect`] when no server answers within the session timeout;
    /// [`CoordinationError::SessionExpired`] when the server says `resume` has expired.
    pub async fn connect(
        config: &ZookeeperConfig,
        group: GroupName,
        me: NodeId,
        fence: Arc<FenceClock>,
        unreadable_total: Arc<AtomicU64>,
        resume: Option<zk::SessionInfo>,
    ) -> Result<Self> {
        let connect_error = |error: String| CoordinationError::Connect {
            connect: config.connect.clone(),
            error,
        };
        let sent = monotonic_ns();
        let resuming = resume.as_ref().map(|s| s.id());
        let mut connector = zk::Client::connector().with_session_timeout(config.session_timeout);
        if let Some(session) = resume {
            connector = connector.with_session(session);
        }
        let client =
            match tokio::time::timeout(config.session_timeout, connector.connect(&config.connect))
                .await
            {
                Err(_) => return Err(connect_error("timed out".into())),
                Ok(Err(zk::Error::SessionExpired)) if resuming.is_some() => {
                    return Err(CoordinationError::SessionExpired)
                }
                Ok(Err(e)) => return Err(connect_error(e.to_string())),
                Ok(Ok(client)) => client,
            };
        if resuming == Some(client.session_id()) {
            tracing::warn!(session = ?client.session_id(), "resumed the ZooKeeper session after an outage; its ephemerals and lock are still ours");
        }
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
            reported: UnreadableFilter::default(),
            unreadable_total,
            held_lock: None,
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

    /// The session's id and password, to resume it after the client gave up on it.
    pub fn session_info(&self) -> zk::SessionInfo {
        self.client.session().clone()
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

    /// Logs (once per distinct content) and counts an unreadable znode.
    fn report_unreadable(&mut self, error: &DecodeError, data: &[u8]) {
        if self.reported.is_new(error, data) {
            self.unreadable_total.fetch_add(1, Ordering::Relaxed);
            tracing::error!(znode = %error.path, reason = %error.kind, "ignoring unreadable znode");
        }
    }

    /// Decodes `data` read at `path`, reporting it when unreadable.
    fn decode_reported<T: Document>(&mut self, path: &str, data: &[u8]) -> Fetched<T> {
        let fetched = Fetched::decode(path, Some(data));
        match &fetched {
            Fetched::Unreadable(e) => self.report_unreadable(e, data),
            _ => self.reported.clear(path),
        }
        fetched
    }

    /// Reads and decodes the znode at `path` with its version.
    async fn read<T: Document>(&mut self, path: &str) -> Result<Fetched<(T, i32)>> {
        match timed(self.client.get_data(path)).await {
            Ok((data, stat)) => Ok(self
                .decode_reported::<T>(path, &data)
                .map(|d| (d, stat.version))),
            Err(CoordinationError::Retryable(zk::Error::NoNode)) => {
                self.reported.clear(path);
                Ok(Fetched::Absent)
            }
            Err(e) => Err(e),
        }
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

    /// Replaces the switchover request read at `version` with `request`, or deletes it
    /// (`None`). Compare-and-set: a request that changed since it was read (or became
    /// unreadable) is left alone, and `Ok(false)` says so.
    ///
    /// # Errors
    /// As any request.
    pub async fn update_switchover(
        &mut self,
        request: Option<&Switchover>,
        version: i32,
    ) -> Result<bool> {
        let path = self.path(Znode::Switchover(self.group.clone()));
        let written = match request {
            Some(request) => timed(
                self.client
                    .set_data(&path, &encode(request)?, Some(version)),
            )
            .await
            .map(drop),
            None => timed(self.client.delete(&path, Some(version))).await,
        };
        match written {
            Ok(()) => Ok(true),
            Err(CoordinationError::Retryable(zk::Error::BadVersion | zk::Error::NoNode)) => {
                tracing::warn!(znode = %path, "the switchover request changed meanwhile; left as it is");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The lock is ours but does not name this node (someone overwrote it): put our content
    /// back while our session still owns the znode (compare-and-set on the version read).
    async fn restore_lock(&mut self, found: &Fetched<Lock>, version: i32) {
        let path = self.lock_path();
        let found = match found {
            Fetched::Valid(lock) => format!("names {}", lock.node),
            Fetched::Unreadable(e) => e.kind.to_string(),
            Fetched::Absent => "absent".to_owned(),
        };
        tracing::error!(znode = %path, %found, "our lock's content was overwritten; restoring it");
        let lock = self.held_lock.unwrap_or(Lock {
            node: self.me,
            timeline: Timeline::FIRST,
        });
        let restored = match encode(&lock) {
            Ok(data) => timed(self.client.set_data(&path, &data, Some(version))).await,
            Err(e) => Err(e.into()),
        };
        match restored {
            Ok(_) => tracing::info!(znode = %path, "restored our lock's content"),
            Err(e) => {
                tracing::warn!(znode = %path, error = %e, "cannot restore our lock's content")
            }
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
                self.held_lock = Some(*lock);
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

    /// Creates `/static/{GROUP}-db-id` with `system_id` unless it exists (create-only: an
    /// unreadable one is kept as found); returns what is there afterwards.
    ///
    /// # Errors
    /// As any request.
    pub async fn publish_db_id(&mut self, system_id: SystemId) -> Result<Fetched<SystemId>> {
        let path = self.path(Znode::DatabaseId(self.group.clone()));
        let doc = encode(&DatabaseId { system_id })?;
        match timed(self.client.create(&path, &doc, &persistent())).await {
            Ok(_) => {
                tracing::info!(%system_id, "published the group's system identifier");
                Ok(Fetched::Valid(system_id))
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
