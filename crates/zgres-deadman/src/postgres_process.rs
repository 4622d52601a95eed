//! PostgreSQL as the deadman runs it.
//!
//! The postmaster is the child of its guardian ([`crate::guardian`]), which reports its exit at
//! once (its own `waitpid`, not polling a pid that could be a zombie or reused). It runs in its
//! own process group, and a kill takes that group and every process of the instance outside it
//! (each backend leads a group of its own: [`crate::fence::instance`]), and through
//! `setpriv --pdeathsig KILL` so the kernel kills it if the guardian dies, which it does with
//! the deadman (unless a paused shutdown detached it).

use std::process::ExitStatus;

use crate::fence::instance::KnownInstance;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cluster_settings::ClusterSettings;
use crate::config::PostgresConfig;
use crate::fence::FenceClock;
use crate::guardian::link::{Guarded, GuardedCommand, LinkError};

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
        /// What failed.
        source: LinkError,
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
    /// The guardian's program: this binary (`/proc/self/exe`), or the deadman's in tests.
    guardian_program: std::path::PathBuf,
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
    /// The running postmaster's data directory as the kernel shows it, for a kill after it
    /// died to still find the backends it left.
    instance: KnownInstance,
}

/// Our postmaster: run by a guardian ([`crate::guardian`]) this image started or connected to,
/// or adopted from an older image that re-executed into this one (still our child, known by
/// pid, its exit reported by a waiting thread).
#[derive(Debug)]
enum Postmaster {
    Guarded(Guarded),
    Adopted {
        pid: u32,
        exit: tokio::sync::watch::Receiver<Option<ExitStatus>>,
    },
}

impl Postmaster {
    fn exit(&self) -> &tokio::sync::watch::Receiver<Option<ExitStatus>> {
        match self {
            Postmaster::Guarded(guarded) => &guarded.exit,
            Postmaster::Adopted { exit, .. } => exit,
        }
    }

    fn id(&self) -> Option<u32> {
        let pid = match self {
            Postmaster::Guarded(guarded) => guarded.pid,
            Postmaster::Adopted { pid, .. } => *pid,
        };
        self.exit().borrow().is_none().then_some(pid)
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        *self.exit().borrow()
    }

    /// Resolves with its exit status (cancel-safe).
    async fn wait(&mut self) -> Option<ExitStatus> {
        let mut exit = self.exit().clone();
        let status = exit.wait_for(Option::is_some).await.ok().and_then(|s| *s);
        status
    }
}

impl PostgresProcess {
    /// A supervisor for `config`'s data directory; nothing runs yet.
    pub fn new(config: PostgresConfig, fence: Arc<FenceClock>) -> Self {
        PostgresProcess {
            config,
            fence,
            guardian_program: "/proc/self/exe".into(),
            child: None,
            last_exit: None,
            cluster: ClusterSettings::default(),
            standby_floors: Vec::new(),
            unseen_exit: false,
            instance: KnownInstance::default(),
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
        let (mut args, mut env) = setpriv_prefix(&self.config);
        // Where the instance's processes will work (the kernel reports a working directory
        // resolved), for a kill to find them even before the postmaster changed into it.
        let resolved = std::fs::canonicalize(&self.config.data_dir)
            .unwrap_or_else(|_| self.config.data_dir.clone());
        env.push((
            crate::fence::instance::MARKER.to_owned(),
            resolved.display().to_string(),
        ));
        args.push("--".to_owned());
        // Behind a check that the guardian still lives once the parent-death signal is set.
        args.extend(crate::guardian::parent_check::checked(vec![
            self.config.bin_dir.join("postgres").display().to_string(),
            "-D".to_owned(),
            self.config.data_dir.display().to_string(),
            "-c".to_owned(),
            format!("port={}", self.config.port),
        ]));
        // Only the allowed environment: not the password variable the deadman was given.
        let command = GuardedCommand {
            program: "setpriv".to_owned(),
            args,
            env,
        };
        let socket = crate::guardian::socket_path(&self.config.data_dir);
        let guarded = crate::guardian::link::spawn(&self.guardian_program, &socket, &command)
            .map_err(|source| StartError::Spawn {
                data_dir: self.config.data_dir.display().to_string(),
                source,
            })?;
        let pid = guarded.pid as i32;
        self.fence.set_target(pid);
        tracing::info!(pid, "started postgres");
        self.child = Some(Postmaster::Guarded(guarded));
        Ok(())
    }

    /// Connects to the guardian of a postmaster running on our data directory, left running by
    /// a deadman stopped while the group was paused, or handed over by a re-execution
    /// (`guardian_pid`: then it is our child). Returns the postmaster's pid, or `None` when no
    /// guardian listens.
    ///
    /// # Errors
    /// [`LinkError`] when something listens on the socket but does not answer as a guardian.
    pub fn attach(&mut self, guardian_pid: Option<u32>) -> Result<Option<u32>, LinkError> {
        let socket = crate::guardian::socket_path(&self.config.data_dir);
        let Some(guarded) = crate::guardian::link::connect(&socket, guardian_pid)? else {
            return Ok(None);
        };
        let pid = guarded.pid;
        self.fence.set_target(pid as i32);
        tracing::info!(pid, guardian = %socket.display(), "took over the running postgres from its guardian");
        self.child = Some(Postmaster::Guarded(guarded));
        Ok(Some(pid))
    }

    /// Lets PostgreSQL outlive this deadman (a paused shutdown): true once its guardian
    /// confirmed; false when there is no guardian to ask or it did not confirm (PostgreSQL then
    /// still dies with the deadman).
    pub async fn detach(&mut self) -> bool {
        match self.child.as_mut() {
            Some(Postmaster::Guarded(guarded)) => guarded.link.detach().await,
            _ => false,
        }
    }

    /// Whether PostgreSQL runs under a guardian.
    pub fn is_guarded(&self) -> bool {
        matches!(
            self.child.as_ref(),
            Some(Postmaster::Guarded(g)) if g.exit.borrow().is_none()
        )
    }

    /// The running guardian's pid when it is our child (for a re-execution's handover).
    pub fn guardian_pid(&self) -> Option<u32> {
        match self.child.as_ref() {
            Some(Postmaster::Guarded(guarded)) => guarded.link.guardian_pid(),
            _ => None,
        }
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

    /// Runs guardians with `program` (a test's path to the deadman binary) instead of this
    /// process's own binary.
    pub fn with_guardian_program(mut self, program: impl Into<std::path::PathBuf>) -> Self {
        self.guardian_program = program.into();
        self
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
        if let Some(pid) = self.pid().filter(|_| running) {
            self.instance.learn(pid as i32);
        }
        self.unseen_exit = false;
        running
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.unseen_exit = true;
        if let Some(child) = self.child.take() {
            // Backends outlive a killed postmaster (each leads a group of its own), a busy one
            // long enough to commit its statement: take them down too.
            if let Some(pid) = child.id() {
                crate::fence::kill_postgres(pid as i32, self.instance.dir(pid as i32));
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
            crate::fence::kill_postgres(pid as i32, self.instance.dir(pid as i32));
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
            crate::fence::kill_postgres(pid as i32, self.instance.dir(pid as i32));
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
