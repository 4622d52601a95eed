//! The primary this node last saw: the lock holder, and the furthest WAL position it
//! published, which bounds how far behind a replica may be and still take over.

use zgres_schema::{Lsn, NodeId};

use super::{LockView, Observation};

/// The lock holder last seen, and the furthest position a holder published.
#[derive(Debug, Default)]
pub(super) struct LastPrimary {
    /// Holder of the lock last seen, whether or not it published a position yet.
    holder: Option<NodeId>,
    /// The holder that last published a position, and the furthest it published.
    published: Option<(NodeId, Lsn)>,
}

impl LastPrimary {
    /// Notes the lock holder in `obs` and the position it published, if another node holds
    /// the lock; a position never moves back while the same node holds it.
    pub(super) fn observe(&mut self, obs: &Observation) {
        let LockView::Other(Some(holder)) = obs.lock else {
            return;
        };
        self.holder = Some(holder);
        let published = obs
            .peers
            .iter()
            .find(|p| p.state.node == holder)
            .and_then(|p| p.state.wal.write);
        match (&mut self.published, published) {
            (Some((node, lsn)), Some(new)) if *node == holder => *lsn = (*lsn).max(new),
            (_, Some(new)) => self.published = Some((holder, new)),
            _ => {}
        }
    }

    /// The lock holder last seen.
    pub(super) fn node(&self) -> Option<NodeId> {
        self.holder
    }

    /// The furthest position the last holder that published one published.
    pub(super) fn position(&self) -> Option<Lsn> {
        self.published.map(|(_, lsn)| lsn)
    }
}
