//! `zgresctl restart`, `reload` and `reinit`: requests carried out by the nodes' deadmen, on
//! one node or a whole group one node at a time.

use std::time::Duration;

use zgres_schema::documents::{NodeAction, Role};

use crate::error::{CtlError, Refusal};
use crate::inventory::{Inventory, NodeView, RequestDone};
use crate::prompts::confirm;

/// How long one node may take to carry a restart or reload out and be healthy again.
const PER_NODE: Duration = Duration::from_secs(120);
/// How long a reinit may take: a base backup of the whole database.
const PER_REINIT: Duration = Duration::from_secs(6 * 3600);

/// The nodes to ask, in the order to ask them: the one `node` names, or every node of the
/// group that publishes a state, replicas first and the primary last (so a rolling restart
/// never restarts the primary while a replica is down for it).
///
/// # Errors
/// Unknown group or node, or a named node without a live deadman.
pub async fn targets(
    inventory: &Inventory,
    group: &str,
    node: Option<&str>,
) -> Result<Vec<NodeView>, CtlError> {
    if let Some(node) = node {
        return Ok(vec![inventory.live_node(group, node).await?]);
    }
    let view = inventory.groups(Some(group)).await?.remove(0);
    let mut nodes: Vec<NodeView> = view
        .nodes
        .into_iter()
        .filter(|n| n.state.is_some())
        .collect();
    nodes.sort_by_key(|n| n.leader);
    Ok(nodes)
}

/// A node as the operator knows it: its name and id, or its id.
pub fn label(node: &NodeView) -> String {
    match node.name() {
        Some(name) => format!("{name} ({})", node.node),
        None => node.node.to_string(),
    }
}

/// Asks each of `nodes` in turn to carry out `action`, waiting for each to be done and healthy
/// before the next; confirms first unless `force` (a reload changes nothing that runs, so it
/// is not confirmed). `progress` is told of each node done.
///
/// # Errors
/// The first node that refuses or times out stops the run; those done are done.
pub async fn carry_out(
    inventory: &Inventory,
    group: &str,
    nodes: &[NodeView],
    action: NodeAction,
    force: bool,
    mut progress: impl FnMut(&NodeView, &RequestDone),
) -> Result<Vec<RequestDone>, CtlError> {
    if action == NodeAction::Reinit {
        if let Some(primary) = nodes.iter().find(|n| n.leader) {
            return Err(Refusal::ReinitOfThePrimary(primary.node).into());
        }
        if !force {
            let names: Vec<String> = nodes.iter().map(label).collect();
            confirm(&format!(
                "Delete the data directory of {} in group {group} and clone it again from the primary?",
                names.join(", ")
            ))?;
        }
    }
    if action == NodeAction::Restart && !force {
        let names: Vec<String> = nodes.iter().map(label).collect();
        let primary = nodes
            .iter()
            .any(|n| n.state.as_ref().is_some_and(|s| s.role == Role::Primary));
        let how = if primary {
            "in place, one at a time; the primary keeps the lock, writes pause while it restarts"
        } else {
            "in place, one at a time"
        };
        confirm(&format!(
            "Restart PostgreSQL on {} of group {group} ({how})?",
            names.join(", ")
        ))?;
    }
    let mut done = Vec::new();
    for node in nodes {
        inventory
            .request_node_action(group, node.node, action)
            .await?;
        let timeout = match action {
            NodeAction::Reinit => PER_REINIT,
            NodeAction::Restart | NodeAction::Reload => PER_NODE,
        };
        let outcome = inventory
            .wait_node_request(group, node.node, action, timeout)
            .await?;
        progress(node, &outcome);
        done.push(outcome);
    }
    Ok(done)
}
