//! The lock holder of a standby cluster (`standby_cluster` in `/config`): a "standby leader"
//! that streams from the primary outside the group and is never promoted. Its members follow
//! it as they follow a primary (see `following.rs`); removing `standby_cluster` makes it a
//! normal lock holder, which promotes it.

use super::{Action, DataDirKind, Decider, Observation};

impl Decider {
    /// The lock holder's actions in a standby cluster. A running primary and a damaged data
    /// directory are left to the normal rules before this (a group made a standby cluster
    /// after its promotion keeps its primary: the warning says so).
    pub(super) fn as_standby_leader(&mut self, obs: &Observation) -> Vec<Action> {
        let pg = &obs.postgres;
        // Nothing to follow yet (the source group has no lock holder) or a source naming this
        // node itself: what runs keeps running, nothing starts.
        let Some(source) = obs.standby_source.filter(|s| *s != self.me) else {
            return vec![];
        };
        if pg.running {
            self.down.stop();
            return match pg.probe {
                Some(p) if p.in_recovery && p.upstream != Some(source) => vec![Action::Repoint {
                    upstream: source,
                    slot: false,
                }],
                _ => vec![],
            };
        }
        if pg.data_dir == DataDirKind::Empty {
            return if self.retry.clone.paused(obs.now) {
                vec![]
            } else {
                vec![Action::CloneFrom { source }]
            };
        }
        // Down with data: started (or rewound first) within the restart bound, else the lock
        // goes to a member that can run.
        let since = self.down.since(obs.now, pg.running);
        if obs.now.duration_since(since) >= self.timing.primary_restart_timeout {
            self.gave_up = Some(obs.now);
            self.down.stop();
            return vec![self.release(obs, false)];
        }
        match pg.data_dir {
            DataDirKind::Standby => vec![Action::StartStandby {
                upstream: Some(source),
                slot: false,
            }],
            // A former primary: it may hold WAL the source never had.
            DataDirKind::Primary if !self.retry.rewind.paused(obs.now) => {
                vec![Action::Rewind { source }]
            }
            _ => vec![],
        }
    }
}
