//! The deadman's main loop: observe PostgreSQL and ZooKeeper, decide, act, repeat.
//!
//! Each round is level-triggered: it reads everything afresh, so a missed watch event or a
//! failed action is simply seen again next round. Rounds run every `loop_interval`, and at once
//! when the lock changes or PostgreSQL exits.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zgres_schema::documents::{
    ConnInfo, Lock, NodeState, Promotion, PromotionReason, SwitchoverKind, SyncMode,
};
use zgres_schema::{Fetched, Lsn, NodeId, SystemId, Timeline};

use zgres_zk::Backoff;

use crate::api;
use crate::config::Config;
use crate::coordination::{heartbeat, CoordinationError, Coordinator, GroupView};
use crate::data_dir::{self, ControlData, DataDirError};
use crate::decision::{
    Action, DataDirKind, Decider, Ineligible, LocalPostgres, LockView, Observation,
};
use crate::fence::keeper::Keeper;
use crate::fence::{FenceClock, FenceThread};
use crate::group_config::{ConfigChange, ConfigInForce};
use crate::plugins::{self, PluginSetupError, Plugins};
use crate::postgres_client::PostgresClient;
use crate::postgres_process::PostgresProcess;
use crate::provisioning::{Provisioner, ProvisioningError, RewindOutcome};
use crate::synchronous::SyncKeeper;
use zgres_systemd::Notifier;

