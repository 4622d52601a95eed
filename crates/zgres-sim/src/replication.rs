//! WAL between the simulated nodes: streaming, fast shutdown, the client's commits and their
//! acknowledgement (at once, or once the synchronous standby has them), and the primary's
//! synchronous-replication round driven by the real `SyncKeeper`.

use std::collections::BTreeSet;
use std::time::Duration;

use zgres_deadman_core::synchronous::{Connected, Progress, SyncInputs, SyncStep};
use zgres_schema::documents::SyncMode;
use zgres_schema::{Lsn, NodeId};

use crate::checker::Write;
use crate::settings::Bug;
use crate::world::World;

/// `synchronous_ack_timeout_ms` (the default).
const ACK_TIMEOUT: Duration = Duration::from_millis(3_000);

impl World {
    /// A fast shutdown: the walsenders ship everything to the standbys that follow this node,
    /// then it stops. Commits still waiting are never acknowledged.
    pub(crate) fn fast_shutdown(&mut self, i: usize) {
        let wal = self.nodes[i].pg.wal.clone();
        for j in 0..self.nodes.len() {
            let linked = self.linked(i, j);
            let standby = &mut self.nodes[j].pg;
            if j != i
                && linked
                && standby.upstream == Some(i)
                && standby.answers(self.t)
                && wal.extends(&standby.wal)
            {
                standby.wal = wal.clone();
            }
        }
        self.stop_postgres(i);
    }

    /// Stops node `i`'s PostgreSQL at once; a commit waiting for its standby is lost unacknowledged.
    pub(crate) fn stop_postgres(&mut self, i: usize) {
        self.nodes[i].pg.stop();
        self.nodes[i].pending_commit = None;
    }

    /// Standbys receive what their primary has, when their WAL is a prefix of it (not always
    /// within the step: replication lags).
    pub(crate) fn stream(&mut self) {
        let t = self.t;
        for j in 0..self.nodes.len() {
            let Some(u) = self.nodes[j].pg.upstream else {
                continue;
            };
            if u == j
                || !self.linked(u, j)
                || !self.nodes[j].pg.answers(t)
                || self.nodes[j].pg.is_primary()
            {
                continue;
            }
            let source = &self.nodes[u].pg;
            if source.writable(t) && source.wal.extends(&self.nodes[j].pg.wal) {
                // Up to 3 commits' worth per step: a standby that fell behind takes a while.
                let upto =
                    Lsn((self.nodes[j].pg.wal.end.0 + self.rng.range(0, 4)).min(source.wal.end.0));
                let wal = source.wal.prefix(upto);
                self.nodes[j].pg.wal = wal;
            }
        }
    }

    /// The standbys connected to primary `i` (streaming: their WAL is a prefix of its), and
    /// which one PostgreSQL treats as synchronous under its `synchronous_standby_names`.
    pub(crate) fn connected(&self, i: usize) -> Vec<Connected> {
        self.standbys_of(i)
            .map(|(node, streaming, synchronous, flush)| Connected {
                node,
                streaming,
                synchronous,
                flush: Some(flush),
            })
            .collect()
    }

