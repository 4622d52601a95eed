//! The deadman's side of the fence keeper: the child process (this binary, `--fence-keeper`,
//! running [`super::run_keeper`]) and the task that feeds it the fence state over its stdin.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::FenceClock;

/// The fence keeper child process and the task that feeds it the deadline.
pub struct Keeper {
    child: tokio::process::Child,
    feeder: JoinHandle<tokio::process::ChildStdin>,
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
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("fence keeper has no stdin"))?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let feeder = tokio::spawn(async move {
            let mut last = None;
            while !stopped.is_cancelled() {
                // Only what the keeper acts on: a disarmed fence is one line, whatever its clock.
                let line = fence.state().to_keeper_line();
                if last.as_ref() != Some(&line) {
                    if stdin.write_all(line.as_bytes()).await.is_err() {
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
            stdin
        });
        Ok(Keeper {
            child,
            feeder,
            stop,
        })
    }

    /// Disarms the keeper and lets it exit (the fence is disarmed by now).
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Ok(mut stdin) = self.feeder.await {
            let _ = stdin.write_all(b"disarm\n").await;
            drop(stdin);
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
    }
}
