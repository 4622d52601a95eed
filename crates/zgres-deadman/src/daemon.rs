//! The deadman's main loop: observe PostgreSQL and ZooKeeper, decide, act, repeat.
//!
//! Each round is level-triggered: it looks at the whole group, so a failed action is simply
//! seen again next round. ZooKeeper reads are served from a cache kept true by watches (see
//! `coordination::read_cache`), so an idle round costs ZooKeeper nothing. Rounds run every
//! `loop_interval` (PostgreSQL is probed each time), and at once when a watched znode changes
//! or PostgreSQL exits.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zgres_schema::documents::NodeState;
use zgres_schema::SystemId;

use zgres_zk::Backoff;

use crate::api;
use crate::callbacks::Callbacks;
use crate::callbacks_due::Running;
use crate::config::Config;
use crate::data_dir::{self, ControlData, DataDirError};
use crate::decision::{DataDirKind, Decider, ShutdownPlan};
use crate::fence::{FenceClock, FenceThread};
use crate::group_config::ConfigInForce;
use crate::plugins::{self, PluginSetupError, Plugins};
use crate::postgres_client::PostgresClient;
use crate::postgres_process::PostgresProcess;
use crate::provisioning::{Provisioner, ProvisioningError};
use crate::synchronous::SyncKeeper;
use zgres_systemd::Notifier;

mod act;
mod between_rounds;
mod cluster_settings;
mod node_state;
mod operator_requests;
mod paused_shutdown;
mod publish;
mod records;
mod reload;
mod round;
mod session;
mod shutdown;
mod slots_io;

use between_rounds::Woken;
use session::{ConnectError, Session};

