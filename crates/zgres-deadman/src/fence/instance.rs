//! Killing a PostgreSQL instance whole: its postmaster's process group, then every other
//! process of the instance.
//!
//! Every process a postmaster starts (backends, walsenders, the checkpointer, ...) calls
//! `setsid()` and leads a process group of its own, so killing the postmaster's group leaves
//! them running. An idle backend exits once it notices its postmaster died, but one in the middle
//! of a statement finishes it first and commits it, writing and flushing the WAL itself; a
//! frozen one (SIGSTOP, storage that hangs) commits whenever it thaws. Killing only the
//! postmaster could so let a write be acknowledged by a fenced primary after another node was
//! promoted. After the group, every process of the instance is killed too: every process running
//! a `postgres` binary whose working directory is the instance's data directory (PostgreSQL
//! works in it).
//!
//! Only `/proc` is read, never the data directory's file system (which may be the thing that
//! hangs). The directory is the postmaster's [`MARKER`], which the deadman sets to the resolved
//! data directory when it starts it (readable at once, unlike the working directory, which the
//! postmaster changes a moment after its start; the backends overwrite their own environment
//! with their process titles, so it marks only the postmaster), or else the working directory
//! of a postmaster it adopted. It is read while the postmaster lives, or remembered from an
//! earlier look ([`KnownInstance`]) for a kill after it died.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};

/// How many times `/proc` is swept: a process forked while a sweep passed it is found by the
/// next one (a dead postmaster forks no more, so passes end once one finds nothing).
const SWEEPS: usize = 4;

/// The environment variable that names, resolved, the data directory of a postmaster the deadman
/// started.
pub const MARKER: &str = "ZGRES_DATA_DIR";

/// The data directory of the PostgreSQL whose postmaster is `pid`: as its [`MARKER`] names it,
/// else its working directory if it is a live process running a `postgres` binary. `None` once
/// it is gone (or a zombie).
pub fn instance_dir(pid: i32) -> Option<PathBuf> {
    if pid <= 0 {
        return None;
    }
    // The marker is ours, and already in the environment of the `setpriv` that is about to
    // become the postmaster: no need to wait for it to run `postgres`.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    match marker_in(&environ) {
        Marker::Found(dir) => return Some(PathBuf::from(std::ffi::OsString::from_vec(dir))),
        // In the middle of an `exec`, the new image's environment is not set up yet (it reads
        // empty) while its executable and the old working directory already show: read again
        // later rather than take the directory the deadman runs in (seen in CI: a keeper that
        // learned it never killed the busy backend its dead deadman left).
        Marker::Unreadable => return None,
        Marker::Absent => {}
    }
    if !runs_postgres(pid) {
        return None;
    }
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// What a process's environment (`/proc/PID/environ`) says of the [`MARKER`].
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    /// Its value.
    Found(Vec<u8>),
    /// A readable environment without it (a postmaster zgres did not start).
    Absent,
    /// Nothing readable: the process is gone, or in the middle of an `exec`.
    Unreadable,
}

fn marker_in(environ: &[u8]) -> Marker {
    if environ.is_empty() {
        return Marker::Unreadable;
    }
    let prefix = [MARKER.as_bytes(), b"="].concat();
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_slice()))
        .map_or(Marker::Absent, |dir| Marker::Found(dir.to_vec()))
}

/// What [`kill_instance`] killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Killed {
    /// The postmaster's process group was there to kill.
    pub group: bool,
    /// Kills sent to processes of the instance outside that group.
    pub strays: usize,
    /// The instance's data directory, as found (`None`: only the group could be killed).
    pub dir: Option<PathBuf>,
}

impl Killed {
    /// Whether anything was killed.
    pub fn any(&self) -> bool {
        self.group || self.strays > 0
    }
}

/// Kills PostgreSQL: the process group `pgid` its postmaster leads, then every process of the
/// instance outside it. The instance is `known_dir` (as [`instance_dir`] gave it earlier, while
/// the postmaster lived), else read from the postmaster before the kill; without either only
/// the group is killed. Never touches the data directory's file system.
pub fn kill_instance(pgid: i32, known_dir: Option<&Path>) -> Killed {
    if pgid <= 0 {
        return Killed {
            group: false,
            strays: 0,
            dir: None,
        };
    }
    // An earlier look first: reading a process's environment takes its memory map's lock,
    // which a postmaster stuck in a page fault on hung storage could hold up; its working
    // directory and executable, read by the sweep, need no such lock.
    let dir = match known_dir {
        Some(dir) => Some(dir.to_path_buf()),
        None => instance_dir(pgid),
    };
    let group = killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok();
    let strays = dir.as_deref().map_or(0, kill_strays);
    Killed { group, strays, dir }
}

/// Kills what is left of a dead instance in `dir` (the resolved data directory, with no live
/// postmaster of its own: the caller checks): backends whose postmaster died while nothing was
/// there to kill them (its deadman and fence keeper killed together). Busy, they can still
/// commit; alive, they keep a new postmaster from starting ("pre-existing shared memory block
/// is still in use"). Returns how many kills were sent.
pub fn kill_leftovers(dir: &Path) -> usize {
    kill_strays(dir)
}

