//! The paused stop, an operation: the group is paused (`zgresctl pause`), a node's deadman is
//! stopped with SIGTERM once it has seen the pause, and the group is resumed when the fault
//! ends. The deadman leaves PostgreSQL running (a primary under a lock left persistent); the
//! supervisor starts it again meanwhile, as an operator would, and it takes PostgreSQL over.
//! Alone, it must never cause a failover.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The longest a deadman may take to see the pause before its stop is given up.
const SEE_THE_PAUSE: Duration = Duration::from_secs(10);

/// The paused stops under way.
#[derive(Debug, Default)]
pub struct PausedStops {
    /// By node, until when its deadman may take to see the pause, once the group was paused.
    waiting: BTreeMap<usize, Instant>,
    /// The deadmen this run stopped: their exits are expected.
    stopped: Vec<u32>,
}

/// Whether a deadman's log shows it sees its group paused now: its last pause line comes after
/// its last resume line.
pub fn sees_the_pause(log: &str) -> bool {
    match (
        log.rfind("the group is paused"),
        log.rfind("the group is resumed"),
    ) {
        (Some(paused), Some(resumed)) => paused > resumed,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Runs `zgresctl pause|resume main`, reporting a failure to `out`.
pub fn set_paused(zookeeper: &str, paused: bool, out: &mut impl Write) {
    let command = if paused { "pause" } else { "resume" };
    let (code, output) = zgres_testkit::zgresctl::run(zookeeper, &[command, "main"]);
    if code != 0 {
        let _ = writeln!(
            out,
            "    zgresctl {command} exited {code}: {}",
            output.trim()
        );
    }
}

impl PausedStops {
    /// Node `n`'s deadman is to be stopped once it sees the pause.
    pub fn begin(&mut self, n: usize) {
        self.waiting.insert(n, Instant::now() + SEE_THE_PAUSE);
    }

    /// Forgets node `n`'s stop if it is still waiting.
    pub fn end(&mut self, n: usize) {
        self.waiting.remove(&n);
    }

    /// Stops each waiting node's deadman (`pid`, its `log`) that now sees the pause; gives up
    /// on one that is gone or did not see the pause in time.
    pub fn tick(&mut self, n: usize, deadman: Option<(u32, String)>, out: &mut impl Write) {
        let Some(&until) = self.waiting.get(&n) else {
            return;
        };
        let Some((pid, log)) = deadman else {
            self.waiting.remove(&n);
            return;
        };
        if sees_the_pause(&log) {
            self.waiting.remove(&n);
            if kill(Pid::from_raw(pid as i32), Signal::SIGTERM).is_ok() {
                self.stopped.push(pid);
                let _ = writeln!(out, "    n{n}'s deadman stopped in the paused group");
            }
        } else if Instant::now() >= until {
            self.waiting.remove(&n);
            let _ = writeln!(out, "    n{n}'s deadman did not see the pause; not stopped");
        }
    }

    /// Whether the exit of deadman `pid` was this run's doing (and forgets it).
    pub fn expected_exit(&mut self, pid: u32) -> bool {
        let before = self.stopped.len();
        self.stopped.retain(|&p| p != pid);
        self.stopped.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_pause_or_resume_line_decides() {
        assert!(!sees_the_pause("started"));
        assert!(sees_the_pause("x the group is paused: no automatic action"));
        assert!(!sees_the_pause(
            "the group is paused ... the group is resumed: automatic actions are back on"
        ));
        assert!(sees_the_pause(
            "the group is paused ... the group is resumed ... the group is paused"
        ));
    }
}