    /// `(node, streaming, synchronous, flushed)` of each standby connected to primary `i`.
    fn standbys_of(&self, i: usize) -> impl Iterator<Item = (NodeId, bool, bool, Lsn)> + '_ {
        let primary = &self.nodes[i].pg;
        let names = &primary.standby_names;
        let waits = waits_for(names);
        let mut any_sync_given = false;
        self.nodes.iter().enumerate().filter_map(move |(j, node)| {
            let pg = &node.pg;
            // A standby whose link is cut is not connected: PostgreSQL does not list it.
            if j == i
                || pg.upstream != Some(i)
                || !self.linked(i, j)
                || !pg.answers(self.t)
                || pg.is_primary()
            {
                return None;
            }
            let streaming = primary.wal.extends(&pg.wal);
            let synchronous = streaming
                && if names == "*" {
                    !std::mem::replace(&mut any_sync_given, true)
                } else {
                    waits
                        .as_ref()
                        .is_some_and(|(_, listed)| listed.contains(&node.id.to_string()))
                };
            Some((node.id, streaming, synchronous, pg.wal.end))
        })
    }

    /// A client commits on every writable primary, one commit at a time per primary: with
    /// `synchronous_standby_names` set, the commit is acknowledged once a synchronous standby
    /// has it.
    pub(crate) fn write(&mut self) {
        let t = self.t;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].pg.writable(t) {
                self.nodes[i].pending_commit = None;
                continue;
            }
            if self.nodes[i].pending_commit.is_none() && self.rng.chance(500) {
                let wal = &mut self.nodes[i].pg.wal;
                wal.end = Lsn(wal.end.0 + 1);
                let write = Write {
                    node: i,
                    segment: wal.current(),
                    lsn: wal.end,
                    at: t,
                };
                self.nodes[i].pending_commit = Some(write);
            }
            let Some(write) = self.nodes[i].pending_commit else {
                continue;
            };
            let needed = waits_for(&self.nodes[i].pg.standby_names).map_or(0, |(k, _)| k);
            let acknowledged = self
                .standbys_of(i)
                .filter(|(_, _, synchronous, flush)| *synchronous && *flush >= write.lsn)
                .count()
                >= needed;
            if acknowledged {
                self.record.writes.push(write);
                self.nodes[i].pending_commit = None;
            }
        }
    }

    /// The primary's synchronous round, as the deadman's shell runs it after its actions:
    /// one `SyncKeeper` step, carried out. Returns whether the next round should come soon (a
    /// step was taken, or the claim waits to be narrowed).
    pub(crate) fn keep_synchronous(
        &mut self,
        i: usize,
        allowed: BTreeSet<NodeId>,
        ours: bool,
    ) -> bool {
        let t = self.t;
        let mode = self.settings.mode;
        if !ours || !self.nodes[i].pg.writable(t) {
            self.nodes[i].deadman.sync_keeper = Default::default();
            return false;
        }
        if mode == SyncMode::Off && self.nodes[i].deadman.sync_keeper.off_settled() {
            return false;
        }
        let node = &self.nodes[i];
        let position = node.pg.wal.end;
        let inputs = SyncInputs {
            mode,
            acknowledgers: self.settings.acknowledgers,
            me: node.id,
            published: self.zk.sync.clone(),
            standby_names: node.pg.standby_names.clone(),
            connected: self.connected(i),
            allowed,
            progress: Some(Progress {
                now: node.host.instant(t),
                position,
                ack_timeout: ACK_TIMEOUT,
            }),
        };
        let Some(step) = self.nodes[i].deadman.sync_keeper.step(&inputs) else {
            let now = self.nodes[i].host.instant(t);
            return self.nodes[i].deadman.sync_keeper.settling(now);
        };
        let reachable =
            !self.nodes[i].host.cut.zookeeper && self.nodes[i].deadman.session.is_some();
        let done = match &step {
            SyncStep::Publish(claim) => {
                reachable && {
                    self.zk.sync = Some(claim.document(self.nodes[i].id));
                    true
                }
            }
            SyncStep::Unpublish => {
                reachable && {
                    self.zk.sync = None;
                    true
                }
            }
            SyncStep::SetStandbyNames(names) => {
                self.nodes[i].pg.standby_names = names.clone();
                true
            }
            SyncStep::Confirm => {
                let at = if self.settings.bug == Some(Bug::SkipSyncConfirm) {
                    // The bug: no wait for the commits acknowledged before it was synchronous.
                    Lsn::ZERO
                } else {
                    position
                };
                self.nodes[i].deadman.sync_keeper.confirming(at);
                true
            }
        };
        if done {
            self.nodes[i].deadman.sync_keeper.done(&step);
        }
        done
    }
}

/// How many standbys a commit waits for under `names`, and which (node ids), as PostgreSQL
/// reads `synchronous_standby_names`: empty waits for none; `*` for any one; `"ID"` for that
/// one; `FIRST k (...)` for the first `k` listed (zgres lists exactly `k`); `ANY k (...)` for
/// any `k` listed. Parsed here, not with the core's code, so the simulated PostgreSQL does
/// not share a mistake with the deadman.
fn waits_for(names: &str) -> Option<(usize, Vec<String>)> {
    let names = names.trim();
    if names.is_empty() {
        return None;
    }
    if names == "*" {
        return Some((1, Vec::new()));
    }
    let unquote = |n: &str| n.trim().trim_matches('"').to_owned();
    for method in ["FIRST ", "ANY "] {
        if let Some(rest) = names.strip_prefix(method) {
            let (k, list) = rest.split_once(' ')?;
            let list = list.trim().strip_prefix('(')?.strip_suffix(')')?;
            return Some((k.parse().ok()?, list.split(',').map(unquote).collect()));
        }
    }
    Some((1, vec![unquote(names)]))
}

#[cfg(test)]
mod tests {
    use super::waits_for;

    #[test]
    fn synchronous_standby_names_are_read_as_postgres_reads_them() {
        assert_eq!(waits_for(""), None);
        assert_eq!(waits_for("*"), Some((1, vec![])));
        assert_eq!(
            waits_for("\"10.0.0.2:5432\""),
            Some((1, vec!["10.0.0.2:5432".to_owned()]))
        );
        assert_eq!(
            waits_for("ANY 2 (\"10.0.0.2:5432\",\"10.0.0.3:5432\",\"10.0.0.4:5432\")"),
            Some((
                2,
                vec![
                    "10.0.0.2:5432".to_owned(),
                    "10.0.0.3:5432".to_owned(),
                    "10.0.0.4:5432".to_owned()
                ]
            ))
        );
        assert_eq!(
            waits_for("FIRST 2 (\"10.0.0.2:5432\",\"10.0.0.3:5432\")").map(|(k, l)| (k, l.len())),
            Some((2, 2))
        );
    }
}
