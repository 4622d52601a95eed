//! SIGUSR2: re-execute this binary without a failover (see [`crate::handover`]), and, in the new
//! image, take over what the old one handed over.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::Daemon;
use crate::callbacks_due::{CallbackRole, Running};
use crate::config::PostgresConfig;
use crate::fence::keeper::Keeper;
use crate::fence::{kill_postgres, FenceClock};
use crate::handover::{GuardianHandover, Handover, RunningPostgres, SessionHandover};
use crate::postgres_process::PostgresProcess;

/// What re-executing needs: the binary file, the fence keeper to hand over, and the signal.
pub(super) struct Upgrade {
    /// This binary's path as started: a package upgrade replaces the file there, and
    /// `/proc/self/exe` would then name the deleted old one.
    binary: PathBuf,
    pub(super) keeper: Keeper,
    requests: Option<Signal>,
}

impl Upgrade {
    /// Listens for SIGUSR2 (`None` when it cannot: re-executing is then unavailable, which is
    /// logged, and nothing else changes).
    pub(super) fn new(keeper: Keeper) -> Self {
        let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        let requests = match signal(SignalKind::user_defined2()) {
            Ok(s) => {
                // Held back since `main` began (see `hold_upgrade_signal`).
                crate::handover::release_upgrade_signal();
                Some(s)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGUSR2: re-executing the deadman is unavailable");
                None
            }
        };
        Upgrade {
            binary,
            keeper,
            requests,
        }
    }

    /// Resolves at the next SIGUSR2 (never, without a listener). Cancel-safe.
    pub(super) async fn requested(&mut self) {
        match self.requests.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// The handover left by the image that executed this one, if any (a failed read is logged: the
/// deadman then starts as after a restart, and the old keeper, still fed by nobody, fences
/// PostgreSQL at its last deadline if it was armed).
pub(super) fn inherited() -> Option<Handover> {
    match Handover::take_inherited()? {
        Ok(handover) => Some(handover),
        Err(e) => {
            tracing::error!(error = %e, "re-executed, but the handover is unusable; starting afresh");
            None
        }
    }
}

/// In a re-executed image, before anything else runs: the same fence deadline, the running
/// PostgreSQL adopted, the keeper taken over. Without a handover, a new keeper is started.
///
/// # Errors
/// When neither the inherited keeper can be taken over nor a new one started.
pub(super) fn take_over(
    handover: Option<&Handover>,
    fence: &Arc<FenceClock>,
    postgres: &mut PostgresProcess,
) -> std::io::Result<Keeper> {
    let Some(handover) = handover else {
        return Keeper::spawn(fence.clone());
    };
    fence.confirm(handover.fence_last_ok_ns);
    if let Some(guardian) = handover.guardian {
        match postgres.attach(guardian.pid) {
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!(
                "the postmaster guardian handed over is gone, and PostgreSQL with it"
            ),
            Err(e) => {
                // Killing the guardian kills PostgreSQL (its parent-death signal).
                tracing::error!(error = %e, "cannot reach the postmaster guardian; killing it");
                if let Some(pid) = guardian.pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    } else if let Some(pid) = handover.postmaster_pid {
        if let Err(e) = postgres.adopt(pid as u32) {
            // Unsupervised PostgreSQL must not run: the keeper could not be told when it exits.
            tracing::error!(error = %e, pid, "cannot watch the running postgres; killing it");
            kill_postgres(pid, None);
        }
    }
    if handover.fence_state().is_some_and(|s| s.armed) && !fence.arm() {
        // The deadline passed during the exec: the keeper fences now if it has not yet.
        if let Some(pid) = postgres.pid() {
            tracing::error!(
                pid,
                "the fence deadline passed while re-executing; killing postgres"
            );
            kill_postgres(pid as i32, None);
        }
    }
    match handover.keeper {
        Some(keeper) => Keeper::adopt(fence.clone(), keeper),
        None => Keeper::spawn(fence.clone()),
    }
}

impl Daemon {
    /// Re-executes this binary (SIGUSR2), handing over the session, PostgreSQL and the fence
    /// keeper. Returns only when that failed; the deadman then goes on as it was.
    pub(super) fn reexec(&mut self, upgrade: &Upgrade) {
        let session = self
            .zk
            .session
            .as_ref()
            .map(|s| s.coordinator.session_info())
            .or_else(|| self.zk.resume.clone());
        let handover = Handover {
            session: session.as_ref().map(SessionHandover::from_session),
            keeper: Some(upgrade.keeper.handover()),
            postmaster_pid: self
                .pg
                .process
                .pid()
                .filter(|_| !self.pg.process.is_guarded())
                .map(|p| p as i32),
            guardian: self.pg.process.is_guarded().then(|| GuardianHandover {
                pid: self.pg.process.guardian_pid(),
            }),
            fence: self.fence.state().to_keeper_line(),
            fence_last_ok_ns: self.fence.last_ok_ns(),
            postgres: self.pg.process.pid().map(|_| RunningPostgres {
                data_dir: self.config.postgres.data_dir.clone(),
                port: self.config.postgres.port,
            }),
            callbacks_seen: match self.out.seen {
                Running::Stopped => String::new(),
                Running::As(role) => role.name().to_owned(),
            },
        };
        tracing::warn!(
            binary = %upgrade.binary.display(),
            postgres = ?self.pg.process.pid(),
            "SIGUSR2: re-executing the deadman; PostgreSQL keeps running and the ZooKeeper session is handed over"
        );
        let error = handover.exec(&upgrade.binary);
        tracing::error!(error = %error, "cannot re-execute the deadman; this one goes on");
    }
}

/// What the callbacks last saw, as handed over (stopped when unknown: an `on_start` too many is
/// better than one missing).
pub(super) fn callbacks_seen(handover: Option<&Handover>) -> Running {
    match handover.map(|h| h.callbacks_seen.as_str()) {
        Some("primary") => Running::As(CallbackRole::Primary),
        Some("replica") => Running::As(CallbackRole::Replica),
        _ => Running::Stopped,
    }
}

/// Keeps the running PostgreSQL's data directory and port when the file changed them: the
/// adopted server runs there until it is restarted (as after a reload, the new values wait).
/// Without a handover, a PostgreSQL a paused stop left under its guardian keeps its port the
/// same way (read from its `postmaster.pid`).
pub(super) fn keep_running_postgres(handover: Option<&Handover>, postgres: &mut PostgresConfig) {
    let left = || {
        let guarded = crate::guardian::socket_path(&postgres.data_dir).exists();
        let port = guarded
            .then(|| crate::data_dir::running_port(postgres))
            .flatten()?;
        Some(RunningPostgres {
            data_dir: postgres.data_dir.clone(),
            port,
        })
    };
    let Some(running) = handover.and_then(|h| h.postgres.clone()).or_else(left) else {
        return;
    };
    if running.data_dir != postgres.data_dir || running.port != postgres.port {
        tracing::warn!(
            running_data_dir = %running.data_dir.display(), running_port = running.port,
            file_data_dir = %postgres.data_dir.display(), file_port = postgres.port,
            "the file changes postgres.data_dir or postgres.port; the running PostgreSQL keeps its own until it is restarted"
        );
        postgres.data_dir = running.data_dir.clone();
        postgres.port = running.port;
    }
}
