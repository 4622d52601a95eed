//! The deadman's side of the postmaster guardian: start one, or connect to the one already
//! guarding PostgreSQL (after a re-execution, or left running at a paused shutdown), and learn
//! of PostgreSQL's exit the moment it happens.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::parse_exit;

/// How long a new guardian may take to listen and a running one to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A guarded postmaster: its pid, its exit as the guardian reports it, and the connection.
#[derive(Debug)]
pub struct Guarded {
    /// The postmaster's pid (also its process group).
    pub pid: u32,
    /// `Some` once it exited.
    pub exit: tokio::sync::watch::Receiver<Option<ExitStatus>>,
    /// The connection to the guardian.
    pub link: GuardianLink,
}

/// The connection to a guardian, for `detach`.
#[derive(Debug)]
pub struct GuardianLink {
    writer: UnixStream,
    detached: tokio::sync::watch::Receiver<Option<bool>>,
    /// The guardian's pid when it is our child (to be reaped), for a re-execution.
    guardian_pid: Option<u32>,
}

/// What the program the guardian runs is: the program, its arguments and extra environment.
#[derive(Debug, Clone)]
pub struct GuardedCommand {
    /// The program (`setpriv`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment beyond the allowed part of ours.
    pub env: Vec<(String, String)>,
}

/// Why no guardian could be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The guardian process could not be started.
    #[error("cannot start the postmaster guardian {program}: {source}")]
    Spawn {
        /// The guardian's program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited before it answered (it logged why).
    #[error("the postmaster guardian exited at once ({0}); see its message above")]
    Exited(ExitStatus),
    /// It did not answer in time, or answered something else.
    #[error("the postmaster guardian at {path} did not answer: {why}")]
    NoAnswer {
        /// Its socket.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// Whom to reap when the guardian is done.
enum Reap {
    Child(std::process::Child),
    Pid(u32),
    Nobody,
}

impl GuardianLink {
    /// The guardian's pid when it is our child.
    pub fn guardian_pid(&self) -> Option<u32> {
        self.guardian_pid
    }

    /// Asks the guardian to let PostgreSQL outlive this deadman; true once it confirmed.
    /// Bounded by [`ANSWER_TIMEOUT`]; cancel-safe (a cancelled request may still be carried out).
    pub async fn detach(&mut self) -> bool {
        if self.writer.write_all(b"detach\n").is_err() {
            return false;
        }
        let answered = self.detached.wait_for(Option::is_some);
        match tokio::time::timeout(ANSWER_TIMEOUT, answered).await {
            Ok(Ok(answer)) => *answer == Some(true),
            _ => false,
        }
    }
}

/// Starts `guardian_program` (`/proc/self/exe` in the deadman) as the guardian of `command` on
/// `socket`, and connects to it.
///
/// # Errors
/// [`LinkError`] when it cannot start or does not answer; it is killed then.
pub fn spawn(
    guardian_program: &Path,
    socket: &Path,
    command: &GuardedCommand,
) -> Result<Guarded, LinkError> {
    let mut child = Command::new(guardian_program)
        .env_clear()
        .envs(zgres_process::allowed_env())
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .arg("--postmaster-guardian")
        .arg(socket)
        .arg(std::process::id().to_string())
        .arg(&command.program)
        .args(&command.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Out of the deadman's group: a Ctrl-C or a signal to the group is the deadman's to
        // handle (it stops PostgreSQL gracefully), never the guardian's.
        .process_group(0)
        .spawn()
        .map_err(|source| LinkError::Spawn {
            program: guardian_program.display().to_string(),
            source,
        })?;
    let started = Instant::now();
    let stream = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LinkError::Exited(status));
        }
        // Connect only once the guardian owns the path (a stale socket is removed first).
        match UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(e) if started.elapsed() > ANSWER_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LinkError::NoAnswer {
                    path: socket.to_owned(),
                    why: e.to_string(),
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let guardian_pid = child.id();
    match follow(stream, socket, Some(guardian_pid), Reap::Child(child)) {
        Ok(guarded) => Ok(guarded),
        Err(e) => {
            // Killing the guardian kills its PostgreSQL too (pdeathsig).
            let _ = nix::sys::signal::kill(
                Pid::from_raw(guardian_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            Err(e)
        }
    }
}

/// Connects to the guardian listening on `socket`, if one does: `Ok(None)` when nothing listens
/// there (no file, or a stale one, which is removed). `guardian_pid`: the guardian when it is
/// our child (after a re-execution), to be reaped once it exits.
///
/// # Errors
/// [`LinkError::NoAnswer`] when something listens but does not answer as a guardian.
pub fn connect(socket: &Path, guardian_pid: Option<u32>) -> Result<Option<Guarded>, LinkError> {
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            let _ = std::fs::remove_file(socket);
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LinkError::NoAnswer {
                path: socket.to_owned(),
                why: e.to_string(),
            })
        }
    };
    let reap = guardian_pid.map_or(Reap::Nobody, Reap::Pid);
    follow(stream, socket, guardian_pid, reap).map(Some)
}

/// Reads the guardian's greeting, then leaves a thread reading its reports.
fn follow(
    stream: UnixStream,
    socket: &Path,
    guardian_pid: Option<u32>,
    reap: Reap,
) -> Result<Guarded, LinkError> {
    let no_answer = |why: String| LinkError::NoAnswer {
        path: socket.to_owned(),
        why,
    };
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| no_answer(e.to_string()))?;
    let writer = stream.try_clone().map_err(|e| no_answer(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader
        .read_line(&mut greeting)
        .map_err(|e| no_answer(e.to_string()))?;
    let pid = greeting
        .trim_end()
        .strip_prefix("postmaster ")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|&p| p > 1)
        .ok_or_else(|| no_answer(format!("it said {:?}", greeting.trim_end())))?;
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| no_answer(e.to_string()))?;
    let (exit_tx, exit) = tokio::sync::watch::channel(None);
    let (detached_tx, detached) = tokio::sync::watch::channel(None);
    std::thread::Builder::new()
        .name("guardian-link".into())
        .spawn(move || {
            let mut status = None;
            for line in reader.lines() {
                let Ok(line) = line else { break };
                match line.as_str() {
                    "detached" => drop(detached_tx.send(Some(true))),
                    "refused" => drop(detached_tx.send(Some(false))),
                    other => {
                        if let Some(s) = parse_exit(other) {
                            status = Some(s);
                        }
                    }
                }
            }
            let _ = detached_tx.send(Some(false));
            // A guardian gone without a report took PostgreSQL with it (pdeathsig).
            use std::os::unix::process::ExitStatusExt;
            let _ = exit_tx.send(Some(status.unwrap_or_else(|| ExitStatus::from_raw(9))));
            match reap {
                Reap::Child(mut child) => drop(child.wait()),
                Reap::Pid(pid) => drop(nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None)),
                Reap::Nobody => {}
            }
        })
        .map_err(|e| no_answer(e.to_string()))?;
    Ok(Guarded {
        pid,
        exit,
        link: GuardianLink {
            writer,
            detached,
            guardian_pid,
        },
    })
}

/// The arguments after `--postmaster-guardian`: socket, parent pid, program, its arguments.
pub fn parse_guardian_args(args: &[OsString]) -> Option<(PathBuf, i32, String, Vec<String>)> {
    let mut args = args.iter();
    let socket = PathBuf::from(args.next()?);
    let parent = args.next()?.to_str()?.parse().ok()?;
    let program = args.next()?.to_str()?.to_owned();
    let rest = args
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    Some((socket, parent, program, rest))
}
