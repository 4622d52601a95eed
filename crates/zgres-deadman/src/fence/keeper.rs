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

use super::board::{DeadlineBoard, BOARD_OFF_LINE};
use super::{FenceClock, FenceState};
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
    /// The keeper's deadline board, when it reads one: confirmations go there instead of the
    /// pipe. `None` for a keeper that reads lines only (one an older image started).
    board: Option<DeadlineBoard>,
    /// The keeper reads a board this image cannot write (it could not be reopened after a
    /// re-exec): it is told to stop reading it before anything else is sent.
    board_lost: bool,
}

impl KeeperProcess {
    /// Starts a keeper: this binary with `--fence-keeper`. `/proc/self/exe` is the running
    /// image even when a package upgrade has replaced the file, so the keeper always speaks
    /// this deadman's protocol.
    fn start(fence: &FenceClock) -> std::io::Result<Self> {
        let state = fence.state();
        let line = state.to_keeper_line();
        let mut command = zgres_process::command("/proc/self/exe");
        command
            .arg("--fence-keeper")
            .arg("--fence-state")
            .arg(line.trim_end())
            .stdin(std::process::Stdio::piped());
        // Without a board (no memory for a memfd) the keeper is fed lines only, as before.
        let board = match new_board(state.deadline_ns) {
            Ok((board, keeper_side)) => {
                command.arg("--fence-board").stdout(keeper_side);
                Some(board)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no deadline board for the fence keeper; every confirmation will wake it");
                None
            }
        };
        let mut child = command.spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("fence keeper has no stdin"))?;
        Ok(KeeperProcess {
            pid: child.id().unwrap_or(0),
            input_fd: stdin.as_raw_fd(),
            input: Box::new(stdin),
            child: Some(child),
            board,
            board_lost: false,
        })
    }

    fn handover(&self) -> KeeperHandover {
        KeeperHandover {
            fd: self.input_fd,
            pid: self.pid,
            board_fd: self.board.as_ref().map(DeadlineBoard::raw_fd),
        }
    }

    /// Brings the keeper up to `state`, `sent` being the state it was last sent as a line:
    /// a later deadline only goes to the board (it wakes nobody); anything else is written
    /// to the board, then sent as a line. Returns the state last sent as a line.
    async fn feed(
        &mut self,
        state: FenceState,
        sent: Option<FenceState>,
    ) -> std::io::Result<FenceState> {
        if self.board_lost {
            self.send(BOARD_OFF_LINE).await?;
            self.board_lost = false;
        }
        if let Some(board) = &self.board {
            match board.post(state.deadline_ns) {
                Ok(()) => {
                    if let Some(sent) = sent.filter(|sent| state.only_later_than(sent)) {
                        return Ok(sent);
                    }
                }
                Err(e) => {
                    // A board that may show an old deadline must not be read any more.
                    tracing::error!(error = %e, "cannot write the fence keeper's deadline board; feeding it lines only");
                    self.board = None;
                    self.send(BOARD_OFF_LINE).await?;
                }
            }
        }
        self.send(&state.to_keeper_line()).await?;
        Ok(state)
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
        // A keeper an older image started has no board: it is fed lines only.
        let board = match handed.board_fd.map(DeadlineBoard::adopt).transpose() {
            Ok(board) => board,
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the fence keeper's deadline board; feeding it lines only");
                None
            }
        };
        let process = KeeperProcess {
            child: None,
            pid: handed.pid,
            input_fd: input.as_raw_fd(),
            input: Box::new(tokio::fs::File::from_std(input)),
            board_lost: handed.board_fd.is_some() && board.is_none(),
            board,
        };
        Ok(Self::feeding(fence, process))
    }

    fn feeding(fence: Arc<FenceClock>, mut process: KeeperProcess) -> Self {
        let current = Arc::new(Mutex::new(process.handover()));
        let stop = CancellationToken::new();
        let (published, stopped) = (current.clone(), stop.clone());
        let feeder = tokio::spawn(async move {
            // The state last sent as a line.
            let mut sent = None;
            while !stopped.is_cancelled() {
                // Only what the keeper acts on: a disarmed fence is one state, whatever its clock.
                let state = Some(fence.state())
                    .filter(|s| s.armed)
                    .unwrap_or(FenceState::DISARMED);
                if sent != Some(state) {
                    let had_board = process.board.is_some();
                    let fed = process.feed(state, sent).await;
                    if had_board && process.board.is_none() {
                        // Its descriptor is closed: a re-exec must not be handed it.
                        *published.lock().unwrap_or_else(|e| e.into_inner()) = process.handover();
                    }
                    match fed {
                        Ok(line) => sent = Some(line),
                        Err(_) => {
                            tracing::error!(
                                pid = process.pid,
                                "the fence keeper is gone; starting a new one"
                            );
                            process = replace(process, &fence, &published, &stopped).await;
                            sent = None;
                            continue;
                        }
                    }
                }
                tokio::select! {
                    () = fence.changed() => {}
                    () = process.exited() => {
                        tracing::error!(pid = process.pid, "the fence keeper exited; starting a new one");
                        process = replace(process, &fence, &published, &stopped).await;
                        sent = None;
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

/// A new board showing `deadline_ns`, and the descriptor to give the keeper as its stdout.
fn new_board(deadline_ns: u64) -> std::io::Result<(DeadlineBoard, std::os::fd::OwnedFd)> {
    let board = DeadlineBoard::create()?;
    board.post(deadline_ns)?;
    let keeper_side = board.share()?;
    Ok((board, keeper_side))
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
