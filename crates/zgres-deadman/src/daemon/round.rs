//! One observe-decide-act round: probe PostgreSQL, read the group, let the core decide, act
//! and publish; and when the next round is due.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use zgres_schema::documents::{GroupConfig, StandbyOf, SyncMode};
use zgres_schema::{Fetched, NodeId};

use super::act::RequestVersions;
use super::{wall_ms, Daemon};
use crate::callbacks_due::{self, CallbackRole, Running};
use crate::coordination::GroupView;
use crate::data_dir;
use crate::decision::{
    confirmation_wanted, next_round, Action, DataDirKind, LocalPostgres, LockView, Next,
    Observation, Probe, RoundInputs, RoundOutcome, WarningInputs, ROUNDS_AT_ONCE,
};
use crate::group_config::ConfigChange;

/// The least time a probe gets once the restart bound is (nearly) over: enough for a server
/// that is back to answer.
const LAST_PROBE_LEAST: Duration = Duration::from_millis(200);

impl Daemon {
    /// A PostgreSQL already running on our data directory: taken over from its guardian when a
    /// deadman stopped in a paused group left it running; otherwise it was not started by
    /// zgres: stop it, so that the one that runs is under our guardian (for instant crash
    /// detection and fencing). With none running, what a dead one left is killed.
    pub(super) async fn adopt_foreign_postmaster(&mut self) {
        if self.pg.process.pid().is_none() {
            if let Err(e) = self.pg.process.attach(None) {
                tracing::warn!(error = %e, "cannot take over PostgreSQL from its guardian; stopping it as foreign");
            }
        }
        let ours = self.pg.process.pid().map(|p| p as i32);
        if let Some(pid) =
            data_dir::foreign_postmaster(&self.config.postgres).filter(|&p| Some(p) != ours)
        {
            crate::postgres_process::stop_foreign(pid, self.config.timing.stop_timeout).await;
            self.refresh_control().await;
        }
        if self.pg.process.pid().is_none()
            && data_dir::foreign_postmaster(&self.config.postgres).is_none()
        {
            self.kill_leftover_backends();
        }
    }

    /// No postmaster runs on our data directory: kills the backends a dead one may have left
    /// (see [`crate::fence::instance::kill_leftovers`]).
    fn kill_leftover_backends(&self) {
        let Ok(dir) = std::fs::canonicalize(&self.config.postgres.data_dir) else {
            return;
        };
        let killed = crate::fence::instance::kill_leftovers(&dir);
        if killed > 0 {
            tracing::warn!(
                killed,
                data_dir = %dir.display(),
                "killed PostgreSQL processes left running by a postmaster that died (its deadman and fence keeper were killed together)"
            );
        }
    }

