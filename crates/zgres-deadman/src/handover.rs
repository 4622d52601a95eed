//! Upgrading the deadman without a failover: on SIGUSR2 it re-executes its own binary file.
//!
//! `execve` keeps the process (so PostgreSQL's guardian stays its child) and
//! every descriptor without close-on-exec. What the new image needs is handed over through a
//! pipe whose number is in [`HANDOVER_FD_ENV`]:
//! - the ZooKeeper session's id and password, so the new image resumes the same session: the
//!   lock and the ephemeral znodes never move;
//! - the fence keeper's pipe (kept open across the exec) and pid: the keeper goes on enforcing
//!   the last deadline it was given while the new image starts, and fences at once if the new
//!   image dies (its pipe closes);
//! - the fence state and the postmaster's guardian, so the new image enforces the same deadline
//!   from its first moment and connects to the guardian again instead of stopping PostgreSQL
//!   (the guardian waits for the same pid to reconnect; see [`crate::guardian`]).
//!
//! If the new binary cannot start, the keeper still fences PostgreSQL before the session can
//! expire; if `execve` itself fails, the old image goes on as if nothing happened.
//!
//! The handover is JSON whose fields only ever get added, with defaults: a newer binary reads
//! an older one's handover, and an older one ignores what it does not know (a downgrade).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use serde::{Deserialize, Serialize};
use zgres_deadman_core::fence_deadline::FenceState;

/// The environment variable that carries the handover pipe's descriptor number.
pub const HANDOVER_FD_ENV: &str = "ZGRES_DEADMAN_HANDOVER_FD";

/// Why the handover failed. The old image logs it and goes on; the new image logs it and starts
/// as after a restart (the keeper fences PostgreSQL if it was armed).
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// A pipe or a descriptor flag could not be set up.
    #[error("cannot prepare the handover: {0}")]
    Setup(#[from] nix::Error),
    /// Writing or reading the handover failed.
    #[error("cannot pass the handover: {0}")]
    Io(#[from] std::io::Error),
    /// The handover did not decode.
    #[error("the handover is unreadable: {0}")]
    Decode(#[from] serde_json::Error),
}

/// What the running deadman hands to the image it executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The ZooKeeper session to resume, if there is one.
    pub session: Option<SessionHandover>,
    /// The fence keeper: its pipe (inherited) and pid.
    pub keeper: Option<KeeperHandover>,
    /// The running postmaster (our child), if any.
    pub postmaster_pid: Option<i32>,
    /// The fence state, as the keeper protocol writes it (`arm DEADLINE PGID GRACE`).
    pub fence: String,
    /// `t_ok`: the send time of the last confirmed request (`CLOCK_MONOTONIC`, the same clock
    /// in both images).
    pub fence_last_ok_ns: u64,
    /// The role PostgreSQL was last seen in by the callbacks (`primary`, `replica`; empty:
    /// stopped), so that the new image does not call `on_start` for a PostgreSQL that never
    /// stopped.
    #[serde(default)]
    pub callbacks_seen: String,
    /// The postmaster's guardian ([`crate::guardian`]), when PostgreSQL runs under one: the new
    /// image connects to it again. `postmaster_pid` is then absent, so that an older image,
    /// which would wait for the postmaster as its own child, does not mistake it for gone.
    #[serde(default)]
    pub guardian: Option<GuardianHandover>,
    /// The running PostgreSQL's data directory and port: the new image keeps them whatever the
    /// file now says (changing them needs PostgreSQL restarted).
    #[serde(default)]
    pub postgres: Option<RunningPostgres>,
}

/// Where the running PostgreSQL is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningPostgres {
    /// `postgres.data_dir`.
    pub data_dir: std::path::PathBuf,
    /// `postgres.port`.
    pub port: u16,
}

/// The postmaster's guardian as the new image finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardianHandover {
    /// Its pid when it is our child (to reap once it exits).
    pub pid: Option<u32>,
}

