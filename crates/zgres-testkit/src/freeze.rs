//! A PostgreSQL instance frozen as storage that hangs leaves it: every process stopped
//! (SIGSTOP), then continued (SIGCONT). The chaos `pg-freeze` fault and the instance-kill
//! tests use it: the deadman sees a primary that does not answer, stops it after its restart
//! bound and hands over, and a write a frozen backend was in the middle of must not then
//! commit beside the new primary's when it thaws.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Stops postmaster `pid` (so it forks no more), then every process it started; returns them
/// all, for [`thaw`].
pub fn freeze(pid: i32) -> Vec<i32> {
    if kill(Pid::from_raw(pid), Signal::SIGSTOP).is_err() {
        return Vec::new();
    }
    let mut frozen = vec![pid];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return frozen;
    };
    for child in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: the state, then the parent's pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if parent == Some(pid) && kill(Pid::from_raw(child), Signal::SIGSTOP).is_ok() {
            frozen.push(child);
        }
    }
    frozen
}

/// Continues what [`freeze`] stopped (those killed meanwhile are gone: nothing happens).
pub fn thaw(frozen: &[i32]) {
    for &pid in frozen {
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
}