mod synchronous_io;
mod upgrade;

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
    /// The password file for PostgreSQL's replication connections cannot be written.
    /// Permanent.
    #[error(transparent)]
    Passfile(#[from] crate::passfile::PassfileError),
    /// A configured callback program may be written by others. Permanent.
    #[error("callbacks: {0}")]
    Callbacks(zgres_process::UntrustedFile),
    /// The health API cannot listen where configured. Permanent.
    #[error("health API: cannot listen on {addr}: {source}")]
    Api {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
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
pub async fn run(
    mut config: Config,
    shutdown: CancellationToken,
    reloads: Reloads,
) -> Result<(), DaemonError> {
    // Re-executed (SIGUSR2): the handover of the previous image (see `crate::handover`).
    let handover = upgrade::inherited();
    upgrade::keep_running_postgres(handover.as_ref(), &mut config.postgres);
    // Plugins first: an unusable one is a configuration problem, reported before anything else.
    let plugins_stop = shutdown.child_token();
    let plugins = plugins::start(
        &config.hooks.plugins,
        config.timing.plugin_interval,
        plugins_stop.clone(),
    )?;
    let callbacks = Callbacks::start(
        config.hooks.callbacks.clone(),
        config.group.as_str(),
        &config.node_name,
    )
    .map_err(DaemonError::Callbacks)?;
    let provisioner = Provisioner::new(config.postgres.clone(), config.provisioning.clone());
    provisioner.recover_interrupted()?;
    data_dir::check_usable(&config.postgres)?;
    // Before PostgreSQL or a provisioning tool can need it.
    if let Some(path) = crate::passfile::write(&config.postgres)? {
        tracing::info!(file = %path.display(), "replication password written to the password file");
    }
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
    let api_stop = shutdown.child_token();
    let api_tls = match &config.api {
        Some(api_config) => api::serve(api_config, status_rx, fence.clone(), api_stop.clone())
            .await
            .map_err(|source| DaemonError::Api {
                addr: api_config.listen,
                source,
            })?,
        None => zgres_http::TlsSlot::default(),
    };

    // Re-executed: same fence deadline, PostgreSQL and keeper taken over.
    let mut process = PostgresProcess::new(config.postgres.clone(), fence.clone());
    let keeper =
        upgrade::take_over(handover.as_ref(), &fence, &mut process).map_err(DaemonError::Fence)?;
    let resume = handover
        .as_ref()
        .and_then(|h| h.session.as_ref())
        .and_then(|s| s.to_session());
    if let Some(session) = &resume {
        tracing::info!(session = %session.id(), "re-executed: resuming the ZooKeeper session handed over");
    }
    let mut upgrade = upgrade::Upgrade::new(keeper);

    let mut daemon = Daemon {
        core: Core {
            decider: {
                let mut decider = Decider::new(
                    config.node,
                    config.tags.clone(),
                    config.timing.primary_restart_timeout,
                    config.timing.election_wait,
                )
                .with_request_timeout(config.timing.request_timeout)
                .with_takeover_wait(config.zookeeper.takeover_wait());
                decider.set_reclone(crate::provisioning::reclone_rules(&config.provisioning));
                decider
            },
            config_in_force: ConfigInForce::default(),
            paused: None,
            sync_keeper: SyncKeeper::default(),
            slot_keeper: Default::default(),
            slot_problem: None,
            schedule: Schedule::default(),
            not_contending: None,
            on_shutdown: ShutdownPlan::STOP,
            last_observation: None,
        },
        pg: PostgresEdge {
            process,
            client: PostgresClient::new(config.postgres.clone(), config.node),
            control,
            provisioner,
        },
        zk: ZkEdge {
            session: None,
            resume,
            unreadable_total: Arc::default(),
            view_failing: false,
        },
        out: Outputs {
            status,
            state: None,
            conn: None,
            promotions: 0,
            callbacks,
            seen: upgrade::callbacks_seen(handover.as_ref()),
        },
        systemd: Systemd {
            notifier: Notifier::from_env(),
            ready: false,
        },
        shutdown: shutdown.clone(),
        fence,
        live: Live {
            plugins,
            plugins_stop,
            api_stop,
            api_tls,
            reloads,
            restart_needed: Vec::new(),
            postgres_pending_restart: Vec::new(),
            settings_check_at: None,
            catalog: cluster_settings::CatalogState::default(),
        },
        config,
    };
    daemon.load_catalog_copy();
    let result = daemon.run(&shutdown, &mut upgrade).await;
    daemon.shut_down().await;
    upgrade.keeper.finish().await;
    daemon.live.api_stop.cancel();
    result
}

/// The deadman's shell: the config, the pure core's state, and the edges it drives.
struct Daemon {
    config: Config,
    /// Decision state (no I/O).
    core: Core,
    /// The local PostgreSQL: its process, a client, its data directory's state.
    pg: PostgresEdge,
    /// The ZooKeeper session, and what survives from one session to the next.
    zk: ZkEdge,
    /// What the node shows: its published state, connection info and API status.
    out: Outputs,
    /// systemd: readiness, status and watchdog pings from the loop.
    systemd: Systemd,
    fence: Arc<FenceClock>,
    /// What a reload of the configuration file replaces or reports.
    live: Live,
    /// Long provisioning steps stop when this is cancelled.
    shutdown: CancellationToken,
}

/// Where reloaded configurations come from, and how the log level changes.
#[derive(Debug)]
pub struct Reloads {
    /// Validated configurations, one per SIGHUP with a valid file.
    pub configs: tokio::sync::mpsc::Receiver<Config>,
    /// The running log level (`None`: not changeable, e.g. in tests).
    pub log_level: Option<zgres_config::LogLevel>,
}

/// The parts a reload replaces while the deadman runs, and what waits for a restart.
struct Live {
    plugins: Option<Plugins>,
    /// Stops the current plugin task (a reload with other plugins replaces it).
    plugins_stop: CancellationToken,
    /// Stops the current health API server (a reload with another address replaces it).
    api_stop: CancellationToken,
    /// The current health API server's TLS (a reload re-reads the certificate into it).
    api_tls: zgres_http::TlsSlot,
    reloads: Reloads,
    /// Settings of the file that differ from the running ones until the deadman restarts.
    restart_needed: Vec<&'static str>,
    /// PostgreSQL's parameters waiting for PostgreSQL to restart.
    postgres_pending_restart: Vec<String>,
    /// When to ask PostgreSQL what it made of its settings (after a start or a reload).
    settings_check_at: Option<Instant>,
    /// The local server's `pg_settings`, for the group's cluster-wide parameters.
    catalog: cluster_settings::CatalogState,
}

/// The pure core's state, carried from round to round.
struct Core {
    decider: Decider,
    /// The group config acted on, kept when `/config` turns unreadable.
    config_in_force: ConfigInForce,
    /// Whether the group was paused at the last round (to log changes).
    paused: Option<bool>,
    /// Synchronous replication, while this node is the primary.
    sync_keeper: SyncKeeper,
    /// Replication slots, while PostgreSQL runs.
    slot_keeper: crate::slots::SlotKeeper,
    /// The slot problem last warned about (warned once, retried every round).
    slot_problem: Option<String>,
    /// When the next round runs.
    schedule: Schedule,
    /// Why this node last did not contend for a free lock (to log each new reason once).
    not_contending: Option<crate::decision::Ineligible>,
    /// What a shutdown now would do with PostgreSQL, as of the last round.
    on_shutdown: ShutdownPlan,
    /// The last round's observation, completed at shutdown for the core's hand-over pick.
    last_observation: Option<crate::decision::Observation>,
}

/// When the next round runs, as far as the core says.
#[derive(Debug, Default)]
struct Schedule {
    /// The core's next time-based decision: the loop looks again then at the latest.
    wake_at: Option<Instant>,
    /// The backstop against rounds that keep asking to run again at once.
    pacing: crate::decision::Pacing,
    /// The due time of the round that just ran, if its timer or a shared ZooKeeper answer ran
    /// it (not an event): periodic rounds keep their cadence from it
    /// ([`crate::decision::round_time`]).
    last_due: Option<Instant>,
}

/// The local PostgreSQL, as the shell drives it.
struct PostgresEdge {
    process: PostgresProcess,
    client: PostgresClient,
    /// `pg_controldata` of the data directory; `None` while it is empty.
    control: Option<ControlData>,
    provisioner: Provisioner,
}

/// The ZooKeeper side.
struct ZkEdge {
    session: Option<Session>,
    /// A session the client gave up on (it could not reach ZooKeeper in time): the server may
    /// still hold it, with the lock, so the next connection tries to resume it first.
    resume: Option<zgres_zk::client::SessionInfo>,
    /// Distinct unreadable znode contents met (a metric).
    unreadable_total: Arc<AtomicU64>,
    /// The last round could not read the group (to log an outage once).
    view_failing: bool,
}

/// What the node shows the world.
struct Outputs {
    /// What the health API serves; refreshed every round.
    status: watch::Sender<Option<api::Status>>,
    /// The last state published and when.
    state: Option<(NodeState, Instant)>,
    /// What `/conn` was last made to hold (`Some(None)`: made not to exist).
    conn: Option<Option<zgres_schema::documents::ConnInfo>>,
    promotions: u64,
    /// The operator's callbacks.
    callbacks: Callbacks,
    /// What PostgreSQL was last seen doing (for the callbacks).
    seen: Running,
}

/// systemd notification.
struct Systemd {
    notifier: Notifier,
    /// READY=1 was sent.
    ready: bool,
}

impl Daemon {
    async fn run(
        &mut self,
        shutdown: &CancellationToken,
        upgrade: &mut upgrade::Upgrade,
    ) -> Result<(), DaemonError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), MAX_CONNECT_BACKOFF);
        let mut adopted = false;
        // One timer for every pause between rounds, re-armed each time: a new one per round
        // cost a timerfd's creation, registration and close (a tenth of an idle deadman's
        // system calls).
        let mut round_timer = zgres_timer::Timer::new();
        while !shutdown.is_cancelled() {
            if self.zk.session.is_none() {
                match self.connect().await {
                    Ok(()) => backoff.reset(),
                    Err(ConnectError::Fatal(e)) => return Err(e),
                    Err(ConnectError::Retry(e)) if e.session_ended() => {
                        tracing::warn!("the previous ZooKeeper session expired on the server too; opening a new one");
                        self.zk.resume = None;
                        continue;
                    }
                    Err(ConnectError::Retry(e)) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?delay, "ZooKeeper unreachable; PostgreSQL left as it is");
                        self.systemd.notifier.keep_alive();
                        self.systemd
                            .notifier
                            .status("ZooKeeper unreachable; retrying");
                        // An upgrade need not wait for ZooKeeper: the session given up on is
                        // handed over as it is.
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = upgrade.requested() => self.reexec(upgrade),
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
            self.systemd.notifier.keep_alive();
            if !self.systemd.ready && self.zk.session.is_some() {
                // The session is up and PostgreSQL was probed (or found stopped) once.
                self.systemd.ready = true;
                self.systemd
                    .notifier
                    .ready("ZooKeeper session established; first round done");
            }
            let Some(time) = self.next_round_time(next) else {
                continue;
            };
            match self
                .between_rounds(time, &mut round_timer, upgrade, shutdown)
                .await
            {
                Woken::Reloaded(config) => self.reload(*config).await,
                Woken::Upgrade => self.reexec(upgrade),
                Woken::Periodic | Woken::Event => {}
            }
        }
        Ok(())
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
