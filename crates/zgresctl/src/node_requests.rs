//! `zgresctl restart`, `reload` and `reinit`: requests carried out by the nodes' deadmen, on
//! one node or a whole group one node at a time.

use std::time::Duration;

use zgres_schema::documents::{NodeAction, Role, SwitchoverKind};

use crate::error::{CtlError, Refusal};
use crate::inventory::{HandOver, Inventory, NodeView, RequestDone};
use crate::prompts::confirm;

/// How long one node may take to carry a restart or reload out and be healthy again.
const PER_NODE: Duration = Duration::from_secs(120);
/// How long a reinit may take: a base backup of the whole database.
const PER_REINIT: Duration = Duration::from_secs(6 * 3600);

/// How a run of requests goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Do not ask for confirmation.
    pub force: bool,
    /// Hand the primary over first (a switchover), then restart it as a replica.
    pub switchover: bool,
}

/// The nodes to ask, in the order to ask them: the one `node` names, or every node of the
/// group that publishes a state, replicas first and the primary last (so a rolling restart
/// never restarts the primary while a replica is down for it). With `pending_only`, only those
/// whose PostgreSQL has settings waiting for a restart.
///
/// # Errors
/// Unknown group or node, or a named node without a live deadman.
pub async fn targets(
    inventory: &Inventory,
    group: &str,
    node: Option<&str>,
    pending_only: bool,
) -> Result<Vec<NodeView>, CtlError> {
    let mut nodes = match node {
        Some(node) => vec![inventory.live_node(group, node).await?],
        None => {
            let view = inventory.groups(Some(group)).await?.remove(0);
            let mut nodes: Vec<NodeView> = view
                .nodes
                .into_iter()
                .filter(|n| n.state.is_some())
                .collect();
            nodes.sort_by_key(|n| n.leader);
            nodes
        }
    };
    if pending_only {
        nodes.retain(|n| {
            n.state
                .as_ref()
                .is_some_and(|s| !s.pending_restart.is_empty())
        });
    }
    Ok(nodes)
}

/// Asks each of `nodes` in turn to carry out `action`, waiting for each to be done and healthy
/// before the next; confirms first unless forced. `progress` is told of each node done.
///
/// # Errors
/// The first node that refuses or times out stops the run; those done are done.
pub async fn carry_out(
    inventory: &Inventory,
    group: &str,
    nodes: &[NodeView],
    action: NodeAction,
    options: RunOptions,
    mut progress: impl FnMut(&NodeView, &RequestDone),
) -> Result<Vec<RequestDone>, CtlError> {
    confirm_run(group, nodes, action, options)?;
    let mut done = Vec::new();
    for node in nodes {
        if node.leader && options.switchover && action == NodeAction::Restart {
            hand_over(inventory, group).await?;
        }
        inventory
            .request_node_action(group, node.node, action, None)
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

/// Refuses what must not be asked (a reinit of the primary) and asks the operator about the
/// rest, unless forced.
fn confirm_run(
    group: &str,
    nodes: &[NodeView],
    action: NodeAction,
    options: RunOptions,
) -> Result<(), CtlError> {
    let names = || {
        nodes
            .iter()
            .map(NodeView::label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match action {
        NodeAction::Reinit => {
            if let Some(primary) = nodes.iter().find(|n| n.leader) {
                return Err(Refusal::ReinitOfThePrimary(primary.node).into());
            }
            if !options.force {
                confirm(&format!(
                    "Delete the data directory of {} in group {group} and clone it again from the primary?",
                    names()
                ))?;
            }
        }
        NodeAction::Restart if !options.force => {
            let primary = nodes
                .iter()
                .any(|n| n.state.as_ref().is_some_and(|s| s.role == Role::Primary));
            let how = match (primary, options.switchover) {
                (true, true) => "one at a time; the primary hands over to a replica first",
                (true, false) => {
                    "in place, one at a time; the primary keeps the lock, writes pause while it restarts"
                }
                (false, _) => "in place, one at a time",
            };
            confirm(&format!(
                "Restart PostgreSQL on {} of group {group} ({how})?",
                names()
            ))?;
        }
        NodeAction::Reload if !options.force => {
            // It applies whatever the files now say (pg_hba lines included).
            confirm(&format!(
                "Reload the configuration of {} in group {group} (the deadman's file and PostgreSQL's)?",
                names()
            ))?;
        }
        NodeAction::Restart | NodeAction::Reload => {}
    }
    Ok(())
}

/// A switchover to the best replica, waited for.
async fn hand_over(inventory: &Inventory, group: &str) -> Result<(), CtlError> {
    let request = HandOver {
        kind: SwitchoverKind::Switchover,
        to: None,
        scheduled_at_ms: None,
    };
    let (_, old) = inventory.request_hand_over(group, &request).await?;
    inventory.wait_hand_over(group, old, PER_NODE).await?;
    Ok(())
}