mod node_state;
mod synchronous_io;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The data directory is missing or unreadable. Permanent.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The data directory belongs to another database system than the group's. Permanent: the
    /// deadman refuses to run and has touched nothing.
    #[error("refusing to run: data directory {data_dir} has system identifier {ours}, but group {group} has {theirs} (in {znode}); nothing was changed")]
    WrongSystem {
        /// The data directory.
        data_dir: String,
        /// Its system identifier.
        ours: SystemId,
        /// The group.
        group: String,
        /// The group's system identifier.
        theirs: SystemId,
        /// Where the group's id is stored.
        znode: String,
    },
    /// The fence could not be set up. Permanent.
    #[error("cannot start the fence: {0}")]
    Fence(std::io::Error),
    /// A configured plugin cannot be used (e.g. a library of another ABI version). Permanent.
    #[error(transparent)]
    Plugins(#[from] PluginSetupError),
    /// An interrupted bootstrap or clone left a directory that cannot be emptied. Permanent.
    #[error("cannot clean up an interrupted bootstrap or clone: {0}")]
    Provisioning(#[from] ProvisioningError),
    /// The health API cannot listen where configured. Permanent.
    #[error("health API: cannot listen on {addr}: {source}")]
    Api {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How often an election re-reads the group while it waits for peers' fresh positions.
const ELECTION_POLL: Duration = Duration::from_millis(50);
/// How often a PostgreSQL that runs but does not answer yet (starting, recovering) is probed.
const STARTING_POLL: Duration = Duration::from_millis(100);

/// When the next round should run.
enum Next {
    /// At once: an action changed something worth observing.
    Now,
    /// Shortly: an election is waiting for peers.
    Soon,
    /// Soon: PostgreSQL runs but does not answer yet.
    Starting,
    /// After the loop interval (or an event).
    Later,
}

/// How long an unreachable ZooKeeper is retried between attempts, at most. Short, because the
/// first attempt after ZooKeeper is back may resume the session that still holds our lock;
/// each attempt is one connection, so the load stays small.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// Runs the deadman until `shutdown` is cancelled, then stops PostgreSQL and releases the lock
/// (in that order, so no other node promotes while this one might still accept writes).
///
/// # Errors
/// [`DaemonError`] for problems that retrying cannot fix; transient ZooKeeper and PostgreSQL
/// failures are logged and retried, never returned.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    // Plugins first: an unusable one is a configuration problem, reported before anything else.
    let plugins = plugins::start(
        &config.plugins,
        config.timing.plugin_interval,
        shutdown.child_token(),
    )?;
    let provisioner = Provisioner::new(config.postgres.clone(), config.provisioning.clone());
    provisioner.recover_interrupted()?;
    data_dir::check_usable(&config.postgres)?;
    let control = match data_dir::kind(&config.postgres) {
        DataDirKind::Empty => None,
        _ => Some(data_dir::control_data(&config.postgres).await?),
    };
    match &control {
        Some(c) => tracing::info!(
            node = %config.node, group = %config.group, system_id = %c.system_id,
            timeline = %c.timeline, "zgres-deadman starting"
        ),
        None => tracing::info!(
            node = %config.node, group = %config.group, data_dir = %config.postgres.data_dir.display(),
            "zgres-deadman starting with an empty data directory: it will be bootstrapped or cloned"
        ),
    }

    let fence = Arc::new(FenceClock::new(
        config
            .zookeeper
            .settings
            .session_timeout
            .saturating_sub(config.zookeeper.fence_margin),
    ));
    let _fence_thread = FenceThread::spawn(fence.clone()).map_err(DaemonError::Fence)?;
    let (status, status_rx) = watch::channel(None);
    let api = match config.api_listen {
        Some(addr) => Some(
            api::serve(addr, status_rx, fence.clone(), shutdown.child_token())
                .await
                .map_err(|source| DaemonError::Api { addr, source })?,
        ),
        None => None,
    };

    let keeper = Keeper::spawn(fence.clone()).map_err(DaemonError::Fence)?;

    let mut daemon = Daemon {
        decider: Decider::new(
            config.node,
            config.tags.clone(),
            config.timing.primary_restart_timeout,
            config.timing.election_wait,
        )
        .with_request_timeout(config.timing.request_timeout),
        provisioner,
        rewind_retry_at: None,
        paused: None,
        notifier: Notifier::from_env(),
        ready: false,
        shutdown: shutdown.clone(),
        postgres: PostgresProcess::new(config.postgres.clone(), fence.clone()),
        client: PostgresClient::new(config.postgres.clone(), config.node.to_string()),
        sync_keeper: SyncKeeper::default(),
        fence,
        control,
        plugins,
        status,
        promotions: 0,
        config_in_force: ConfigInForce::default(),
        unreadable_total: Arc::default(),
        resume: None,
        session: None,
        published: None,
        conn_published: None,
        config,
    };
    let result = daemon.run(&shutdown).await;
    daemon.shut_down().await;
    keeper.finish().await;
    if let Some(api) = api {
        api.abort();
    }
    result
}

struct Session {
    coordinator: Coordinator,
    watcher: Option<zgres_zk::client::PersistentWatcher>,
    heartbeat: JoinHandle<()>,
}

struct Daemon {
    config: Config,
    decider: Decider,
    postgres: PostgresProcess,
    client: PostgresClient,
    fence: Arc<FenceClock>,
    /// `pg_controldata` of the data directory; `None` while it is empty.
    control: Option<ControlData>,
    provisioner: Provisioner,
    /// After a failed pg_rewind, not before this.
    rewind_retry_at: Option<Instant>,
    /// Whether the group was paused at the last round (to log changes).
    paused: Option<bool>,
    /// Synchronous replication, while this node is the primary.
    sync_keeper: SyncKeeper,
    /// systemd: readiness, status and watchdog pings from the loop.
    notifier: Notifier,
    /// READY=1 was sent.
    ready: bool,
    /// Long provisioning steps stop when this is cancelled.
    shutdown: CancellationToken,
    plugins: Option<Plugins>,
    /// What the health API serves; refreshed every round.
    status: watch::Sender<Option<api::Status>>,
    promotions: u64,
    /// The group config acted on, kept when `/config` turns unreadable.
    config_in_force: ConfigInForce,
    /// Distinct unreadable znode contents met (a metric).
    unreadable_total: Arc<AtomicU64>,
    /// A session the client gave up on (it could not reach ZooKeeper in time): the server may
    /// still hold it, with the lock, so the next connection tries to resume it first.
    resume: Option<zgres_zk::client::SessionInfo>,
    session: Option<Session>,
    /// The last state published and when.
    published: Option<(NodeState, Instant)>,
    conn_published: Option<bool>,
}

impl Daemon {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), DaemonError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), MAX_CONNECT_BACKOFF);
        let mut adopted = false;
        while !shutdown.is_cancelled() {
            if self.session.is_none() {
                match self.connect().await {
                    Ok(()) => backoff.reset(),
                    Err(ConnectError::Fatal(e)) => return Err(e),
                    Err(ConnectError::Retry(e)) if e.session_ended() => {
                        tracing::warn!("the previous ZooKeeper session expired on the server too; opening a new one");
                        self.resume = None;
                        continue;
                    }
                    Err(ConnectError::Retry(e)) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?delay, "ZooKeeper unreachable; PostgreSQL left as it is");
                        self.notifier.keep_alive();
                        self.notifier.status("ZooKeeper unreachable; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = shutdown.cancelled() => {}
                        }
                        continue;
                    }
                }
            }
            if !adopted {
                self.adopt_foreign_postmaster().await;
                adopted = true;
            }
            let next = self.round().await;
            self.notifier.keep_alive();
            if !self.ready && self.session.is_some() {
                // The session is up and PostgreSQL was probed (or found stopped) once.
                self.ready = true;
                self.notifier
                    .ready("ZooKeeper session established; first round done");
            }
            let pause = match next {
                Next::Now => continue,
                Next::Soon => ELECTION_POLL,
                Next::Starting => STARTING_POLL,
                Next::Later => self.config.timing.loop_interval,
            };
            let Self {
                session, postgres, ..
            } = self;
            let lock_changed = async {
                match session.as_mut().and_then(|s| s.watcher.as_mut()) {
                    Some(w) => {
                        w.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = lock_changed => {}
                () = postgres.exited() => {}
                () = shutdown.cancelled() => {}
            }
        }
        Ok(())
    }

    async fn connect(&mut self) -> Result<(), ConnectError> {
        let coordinator = Coordinator::connect(
            &self.config.zookeeper,
            self.config.group.clone(),
            self.config.node,
            self.fence.clone(),
            self.unreadable_total.clone(),
            self.resume.clone(),
        )
        .await
        .map_err(ConnectError::Retry)?;
        self.resume = None;
        let mut coordinator = coordinator;
        let view = coordinator.view().await.map_err(ConnectError::Retry)?;
        let theirs = view.db_id.valid().copied();
        if let (Some(theirs), Some(ours)) = (theirs, self.control.map(|c| c.system_id)) {
            if theirs != ours {
                return Err(ConnectError::Fatal(DaemonError::WrongSystem {
                    data_dir: self.config.postgres.data_dir.display().to_string(),
                    ours,
                    group: self.config.group.to_string(),
                    theirs,
                    znode: self
                        .config
                        .zookeeper
                        .settings
                        .layout
                        .path(&zgres_schema::Znode::DatabaseId(self.config.group.clone())),
                }));
            }
        }
        let watcher = coordinator.watch_lock().await.ok();
        // Several confirmations per fence budget, so one lost reply never fences.
        let interval =
            (self.config.zookeeper.settings.session_timeout / 6).min(Duration::from_secs(1));
        let heartbeat = tokio::spawn(heartbeat(
            coordinator.session(),
            coordinator.lock_path(),
            self.fence.clone(),
            interval,
        ));
        self.published = None;
        self.conn_published = None;
        self.session = Some(Session {
            coordinator,
            watcher,
            heartbeat,
        });
        Ok(())
    }

    /// A PostgreSQL already running on our data directory was not started by us: stop it, so
    /// that the one that runs is our child (for instant crash detection and fencing).
    async fn adopt_foreign_postmaster(&mut self) {
        if let Some(pid) = data_dir::foreign_postmaster(&self.config.postgres) {
            crate::postgres_process::stop_foreign(pid, self.config.timing.stop_timeout).await;
            self.refresh_control().await;
        }
    }

    /// Re-reads `pg_controldata` (after PostgreSQL stopped or the directory was provisioned).
    async fn refresh_control(&mut self) {
        self.control = match data_dir::kind(&self.config.postgres) {
            DataDirKind::Empty => None,
            _ => match data_dir::control_data(&self.config.postgres).await {
                Ok(control) => Some(control),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read pg_controldata");
                    self.control
                }
            },
        };
    }

    /// One observe-decide-act round.
    async fn round(&mut self) -> Next {
        let running = self.postgres.is_running();
        let probe = if running {
            match self.client.probe().await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::debug!(error = %e, "postgres probe failed");
                    None
                }
            }
        } else {
            self.client.disconnect();
            self.refresh_control().await;
            None
        };
        let Some(session) = self.session.as_mut() else {
            return Next::Later;
        };
        let mut view = match session.coordinator.view().await {
            Ok(view) => view,
            Err(e) if e.session_ended() => {
                tracing::error!(
                    "ZooKeeper session lost; trying to resume it, else opening a new one"
                );
                self.end_session();
                return Next::Now;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the group from ZooKeeper; deciding nothing this round");
                GroupView::unknown()
            }
        };
        if view.lock != LockView::Unknown {
            self.observe_config(std::mem::take(&mut view.config));
        }
        let obs = Observation {
            now: Instant::now(),
            lock: view.lock,
            db_id: view.db_id.clone(),
            config: self.config_in_force.effective(),
            peers: view.peers.clone(),
            postgres: LocalPostgres {
                running,
                data_dir: data_dir::kind(&self.config.postgres),
                probe,
                control: self
                    .control
                    .filter(|_| !running)
                    .map(|c| (c.timeline, c.checkpoint)),
            },
            vetoed: self
                .plugins
                .as_ref()
                .is_some_and(|p| !p.outcome.borrow().vetoes.is_empty()),
            group_timeline: view.group_timeline,
            switchover: view.switchover.valid().map(|(s, _)| s.clone()),
            wall_ms: wall_ms(),
            sync: view.sync.clone().map(|(s, _)| s),
        };
        if self.paused != Some(obs.config.paused) && obs.lock != LockView::Unknown {
            if obs.config.paused {
                tracing::warn!("the group is paused: no automatic action until it is resumed");
            } else if self.paused.is_some() {
                tracing::info!("the group is resumed: automatic actions are back on");
            }
            self.paused = Some(obs.config.paused);
        }
        let actions = self.decider.decide(&obs);
        let why_not = self.decider.last_ineligible();
        if let Some(why) = why_not {
            tracing::debug!(?why, "not contending for the lock");
        }
        let force = actions.contains(&Action::PublishState);
        // One state per round: published to ZooKeeper, fed to plugins, served by the API.
        let state = self.node_state(&obs);
        self.publish(&state, force).await;
        let mut again = false;
        let switchover_version = view.switchover.valid().map(|(_, v)| *v);
        for action in actions {
            again |= self.execute(action, &obs, switchover_version).await;
        }
        self.after_round(&obs).await;
        let sync_progress = self.keep_synchronous(&obs, view.sync).await;
        self.update_status(&obs, state);
        if again {
            Next::Now
        } else if sync_progress
            || (why_not == Some(Ineligible::WaitingForPeers) && obs.lock == LockView::Free)
        {
            Next::Soon
        } else if self.postgres.is_running() && obs.postgres.probe.is_none() {
            Next::Starting
        } else {
            Next::Later
        }
    }

    /// Takes this round's read of `/config` into account and logs a change of its readability.
    fn observe_config(&mut self, read: Fetched<zgres_schema::documents::GroupConfig>) {
        match self.config_in_force.observe(read) {
            ConfigChange::None => {}
            ConfigChange::Unreadable(problem) => {
                tracing::error!(%problem, "the group config is unreadable; behaviour unchanged")
            }
            ConfigChange::Readable => tracing::info!("the group config is readable again"),
        }
    }

    fn update_status(&self, obs: &Observation, state: NodeState) {
        let fence = self.fence.state();
        let headroom = fence
            .armed
            .then(|| (fence.deadline_ns as f64 - crate::fence::monotonic_ns() as f64) / 1e9);
        self.status.send_replace(Some(api::Status {
            node: self.config.node,
            group: self.config.group.clone(),
            role: state.role,
            lock_held: obs.lock == LockView::Ours,
            writable: self
                .fence
                .may_serve_as_primary(crate::fence::monotonic_ns()),
            problems: state.problems,
            warnings: state.warnings,
            unreadable_znodes_total: self
                .unreadable_total
                .load(std::sync::atomic::Ordering::Relaxed),
            timeline: state.timeline,
            wal: state.wal,
            primary_position: self.decider.last_primary_position(),
            tags: state.tags,
            zookeeper_connected: obs.lock != LockView::Unknown,
            fence_headroom_seconds: headroom,
            fenced_total: self.fence.fired_count(),
            promotions_total: self.promotions,
            synchronous: obs
                .sync
                .valid()
                .is_some_and(|s| s.standbys.contains(&self.config.node)),
            synchronous_degraded: obs.lock == LockView::Ours
                && obs.config.synchronous_mode != SyncMode::Off
                && self.sync_keeper.degraded(),
            updated: Instant::now(),
            loop_interval: self.config.timing.loop_interval,
        }));
    }

    fn end_session(&mut self) {
        if let Some(session) = self.session.take() {
            session.heartbeat.abort();
            self.resume = Some(session.coordinator.session_info());
        }
    }

    async fn publish(&mut self, state: &NodeState, force: bool) {
        if let Some(plugins) = &self.plugins {
            let input = serde_json::json!({
                "v": 1,
                "group": self.config.group,
                "node": self.config.node,
                "state": state,
            });
            plugins.input.send_replace(serde_json::to_vec(&input).ok());
        }
        let healthy = state.is_healthy();
        let unchanged = self.published.as_ref().is_some_and(|(old, at)| {
            let mut old = old.clone();
            old.updated_at_ms = state.updated_at_ms;
            old == *state && at.elapsed() < self.config.timing.state_refresh
        });
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if force || !unchanged {
            match session.coordinator.publish_state(state).await {
                Ok(()) => {
                    if self
                        .published
                        .as_ref()
                        .map(|(s, _)| (s.role, s.problems.clone()))
                        != Some((state.role, state.problems.clone()))
                    {
                        tracing::info!(role = ?state.role, problems = ?state.problems, "published node state");
                        self.notifier.status(&format!(
                            "{:?}{}",
                            state.role,
                            if state.problems.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", state.problems.join("; "))
                            }
                        ));
                    }
                    self.published = Some((state.clone(), Instant::now()));
                }
                Err(e) => tracing::warn!(error = %e, "cannot publish node state"),
            }
        }
        if self.conn_published != Some(healthy) {
            let conn = ConnInfo {
                host: self.config.node.addr().ip().to_string(),
                port: self.config.node.addr().port(),
                dbname: None,
                tags: self.config.tags.clone(),
            };
            match session.coordinator.set_conn(healthy.then_some(&conn)).await {
                Ok(()) => self.conn_published = Some(healthy),
                Err(e) => tracing::warn!(error = %e, "cannot update connection info"),
            }
        }
    }

    fn timeline(&self, obs: &Observation) -> Timeline {
        obs.postgres
            .probe
            .and_then(|p| p.timeline)
            .or(self.control.map(|c| c.timeline))
            .unwrap_or(Timeline::FIRST)
    }

    /// Executes one action; returns true when its effect should be observed at once.
    async fn execute(
        &mut self,
        action: Action,
        obs: &Observation,
        switchover_version: Option<i32>,
    ) -> bool {
        let timeout = self.config.timing.stop_timeout;
        match action {
            Action::PublishState => false,
            Action::AcquireLock => {
                let lock = Lock {
                    node: self.config.node,
                    timeline: self.timeline(obs),
                };
                let Some(session) = self.session.as_mut() else {
                    return false;
                };
                match session.coordinator.acquire_lock(&lock).await {
                    Ok(true) => {
                        tracing::info!("acquired the group lock");
                        true
                    }
                    Ok(false) => {
                        tracing::info!("another node took the group lock first");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the group lock");
                        false
                    }
                }
            }
            Action::ReleaseLock => {
                if let Some(session) = self.session.as_mut() {
                    match session.coordinator.release_lock().await {
                        Ok(()) => tracing::warn!("released the group lock"),
                        Err(e) => tracing::warn!(error = %e, "cannot release the group lock"),
                    }
                }
                true
            }
            Action::StartPrimary => {
                if !self.fence.arm() {
                    tracing::warn!("not starting as primary: the ZooKeeper session is not confirmed recently enough");
                    return false;
                }
                tracing::info!("starting postgres as primary");
                self.start()
            }
            Action::StartStandby { upstream } => {
                let conninfo = upstream.map(|u| self.client.conninfo_for(u));
                if let Err(e) = data_dir::make_standby(&self.config.postgres, conninfo.as_deref()) {
                    tracing::error!(error = %e, "cannot configure the data directory as a standby");
                    return false;
                }
                match upstream {
                    Some(upstream) => tracing::info!(%upstream, "starting postgres as standby"),
                    None => {
                        tracing::info!("starting postgres as standby of its configured primary")
                    }
                }
                self.start()
            }
            Action::Promote => {
                if !self.fence.arm() {
                    tracing::warn!(
                        "not promoting: the ZooKeeper session is not confirmed recently enough"
                    );
                    return false;
                }
                tracing::info!("promoting postgres");
                match self.client.promote().await {
                    Ok(()) => {
                        tracing::info!("promoted: this node is the primary");
                        self.promotions += 1;
                        // Until a checkpoint, pg_control still names the old timeline, and
                        // pg_rewind on the old primary would see nothing to rewind.
                        self.client.checkpoint_in_background();
                        self.record_promotion(obs).await;
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "promotion failed");
                        false
                    }
                }
            }
            Action::Repoint { upstream } => {
                match self.client.repoint(upstream).await {
                    Ok(()) => tracing::info!(%upstream, "now following the new primary"),
                    Err(e) => tracing::warn!(error = %e, %upstream, "cannot repoint the standby"),
                }
                false
            }
            Action::StopPostgres { immediate, reason } => {
                tracing::error!(reason, immediate, "stopping postgres");
                self.postgres.stop(immediate, timeout).await;
                self.client.disconnect();
                true
            }
            Action::Bootstrap => {
                tracing::info!("the group has no database: creating it (bootstrap)");
                match self.provision(None).await {
                    Ok(()) => tracing::info!("bootstrap done; starting as the first primary"),
                    Err(e) => {
                        tracing::error!(error = %e, "bootstrap failed; releasing the lock so another node can try");
                        if let Some(session) = self.session.as_mut() {
                            let _ = session.coordinator.release_lock().await;
                        }
                    }
                }
                true
            }
            Action::CloneFrom { source } => {
                tracing::info!(%source, "cloning the primary into the empty data directory");
                match self.provision(Some(source)).await {
                    Ok(()) => {
                        tracing::info!(%source, "clone done; starting as a standby");
                        self.make_standby_of(source);
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, %source, "clone failed; will retry");
                        false
                    }
                }
            }
            Action::Rewind { source } => self.rewind(source).await,
            Action::StepDown { candidate } => {
                self.step_down(candidate, obs, switchover_version).await
            }
            Action::FinishSwitchover | Action::DropSwitchover { .. } => {
                match action {
                    Action::DropSwitchover { reason } => {
                        let to = obs
                            .switchover
                            .as_ref()
                            .and_then(|r| r.to)
                            .map_or_else(|| "the best replica".to_owned(), |n| n.to_string());
                        tracing::error!(reason, %to, "dropping the switchover request");
                    }
                    _ => tracing::info!("switchover complete"),
                }
                if let (Some(session), Some(version)) = (self.session.as_mut(), switchover_version)
                {
                    if let Err(e) = session.coordinator.update_switchover(None, version).await {
                        tracing::warn!(error = %e, "cannot delete the switchover request");
                    }
                }
                false
            }
        }
    }

    /// Runs a provisioning step, stopping it (and the tool) on shutdown, then re-reads the
    /// control data.
    async fn provision(&mut self, source: Option<NodeId>) -> Result<(), ProvisioningError> {
        let shutdown = self.shutdown.clone();
        let provisioner = self.provisioner.clone();
        let step = async {
            match source {
                None => provisioner.bootstrap().await,
                Some(source) => provisioner.clone_from(source).await,
            }
        };
        let result = tokio::select! {
            result = keeping_alive(&mut self.notifier, step) => result,
            () = shutdown.cancelled() => Ok(()),
        };
        self.refresh_control().await;
        result
    }

    fn make_standby_of(&mut self, upstream: NodeId) {
        let conninfo = self.client.conninfo_for(upstream);
        if let Err(e) = data_dir::make_standby(&self.config.postgres, Some(&conninfo)) {
            tracing::error!(error = %e, "cannot configure the data directory as a standby");
        }
    }

    /// Rejoin of a former primary: pg_rewind to the new primary, then start as its standby.
    async fn rewind(&mut self, source: NodeId) -> bool {
        if self.rewind_retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        tracing::info!(%source, "rejoining as a standby of the new primary: checking for divergence with pg_rewind");
        let shutdown = self.shutdown.clone();
        let Some(control) = self.control else {
            return false;
        };
        let provisioner = self.provisioner.clone();
        let rewind = provisioner.rewind(source, control.timeline, control.clean_shutdown);
        let result = tokio::select! {
            result = keeping_alive(&mut self.notifier, rewind) => result,
            () = shutdown.cancelled() => return false,
        };
        match result {
            Ok(RewindOutcome::SourceNotReady) => {
                tracing::info!(%source, "waiting for the new primary's first checkpoint on its new timeline before pg_rewind");
                false
            }
            Ok(outcome) => {
                match outcome {
                    RewindOutcome::SourceNotReady => {}
                    RewindOutcome::Rewound => {
                        tracing::warn!(%source, "rewound: WAL this node wrote after the fork is discarded")
                    }
                    RewindOutcome::NotNeeded => {
                        tracing::info!(%source, "no divergence; following the new primary")
                    }
                }
                self.rewind_retry_at = None;
                self.make_standby_of(source);
                self.refresh_control().await;
                true
            }
            Err(e) if self.provisioner.may_reclone() => {
                tracing::error!(error = %e, "pg_rewind failed; deleting the data directory to clone it again (provisioning.reclone_on_rewind_failure)");
                if let Err(e) = self.provisioner.empty_data_dir() {
                    tracing::error!(error = %e, "cannot empty the data directory");
                }
                self.refresh_control().await;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "pg_rewind failed; this node stays stopped until it succeeds (set provisioning.reclone_on_rewind_failure to clone instead)");
                self.rewind_retry_at = Some(Instant::now() + Duration::from_secs(10));
                false
            }
        }
    }

    /// Planned hand-over to `candidate`: fast stop (standbys receive all WAL), record where
    /// WAL ended, release the lock.
    async fn step_down(
        &mut self,
        candidate: NodeId,
        obs: &Observation,
        version: Option<i32>,
    ) -> bool {
        let (Some(mut request), Some(version)) = (obs.switchover.clone(), version) else {
            return false;
        };
        tracing::warn!(%candidate, "switchover: stopping postgres to hand over");
        self.postgres
            .stop(false, self.config.timing.stop_timeout)
            .await;
        self.client.disconnect();
        self.refresh_control().await;
        let Some(session) = self.session.as_mut() else {
            return true;
        };
        match self.control.filter(|c| c.clean_shutdown) {
            Some(control) => {
                request.to = Some(candidate);
                request.stopped_lsn = Some(control.checkpoint);
                let recorded = session
                    .coordinator
                    .update_switchover(Some(&request), version)
                    .await;
                if !matches!(recorded, Ok(true)) {
                    // Without the stop position the candidate cannot prove it caught up:
                    // keep the lock and start again as primary next round.
                    let error = recorded.err().map(|e| e.to_string());
                    tracing::error!(
                        error,
                        "cannot record the stop position; switchover abandoned"
                    );
                    return true;
                }
                tracing::info!(%candidate, stopped_at = %control.checkpoint, "switchover: primary stopped; handing the lock over");
            }
            None => {
                tracing::error!("switchover: postgres did not shut down cleanly; abandoning it (the normal election decides)");
                let _ = session.coordinator.update_switchover(None, version).await;
            }
        }
        if let Err(e) = session.coordinator.release_lock().await {
            tracing::warn!(error = %e, "cannot release the lock");
        }
        true
    }

    /// Appends this promotion to `/history/{GROUP}`.
    async fn record_promotion(&mut self, obs: &Observation) {
        let timeline = match self.client.probe().await {
            Ok(probe) => probe.timeline,
            Err(_) => None,
        };
        let reason = match &obs.switchover {
            Some(r) if r.to == Some(self.config.node) && r.kind == SwitchoverKind::Switchover => {
                PromotionReason::Switchover
            }
            Some(r) if r.to == Some(self.config.node) => PromotionReason::ManualFailover,
            _ => PromotionReason::Failover,
        };
        let lsn = obs
            .postgres
            .probe
            .and_then(|p| p.position())
            .unwrap_or(Lsn::ZERO);
        self.append_history(timeline, lsn, reason).await;
    }

    async fn append_history(
        &mut self,
        timeline: Option<Timeline>,
        lsn: Lsn,
        reason: PromotionReason,
    ) {
        let promotion = Promotion {
            timeline: timeline.unwrap_or(Timeline::FIRST),
            lsn,
            reason,
            at_ms: wall_ms(),
            new_primary: self.config.node,
            old_primary: self.decider.last_primary_node(),
        };
        if let Some(session) = self.session.as_mut() {
            // The first primary only starts the history; promotions append to it.
            let written = if reason == PromotionReason::Bootstrap {
                session.coordinator.start_history(&promotion).await
            } else {
                session.coordinator.record_promotion(&promotion).await
            };
            match written {
                Ok(()) => {
                    tracing::info!(timeline = %promotion.timeline, lsn = %lsn, ?reason, "recorded the promotion in the group's history")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the promotion in the group's history")
                }
            }
        }
    }

    fn start(&mut self) -> bool {
        self.client.forget_timeline();
        match self.postgres.start() {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(error = %e, "cannot start postgres");
                false
            }
        }
    }

    /// Bookkeeping after the actions: the group's system id and the fence's arming.
    async fn after_round(&mut self, obs: &Observation) {
        let primary = obs.postgres.probe.filter(|p| !p.in_recovery);
        if let (LockView::Ours, Some(p), Fetched::Absent) = (obs.lock, primary, &obs.db_id) {
            if let Some(session) = self.session.as_mut() {
                if let Ok(Fetched::Valid(theirs)) =
                    session.coordinator.publish_db_id(p.system_id).await
                {
                    if theirs != p.system_id {
                        tracing::error!(%theirs, ours = %p.system_id, "the group's system identifier changed under us");
                    } else {
                        self.append_history(
                            p.timeline,
                            p.write_lsn.unwrap_or(Lsn::ZERO),
                            PromotionReason::Bootstrap,
                        )
                        .await;
                    }
                }
            }
        }
        // Disarm only once PostgreSQL cannot be a primary any more.
        if self.fence.is_armed() && obs.lock != LockView::Ours && !self.postgres.is_running() {
            self.fence.disarm();
        }
    }

    /// Ordered, bounded shutdown: stop PostgreSQL, then release the lock, then leave.
    async fn shut_down(&mut self) {
        self.notifier.stopping();
        tracing::info!("shutting down: stopping postgres");
        self.postgres
            .stop(false, self.config.timing.stop_timeout)
            .await;
        self.fence.disarm();
        if let Some(mut session) = self.session.take() {
            session.heartbeat.abort();
            if let Err(e) = session.coordinator.release_lock().await {
                tracing::warn!(error = %e, "cannot release the lock; it goes with the session");
            }
            session.coordinator.close().await;
        }
        tracing::info!("zgres-deadman stopped");
    }
}

/// Runs `work` while pinging the systemd watchdog, so a long bootstrap, clone or rewind is not
/// mistaken for a hung loop.
async fn keeping_alive<F: std::future::Future>(notifier: &mut Notifier, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => notifier.keep_alive(),
        }
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum ConnectError {
    Retry(CoordinationError),
    Fatal(DaemonError),
}
