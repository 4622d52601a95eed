//! Carrying out the core's actions, one handler per action.

use std::time::{Duration, Instant};

use zgres_schema::documents::Lock;
use zgres_schema::{NodeId, Timeline};

use zgres_systemd::Notifier;

use super::Daemon;
use crate::data_dir;
use crate::decision::{Action, DataDirKind, Observation};
use crate::provisioning::{ProvisioningError, RewindOutcome};

/// The versions of the requests the round read, for compare-and-set updates.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RequestVersions {
    /// `/switchover/{GROUP}`.
    pub switchover: Option<i32>,
    /// This node's `/request/{GROUP}_{NODE}`.
    pub node_request: Option<i32>,
}

/// Logged when the lock was released with its `/released` record: tests and operators look
/// for it.
pub(super) const RELEASED_QUIETLY: &str =
    "released the group lock, with nobody writing under it: the next holder need not wait";

impl Daemon {
    pub(super) fn timeline(&self, obs: &Observation) -> Timeline {
        obs.postgres
            .probe
            .and_then(|p| p.timeline)
            .or(self.pg.control.map(|c| c.timeline))
            .unwrap_or(Timeline::FIRST)
    }

    /// Executes one action; returns true when its effect should be observed at once.
    pub(super) async fn execute(
        &mut self,
        action: Action,
        obs: &Observation,
        versions: RequestVersions,
    ) -> bool {
        let timeout = self.config.timing.stop_timeout;
        match action {
            Action::PublishState => false,
            Action::AcquireLock => {
                let lock = Lock {
                    node: self.config.node,
                    timeline: self.timeline(obs),
                };
                let Some(session) = self.zk.session.as_mut() else {
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
            Action::ReclaimLock => {
                // Armed first: once ephemeral, the lock can go with the session.
                if !self.fence.arm() {
                    tracing::warn!("not taking back the lock left at a paused shutdown yet: the ZooKeeper session is not confirmed recently enough");
                    return false;
                }
                let Some(session) = self.zk.session.as_mut() else {
                    return false;
                };
                match session.coordinator.reclaim_lock().await {
                    Ok(true) => tracing::warn!(
                        "took back the lock this node's previous deadman left at a paused shutdown"
                    ),
                    Ok(false) => tracing::warn!(
                        "the lock left at a paused shutdown changed meanwhile; looking again"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take back the lock left at a paused shutdown")
                    }
                }
                true
            }
            Action::ReleaseLock { quiet } => {
                // The core saw PostgreSQL down, just killed or a standby; a release says nobody
                // writes under the lock only if that still holds.
                let quiet = quiet && self.nobody_writes_here().await;
                if self.release_lock(quiet).await {
                    if quiet {
                        tracing::warn!("{RELEASED_QUIETLY}");
                    } else {
                        tracing::warn!("released the group lock");
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
            Action::StartStandby { upstream, slot } => {
                let conninfo = upstream.map(|u| self.pg.client.conninfo_for(u));
                let source = conninfo.as_deref().map(|conninfo| data_dir::StandbySource {
                    conninfo,
                    slot: slot.then_some(self.pg.client.member_slot().as_str()),
                });
                if let Err(e) = data_dir::make_standby(&self.config.postgres, source) {
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
            Action::Promote {
                reason,
                wait_for_a_standby,
            } => {
                // Before the fence is armed: PostgreSQL is still a standby meanwhile.
                if let Err(e) = self.out.callbacks.pre_promote().await {
                    tracing::error!(error = %e, "pre_promote vetoed this node's promotion; giving the lock up");
                    // The next round releases the lock.
                    self.core.decider.promotion_vetoed(Instant::now());
                    return true;
                }
                if !self.fence.arm() {
                    tracing::warn!(
                        "not promoting: the ZooKeeper session is not confirmed recently enough"
                    );
                    return false;
                }
                if wait_for_a_standby {
                    // Strict mode: the first commit must wait for a standby too. Set while still
                    // a standby, so it is in force when the promotion lets writes in.
                    if let Err(e) = self.pg.client.set_standby_names("*").await {
                        tracing::warn!(error = %e, "cannot set synchronous_standby_names before promoting; not promoting this round");
                        return false;
                    }
                }
                tracing::info!("promoting postgres");
                match self.pg.client.promote().await {
                    Ok(()) => {
                        tracing::info!("promoted: this node is the primary");
                        self.out.promotions += 1;
                        // Until a checkpoint, pg_control still names the old timeline, and
                        // pg_rewind on the old primary would see nothing to rewind.
                        self.pg.client.checkpoint_in_background();
                        self.record_promotion(obs, reason).await;
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "promotion failed");
                        false
                    }
                }
            }
            Action::Repoint { upstream, slot } => {
                match self.pg.client.repoint(upstream, slot).await {
                    Ok(()) => tracing::info!(%upstream, slot, "now following the new primary"),
                    Err(e) => tracing::warn!(error = %e, %upstream, "cannot repoint the standby"),
                }
                false
            }
            Action::StopPostgres { immediate, reason } => {
                tracing::error!(reason, immediate, "stopping postgres");
                self.pg.process.stop(immediate, timeout).await;
                self.pg.client.disconnect();
                true
            }
            Action::Bootstrap => {
                tracing::info!("the group has no database: creating it (bootstrap)");
                match self.provision(None).await {
                    Ok(()) => tracing::info!("bootstrap done; starting as the first primary"),
                    Err(e) => {
                        let retry = self.core.decider.bootstrap_failed(Instant::now());
                        tracing::error!(error = %e, retry_in = ?retry, "bootstrap failed; giving the lock up so another node can try");
                    }
                }
                true
            }
            Action::CloneFrom { source } => {
                tracing::info!(%source, "cloning the group into the empty data directory");
                match self.provision(Some(source)).await {
                    Ok(()) => {
                        tracing::info!(%source, "clone done; starting as a standby");
                        self.make_standby_of(source);
                        true
                    }
                    Err(e) => {
                        let retry = self.core.decider.clone_failed(Instant::now());
                        tracing::error!(error = %e, %source, retry_in = ?retry, "clone failed; trying again after a pause");
                        false
                    }
                }
            }
            Action::Rewind { source } => self.rewind(source).await,
            Action::RecordDatabase {
                system_id,
                timeline,
                lsn,
            } => {
                self.record_database(system_id, timeline, lsn).await;
                false
            }
            Action::StepDown { candidate } => {
                self.step_down(candidate, obs, versions.switchover).await
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
                if let (Some(session), Some(version)) =
                    (self.zk.session.as_mut(), versions.switchover)
                {
                    if let Err(e) = session.coordinator.update_switchover(None, version).await {
                        tracing::warn!(error = %e, "cannot delete the switchover request");
                    }
                }
                false
            }
            Action::RestartPostgres { primary } => self.restart_in_place(primary).await,
            Action::ReloadConfiguration => self.reload_on_request().await,
            Action::WipeDataDirectory { reason } => self.wipe_data_dir(obs, reason).await,
            Action::FinishNodeRequest => self.end_node_request(None, versions).await,
            Action::PassRestartOn { next, then } => self.pass_restart_on(next, then).await,
            Action::DropNodeRequest { reason } => {
                self.end_node_request(Some(reason), versions).await
            }
        }
    }

    /// Runs a provisioning step, stopping it (and the tool) on shutdown, then re-reads the
    /// control data.
    pub(super) async fn provision(
        &mut self,
        source: Option<NodeId>,
    ) -> Result<(), ProvisioningError> {
        let shutdown = self.shutdown.clone();
        let provisioner = self.pg.provisioner.clone();
        let step = async {
            match source {
                None => provisioner.bootstrap().await,
                Some(source) => provisioner.clone_from(source).await,
            }
        };
        let result = tokio::select! {
            result = keeping_alive(&mut self.systemd.notifier, step) => result,
            () = shutdown.cancelled() => Ok(()),
        };
        self.refresh_control().await;
        result
    }

    pub(super) fn make_standby_of(&mut self, upstream: NodeId) {
        let conninfo = self.pg.client.conninfo_for(upstream);
        // No slot yet: the next round starts the standby with its slot once the upstream
        // publishes it.
        let source = data_dir::StandbySource {
            conninfo: &conninfo,
            slot: None,
        };
        if let Err(e) = data_dir::make_standby(&self.config.postgres, Some(source)) {
            tracing::error!(error = %e, "cannot configure the data directory as a standby");
        }
    }

    /// Rejoin of a former primary: pg_rewind to the new primary, then start as its standby.
    pub(super) async fn rewind(&mut self, source: NodeId) -> bool {
        tracing::info!(%source, "rejoining as a standby of the new primary: checking for divergence with pg_rewind");
        let shutdown = self.shutdown.clone();
        let Some(control) = self.pg.control else {
            return false;
        };
        let provisioner = self.pg.provisioner.clone();
        let rewind = provisioner.rewind(source, control.timeline, control.clean_shutdown);
        let result = tokio::select! {
            result = keeping_alive(&mut self.systemd.notifier, rewind) => result,
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
                self.make_standby_of(source);
                self.refresh_control().await;
                true
            }
            Err(e) => {
                if data_dir::kind(&self.config.postgres) == DataDirKind::Damaged {
                    tracing::error!(error = %e, marker = %data_dir::rewind_marker(&self.config.postgres).display(), "pg_rewind stopped after it began changing the data directory: it is left unusable and never started (re-clone it: zgresctl reinit, or provisioning.reclone_on_rewind_failure)");
                } else {
                    tracing::error!(error = %e, "pg_rewind failed before changing anything; it is tried again (or the directory cloned again, with provisioning.reclone_on_rewind_failure)");
                }
                self.core.decider.rewind_failed(Instant::now());
                false
            }
        }
    }

    /// Planned hand-over to `candidate`: fast stop (standbys receive all WAL), record where
    /// WAL ended, release the lock.
    pub(super) async fn step_down(
        &mut self,
        candidate: NodeId,
        obs: &Observation,
        version: Option<i32>,
    ) -> bool {
        let (Some(mut request), Some(version)) = (obs.switchover.clone(), version) else {
            return false;
        };
        self.drain_before_step_down().await;
        tracing::warn!(%candidate, "switchover: stopping postgres to hand over");
        self.pg
            .process
            .stop(false, self.config.timing.stop_timeout)
            .await;
        self.pg.client.disconnect();
        self.refresh_control().await;
        let Some(session) = self.zk.session.as_mut() else {
            return true;
        };
        match self.pg.control.filter(|c| c.clean_shutdown) {
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
        if let Err(e) = session.coordinator.release_lock(false).await {
            tracing::warn!(error = %e, "cannot release the lock");
        }
        true
    }

    /// Before a switchover's fast stop: withdraws this node's `/conn` and waits
    /// `timing.switchover_drain`, so that zgres-sync disables the writer entries first.
    /// pgbouncer then has no login under way to the stopping server; a login it refuses would
    /// make pgbouncer wait `server_login_retry` before connecting to the new primary too.
    /// The node stays the primary meanwhile (its fence and lock are untouched).
    pub(super) async fn drain_before_step_down(&mut self) {
        let drain = self.config.timing.switchover_drain;
        let Some(session) = self.zk.session.as_mut() else {
            return;
        };
        if drain.is_zero() {
            return;
        }
        match session.coordinator.set_conn(None).await {
            Ok(()) => {
                self.out.conn = None;
                tracing::info!(
                    ?drain,
                    "switchover: connection info withdrawn; draining before the stop"
                );
                tokio::time::sleep(drain).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "switchover: cannot withdraw the connection info; stopping without a drain")
            }
        }
    }

    /// Whether PostgreSQL is not running, or runs as a standby (asked again: the round's probe
    /// may be a moment old).
    async fn nobody_writes_here(&mut self) -> bool {
        if !self.pg.process.is_running() {
            return true;
        }
        matches!(self.pg.client.probe().await, Ok(probe) if probe.in_recovery)
    }

    /// Deletes the group lock if this session holds it, `quiet`ly (see
    /// [`crate::coordination::Coordinator::release_lock`]) or not; returns whether it did (a
    /// failure is logged: the lock then goes with the session).
    async fn release_lock(&mut self, quiet: bool) -> bool {
        let Some(session) = self.zk.session.as_mut() else {
            return false;
        };
        match session.coordinator.release_lock(quiet).await {
            Ok(released) => released,
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the group lock");
                false
            }
        }
    }

    pub(super) fn start(&mut self) -> bool {
        self.pg.client.forget_timeline();
        let kind = data_dir::kind(&self.config.postgres);
        if kind == DataDirKind::Damaged {
            // The core never asks; this guards the shell's own restarts too.
            tracing::error!(
                "not starting postgres: an interrupted pg_rewind left the data directory unusable"
            );
            return false;
        }
        let standby = kind == DataDirKind::Standby;
        let floors = match self.pg.control.and_then(|c| c.hot_standby_limits) {
            Some(limits) if standby => limits.by_name().to_vec(),
            _ => Vec::new(),
        };
        self.pg.process.set_standby_floors(floors);
        match self.pg.process.start() {
            Ok(()) => {
                // A fresh postmaster has no pending restart; what it rejected is worth a look.
                self.live.postgres_pending_restart.clear();
                self.live.settings_check_at = Some(Instant::now());
                self.live.catalog.server_started();
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start postgres");
                false
            }
        }
    }
}

/// Runs `work` while pinging the systemd watchdog, so a long bootstrap, clone or rewind is not
/// mistaken for a hung loop.
pub(super) async fn keeping_alive<F: std::future::Future>(
    notifier: &mut Notifier,
    work: F,
) -> F::Output {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => notifier.keep_alive(),
        }
    }
}
