//! Child processes that cannot outlive the test.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::os_user::OsUser;
use crate::{io_error, HarnessError, Result};

/// A long-running child process, in its own process group, logging to a file.
///
/// It is started through `setpriv --pdeathsig KILL`, so the kernel kills it if the thread that
/// started it dies (even by `kill -9`), and optionally as another OS user. Dropping it kills its
/// whole process group and reaps it.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ManagedProcess {
    /// Starts `program` with `args`, stdout and stderr appended to `log`.
    ///
    /// # Errors
    /// When the log cannot be opened or the process cannot be started.
    pub fn spawn<I, S>(
        name: &str,
        program: impl AsRef<OsStr>,
        args: I,
        envs: &[(&str, &str)],
        run_as: Option<&OsUser>,
        log: &Path,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_error(format!("open log {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io_error(format!("open log {}", log.display())))?;
        let mut command = setpriv_command(run_as, true);
        command
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: signals from a terminal do not reach it, and we can kill the
            // process together with everything it forked.
            .process_group(0);
        let child = command
            .spawn()
            .map_err(io_error(format!("start {name} (via setpriv)")))?;
        Ok(ManagedProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Sends `signal` to the process only (not its group), e.g. `SIGSTOP`/`SIGCONT`.
    ///
    /// # Errors
    /// When the signal cannot be delivered (the process is gone).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid() as i32), signal).map_err(|e| {
            HarnessError::Setup(format!(
                "send {signal} to {} ({}): {e}",
                self.name,
                self.pid()
            ))
        })
    }

    /// `Some(status)` if the process has exited (and is now reaped).
    ///
    /// # Errors
    /// When `waitpid` fails.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .map_err(io_error(format!("wait for {}", self.name)))
    }

    /// An error saying the process exited, if it has; used while waiting for readiness.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.try_exit_status()? {
            None => Ok(()),
            Some(status) => Err(HarnessError::Exited {
                what: self.name.clone(),
                status: status.to_string(),
                log: Some(self.log.clone()),
            }),
        }
    }

    /// Sends `signal` to the process, waits up to `grace` for it to exit, then kills its whole
    /// group. Returns the exit status. Blocks the calling thread for at most `grace` plus the
    /// time the kernel takes to reap a killed process.
    pub fn stop(mut self, signal: Signal, grace: Duration) -> Option<ExitStatus> {
        let _ = self.signal(signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.kill_group();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_group();
        self.child.wait().ok()
    }

    /// Kills the whole process group with `SIGKILL` and reaps the leader.
    pub fn kill(mut self) -> Option<ExitStatus> {
        self.kill_group();
        self.child.wait().ok()
    }

    fn kill_group(&mut self) {
        // The group outlives its leader while members remain; ESRCH just means it is empty.
        let _ = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill_group();
        let _ = self.child.wait();
    }
}

fn setpriv_command(run_as: Option<&OsUser>, die_with_parent: bool) -> Command {
    let mut command = Command::new("setpriv");
    if die_with_parent {
        command.arg("--pdeathsig=KILL");
    }
    if let Some(user) = run_as {
        command.args(user.setpriv_args());
        // The user's own HOME, not root's (which it cannot read).
        command.env("HOME", "/tmp");
    }
    command.arg("--");
    command
}

/// Runs a one-shot command (as `run_as` when given) to completion and returns its stdout.
///
/// # Errors
/// [`HarnessError::Command`] with the combined output when it exits unsuccessfully;
/// [`HarnessError::Io`] when it cannot be started. Cancelling the future kills the command.
pub async fn run_command<I, S>(program: &str, args: I, run_as: Option<&OsUser>) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let shown = std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command: tokio::process::Command = setpriv_command(run_as, true).into();
    command
        .arg(program)
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .map_err(io_error(format!("start {shown}")))?;
    if !output.status.success() {
        return Err(HarnessError::Command {
            command: shown,
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