/// A ZooKeeper session to resume.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHandover {
    /// The session id.
    pub id: i64,
    /// The session password, hex.
    pub password: String,
}

impl std::fmt::Debug for SessionHandover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password resumes the session: never in a log.
        f.debug_struct("SessionHandover")
            .field("id", &format_args!("{:#x}", self.id))
            .finish_non_exhaustive()
    }
}

/// The fence keeper process as the new image finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeeperHandover {
    /// The descriptor of the keeper's stdin pipe, kept open across the exec.
    pub fd: RawFd,
    /// The keeper's pid (our child).
    pub pid: u32,
    /// The descriptor of its deadline board (a memfd), kept open across the exec; absent
    /// when the keeper reads lines only (an image before the board handed it over).
    #[serde(default)]
    pub board_fd: Option<RawFd>,
}

impl SessionHandover {
    /// From the client's session.
    pub fn from_session(info: &zgres_zk::client::SessionInfo) -> Self {
        SessionHandover {
            id: info.id().0,
            password: info.password().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// Back to a session to resume; `None` when the password is not hex.
    pub fn to_session(&self) -> Option<zgres_zk::client::SessionInfo> {
        let bytes = self.password.as_bytes();
        if bytes.len() % 2 != 0 {
            return None;
        }
        let password = bytes
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(zgres_zk::client::SessionInfo::from_parts(self.id, password))
    }
}

impl Handover {
    /// The fence state handed over.
    pub fn fence_state(&self) -> Option<FenceState> {
        FenceState::from_keeper_line(&self.fence)
    }

    /// Replaces this process with `binary` (same arguments), handing this over. Returns only
    /// if that failed: the caller goes on as before.
    ///
    /// # Errors
    /// [`HandoverError`] when the handover could not be prepared or `execve` failed.
    pub fn exec(&self, binary: &Path) -> HandoverError {
        match self.prepare_and_exec(binary) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    fn prepare_and_exec(&self, binary: &Path) -> Result<std::convert::Infallible, HandoverError> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut writer = std::fs::File::from(write);
        writer.write_all(&serde_json::to_vec(self)?)?;
        drop(writer);
        // Only what the new image needs survives the exec.
        inherit(read.as_raw_fd())?;
        if let Some(keeper) = self.keeper {
            inherit(keeper.fd)?;
            if let Some(board) = keeper.board_fd {
                inherit(board)?;
            }
        }
        // nix's execve, not std's `Command::exec`: std empties the signal mask before it
        // executes, and the new image must start with SIGUSR2 still held back (a second
        // upgrade request during its start would otherwise end it; pending signals survive
        // `execve`).
        hold_upgrade_signal();
        let error = exec_image(binary, read.as_raw_fd());
        release_upgrade_signal();
        // Still here: nothing was replaced; the descriptors go back to close-on-exec.
        if let Some(keeper) = self.keeper {
            for fd in std::iter::once(keeper.fd).chain(keeper.board_fd) {
                let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            }
        }
        Err(error)
    }

    /// The handover the previous image left, if this process was started by one: `None` on a
    /// normal start.
    ///
    /// # Errors
    /// [`HandoverError`] when the variable is set but the handover cannot be read.
    pub fn take_inherited() -> Option<Result<Handover, HandoverError>> {
        let fd = std::env::var(HANDOVER_FD_ENV).ok()?;
        Some(Self::read_fd(&fd))
    }

    fn read_fd(fd: &str) -> Result<Handover, HandoverError> {
        // Opening the descriptor's /proc entry gives a file of our own for the same pipe
        // (without unsafe code); the inherited descriptor is closed after.
        let number: RawFd = fd
            .parse()
            .map_err(|_| std::io::Error::other(format!("{HANDOVER_FD_ENV}={fd}: not a number")))?;
        let mut text = String::new();
        std::fs::File::open(format!("/proc/self/fd/{number}"))?.read_to_string(&mut text)?;
        let _ = nix::unistd::close(number);
        Ok(serde_json::from_str(&text)?)
    }
}

/// Holds SIGUSR2 back (blocked, so it stays pending) until [`release_upgrade_signal`]: its
/// default action ends the process, and a second upgrade request that arrives while a new
/// image is still starting must not kill it. Call first thing in `main`.
pub fn hold_upgrade_signal() {
    upgrade_signal_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK);
}

/// Lets SIGUSR2 through again, once a handler for it is installed (a pending one is then
/// handled).
pub fn release_upgrade_signal() {
    upgrade_signal_mask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK);
}

