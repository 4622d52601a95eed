//! Operators' requests to one node (`/request/{GROUP}_{NODE}`), carried out by that node's
//! deadman: `zgresctl restart`.

use std::time::Duration;

use serde::Serialize;
use std::collections::BTreeMap;
use zgres_schema::documents::{NodeAction, NodeRequest, Role};

use zgres_schema::{encode, GroupName, NodeId, Znode};
use zgres_zk::{CreateKind, Outcome};

use super::{resolve_node, CtlError, Inventory, NodeView, Refusal};

/// A request carried out, as the CLI reports it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestDone {
    /// The group.
    pub group: String,
    /// The node.
    pub node: NodeId,
    /// What was asked.
    pub action: NodeAction,
    /// Its role once done, as it published it.
    pub role: Role,
}

/// A request waiting for a node's deadman, as `zgresctl list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingRequest {
    /// The node it is for.
    pub node: NodeId,
    /// The request (`None` when unreadable: its deadman drops it).
    pub request: Option<NodeRequest>,
}

impl Inventory {
    /// Every request waiting for a deadman, by group, each group's by node id (one listing of
    /// the request directory, whatever the number of groups).
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub(super) async fn pending_requests(
        &self,
    ) -> Result<BTreeMap<GroupName, Vec<PendingRequest>>, CtlError> {
        let dir = self.layout.dir(zgres_schema::Dir::Request);
        let mut pending: BTreeMap<GroupName, Vec<PendingRequest>> = BTreeMap::new();
        for child in self.children(zgres_schema::Dir::Request).await? {
            let path = format!("{dir}/{child}");
            let Ok(Znode::Request(group, node)) = self.layout.parse(&path) else {
                continue;
            };
            if let Some((data, _)) = self.session.get(&path).await? {
                let request = zgres_schema::decode::<NodeRequest>(&path, &data).ok();
                pending
                    .entry(group)
                    .or_default()
                    .push(PendingRequest { node, request });
            }
        }
        for requests in pending.values_mut() {
            requests.sort_by_key(|p| p.node);
        }
        Ok(pending)
    }

    /// The node `text` names in `group`, if its deadman is alive to carry out a request.
    ///
    /// # Errors
    /// [`CtlError::UnknownGroup`] / [`CtlError::UnknownNode`], [`Refusal::NoDeadman`] when the
    /// node publishes no state.
    pub async fn live_node(&self, group: &str, text: &str) -> Result<NodeView, CtlError> {
        let view = self.groups(Some(group)).await?.remove(0);
        let (node, _) = resolve_node(&view, text)?;
        if node.state.is_none() {
            return Err(Refusal::NoDeadman(node.node).into());
        }
        Ok(node.clone())
    }

    /// Asks `node`'s deadman to carry out `action`, at once or not before `scheduled_at_ms`
    /// (create-only: one request at a time).
    ///
    /// # Errors
    /// [`CtlError::RequestPending`] when one is already there; ZooKeeper failures.
    pub async fn request_node_action(
        &self,
        group: &str,
        node: NodeId,
        action: NodeAction,
        scheduled_at_ms: Option<u64>,
    ) -> Result<(), CtlError> {
        let request = NodeRequest {
            action,
            requested_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            scheduled_at_ms,
            then: Vec::new(),
        };
        self.create_request(group, node, &request).await
    }

    /// A rolling restart of `nodes`, in order, from `scheduled_at_ms`: the first node's
    /// request carries the others (`then`), and each deadman hands it on to the next once its
    /// node runs again, so one node restarts at a time.
    ///
    /// # Errors
    /// As [`Inventory::request_node_action`]; nothing is written for an empty list.
    pub async fn request_rolling_restart(
        &self,
        group: &str,
        nodes: &[NodeId],
        scheduled_at_ms: u64,
    ) -> Result<(), CtlError> {
        let Some((&first, then)) = nodes.split_first() else {
            return Ok(());
        };
        let request = NodeRequest {
            action: NodeAction::Restart,
            requested_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            scheduled_at_ms: Some(scheduled_at_ms),
            then: then.to_vec(),
        };
        self.create_request(group, first, &request).await
    }

    async fn create_request(
        &self,
        group: &str,
        node: NodeId,
        request: &NodeRequest,
    ) -> Result<(), CtlError> {
        let path = self
            .layout
            .path(&Znode::Request(self.group_name(group)?, node));
        self.session
            .mkdir(&self.layout.dir(zgres_schema::Dir::Request))
            .await?;
        match self
            .session
            .create(&path, &encode(request)?, CreateKind::Persistent)
            .await?
        {
            Outcome::Done(_) => Ok(()),
            Outcome::Exists => Err(CtlError::RequestPending {
                group: group.to_owned(),
                node,
            }),
            Outcome::NotFound | Outcome::BadVersion => Err(CtlError::Conflict(path)),
        }
    }

    /// Deletes `node`'s pending request, if any; whether there was one.
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn cancel_node_request(&self, group: &str, node: NodeId) -> Result<bool, CtlError> {
        let path = self
            .layout
            .path(&Znode::Request(self.group_name(group)?, node));
        Ok(self.session.delete(&path, None).await?.is_done())
    }

    /// Waits until `node`'s deadman deleted the request (it does once carried out, or when
    /// it drops it, saying why in its log), then until the node publishes itself healthy.
    ///
    /// # Errors
    /// [`CtlError::RequestTimeout`] after `timeout`; ZooKeeper failures.
    pub async fn wait_node_request(
        &self,
        group: &str,
        node: NodeId,
        action: NodeAction,
        timeout: Duration,
    ) -> Result<RequestDone, CtlError> {
        let path = self
            .layout
            .path(&Znode::Request(self.group_name(group)?, node));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending = self.get(&path).await?.is_some();
            let view = self.groups(Some(group)).await?.remove(0);
            let state = view
                .nodes
                .iter()
                .find(|n| n.node == node)
                .and_then(|n| n.state.clone());
            if let (false, Some(state)) = (pending, state.as_ref()) {
                if state.is_healthy() {
                    return Ok(RequestDone {
                        group: group.to_owned(),
                        node,
                        action,
                        role: state.role,
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CtlError::RequestTimeout {
                    node,
                    timeout,
                    still_pending: pending,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
