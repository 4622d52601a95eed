//! The commands carried out by the nodes' deadmen: `restart`, `reload`, `reinit`.

use zgres_schema::documents::NodeAction;
use zgresctl::inventory::{CtlError, Inventory, NodeView};
use zgresctl::node_requests::{self, RunOptions};
use zgresctl::prompts::{confirm, parse_scheduled};

use crate::cli::RestartArgs;
use crate::print_json;

/// `zgresctl restart` / `reload` / `reinit`: carried out by the deadman of one node, or of
/// every node of the group one at a time (replicas first), each healthy again before the next.
pub(crate) async fn node_requests(
    inventory: &Inventory,
    group: &str,
    nodes: &[NodeView],
    action: NodeAction,
    options: RunOptions,
    output: Output,
) -> Result<(), CtlError> {
    let Output { json, named } = output;
    let done = node_requests::carry_out(inventory, group, nodes, action, options, |n, d| {
        if !json {
            let verb = match d.action {
                NodeAction::Restart => "restarted",
                NodeAction::Reload => "reloaded",
                NodeAction::Reinit => "cloned again",
            };
            outln!("group {group}: {} {verb}; {:?}", n.label(), d.role);
        }
    })
    .await?;
    if json {
        // One named node: its outcome; a group: the list, even of one or none.
        match (named, done.as_slice()) {
            (true, [one]) => print_json(one),
            _ => print_json(&done),
        }
    } else if done.is_empty() {
        outln!("group {group}: no node to ask");
    }
    Ok(())
}

/// How `node_requests` prints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// As JSON.
    pub(crate) json: bool,
    /// The operator named one node (else the whole group).
    pub(crate) named: bool,
}

/// `zgresctl restart`, with its options.
pub(crate) async fn restart(
    inventory: &Inventory,
    args: RestartArgs,
    json: bool,
) -> Result<(), CtlError> {
    let RestartArgs {
        group,
        node,
        pending,
        switchover,
        scheduled,
        cancel,
        force,
    } = args;
    let nodes = node_requests::targets(inventory, &group, node.as_deref(), pending).await?;
    match (cancel, scheduled, nodes.as_slice()) {
        (true, _, _) if node.is_none() => {
            let mut cancelled = Vec::new();
            for target in &nodes {
                if inventory.cancel_node_request(&group, target.node).await? {
                    cancelled.push(target.node);
                }
            }
            if json {
                print_json(&serde_json::json!({"group": group, "cancelled": cancelled}));
            } else if cancelled.is_empty() {
                outln!("group {group}: no pending request");
            } else {
                let names: Vec<String> = cancelled.iter().map(ToString::to_string).collect();
                outln!(
                    "group {group}: cancelled the requests to {}",
                    names.join(", ")
                );
            }
        }
        (false, Some(at), _) if node.is_none() => {
            let at = parse_scheduled(&at)?;
            if !force {
                confirm(&format!(
                    "Restart every node of group {group} from the scheduled time, one at a time (replicas first, the primary last, in place)?"
                ))?;
            }
            let order: Vec<_> = nodes.iter().map(|n| n.node).collect();
            inventory
                .request_rolling_restart(&group, &order, at)
                .await?;
            if json {
                print_json(&serde_json::json!({
                    "group": group,
                    "nodes": order,
                    "action": NodeAction::Restart,
                    "scheduled_at_ms": at,
                }));
            } else if order.is_empty() {
                outln!("group {group}: no node to restart");
            } else {
                outln!(
                    "rolling restart of group {group} scheduled ({} nodes); `zgresctl restart --cancel {group}` cancels it",
                    order.len()
                );
            }
        }
        (true, _, [target]) => {
            let label = target.label();
            let cancelled = inventory.cancel_node_request(&group, target.node).await?;
            if json {
                print_json(&serde_json::json!({
                    "group": group,
                    "node": target.node,
                    "cancelled": cancelled,
                }));
            } else if cancelled {
                outln!("pending request to {label} cancelled");
            } else {
                outln!("{label} has no pending request");
            }
        }
        (false, Some(at), [target]) => {
            let at = parse_scheduled(&at)?;
            let label = target.label();
            if !force {
                confirm(&format!(
                    "Restart PostgreSQL on {label} of group {group} in place at the scheduled time?"
                ))?;
            }
            inventory
                .request_node_action(&group, target.node, NodeAction::Restart, Some(at))
                .await?;
            if json {
                print_json(&serde_json::json!({
                    "group": group,
                    "node": target.node,
                    "action": NodeAction::Restart,
                    "scheduled_at_ms": at,
                }));
            } else {
                outln!(
                    "restart of {label} scheduled; `zgresctl restart --cancel {group} {}` cancels it",
                    target.node
                );
            }
        }
        _ => {
            let options = RunOptions { force, switchover };
            let output = Output {
                json,
                named: node.is_some(),
            };
            node_requests(
                inventory,
                &group,
                &nodes,
                NodeAction::Restart,
                options,
                output,
            )
            .await?
        }
    }
    Ok(())
}
