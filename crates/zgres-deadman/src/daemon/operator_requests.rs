//! Carrying out an operator's request to this node (`/request/{GROUP}_{NODE}`, from
//! `zgresctl restart`, `reload` and `reinit`), as the core decided it: restart in place,
//! reload, wipe for a reinit, and deleting the request.

use std::time::{Duration, Instant};

use super::act::{keeping_alive, RequestVersions};
use super::{Daemon, PostgresEdge};
use crate::decision::{LockView, Observation};
use zgres_schema::documents::{NodeAction, NodeRequest};
use zgres_schema::NodeId;

/// How long a requested restart waits for PostgreSQL to answer again before the request
/// counts as carried out anyway.
const RESTART_ANSWER_WAIT: Duration = Duration::from_secs(30);

impl Daemon {
    /// Hands a rolling restart on to `next` (which restarts at once, then passes it to the
    /// first of `then`). Returns whether to look again at once.
    pub(super) async fn pass_restart_on(&mut self, next: NodeId, then: Vec<NodeId>) -> bool {
        let request = NodeRequest {
            action: NodeAction::Restart,
            requested_at_ms: super::wall_ms(),
            scheduled_at_ms: None,
            then,
        };
        let Some(session) = self.zk.session.as_mut() else {
            return false;
        };
        match session.coordinator.request_node(next, &request).await {
            Ok(true) => tracing::info!(%next, "rolling restart: this node is back; handed on"),
            Ok(false) => {
                tracing::warn!(%next, "rolling restart: the next node already has a pending request; the rolling restart stops here")
            }
            Err(e) => {
                tracing::warn!(%next, error = %e, "rolling restart: cannot hand on; the rolling restart stops here")
            }
        }
        true
    }

    /// Stops PostgreSQL and empties the data directory (an operator's reinit, or WAL the
    /// standby needs gone from the primary; `reason` is logged); the next rounds clone it
    /// again. Checked once more here: never on a node holding the lock or running as a
    /// primary, whatever the core said.
    pub(super) async fn wipe_data_dir(&mut self, obs: &Observation, reason: &str) -> bool {
        let primary = obs.lock == LockView::Ours
            || self.fence.is_armed()
            || obs.postgres.probe.is_some_and(|p| !p.in_recovery);
        if primary {
            tracing::error!("not wiping the data directory: this node is or may be the primary");
            return false;
        }
        tracing::warn!("{reason}");
        self.fast_stop_fed().await;
        if let Err(e) = self.pg.provisioner.empty_data_dir() {
            tracing::error!(error = %e, "cannot empty the data directory");
        }
        self.refresh_control().await;
        true
    }

    /// Restarts PostgreSQL in place (an operator's request): a fast stop, then a start in the
    /// same role. The lock is never released; a primary starts again only if the fence can be
    /// armed (the session confirmed recently enough), else the next round's usual rules for a
    /// primary that is down take over (restart within `primary_restart_timeout`, or hand over).
    pub(super) async fn restart_in_place(&mut self, primary: bool) -> bool {
        tracing::warn!(primary, "restarting postgres in place, as requested");
        self.fast_stop_fed().await;
        if primary && !self.fence.arm() {
            tracing::warn!("not starting as primary again: the ZooKeeper session is not confirmed recently enough");
            return true;
        }
        self.start();
        // Done when it is back (answering; a standby also streaming), so that the request's
        // deletion tells the operator, and a rolling restart, that this node is back: a
        // rolling restart never restarts the primary while a replica still catches up.
        // Bounded, after which the usual rounds take over whatever state it is in.
        let back = answers_again(&mut self.pg, !primary);
        if keeping_alive(&mut self.systemd.notifier, back).await {
            tracing::info!(primary, "postgres restarted and back");
        }
        true
    }

    /// A fast stop of PostgreSQL with the systemd watchdog kept fed (a slow stop, plus what
    /// follows it in a request, may outlast the watchdog interval), then a fresh read of
    /// `pg_controldata`: a standby started right after takes its floors (the primary's
    /// max_connections, ...) from it, and the copy read at the last stop may predate a change
    /// the primary made since (a standby started below its primary pauses its recovery).
    async fn fast_stop_fed(&mut self) {
        let timeout = self.config.timing.stop_timeout;
        keeping_alive(
            &mut self.systemd.notifier,
            self.pg.process.stop(false, timeout),
        )
        .await;
        self.pg.client.disconnect();
        self.refresh_control().await;
    }

    /// Re-reads the configuration file through the same path as `systemctl reload` (the
    /// SIGHUP task reads and checks it; a valid one reaches the loop, an invalid one is logged
    /// and the running configuration stays), and has a running PostgreSQL re-read its files.
    /// The binary always answers SIGHUP: `main` installs the handler before the loop starts.
    pub(super) async fn reload_on_request(&mut self) -> bool {
        tracing::info!("reloading the configuration, as requested");
        if let Err(e) = nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP) {
            tracing::error!(error = %e, "cannot signal this process to reload");
        }
        if self.pg.process.is_running() {
            match self.pg.client.reload().await {
                // What it made of its files (rejected lines, parameters now waiting for a
                // restart) is looked at once it has re-read them.
                Ok(()) => {
                    self.live.settings_check_at =
                        Some(Instant::now() + super::reload::SETTINGS_CHECK_DELAY)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask postgres to reload its configuration")
                }
            }
        }
        false
    }

    /// Deletes the request: carried out, or dropped for `reason`.
    pub(super) async fn end_node_request(
        &mut self,
        dropped: Option<&'static str>,
        versions: RequestVersions,
    ) -> bool {
        match dropped {
            Some(reason) => {
                tracing::error!(reason, "dropping the operator's request to this node")
            }
            None => tracing::info!("done: the operator's request to this node"),
        }
        if let Some(session) = self.zk.session.as_mut() {
            let version = versions.node_request;
            if let Err(e) = session.coordinator.delete_node_request(version).await {
                tracing::warn!(error = %e, "cannot delete the request to this node");
            }
        }
        false
    }
}

/// Waits, up to [`RESTART_ANSWER_WAIT`], until the PostgreSQL just started answers and, for a
/// standby (`streaming`), until its WAL receiver streams; false if it did not (or exited).
async fn answers_again(pg: &mut PostgresEdge, streaming: bool) -> bool {
    let deadline = Instant::now() + RESTART_ANSWER_WAIT;
    while pg.process.is_running() && Instant::now() < deadline {
        let back = match pg.client.probe().await {
            Ok(_) if streaming => pg.client.wal_receiver_streaming().await.unwrap_or(false),
            Ok(_) => true,
            Err(_) => false,
        };
        if back {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
