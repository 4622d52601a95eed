//! Switchover and failover requests: checked against the group as it is, written to
//! `/switchover/{GROUP}` create-only, cancelled, and waited for.

use std::time::Duration;

use zgres_schema::documents::{Role, Switchover, SwitchoverKind, SyncMode, SyncState};
use zgres_schema::{decode, encode, NodeId, Znode};
use zgres_zk::{CreateKind, Outcome};

use super::{resolve_node, CtlError, GroupView, Inventory, NodeView, Refusal, Usage};

/// The parts of a switchover or failover request the operator chooses.
#[derive(Debug, Clone)]
pub struct HandOver {
    /// Planned (the primary hands over) or forced.
    pub kind: SwitchoverKind,
    /// The node to promote; the best replica when `None` (switchover only).
    pub to: Option<String>,
    /// Not before this time (ms since the epoch).
    pub scheduled_at_ms: Option<u64>,
}

impl Inventory {
    /// Checks `request` against the group as it is and writes `/switchover/{GROUP}`.
    /// Returns the request written, and the current primary.
    ///
    /// # Errors
    /// [`CtlError::Refused`] when the group has no primary (switchover), the target is not a
    /// healthy replica, or there is none; [`CtlError::Pending`] when a request exists.
    pub async fn request_hand_over(
        &self,
        group: &str,
        request: &HandOver,
    ) -> Result<(Switchover, Option<NodeId>), CtlError> {
        let view = self.groups(Some(group)).await?.remove(0);
        let healthy_replica = |n: &NodeView| {
            n.state
                .as_ref()
                .is_some_and(|s| s.role == Role::Replica && s.problems.is_empty())
        };
        let to = match &request.to {
            Some(to) => {
                let (node, _) = resolve_node(&view, to)?;
                if view.leader == Some(node.node) {
                    return Err(Refusal::AlreadyPrimary(node.node).into());
                }
                if !healthy_replica(node) {
                    return Err(Refusal::NotAHealthyReplica {
                        node: node.node,
                        why: node.state.as_ref().map_or_else(
                            || "its state is unreadable".to_owned(),
                            |s| format!("{:?}, problems: {:?}", s.role, s.problems),
                        ),
                    }
                    .into());
                }
                if request.kind == SwitchoverKind::Failover {
                    self.check_synchronous(&view, node.node).await?;
                }
                Some(node.node)
            }
            None if request.kind == SwitchoverKind::Failover => {
                return Err(Usage::FailoverNeedsTarget.into())
            }
            None => {
                if !view
                    .nodes
                    .iter()
                    .any(|n| Some(n.node) != view.leader && healthy_replica(n))
                {
                    return Err(Refusal::NoHealthyReplica(group.to_owned()).into());
                }
                None
            }
        };
        if request.kind == SwitchoverKind::Switchover && view.leader.is_none() {
            return Err(Refusal::NoPrimary(group.to_owned()).into());
        }
        let doc = Switchover {
            kind: request.kind,
            from: (request.kind == SwitchoverKind::Switchover)
                .then_some(view.leader)
                .flatten(),
            to,
            scheduled_at_ms: request.scheduled_at_ms,
            requested_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            stopped_lsn: None,
        };
        let path = self.layout.path(&Znode::Switchover(view.group.clone()));
        self.session
            .mkdir(&self.layout.dir(zgres_schema::Dir::Switchover))
            .await?;
        let data = encode(&doc)?;
        match self
            .session
            .create(&path, &data, CreateKind::Persistent)
            .await?
        {
            Outcome::Done(_) => Ok((doc, view.leader)),
            Outcome::NotFound | Outcome::BadVersion => Err(CtlError::Conflict(path)),
            Outcome::Exists => {
                let pending = self.pending_hand_over(group).await?;
                Err(CtlError::Pending {
                    group: group.to_owned(),
                    kind: pending.as_ref().map_or("switchover".into(), |p| {
                        format!("{:?}", p.kind).to_lowercase()
                    }),
                    to: pending
                        .and_then(|p| p.to)
                        .map_or("the best replica".into(), |n| n.to_string()),
                })
            }
        }
    }

    /// In synchronous mode only a node `/sync` lists may be promoted without a hand-over (the
    /// deadmen drop any other failover request): refuse it here, with the reason.
    async fn check_synchronous(&self, view: &GroupView, node: NodeId) -> Result<(), CtlError> {
        let mode = view
            .config
            .as_ref()
            .map_or(SyncMode::Off, |c| c.synchronous_mode);
        if mode == SyncMode::Off {
            return Ok(());
        }
        let path = self.layout.path(&Znode::Sync(view.group.clone()));
        let listed = match self.get(&path).await? {
            // No `/sync` yet: nothing is known to be missing from any node.
            None => true,
            Some((data, _)) => {
                // Listed under a claim of no holders (a change of standbys under way) says
                // nothing of the node: the deadmen would drop the request.
                let sync: SyncState = decode(&path, &data)?;
                sync.primary == node || (sync.standbys.contains(&node) && sync.holders() > 0)
            }
        };
        if listed {
            Ok(())
        } else {
            Err(Refusal::NotSynchronous { node, mode }.into())
        }
    }

    /// The pending switchover or failover request, if any.
    ///
    /// # Errors
    /// ZooKeeper failures or an unreadable request.
    pub async fn pending_hand_over(&self, group: &str) -> Result<Option<Switchover>, CtlError> {
        let path = self
            .layout
            .path(&Znode::Switchover(self.group_name(group)?));
        match self.get(&path).await? {
            Some((data, _)) => Ok(Some(decode(&path, &data)?)),
            None => Ok(None),
        }
    }

    /// Deletes the pending request; returns whether there was one.
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn cancel_hand_over(&self, group: &str) -> Result<bool, CtlError> {
        let path = self
            .layout
            .path(&Znode::Switchover(self.group_name(group)?));
        Ok(self.session.delete(&path, None).await?.is_done())
    }

    /// Waits until the request is gone and another node than `old` holds the lock; returns
    /// the new primary.
    ///
    /// # Errors
    /// [`CtlError::HandOverTimeout`] after `timeout`, saying what was seen last.
    pub async fn wait_hand_over(
        &self,
        group: &str,
        old: Option<NodeId>,
        timeout: Duration,
    ) -> Result<NodeId, CtlError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending = self.pending_hand_over(group).await?;
            let leader = self.groups(Some(group)).await?.remove(0).leader;
            if let (None, Some(leader)) = (&pending, leader) {
                if Some(leader) != old {
                    return Ok(leader);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CtlError::HandOverTimeout {
                    timeout,
                    primary: leader,
                    still_pending: pending.is_some(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
