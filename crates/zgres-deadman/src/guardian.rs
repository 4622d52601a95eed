//! The postmaster's guardian: a small process (`zgres-deadman --postmaster-guardian`) between
//! the deadman and PostgreSQL, so that PostgreSQL can outlive a deadman stopped while its group
//! is paused — and never outlives one that died.
//!
//! The chain of lifetimes, each link enforced by the kernel or by the guardian itself:
//! - PostgreSQL runs under `setpriv --pdeathsig=KILL` as the guardian's child: the kernel kills
//!   it the moment the guardian dies, however it dies.
//! - The guardian sets `pdeathsig=KILL` on itself, tied to the deadman: the kernel kills it
//!   when the deadman dies. So `kill -9` of the deadman takes PostgreSQL down, as before.
//! - The deadman talks to the guardian over a Unix socket beside the data directory
//!   (`{data_dir}.guardian`, mode 0600, only this user's peers answered). When the connected
//!   deadman's connection closes without a `detach`, the guardian watches that process: a
//!   re-executing deadman (same pid) reconnects and goes on; a dead one gets PostgreSQL's whole
//!   process group killed.
//! - `detach` (sent only at a paused shutdown, see [`crate::decision::shutdown_plan`]) clears
//!   the guardian's own `pdeathsig`: the deadman may exit, PostgreSQL keeps running, and the
//!   next deadman connects (adopting it) and is guarded in turn.
//!
//! Protocol, one line each way: on connect the guardian says `postmaster PID`; the deadman may
//! say `detach` (answered `detached`); when PostgreSQL exits the guardian says
//! `exited code N` or `exited signal N`, removes its socket and exits.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

pub mod link;
pub mod parent_check;

/// How often a guardian whose deadman's connection closed checks whether that process lives.
const PEER_CHECK: Duration = Duration::from_millis(20);

/// The longest path a Unix socket can have on Linux (`sun_path` less its terminating NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// The socket of the guardian for `data_dir`: beside it, as the password file is.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "data".into());
    name.push(".guardian");
    data_dir.with_file_name(name)
}

/// Why `data_dir` cannot have a guardian (its socket path would be too long), if so.
pub fn socket_does_not_fit(data_dir: &Path) -> Option<String> {
    let socket = socket_path(data_dir);
    (socket.as_os_str().len() > SOCKET_PATH_MAX).then(|| {
        format!(
            "is too long: the guardian's socket beside it, {}, must fit in {SOCKET_PATH_MAX} bytes (a Unix socket path)",
            socket.display()
        )
    })
}

/// Why the guardian could not start PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum GuardianError {
    /// The socket could not be created.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The deadman died before the guardian could tie its life to it.
    #[error("the deadman (pid {0}) is gone")]
    Orphaned(i32),
    /// PostgreSQL could not be spawned.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `prctl` failed.
    #[error("cannot set the parent-death signal: {0}")]
    Pdeathsig(#[from] nix::Error),
}

/// What the guardian's main thread acts on.
enum Event {
    /// A deadman asked to detach: clear the parent-death signal, and answer whether it was.
    Detach(std::sync::mpsc::Sender<bool>),
    /// PostgreSQL exited.
    Exited(ExitStatus),
}

/// The connected deadman, if any.
#[derive(Default)]
struct Peer {
    /// Where reports go.
    stream: Option<UnixStream>,
    /// Its pid (from the socket's credentials).
    pid: i32,
    /// Bumped on every connection, so a closing reader knows whether it is still current.
    generation: u64,
    /// The postmaster exited: nothing more to guard.
    exited: bool,
}

/// Runs the guardian: listens on `socket`, starts `program` with `args` as its child (in a
/// process group of its own), serves deadmen on `socket`, and
/// returns PostgreSQL's exit status once it exits. `parent` is the deadman that started it.
///
/// # Errors
/// [`GuardianError`] before PostgreSQL runs; after that, it only ever returns its exit.
pub fn run_guardian(
    socket: &Path,
    parent: i32,
    program: &str,
    args: &[String],
) -> Result<ExitStatus, GuardianError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The deadman may have died before the line above: then nobody would kill us.
    if nix::unistd::getppid().as_raw() != parent {
        return Err(GuardianError::Orphaned(parent));
    }
    let _ = std::fs::remove_file(socket);
    let listen_error = |source| GuardianError::Listen {
        path: socket.to_owned(),
        source,
    };
    let listener = UnixListener::bind(socket).map_err(listen_error)?;
    // Connecting needs write permission: only this user (and root), whatever the umask.
    std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(listen_error)?;
    let mut child = Command::new(program)
        .args(args)
        .env(
            parent_check::GUARDIAN_PID_VAR,
            std::process::id().to_string(),
        )
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| GuardianError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let postmaster = child.id() as i32;
    // Only now: a blocked signal mask is inherited by PostgreSQL (and whatever runs before it),
    // which must get its SIGINT and SIGTERM. The guardian runs in a process group of its own,
    // so a signal meant for the deadman's group cannot reach it before this line either.
    crate::fence::keep_signals_away();
    let (events, inbox) = std::sync::mpsc::channel();
    let peer = Arc::new(Mutex::new(Peer::default()));
    {
        let (peer, events) = (peer.clone(), events.clone());
        std::thread::spawn(move || serve(listener, postmaster, &peer, &events));
    }
    // Waiting may be any thread's; the parent-death signal is this one's (the kernel keeps it
    // per thread, and sends the one of each thread of a child whose parent dies), so only this
    // thread ever changes it, when a connection's thread passes on a `detach`.
    std::thread::spawn(move || {
        let status = loop {
            match child.wait() {
                Ok(status) => break status,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break ExitStatus::from_raw(0),
            }
        };
        let _ = events.send(Event::Exited(status));
    });
    let status = loop {
        match inbox.recv() {
            Ok(Event::Detach(answer)) => {
                let _ = answer.send(nix::sys::prctl::set_pdeathsig(None::<Signal>).is_ok());
            }
            Ok(Event::Exited(status)) => break status,
            // The waiting thread cannot go without sending; as a backstop, stop guarding.
            Err(_) => break ExitStatus::from_raw(0),
        }
    };
    let mut peer = lock(&peer);
    peer.exited = true;
    let _ = std::fs::remove_file(socket);
    if let Some(stream) = peer.stream.as_mut() {
        let _ = stream.write_all(exit_line(status).as_bytes());
    }
    Ok(status)
}