/// Kills every process of the instance in `dir`; returns how many kills were sent.
fn kill_strays(dir: &Path) -> usize {
    let mut sent = 0;
    for _ in 0..SWEEPS {
        let found = processes_in(dir);
        if found.is_empty() {
            break;
        }
        for pid in found {
            let target = Pid::from_raw(pid);
            // Each leads its own group (setsid): the group takes whatever it started too
            // (an archive_command's shell).
            let killed = if getpgid(Some(target)) == Ok(target) {
                killpg(target, Signal::SIGKILL).is_ok()
            } else {
                kill(target, Signal::SIGKILL).is_ok()
            };
            sent += usize::from(killed);
        }
    }
    sent
}

/// Live processes (not zombies: their working directory is gone) running a `postgres` binary
/// in `dir`.
fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
                && runs_postgres(pid)
        })
        .collect()
}

/// Whether `pid` runs a `postgres` binary (also one replaced on disk since: "postgres (deleted)").
fn runs_postgres(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "postgres" || n.starts_with("postgres "))
    })
}

/// How many reads of a new postmaster's directory [`KnownInstance::pending`] asks for before it
/// gives up (at the keeper's 20 ms: 2 s; the exec that carries the marker takes milliseconds).
const LEARN_ATTEMPTS: u32 = 100;

/// The data directory of a postmaster, learned while it lived.
#[derive(Debug, Default)]
pub struct KnownInstance {
    pgid: i32,
    dir: Option<std::path::PathBuf>,
    /// Reads of `pgid`'s directory that found nothing yet.
    misses: u32,
}

impl KnownInstance {
    /// Reads the directory of postmaster `pid` from `/proc` unless already known for it (never
    /// the data directory's file system); what was read is kept once the postmaster is gone.
    /// Just after its start the postmaster may not run `postgres` yet (`setpriv` execs it): it
    /// is read again at the next call.
    pub fn learn(&mut self, pid: i32) {
        if pid <= 0 || (pid == self.pgid && self.dir.is_some()) {
            return;
        }
        if pid != self.pgid {
            self.misses = 0;
        }
        match instance_dir(pid) {
            Some(dir) => self.dir = Some(dir),
            None if pid != self.pgid => {
                self.dir = None;
                self.misses = 1;
            }
            None => self.misses = self.misses.saturating_add(1),
        }
        self.pgid = pid;
    }

    /// Whether postmaster `pid`'s directory is still to be learned and worth another read
    /// soon: a fencer that first heard of it before `setpriv` executed `postgres` read no
    /// marker, and if its deadman dies before the fencer wakes again, the postmaster dies with
    /// it and the directory can no longer be read. Bounded, so a target that never shows one
    /// costs nothing after [`LEARN_ATTEMPTS`].
    pub fn pending(&self, pid: i32) -> bool {
        pid > 0 && self.dir(pid).is_none() && (pid != self.pgid || self.misses < LEARN_ATTEMPTS)
    }

    /// The directory of target `pgid`, if learned.
    pub fn dir(&self, pgid: i32) -> Option<&std::path::Path> {
        self.dir.as_deref().filter(|_| self.pgid == pgid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_is_not_postgres_has_no_instance() {
        assert_eq!(instance_dir(std::process::id() as i32), None);
        assert_eq!(instance_dir(0), None);
        assert_eq!(instance_dir(-1), None);
    }

    #[test]
    fn a_new_postmasters_directory_is_read_again_for_a_bounded_while() {
        let not_postgres = std::process::id() as i32;
        let mut known = KnownInstance::default();
        assert!(known.pending(not_postgres), "not read yet");
        assert!(!known.pending(0));
        known.learn(not_postgres);
        assert!(
            known.pending(not_postgres),
            "read once, nothing found: read again"
        );
        for _ in 1..LEARN_ATTEMPTS {
            known.learn(not_postgres);
        }
        assert!(
            !known.pending(not_postgres),
            "given up after {LEARN_ATTEMPTS} reads"
        );
        assert!(
            known.pending(not_postgres + 1),
            "another postmaster starts afresh"
        );
    }

    #[test]
    fn an_environment_read_mid_exec_says_nothing_and_a_marker_names_the_directory() {
        assert_eq!(marker_in(b""), Marker::Unreadable);
        assert_eq!(
            marker_in(b"HOME=/var/lib/postgresql\0LANG=C\0"),
            Marker::Absent
        );
        assert_eq!(
            marker_in(b"HOME=/x\0ZGRES_DATA_DIR=/srv/pg data/main\0LANG=C\0"),
            Marker::Found(b"/srv/pg data/main".to_vec())
        );
    }

    #[test]
    fn nothing_is_killed_for_no_group() {
        assert!(!kill_instance(0, None).any());
    }

    #[test]
    fn a_directory_without_postgres_processes_has_none() {
        assert!(processes_in(Path::new("/nonexistent/zgres-test")).is_empty());
    }

    #[test]
    fn the_marker_is_read_from_a_process_environment() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .env(MARKER, "/srv/pg data/main")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let marker_of = |pid: i32| {
            marker_in(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        };
        // The new image's environment shows once the child has executed `sleep`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = marker_of(pid);
        while !matches!(found, Marker::Found(_)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = marker_of(pid);
        }
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, Marker::Found(b"/srv/pg data/main".to_vec()));
        assert_eq!(marker_of(std::process::id() as i32), Marker::Absent);
    }
}
