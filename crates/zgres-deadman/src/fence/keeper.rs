//! The deadman's side of the fence keeper: the child process (this binary, `--fence-keeper`,
//! running [`super::run_keeper`]) and the task that feeds it the fence state over its stdin.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::FenceClock;
use crate::handover::KeeperHandover;

/// Where the fence state is written: the keeper's stdin.
type KeeperInput = Box<dyn AsyncWrite + Unpin + Send>;

/// The fence keeper child process and the task that feeds it the deadline.
pub struct Keeper {
    /// The process handle, when this image started the keeper (after a re-exec the keeper is
    /// still our child, known by pid only).
    child: Option<tokio::process::Child>,
    pid: u32,
    /// The descriptor of its stdin pipe, for a handover.
    input_fd: RawFd,
    feeder: JoinHandle<KeeperInput>,
    stop: CancellationToken,
}

impl Keeper {
    /// Starts the keeper process (this binary with `--fence-keeper`) and a task that sends it
    /// every change of the fence state.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(fence: Arc<FenceClock>) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = zgres_process::command(exe)
            .arg("--fence-keeper")
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("fence keeper has no stdin"))?;
        let input_fd = stdin.as_raw_fd();
        let pid = child.id().unwrap_or(0);
        Ok(Self::feeding(
            fence,
            Some(child),
            pid,
            input_fd,
            Box::new(stdin),
        ))
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
        let input_fd = input.as_raw_fd();
        let input = tokio::fs::File::from_std(input);
        Ok(Self::feeding(
            fence,
            None,
            handed.pid,
            input_fd,
            Box::new(input),
        ))
    }

    fn feeding(
        fence: Arc<FenceClock>,
        child: Option<tokio::process::Child>,
        pid: u32,
        input_fd: RawFd,
        mut input: KeeperInput,
    ) -> Self {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let feeder = tokio::spawn(async move {
            let mut last = None;
            while !stopped.is_cancelled() {
                // Only what the keeper acts on: a disarmed fence is one line, whatever its clock.
                let line = fence.state().to_keeper_line();
                if last.as_ref() != Some(&line) {
                    let written = async {
                        input.write_all(line.as_bytes()).await?;
                        input.flush().await
                    };
                    if written.await.is_err() {
                        tracing::error!("the fence keeper is gone; the in-process fence remains");
                        break;
                    }
                    last = Some(line);
                }
                tokio::select! {
                    () = fence.changed() => {}
                    () = stopped.cancelled() => {}
                }
            }
            input
        });
        Keeper {
            child,
            pid,
            input_fd,
            feeder,
            stop,
        }
    }

    /// What a new image of this process needs to take the keeper over.
    pub fn handover(&self) -> KeeperHandover {
        KeeperHandover {
            fd: self.input_fd,
            pid: self.pid,
        }
    }

    /// Disarms the keeper and lets it exit (the fence is disarmed by now).
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Ok(mut input) = self.feeder.await {
            let _ = input.write_all(b"disarm\n").await;
            let _ = input.flush().await;
            drop(input);
        }
        let exited = async {
            match self.child.as_mut() {
                Some(child) => {
                    let _ = child.wait().await;
                }
                None => {
                    let pid = Pid::from_raw(self.pid as i32);
                    let _ = tokio::task::spawn_blocking(move || nix::sys::wait::waitpid(pid, None))
                        .await;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), exited).await;
    }
}