    /// Re-reads `pg_controldata` (after PostgreSQL stopped or the directory was provisioned).
    pub(super) async fn refresh_control(&mut self) {
        self.pg.control = match data_dir::kind(&self.config.postgres) {
            DataDirKind::Empty => None,
            _ => match data_dir::control_data(&self.config.postgres).await {
                Ok(control) => Some(control),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read pg_controldata");
                    self.pg.control
                }
            },
        };
    }

    /// The standbys streaming from us, read only when the core may hand over: this node holds
    /// the lock as a running primary and a switchover request waits for its step-down.
    async fn streaming_for_request(
        &mut self,
        view: &GroupView,
        probe: Option<&Probe>,
    ) -> Option<BTreeSet<NodeId>> {
        let waiting = view
            .switchover
            .valid()
            .is_some_and(|(s, _)| s.stopped_lsn.is_none());
        let primary = probe.is_some_and(|p| !p.in_recovery);
        if !(waiting && primary && view.lock == LockView::Ours) {
            return None;
        }
        match self.pg.client.replication().await {
            Ok((connected, _, _)) => Some(
                connected
                    .into_iter()
                    .filter(|c| c.streaming)
                    .map(|c| c.node)
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pg_stat_replication for the switchover");
                None
            }
        }
    }

    /// One observe-decide-act round.
    pub(super) async fn round(&mut self) -> Next {
        let running = self.pg.process.observe();
        let probe = if running {
            // A server that stopped answering gets until the restart bound ends, not a whole
            // query timeout past it (with a little time to answer if it is back).
            let probed = match self.core.decider.restart_bound_ends() {
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    self.pg
                        .client
                        .probe_within(left.max(LAST_PROBE_LEAST))
                        .await
                }
                None => self.pg.client.probe().await,
            };
            match probed {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::debug!(error = %e, "postgres probe failed");
                    None
                }
            }
        } else {
            self.pg.client.disconnect();
            self.refresh_control().await;
            None
        };
        self.note_for_callbacks(running, probe.as_ref());
        self.check_settings(probe.is_some()).await;
        if probe.is_some() {
            self.refresh_catalog().await;
        }
        let Some(session) = self.zk.session.as_mut() else {
            return Next::Later;
        };
        let standby_timeline = probe.filter(|p| p.in_recovery).and_then(|p| p.timeline);
        // Read once: nothing between here and the observation changes the directory.
        let data_dir_kind = data_dir::kind(&self.config.postgres);
        let cascades = self.config.tags.replicatefrom.is_some();
        let every_peer = crate::decision::wants_every_peer(running, data_dir_kind, cascades);
        let mut view = match session.coordinator.view(standby_timeline, every_peer).await {
            Ok(view) => view,
            Err(e) if e.session_ended() => {
                tracing::error!(
                    "ZooKeeper session lost; trying to resume it, else opening a new one"
                );
                self.end_session();
                return Next::Now;
            }
            Err(e) => {
                // Once per outage at warning level: a disconnected client fails every round.
                if self.zk.view_failing {
                    tracing::debug!(error = %e, "cannot read the group from ZooKeeper; deciding nothing this round");
                } else {
                    tracing::warn!(error = %e, "cannot read the group from ZooKeeper; deciding nothing until it can");
                }
                self.zk.view_failing = true;
                GroupView::unknown()
            }
        };
        if view.lock != LockView::Unknown && self.zk.view_failing {
            self.zk.view_failing = false;
            tracing::info!("reading the group from ZooKeeper again");
        }
        if view.lock != LockView::Unknown {
            self.observe_config(std::mem::take(&mut view.config));
            self.follow_cluster_settings().await;
        }
        if view.lock == LockView::Ours {
            self.publish_catalog().await;
        }
        let streaming = self.streaming_for_request(&view, probe.as_ref()).await;
        let recovering_from = self
            .recovering_from(running && probe.is_none() && data_dir_kind == DataDirKind::Standby)
            .await;
        let config = self.core.config_in_force.effective();
        let standby_source = self.standby_source(&config).await;
        let obs = Observation {
            now: Instant::now(),
            lock: view.lock,
            db_id: std::mem::take(&mut view.db_id),
            config,
            peers: std::mem::take(&mut view.peers),
            postgres: LocalPostgres {
                running,
                data_dir: data_dir_kind,
                probe,
                control: self
                    .pg
                    .control
                    .filter(|_| !running)
                    .map(|c| (c.timeline, c.checkpoint)),
                streaming,
                recovering_from,
            },
            vetoed: self
                .live
                .plugins
                .as_ref()
                .is_some_and(|p| !p.outcome.borrow().vetoes.is_empty()),
            group_timeline: view.group_timeline,
            timeline_starts: std::mem::take(&mut view.timeline_starts),
            switchover: view.switchover.valid().map(|(s, _)| s.clone()),
            wall_ms: wall_ms(),
            sync: view.sync.clone().map(|(s, _)| s),
            node_request: view.node_request.clone().map(|(r, _)| r),
            standby_source,
            quiet_release: view.quiet_release,
        };
        if self.core.paused != Some(obs.config.paused) && obs.lock != LockView::Unknown {
            if obs.config.paused {
                tracing::warn!("the group is paused: no automatic action until it is resumed");
            } else if self.core.paused.is_some() {
                tracing::info!("the group is resumed: automatic actions are back on");
            }
            self.core.paused = Some(obs.config.paused);
        }
        let vetoes = self
            .live
            .plugins
            .as_ref()
            .map(|p| p.outcome.borrow().vetoes.clone())
            .unwrap_or_default();
        let inputs = RoundInputs {
            vetoes: &vetoes,
            warnings: WarningInputs {
                config_problem: self.core.config_in_force.problem(),
                synchronous_degraded: obs.lock == LockView::Ours
                    && obs.config.synchronous_mode != SyncMode::Off
                    && self.core.sync_keeper.degraded(),
            },
        };
        self.core.on_shutdown = self.core.decider.shutdown_plan(&obs);
        let decision = self.core.decider.decide_round(&obs, inputs);
        self.core.schedule.wake_at = decision.wake_at;
        if decision.disarm_fence && self.fence.is_armed() {
            self.fence.disarm();
        }
        let actions = decision.actions;
        let why_not = decision.ineligible;
        // Once per new reason at info: "why does no replica take over?" has an answer in the
        // log (a reason that persists is not repeated).
        if why_not != self.core.not_contending {
            if let Some(why) = why_not {
                tracing::info!(?why, "not contending for the free lock");
            }
            self.core.not_contending = why_not;
        }
        let force = actions.contains(&Action::PublishState);
        // One state per round: published to ZooKeeper, fed to plugins, served by the API.
        let state = self.node_state(&obs, decision.published);
        self.publish(&state, force).await;
        let mut again = false;
        let versions = RequestVersions {
            switchover: view.switchover.valid().map(|(_, v)| *v),
            node_request: view.node_request.valid().map(|(_, v)| *v),
        };
        for action in actions {
            again |= self.execute(action, &obs, versions).await;
        }
        if let Some(session) = &self.zk.session {
            let wanted = confirmation_wanted(obs.lock, self.fence.is_armed());
            session.confirm_wanted.send_if_modified(|w| {
                let changed = *w != wanted;
                *w = wanted;
                changed
            });
        }
        let sync_progress = self
            .keep_synchronous(&obs, view.sync, decision.sync_eligible)
            .await;
        self.keep_slots(&obs).await;
        self.update_status(&obs, state);
        let asked = next_round(&RoundOutcome {
            act_again: again,
            sync_progress,
            ineligible: why_not,
            lock: obs.lock,
            postgres_running: self.pg.process.is_running(),
            postgres_answered: obs.postgres.probe.is_some(),
        });
        let pacing = &mut self.core.schedule.pacing;
        let next = pacing.pace(asked);
        if pacing.began_pacing() {
            tracing::warn!(
                rounds = ROUNDS_AT_ONCE,
                "every round for a while asked to run again at once (an action failing the same way each time?); pacing the loop until one does not"
            );
        }
        self.core.last_observation = Some(obs);
        next
    }

    /// Calls the callback the core says this view of PostgreSQL is due (`running` false:
    /// it stopped).
    pub(super) fn note_for_callbacks(&mut self, running: bool, probe: Option<&Probe>) {
        let now = match (running, probe) {
            (false, _) => Some(Running::Stopped),
            (true, Some(p)) if p.in_recovery => Some(Running::As(CallbackRole::Replica)),
            (true, Some(_)) => Some(Running::As(CallbackRole::Primary)),
            (true, None) => None,
        };
        let (event, seen) = callbacks_due::due(self.out.seen, now);
        self.out.seen = seen;
        if let Some((action, role)) = event {
            tracing::debug!(callback = action.name(), role = role.name(), "callback due");
            self.out.callbacks.fire(action, role);
        }
    }

    /// Takes this round's read of `/config` into account and logs a change of its readability.
    pub(super) fn observe_config(&mut self, read: Fetched<zgres_schema::documents::GroupConfig>) {
        match self.core.config_in_force.observe(read) {
            ConfigChange::None => {}
            ConfigChange::Unreadable(problem) => {
                tracing::error!(%problem, "the group config is unreadable; behaviour unchanged")
            }
            ConfigChange::Readable => tracing::info!("the group config is readable again"),
        }
    }

    /// For a running standby that does not answer (`recovering`): the furthest its WAL can
    /// come from without streaming (see [`crate::decision::LocalPostgres::recovering_from`]):
    /// the newest segment written in its `pg_wal`, or its last checkpoint when further.
    async fn recovering_from(&self, recovering: bool) -> Option<zgres_schema::Lsn> {
        if !recovering {
            return None;
        }
        let postgres = &self.config.postgres;
        let written = crate::local_wal::written_end(&postgres.data_dir.join("pg_wal"));
        let checkpoint = data_dir::control_data(postgres)
            .await
            .ok()
            .map(|c| c.checkpoint);
        written.max(checkpoint)
    }

    /// What this group's standby leader streams from (see
    /// [`crate::decision::Observation::standby_source`]): the configured address, or the lock
    /// holder of the named group. A group naming itself has no source (the core publishes a
    /// warning while there is none).
    async fn standby_source(&mut self, config: &GroupConfig) -> Option<NodeId> {
        match config.standby_cluster.as_ref()? {
            StandbyOf::Node(node) => Some(*node),
            StandbyOf::Group(group) if *group == self.config.group => None,
            StandbyOf::Group(group) => {
                let session = self.zk.session.as_mut()?;
                match session.coordinator.lock_holder_of(group).await {
                    Ok(holder) => holder,
                    Err(e) => {
                        tracing::debug!(%group, error = %e, "cannot read the source group's lock");
                        None
                    }
                }
            }
        }
    }
}
