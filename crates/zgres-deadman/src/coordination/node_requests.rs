//! Operators' requests to nodes (`/request/{GROUP}_{NODE}`): deleting this node's once
//! carried out, and writing the next node's in a rolling restart.

use zgres_schema::documents::NodeRequest;
use zgres_schema::{encode, NodeId, Znode};
use zgres_zk::CreateKind;

use super::{Coordinator, Result};

impl Coordinator {
    /// Deletes this node's request (`/request/{GROUP}_{NODE}`), at `version` when known (an
    /// unreadable one has none: it is deleted whatever it holds).
    ///
    /// # Errors
    /// As any request.
    pub async fn delete_node_request(&mut self, version: Option<i32>) -> Result<bool> {
        let path = self.path(Znode::Request(self.group.clone(), self.me));
        self.cache.invalidate(&path);
        let deleted = self.session.delete(&path, version).await?.is_done();
        if !deleted {
            tracing::warn!(znode = %path, "the request changed or went meanwhile; left as it is");
        }
        Ok(deleted)
    }

    /// Writes `request` to `node` (the next step of a rolling restart). Returns whether it
    /// was written: not when that node already has a pending request.
    ///
    /// # Errors
    /// As any request.
    pub async fn request_node(&mut self, node: NodeId, request: &NodeRequest) -> Result<bool> {
        let path = self.path(Znode::Request(self.group.clone(), node));
        Ok(self
            .session
            .create(&path, &encode(request)?, CreateKind::Persistent)
            .await?
            .is_done())
    }
}
