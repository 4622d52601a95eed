//! Opening, resuming and ending the ZooKeeper session, and what runs beside it (the fence
//! heartbeat).

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Daemon, DaemonError};
use crate::coordination::CoordinationError;
use crate::coordination::{heartbeat, Coordinator};

/// One ZooKeeper session and the tasks that live as long as it.
pub(super) struct Session {
    pub(super) coordinator: Coordinator,
    pub(super) heartbeat: JoinHandle<()>,
    /// Whether the heartbeat should confirm the session for the fence: while the lock is ours
    /// or the fence is armed (set every round; the heartbeat is woken only when it changes).
    pub(super) confirm_wanted: watch::Sender<bool>,
}

/// Why opening a session failed: retry, or stop the daemon.
pub(super) enum ConnectError {
    Retry(CoordinationError),
    Fatal(DaemonError),
}

impl Daemon {
    pub(super) async fn connect(&mut self) -> Result<(), ConnectError> {
        let coordinator = Coordinator::connect(
            &self.config.zookeeper,
            self.config.group.clone(),
            self.config.node,
            self.fence.clone(),
            self.zk.unreadable_total.clone(),
            self.zk.resume.clone(),
        )
        .await
        .map_err(ConnectError::Retry)?;
        self.zk.resume = None;
        let mut coordinator = coordinator;
        let view = coordinator
            .view(None, false)
            .await
            .map_err(ConnectError::Retry)?;
        let theirs = view.db_id.valid().copied();
        if let (Some(theirs), Some(ours)) = (theirs, self.pg.control.map(|c| c.system_id)) {
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
        // The client's pings confirm the session every 1/5 of its timeout; the heartbeat only
        // fills a gap of a third of the fence budget, leaving the next third for its answer
        // before the graceful shutdown would begin.
        let stale_after = self.fence.budget() / 3;
        let (confirm_wanted, wanted) = watch::channel(true);
        let heartbeat = tokio::spawn(heartbeat(
            coordinator.session(),
            coordinator.lock_path(),
            coordinator.session_fence(),
            stale_after,
            wanted,
        ));
        self.out.state = None;
        self.out.conn = None;
        self.zk.session = Some(Session {
            coordinator,
            heartbeat,
            confirm_wanted,
        });
        Ok(())
    }

    pub(super) fn end_session(&mut self) {
        if let Some(session) = self.zk.session.take() {
            session.heartbeat.abort();
            self.zk.resume = Some(session.coordinator.session_info());
        }
    }
}
