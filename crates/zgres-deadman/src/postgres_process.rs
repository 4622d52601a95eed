//! PostgreSQL as a child process of the deadman.
//!
//! The postmaster is our own child, so its exit is seen at once (`waitpid`, not polling a pid
//! that could be a zombie or reused). It runs in its own process group so a fence can kill it
//! and every backend in one `killpg`, and through `setpriv --pdeathsig KILL` so the kernel kills
//! it if the deadman dies.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::cluster_settings::ClusterSettings;
use crate::config::PostgresConfig;
use crate::fence::FenceClock;

/// `setpriv` options (before `--`) and extra environment that run a program as `config`'s
/// PostgreSQL user (when a switch is needed), killed by the kernel if the deadman dies.
pub fn setpriv_prefix(config: &PostgresConfig) -> (Vec<String>, Vec<(String, String)>) {
    let mut args = vec!["--pdeathsig=KILL".to_owned()];
    let mut env = Vec::new();
    if let Some(user) = config.user_to_switch_to() {
        args.extend([
            format!("--reuid={}", user.uid),
            format!("--regid={}", user.gid),
            "--init-groups".to_owned(),
        ]);
        env.push(("HOME".to_owned(), user.dir.display().to_string()));
    }
    (args, env)
}

/// Failed to start PostgreSQL. Retryable: the next loop tries again.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The postmaster could not be spawned.
    #[error("cannot start postgres for {data_dir}: {source}")]
    Spawn {
        /// The data directory.
        data_dir: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The parameters file could not be written (see [`crate::parameters_file`]).
    #[error("cannot write postgres.parameters for PostgreSQL: {0}")]
    Parameters(#[from] crate::data_dir::DataDirError),
}

/// The supervised postmaster.
#[derive(Debug)]
pub struct PostgresProcess {
    config: PostgresConfig,
    fence: Arc<FenceClock>,
    child: Option<Postmaster>,
    last_exit: Option<ExitStatus>,
    /// The group's settings written with the node's own.
    cluster: ClusterSettings,
    /// A standby's floors for the parameters hot standby needs at least as high as the
    /// primary's, fixed at each start.
    standby_floors: Vec<(&'static str, u64)>,
    /// The postmaster exited since the round last looked ([`PostgresProcess::observe`]):
    /// reaped in the middle of a round, its exit must still wake the loop.
    unseen_exit: bool,
}

/// Our child postmaster: spawned by this image, or adopted from the image that re-executed
/// into this one (still our child, known by pid, its exit reported by a waiting thread).
#[derive(Debug)]
enum Postmaster {
    Spawned(Child),
    Adopted {
        pid: u32,
        exit: tokio::sync::watch::Receiver<Option<ExitStatus>>,
    },
}

impl Postmaster {
    fn id(&self) -> Option<u32> {
        match self {
            Postmaster::Spawned(child) => child.id(),
            Postmaster::Adopted { pid, exit } => exit.borrow().is_none().then_some(*pid),
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        match self {
            Postmaster::Spawned(child) => child.try_wait().ok().flatten(),
            Postmaster::Adopted { exit, .. } => *exit.borrow(),
        }
    }

    /// Resolves with its exit status (cancel-safe).
    async fn wait(&mut self) -> Option<ExitStatus> {
        match self {
            Postmaster::Spawned(child) => child.wait().await.ok(),
            Postmaster::Adopted { exit, .. } => {
                exit.wait_for(Option::is_some).await.ok().and_then(|s| *s)
            }
        }
    }
}

impl PostgresProcess {
    /// A supervisor for `config`'s data directory; nothing runs yet.
    pub fn new(config: PostgresConfig, fence: Arc<FenceClock>) -> Self {
        PostgresProcess {
            config,
            fence,
            child: None,
            last_exit: None,
            cluster: ClusterSettings::default(),
            standby_floors: Vec::new(),
            unseen_exit: false,
        }
    }

    /// Starts the postmaster (it still has to finish recovery before it answers).
    ///
    /// `postgres.parameters` go to the parameters file first ([`crate::parameters_file`]); only
    /// the port, which zgres manages, is on the command line.
    ///
    /// # Errors
    /// [`StartError`] when the parameters file cannot be written or the process cannot be
    /// spawned.
    pub fn start(&mut self) -> Result<(), StartError> {
        if self.is_running() {
            return Ok(());
        }
        self.write_settings_files()?;
        let (prefix, env) = setpriv_prefix(&self.config);
        // Only the allowed environment: not the password variable the deadman was given.
        let mut command = zgres_process::command("setpriv");
        command
            .args(prefix)
            .envs(env)
            .arg("--")
            .arg(self.config.bin_dir.join("postgres"))
            .arg("-D")
            .arg(&self.config.data_dir)
            .arg("-c")
            .arg(format!("port={}", self.config.port));
        command.stdin(Stdio::null()).process_group(0);
        let child = command.spawn().map_err(|source| StartError::Spawn {
            data_dir: self.config.data_dir.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or(0) as i32;
        self.fence.set_target(pid);
        tracing::info!(pid, "started postgres");
        self.child = Some(Postmaster::Spawned(child));
        Ok(())
    }

    /// Takes over the postmaster `pid`, which a previous image of this process started and
    /// which is still its child (see [`crate::handover`]). A thread waits for its exit, so it
    /// is seen at once as for a postmaster this image started.
    ///
    /// # Errors
    /// When the waiting thread cannot be started.
    pub fn adopt(&mut self, pid: u32) -> std::io::Result<()> {
        let (report, exit) = tokio::sync::watch::channel(None);
        std::thread::Builder::new()
            .name("postmaster-wait".into())
            .spawn(move || {
                use nix::sys::wait::{waitpid, WaitStatus};
                use std::os::unix::process::ExitStatusExt;
                let status = loop {
                    match waitpid(Pid::from_raw(pid as i32), None) {
                        Ok(WaitStatus::Exited(_, code)) => break ExitStatus::from_raw(code << 8),
                        Ok(WaitStatus::Signaled(_, signal, _)) => {
                            break ExitStatus::from_raw(signal as i32)
                        }
                        Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                        // Not our child (any more): report it gone.
                        Err(_) => break ExitStatus::from_raw(0),
                    }
                };
                let _ = report.send(Some(status));
            })?;
        self.fence.set_target(pid as i32);
        tracing::info!(pid, "adopted the running postgres");
        self.child = Some(Postmaster::Adopted { pid, exit });
        Ok(())
    }

    /// Replaces the group's settings this node writes; the files are written by
    /// [`PostgresProcess::write_settings_files`] now, or by the next start. Returns whether
    /// they differ from the ones in force.
    pub fn set_cluster(&mut self, cluster: ClusterSettings) -> bool {
        let changed =
            self.cluster.parameters != cluster.parameters || self.cluster.pg_hba != cluster.pg_hba;
        self.cluster = cluster;
        changed
    }

    /// Sets the floors of the next start: for a standby, its primary's values from
    /// `pg_controldata`; none for a primary.
    pub fn set_standby_floors(&mut self, floors: Vec<(&'static str, u64)>) {
        self.standby_floors = floors;
    }

    /// The group's settings this node writes, and what it left out.
    pub fn cluster(&self) -> &ClusterSettings {
        &self.cluster
    }

    /// Writes the parameters file and the `pg_hba.conf` block; whether either changed.
    ///
    /// # Errors
    /// [`crate::data_dir::DataDirError`] naming the file that cannot be written.
    pub fn write_settings_files(&self) -> Result<bool, crate::data_dir::DataDirError> {
        let parameters = crate::parameters_file::write(
            &self.config,
            &self.cluster.parameters,
            &self.standby_floors,
        )?;
        let hba = crate::hba_block::write(&self.config, &self.cluster.pg_hba)?;
        Ok(parameters || hba)
    }

    /// Replaces `postgres.parameters` (a reload); the parameters file is written by the
    /// caller now, or by the next [`PostgresProcess::start`].
    pub fn set_parameters(&mut self, parameters: std::collections::BTreeMap<String, String>) {
        self.config.parameters = parameters;
    }

    /// Whether the postmaster runs; reaps it if it exited (and logs how).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            None => true,
            Some(status) => {
                self.reaped(status);
                false
            }
        }
    }

    /// Whether the postmaster runs, as a round sees it at its start: an exit is seen now, so
    /// [`PostgresProcess::exited`] no longer reports it.
    pub fn observe(&mut self) -> bool {
        let running = self.is_running();
        self.unseen_exit = false;
        running
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.unseen_exit = true;
        if let Some(child) = self.child.take() {
            // Backends may outlive a killed postmaster for a moment: take them down too.
            if let Some(pid) = child.id() {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        self.fence.set_target(0);
        if status.success() {
            tracing::info!("postgres stopped cleanly");
        } else {
            tracing::warn!(%status, "postgres exited");
        }
        self.last_exit = Some(status);
    }

    /// The postmaster's pid, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Postmaster::id)
    }

    /// Resolves when the postmaster exits, or at once when it exited (and was reaped, e.g. by
    /// [`PostgresProcess::is_running`] in the middle of a round) since the last
    /// [`PostgresProcess::observe`]; never while it runs or after its exit was observed.
    /// Cancel-safe.
    pub async fn exited(&mut self) {
        if self.unseen_exit {
            self.unseen_exit = false;
            return;
        }
        let status = match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => std::future::pending().await,
        };
        if let Some(status) = status {
            self.reaped(status);
        }
    }

    /// Stops PostgreSQL: `immediate` kills the whole process group at once; otherwise a fast
    /// shutdown (SIGINT: active transactions are rolled back, WAL is flushed and sent to
    /// replicas) that becomes a kill after `timeout`. Returns when it has exited.
    pub async fn stop(&mut self, immediate: bool, timeout: Duration) {
        let Some(pid) = self.pid() else {
            self.child = None;
            return;
        };
        let group = Pid::from_raw(pid as i32);
        if immediate {
            let _ = killpg(group, Signal::SIGKILL);
        } else {
            let _ = nix::sys::signal::kill(group, Signal::SIGINT);
        }
        let wait = async {
            if let Some(child) = self.child.as_mut() {
                let _ = child.wait().await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            tracing::warn!(?timeout, "postgres did not stop in time; killing it");
            let _ = killpg(group, Signal::SIGKILL);
        }
        let status = match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => None,
        };
        if let Some(status) = status {
            self.reaped(status);
        }
    }
}

/// Stops a postmaster this process did not start (found running on our data directory) with
/// a fast shutdown, waiting up to `timeout` for it to go, so that the one that runs next is our
/// child (for instant crash detection and fencing). A process that is already gone is fine.
pub async fn stop_foreign(pid: i32, timeout: Duration) {
    tracing::warn!(
        pid,
        "stopping the PostgreSQL we did not start, to run it as our child"
    );
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGINT);
    let deadline = tokio::time::Instant::now() + timeout;
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A "postmaster" that only sleeps, in a data directory of its own.
    fn fake(dir: &std::path::Path) -> PostgresProcess {
        let program = dir.join("postgres");
        std::fs::write(&program, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("postgresql.conf"), "").unwrap();
        let config = crate::config::test_config::postgres_in(dir);
        PostgresProcess::new(config, Arc::new(FenceClock::new(Duration::from_secs(5))))
    }

    /// Regression (found by the failover bench: a crashed primary sometimes restarted a whole
    /// loop interval late): an exit reaped in the middle of a round, by a later `is_running`,
    /// still wakes the loop's wait; once a round observed it, it does not again.
    #[tokio::test]
    async fn an_exit_reaped_in_the_middle_of_a_round_still_wakes_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = fake(dir.path());
        process.start().unwrap();
        assert!(process.observe(), "running at the round's start");
        let pid = process.pid().unwrap();
        killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        // Later in the same round something asks again and reaps it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process.is_running() {
            assert!(std::time::Instant::now() < deadline, "never exited");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The loop's wait: it must resolve (without the fix it never did).
        tokio::time::timeout(Duration::from_secs(10), process.exited())
            .await
            .expect("the exit reaped mid-round wakes the loop");
        // The next round sees it; after that the wait is for a new exit only.
        assert!(!process.observe());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), process.exited())
                .await
                .is_err(),
            "an exit already seen does not wake the loop again"
        );
    }
}
