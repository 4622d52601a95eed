//! The deadman's side of the fence keeper: the child process (this binary, `--fence-keeper`,
//! running [`super::run_keeper`]) and the task that feeds it the fence state over its stdin.
//! A keeper that dies (killed by hand, by the OOM killer) is replaced at once: the fence must
//! not depend on the deadman's own threads alone.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::unistd::Pid;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::FenceClock;
use crate::handover::KeeperHandover;

/// Where the fence state is written: the keeper's stdin.
type KeeperInput = Box<dyn AsyncWrite + Unpin + Send>;

/// How long to wait before trying again to start a keeper that would not start.
const RESPAWN_RETRY: Duration = Duration::from_secs(1);

/// The fence keeper child process and the task that feeds it the deadline.
pub struct Keeper {
    /// The current keeper's pid and input, for a handover.
    current: Arc<Mutex<KeeperHandover>>,
    feeder: JoinHandle<KeeperProcess>,
    stop: CancellationToken,
}

/// One keeper process and its input pipe.
struct KeeperProcess {
    /// The process handle, when this image started the keeper (after a re-exec the keeper is
    /// still our child, known by pid only).
    child: Option<tokio::process::Child>,
    pid: u32,
    input_fd: RawFd,
    input: KeeperInput,
}

impl KeeperProcess {
    /// Starts a keeper: this binary with `--fence-keeper`. `/proc/self/exe` is the running
    /// image even when a package upgrade has replaced the file, so the keeper always speaks
    /// this deadman's protocol.
    fn start(fence: &FenceClock) -> std::io::Result<Self> {
        let state = fence.state().to_keeper_line();
        let mut child = zgres_process::command("/proc/self/exe")
            .arg("--fence-keeper")
            .arg("--fence-state")
            .arg(state.trim_end())
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("fence keeper has no stdin"))?;
        Ok(KeeperProcess {
            pid: child.id().unwrap_or(0),
            input_fd: stdin.as_raw_fd(),
            input: Box::new(stdin),
            child: Some(child),
        })
    }

    fn handover(&self) -> KeeperHandover {
        KeeperHandover {
            fd: self.input_fd,
            pid: self.pid,
        }
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.input.write_all(line.as_bytes()).await?;
        self.input.flush().await
    }

    /// Resolves when the keeper exits (never for an adopted one: its end is seen when a write
    /// fails). Cancel-safe.
    async fn exited(&mut self) {
        match self.child.as_mut() {
            Some(child) => {
                let _ = child.wait().await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Keeper {
    /// Starts the keeper process and a task that sends it every change of the fence state.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(fence: Arc<FenceClock>) -> std::io::Result<Self> {
        let process = KeeperProcess::start(&fence)?;
        Ok(Self::feeding(fence, process))
    }

    /// Takes over the keeper a previous image of this process started (see
    /// [`crate::handover`]): it goes on with the fence state the caller already restored.
    ///
    /// # Errors
    /// When the inherited pipe cannot be opened.
    pub fn adopt(fence: Arc<FenceClock>, handed: KeeperHandover) -> std::io::Result<Self> {
        // A file of our own for the same pipe, without unsafe code; the inherited descriptor
        // is closed after, so only this one keeps the keeper fed.
        let input = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", handed.fd))?;
        let _ = nix::unistd::close(handed.fd);
        let process = KeeperProcess {
            child: None,
            pid: handed.pid,
            input_fd: input.as_raw_fd(),
            input: Box::new(tokio::fs::File::from_std(input)),
        };
        Ok(Self::feeding(fence, process))
    }

    fn feeding(fence: Arc<FenceClock>, mut process: KeeperProcess) -> Self {
        let current = Arc::new(Mutex::new(process.handover()));
        let stop = CancellationToken::new();
        let (published, stopped) = (current.clone(), stop.clone());
        let feeder = tokio::spawn(async move {
            let mut last = None;
            while !stopped.is_cancelled() {
                // Only what the keeper acts on: a disarmed fence is one line, whatever its clock.
                let line = fence.state().to_keeper_line();
                if last.as_ref() != Some(&line) {
                    if process.send(&line).await.is_err() {
                        tracing::error!(
                            pid = process.pid,
                            "the fence keeper is gone; starting a new one"
                        );
                        process = replace(process, &fence, &published, &stopped).await;
                        last = None;
                        continue;
                    }
                    last = Some(line);
                }
                tokio::select! {
                    () = fence.changed() => {}
                    () = process.exited() => {
                        tracing::error!(pid = process.pid, "the fence keeper exited; starting a new one");
                        process = replace(process, &fence, &published, &stopped).await;
                        last = None;
                    }
                    () = stopped.cancelled() => {}
                }
            }
            process
        });
        Keeper {
            current,
            feeder,
            stop,
        }
    }

    /// What a new image of this process needs to take the keeper over.
    pub fn handover(&self) -> KeeperHandover {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Disarms the keeper and lets it exit (the fence is disarmed by now).
    pub async fn finish(self) {
        self.stop.cancel();
        let Ok(mut process) = self.feeder.await else {
            return;
        };
        let _ = process.send("disarm\n").await;
        let KeeperProcess {
            child, pid, input, ..
        } = process;
        drop(input);
        let exited = async move {
            match child {
                Some(mut child) => {
                    let _ = child.wait().await;
                }
                None => {
                    let pid = Pid::from_raw(pid as i32);
                    let _ = tokio::task::spawn_blocking(move || nix::sys::wait::waitpid(pid, None))
                        .await;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), exited).await;
    }
}

/// A new keeper in place of `dead`, retried every [`RESPAWN_RETRY`] until one starts or the
/// deadman stops (then `dead` is given back). The in-process fence thread covers the gap.
async fn replace(
    dead: KeeperProcess,
    fence: &FenceClock,
    published: &Mutex<KeeperHandover>,
    stopped: &CancellationToken,
) -> KeeperProcess {
    loop {
        match KeeperProcess::start(fence) {
            Ok(process) => {
                tracing::warn!(pid = process.pid, "started a new fence keeper");
                *published.lock().unwrap_or_else(|e| e.into_inner()) = process.handover();
                return process;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a new fence keeper; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RESPAWN_RETRY) => {}
                    () = stopped.cancelled() => return dead,
                }
            }
        }
    }
}