/// The report of PostgreSQL's exit.
fn exit_line(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited code {code}\n"),
        (None, Some(signal)) => format!("exited signal {signal}\n"),
        (None, None) => "exited code 0\n".to_owned(),
    }
}

/// Parses [`exit_line`]'s report (without its newline).
pub fn parse_exit(line: &str) -> Option<ExitStatus> {
    let mut words = line.split(' ');
    if words.next()? != "exited" {
        return None;
    }
    let kind = words.next()?;
    let n: i32 = words.next()?.parse().ok()?;
    match kind {
        "code" => Some(ExitStatus::from_raw((n & 0xff) << 8)),
        "signal" => Some(ExitStatus::from_raw(n & 0x7f)),
        _ => None,
    }
}

fn lock(peer: &Mutex<Peer>) -> std::sync::MutexGuard<'_, Peer> {
    peer.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts deadmen, one at a time: a second connection while one is served is refused.
fn serve(
    listener: UnixListener,
    postmaster: i32,
    peer: &Arc<Mutex<Peer>>,
    events: &std::sync::mpsc::Sender<Event>,
) {
    let me = nix::unistd::geteuid().as_raw();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let Ok(cred) =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        else {
            continue;
        };
        // The socket is 0600; a peer of another user (root excepted) is not answered anyway.
        if cred.uid() != me && cred.uid() != 0 {
            continue;
        }
        let mut current = lock(peer);
        // The same process again is a re-executed deadman whose old connection's end has not
        // been read yet: it replaces that one.
        let again = current.pid == cred.pid();
        if (current.stream.is_some() && !again) || current.exited {
            let _ = stream.write_all(b"busy\n");
            continue;
        }
        let (Ok(reader), Ok(())) = (
            stream.try_clone(),
            stream.write_all(format!("postmaster {postmaster}\n").as_bytes()),
        ) else {
            continue;
        };
        current.generation += 1;
        current.pid = cred.pid();
        current.stream = Some(stream);
        let generation = current.generation;
        drop(current);
        let (peer, events) = (peer.clone(), events.clone());
        std::thread::spawn(move || follow(reader, generation, postmaster, &peer, &events));
    }
}

/// Reads one deadman's connection until it closes; then, unless it detached, guards against
/// its death: PostgreSQL goes down with it.
fn follow(
    reader: UnixStream,
    generation: u64,
    postmaster: i32,
    peer: &Mutex<Peer>,
    events: &std::sync::mpsc::Sender<Event>,
) {
    let mut detached = false;
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        if line == "detach" {
            // From now on this process may outlive the deadman (PostgreSQL still dies with us).
            let (answer, answered) = std::sync::mpsc::channel();
            detached = events.send(Event::Detach(answer)).is_ok() && answered.recv() == Ok(true);
            let mut current = lock(peer);
            if let Some(stream) = current.stream.as_mut() {
                let answer: &[u8] = if detached {
                    b"detached\n"
                } else {
                    b"refused\n"
                };
                let _ = stream.write_all(answer);
            }
        }
    }
    let pid = {
        let mut current = lock(peer);
        if current.generation != generation {
            return;
        }
        current.stream = None;
        current.pid
    };
    if detached {
        return;
    }
    // Closed without a detach: a re-executing deadman reconnects (same pid); a dead one does not.
    loop {
        {
            let current = lock(peer);
            if current.exited || current.generation != generation {
                return;
            }
        }
        if !alive(pid) {
            crate::fence::kill_postgres(postmaster, None);
            eprintln!(
                "zgres postmaster guardian: deadman {pid} died without detaching; killed PostgreSQL {postmaster}"
            );
            return;
        }
        std::thread::sleep(PEER_CHECK);
    }
}

/// Whether process `pid` lives: `/proc` shows it and it is not a zombie (a dead deadman whose
/// parent has not reaped it yet is dead). `/proc`, not `kill(pid, 0)`, which a root deadman
/// would answer with EPERM.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may itself hold ") ".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reports_round_trip() {
        for raw in [0, 1 << 8, 3 << 8, 9, 15] {
            let status = ExitStatus::from_raw(raw);
            let line = exit_line(status);
            assert_eq!(parse_exit(line.trim_end()), Some(status), "{line}");
        }
        assert_eq!(parse_exit("exited sometimes 3"), None);
        assert_eq!(parse_exit("postmaster 12"), None);
    }

    #[test]
    fn a_zombie_or_missing_process_is_not_alive() {
        assert!(alive(std::process::id() as i32));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Exited, not yet reaped: a zombie.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "never became a zombie"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn the_socket_sits_beside_the_data_directory() {
        assert_eq!(
            socket_path(Path::new("/var/lib/postgresql/15/main")),
            Path::new("/var/lib/postgresql/15/main.guardian")
        );
    }
}