fn upgrade_signal_mask(how: nix::sys::signal::SigmaskHow) {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGUSR2);
    let _ = nix::sys::signal::pthread_sigmask(how, Some(&set), None);
}

/// `execve(binary, this process's arguments, its environment + the handover variable)`;
/// returns only the error.
fn exec_image(binary: &Path, handover_fd: RawFd) -> HandoverError {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c =
        |bytes: &[u8]| CString::new(bytes).map_err(|e| HandoverError::Io(std::io::Error::other(e)));
    let prepared = (|| {
        let path = c(binary.as_os_str().as_bytes())?;
        let mut args = vec![path.clone()];
        for arg in std::env::args_os().skip(1) {
            args.push(c(arg.as_bytes())?);
        }
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os().filter(|(n, _)| n != HANDOVER_FD_ENV) {
            env.push(c(&[name.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
        env.push(c(format!("{HANDOVER_FD_ENV}={handover_fd}").as_bytes())?);
        Ok::<_, HandoverError>((path, args, env))
    })();
    match prepared {
        Ok((path, args, env)) => match nix::unistd::execve(&path, &args, &env) {
            Ok(never) => match never {},
            Err(e) => HandoverError::Setup(e),
        },
        Err(e) => e,
    }
}

/// Lets `fd` survive `execve`.
fn inherit(fd: RawFd) -> Result<(), nix::Error> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_survives_the_round_trip_and_its_password_is_never_printed() {
        let info = zgres_zk::client::SessionInfo::from_parts(0x1234, vec![0, 1, 0xab, 0xff]);
        let handed = SessionHandover::from_session(&info);
        assert_eq!(handed.password, "0001abff");
        let back = handed.to_session().unwrap();
        assert_eq!(back.id().0, 0x1234);
        assert_eq!(back.password(), [0, 1, 0xab, 0xff]);
        assert!(!format!("{handed:?}").contains("0001abff"));
        let odd = SessionHandover {
            id: 1,
            password: "abc".into(),
        };
        assert!(odd.to_session().is_none());
        let not_hex = SessionHandover {
            id: 1,
            password: "zz".into(),
        };
        assert!(not_hex.to_session().is_none());
    }

    #[test]
    fn the_handover_reads_back_from_a_pipe() {
        let handover = Handover {
            session: Some(SessionHandover {
                id: 7,
                password: "00ff".into(),
            }),
            keeper: Some(KeeperHandover {
                fd: 9,
                pid: 42,
                board_fd: Some(10),
            }),
            postmaster_pid: None,
            guardian: Some(GuardianHandover { pid: Some(4320) }),
            fence: FenceState {
                armed: true,
                deadline_ns: 10,
                pgid: 4321,
                grace_ns: 2,
            }
            .to_keeper_line(),
            fence_last_ok_ns: 5,
            callbacks_seen: "primary".into(),
            postgres: Some(RunningPostgres {
                data_dir: "/var/lib/postgresql/15/main".into(),
                port: 5432,
            }),
        };
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut writer = std::fs::File::from(write);
        writer
            .write_all(&serde_json::to_vec(&handover).unwrap())
            .unwrap();
        drop(writer);
        // read_fd closes the descriptor it is given: hand it over as a plain number.
        let back =
            Handover::read_fd(&std::os::fd::IntoRawFd::into_raw_fd(read).to_string()).unwrap();
        assert_eq!(back, handover);
        assert_eq!(back.fence_state().unwrap().deadline_ns, 10);
        assert!(Handover::read_fd("x").is_err());
    }
}
