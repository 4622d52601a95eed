//! The deadman's view of and writes to ZooKeeper.
//!
//! Every read goes through [`zgres_schema::decode`]; a malformed peer document is logged (once
//! per distinct error) and that peer is left out, never trusted and never a crash.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zgres_schema::documents::{ConnInfo, DatabaseId, Lock, NodeState, Switchover, SyncState};
use zgres_schema::{
    encode, Document, Fetched, GroupName, NodeId, SystemId, Timeline, ZkLayout, Znode,
};
use zgres_zk::client as zk;
use zgres_zk::{CreateKind, Outcome, ZkError, ZkSession};

use crate::config::ZookeeperConfig;
use crate::fence::{monotonic_ns, FenceClock, SessionFence};

/// A ZooKeeper operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    /// A request failed: see [`ZkError`] for whether to retry or open a new session.
    #[error(transparent)]
    Zk(#[from] ZkError),
    /// No session could be opened or resumed.
    #[error(transparent)]
    Connect(#[from] zgres_zk::ConnectError),
    /// A document of ours could not be encoded (a bug).
    #[error("{0}")]
    Encode(#[from] zgres_schema::codec::EncodeError),
    /// A compare-and-set kept losing to concurrent writers.
    #[error("{path} kept changing while it was being updated; will retry")]
    Contended {
        /// The znode.
        path: String,
    },
}

impl CoordinationError {
    /// Whether the session is gone (expired or closed; every ephemeral of ours is gone too),
    /// or the session to resume has expired: either way, a new session is needed.
    pub fn session_ended(&self) -> bool {
        match self {
            CoordinationError::Zk(e) => e.session_ended(),
            CoordinationError::Connect(e) => e.resumed_session_expired(),
            _ => false,
        }
    }
}

mod decoded;
mod group_paths;
mod group_view;
mod heartbeat;
mod history;
mod lock_release;
mod node_requests;
mod pg_settings;
mod read_cache;
mod unattended_lock;

pub use group_view::GroupView;
pub use heartbeat::heartbeat;

type Result<T, E = CoordinationError> = std::result::Result<T, E>;

/// Requests get this long before they count as failed (the client keeps the session).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One ZooKeeper session of the deadman.
pub struct Coordinator {
    session: ZkSession,
    layout: ZkLayout,
    group: GroupName,
    me: NodeId,
    /// The paths a round reads, formatted once.
    paths: group_paths::GroupPaths,
    /// The fence as this session confirms it.
    fence: SessionFence,
    /// Decodes what is read, each distinct content once; reports the unreadable ones.
    decoder: decoded::Decoder,
    /// The lock content this session created.
    held_lock: Option<Lock>,
    /// What this session saw of the lock: when it was last seen free, who held it before.
    sightings: lock_release::LockSightings,
    /// The group's znodes as last read, kept true by watches.
    cache: read_cache::ReadCache,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("session", &self.session.session_id())
            .field("group", &self.group)
            .finish()
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
    /// [`CoordinationError::Connect`] when no server answers within the session timeout, or
    /// when the server says `resume` has expired.
    pub async fn connect(
        config: &ZookeeperConfig,
        group: GroupName,
        me: NodeId,
        fence: Arc<FenceClock>,
        unreadable_total: Arc<AtomicU64>,
        resume: Option<zk::SessionInfo>,
    ) -> Result<Self> {
        let sent = monotonic_ns();
        let resuming = resume.as_ref().map(|s| s.id());
        // Every answer — the client's keep-alive pings and our own requests' replies —
        // confirms the session for the fence: no requests of our own are needed while they
        // come. (With pings alone, a request postponed the next ping by a ping interval and
        // the heartbeat filled the gap with a request of its own.)
        // A new session never confirms a fence armed in an earlier one (`SessionFence`).
        let fence = SessionFence::for_session(fence, resuming.is_some());
        let confirm = fence.clone();
        let on_answer: zk::PingObserver = Arc::new(move |sent| {
            confirm.confirm(crate::fence::monotonic_ns_at(sent));
        });
        let session = ZkSession::connect_observing_answers(
            &config.settings,
            resume,
            REQUEST_TIMEOUT,
            on_answer,
        )
        .await?;
        if resuming == Some(session.session_id()) {
            tracing::warn!(session = ?session.session_id(), "resumed the ZooKeeper session (after an outage, or handed over by a re-execution); its ephemerals and lock are still ours");
        }
        let granted = session.granted_timeout();
        if granted != config.settings.session_timeout {
            tracing::warn!(
                asked = ?config.settings.session_timeout,
                ?granted,
                "ZooKeeper granted a different session timeout; fencing follows the granted one"
            );
        }
        fence
            .clock()
            .set_budget(granted.saturating_sub(config.fence_margin));
        fence.confirm(sent);
        let coordinator = Coordinator {
            session,
            layout: config.settings.layout.clone(),
            paths: group_paths::GroupPaths::new(&config.settings.layout, &group, me),
            group,
            me,
            fence,
            decoder: decoded::Decoder::new(unreadable_total),
            held_lock: None,
            sightings: lock_release::LockSightings::default(),
            cache: read_cache::ReadCache::default(),
        };
        for dir in zgres_schema::Dir::ALL {
            coordinator
                .session
                .mkdir(&coordinator.layout.dir(dir))
                .await?;
        }
        tracing::info!(session = ?coordinator.session.session_id(), ?granted, "ZooKeeper session established");
        Ok(coordinator)
    }

    /// The session's id and password, to resume it after the client gave up on it.
    pub fn session_info(&self) -> zk::SessionInfo {
        self.session.session_info()
    }

    /// A clone of the session, for the heartbeat task.
    pub fn session(&self) -> ZkSession {
        self.session.clone()
    }

    /// The fence as this session confirms it, for the heartbeat task.
    pub fn session_fence(&self) -> SessionFence {
        self.fence.clone()
    }

    /// Who holds the lock of `group` (another group in the same root, which a standby
    /// cluster follows): `None` when nobody does or its content is unreadable (reported, like
    /// any hostile document). Read through the watch cache, so a change wakes the loop.
    ///
    /// # Errors
    /// As any request.
    pub async fn lock_holder_of(&mut self, group: &GroupName) -> Result<Option<NodeId>> {
        let path = self.path(Znode::Lock(group.clone()));
        Ok(self
            .read::<Lock>(&path)
            .await?
            .into_valid()
            .map(|(lock, _)| lock.node))
    }

    /// The lock's path.
    pub fn lock_path(&self) -> String {
        self.paths.lock.to_string()
    }

    fn path(&self, znode: Znode) -> String {
        self.layout.path(&znode)
    }

    /// Resolves when a znode this session read has changed since (the lock, the config, the
    /// switchover request, `/sync`, a peer's state...), or when events may have been lost:
    /// the next round then re-reads what changed. Cancel-safe.
    pub async fn changed(&self) {
        self.cache.changed().await;
    }

    /// Resolves at the first answer from ZooKeeper at or after `from` (see
    /// [`ZkSession::answered`]): a wake-up the process has anyway. Cancel-safe.
    pub async fn answered(&self, from: Instant) {
        self.session.answered(from).await;
    }

    /// The session's idle ping gap: how often an idle session is answered.
    pub fn idle_ping_gap(&self) -> Duration {
        self.session.idle_ping_gap()
    }

    /// Reads (from the cache while its watch reports no change) and decodes the znode at
    /// `path` with its version.
    async fn read<T: Document + Clone + Send + 'static>(
        &mut self,
        path: &str,
    ) -> Result<Fetched<(T, i32)>> {
        match self.cache.get(&self.session, path).await?.0 {
            Some((data, stat)) => Ok(self
                .decoder
                .decode::<T>(path, &data)
                .map(|d| (d, stat.version))),
            None => {
                self.decoder.absent(path);
                Ok(Fetched::Absent)
            }
        }
    }

    /// Writes `/sync/{GROUP}` if it is still at `version` (`None`: if it does not exist), or
    /// deletes it with `state = None`. Compare-and-set, so a write based on a stale read fails.
    ///
    /// Returns whether it was written: `false` when it changed since it was read.
    ///
    /// # Errors
    /// As any request.
    pub async fn publish_sync(
        &mut self,
        state: Option<&SyncState>,
        version: Option<i32>,
    ) -> Result<bool> {
        let path = self.paths.sync.to_string();
        self.cache.invalidate(&path);
        Ok(match (state, version) {
            (Some(state), Some(v)) => self
                .session
                .set(&path, &encode(state)?, Some(v))
                .await?
                .is_done(),
            (Some(state), None) => self
                .session
                .create(&path, &encode(state)?, CreateKind::Persistent)
                .await?
                .is_done(),
            (None, v) => matches!(
                self.session.delete(&path, v).await?,
                Outcome::Done(()) | Outcome::NotFound
            ),
        })
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
        let path = self.paths.switchover.to_string();
        self.cache.invalidate(&path);
        let written = match request {
            Some(request) => self
                .session
                .set(&path, &encode(request)?, Some(version))
                .await?
                .is_done(),
            None => self.session.delete(&path, Some(version)).await?.is_done(),
        };
        if !written {
            tracing::warn!(znode = %path, "the switchover request changed meanwhile; left as it is");
        }
        Ok(written)
    }

    /// Creates `/switchover/{GROUP}` with `request` unless one exists; whether it was created.
    ///
    /// # Errors
    /// As any request.
    pub async fn create_switchover(&mut self, request: &Switchover) -> Result<bool> {
        let path = self.paths.switchover.to_string();
        self.cache.invalidate(&path);
        let created = self
            .session
            .create(&path, &encode(request)?, CreateKind::Persistent)
            .await?;
        Ok(matches!(created, Outcome::Done(_)))
    }

    /// The lock is ours but does not name this node (someone overwrote it): put our content
    /// back while our session still owns the znode (compare-and-set on the version read).
    async fn restore_lock(&mut self, found: &Fetched<Lock>, version: i32) {
        let path = self.lock_path();
        self.cache.invalidate(&path);
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
            Ok(data) => self
                .session
                .set(&path, &data, Some(version))
                .await
                .map_err(CoordinationError::from),
            Err(e) => Err(e.into()),
        };
        match restored {
            Ok(Outcome::Done(_)) => tracing::info!(znode = %path, "restored our lock's content"),
            Ok(outcome) => {
                tracing::warn!(znode = %path, ?outcome, "cannot restore our lock's content: it changed meanwhile")
            }
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
        if self.session.set(path, data, None).await?.is_done() {
            return Ok(());
        }
        // Absent: create it. Created meanwhile (by an older request of ours): set it again.
        if let Outcome::Exists = self
            .session
            .create(path, data, CreateKind::Ephemeral)
            .await?
        {
            self.session.set(path, data, None).await?;
        }
        Ok(())
    }

    /// Makes `/conn` exist with `conn` (healthy) or not exist (`None`). An existing one is
    /// rewritten (its role or tags changed).
    ///
    /// # Errors
    /// As any request.
    pub async fn set_conn(&mut self, conn: Option<&ConnInfo>) -> Result<()> {
        let path = self.path(Znode::Conn(self.group.clone(), self.me));
        // Already gone is as asked.
        match conn {
            Some(conn) => {
                let data = encode(conn)?;
                let created = self
                    .session
                    .create(&path, &data, CreateKind::Ephemeral)
                    .await?;
                if created == Outcome::Exists {
                    self.session.set(&path, &data, None).await?;
                }
            }
            None => {
                self.session.delete(&path, None).await?;
            }
        }
        Ok(())
    }

    /// Tries to take the lock. `Ok(true)` when taken (and the fence confirmed as of the send
    /// time), `Ok(false)` when someone else has it.
    ///
    /// # Errors
    /// As any request.
    pub async fn acquire_lock(&mut self, lock: &Lock) -> Result<bool> {
        let sent = monotonic_ns();
        self.cache.invalidate(&self.paths.lock);
        match self
            .session
            .create(&self.lock_path(), &encode(lock)?, CreateKind::Ephemeral)
            .await?
        {
            Outcome::Done(_) => {
                self.fence.confirm(sent);
                self.held_lock = Some(*lock);
                Ok(true)
            }
            // Someone holds it (or the lock directory vanished: taken next round).
            Outcome::Exists | Outcome::NotFound | Outcome::BadVersion => Ok(false),
        }
    }

    /// Creates `/static/{GROUP}-db-id` with `system_id` unless it exists (create-only: an
    /// unreadable one is kept as found); returns what is there afterwards.
    ///
    /// # Errors
    /// As any request.
    pub async fn publish_db_id(&mut self, system_id: SystemId) -> Result<Fetched<SystemId>> {
        let path = self.paths.db_id.to_string();
        self.cache.invalidate(&path);
        let doc = encode(&DatabaseId { system_id })?;
        match self
            .session
            .create(&path, &doc, CreateKind::Persistent)
            .await?
        {
            Outcome::Done(_) => {
                tracing::info!(%system_id, "published the group's system identifier");
                Ok(Fetched::Valid(system_id))
            }
            _ => Ok(self
                .read::<DatabaseId>(&path)
                .await?
                .map(|(d, _)| d.system_id)),
        }
    }

    /// Removes this node's ephemerals and ends the session (clean shutdown).
    pub async fn close(self) {
        for znode in [
            Znode::Conn(self.group.clone(), self.me),
            Znode::State(self.group.clone(), self.me),
        ] {
            let _ = self.session.delete(&self.layout.path(&znode), None).await;
        }
        // Dropping the last client handle closes the session (the heartbeat task's handle is
        // aborted by the caller first).
    }
}
