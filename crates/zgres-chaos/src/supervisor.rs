//! The supervisor: restarts a dead deadman after a random delay, as systemd's `Restart=`
//! would, and records every deadman that exited without being killed by the run.

use std::io::Write;
use std::time::{Duration, Instant};

use zgres_sim::rng::Rng;

use crate::cluster::{Cluster, SIZE};
use crate::faults::random_delay;

/// Watches the deadmen of a [`Cluster`].
pub struct Supervisor {
    /// Restart delays: a stream of their own, so they never shift the faults' plan.
    rng: Rng,
    due: [Option<Instant>; SIZE],
    /// "nN deadman: how it ended", for each exit the run did not cause.
    pub unexpected_exits: Vec<String>,
}

impl Supervisor {
    /// A supervisor whose delays are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Supervisor {
            rng: Rng::new(seed ^ 0xBB67_AE85_84CA_A73B),
            due: [None; SIZE],
            unexpected_exits: Vec::new(),
        }
    }

    /// Reaps exited deadmen (reporting those the run did not kill to `out`), schedules the
    /// restart of each dead one 0.2–3 s on, and restarts those due.
    pub fn tick(&mut self, cluster: &mut Cluster, out: &mut impl Write) {
        let now = Instant::now();
        for n in 0..SIZE {
            if let Some(how) = cluster.reap(n) {
                let _ = writeln!(out, "    n{n}'s deadman exited by itself: {how}");
                self.unexpected_exits.push(format!("n{n} deadman: {how}"));
            }
            if cluster.deadman_runs(n) {
                continue;
            }
            match self.due[n] {
                None => {
                    let delay = random_delay(
                        &mut self.rng,
                        Duration::from_millis(200),
                        Duration::from_secs(3),
                    );
                    self.due[n] = Some(now + delay);
                }
                Some(due) if now >= due => {
                    self.due[n] = None;
                    cluster.restart_deadman(n);
                }
                Some(_) => {}
            }
        }
    }
}
