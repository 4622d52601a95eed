//! Tables for people. (`--json` prints the inventory's values as they are.)

use std::fmt::Write as _;

use zgres_schema::documents::Role;

use crate::inventory::{GroupHistory, GroupView, NodeView};

fn role(node: &NodeView) -> String {
    match &node.state {
        Some(s) => match (s.role, node.leader) {
            (Role::Primary, true) => "primary".into(),
            (Role::Primary, false) => "primary (no lock!)".into(),
            // A lock holder running as a standby: a standby cluster's standby leader (or one
            // being promoted).
            (Role::Replica, true) => "standby leader".into(),
            (r, _) => format!("{r:?}").to_lowercase(),
        },
        None => "?".into(),
    }
}

fn state(node: &NodeView) -> String {
    if let Some(ms) = node.stale_for_ms {
        return format!("stale: no update for {}s", ms / 1000);
    }
    match (&node.state, &node.error) {
        (Some(s), _) if s.problems.is_empty() && !s.pending_restart.is_empty() => {
            "running, restart pending".into()
        }
        (Some(s), _) if s.problems.is_empty() => "running".into(),
        (Some(s), _) => s.problems.join("; "),
        (None, Some(e)) => format!("unreadable: {e}"),
        (None, None) => "?".into(),
    }
}

fn lag(node: &NodeView) -> String {
    match (node.leader, node.lag_bytes) {
        (true, _) => String::new(),
        (false, Some(bytes)) if bytes >= 1 << 20 => format!("{} MB", bytes >> 20),
        (false, Some(bytes)) => format!("{bytes} B"),
        (false, None) => "?".into(),
    }
}

/// One table per group: node, role, state, timeline, lag, tags.
pub fn groups(groups: &[GroupView]) -> String {
    let mut out = String::new();
    for g in groups {
        let paused = match &g.config {
            Some(c) if c.paused => " (PAUSED)",
            Some(_) => "",
            None => " (CONFIG UNREADABLE)",
        };
        let _ = writeln!(out, "+ Group: {}{paused}", g.group);
        if let Some(e) = &g.config_error {
            let _ = writeln!(
                out,
                "! {e}\n! the deadmen keep the last valid config (none: no automatic action)"
            );
        }
        let _ = writeln!(
            out,
            "| {:<8} | {:<22} | {:<18} | {:<30} | {:>2} | {:>9} |",
            "Name", "Member", "Role", "State", "TL", "Lag"
        );
        for n in &g.nodes {
            let tl = n
                .state
                .as_ref()
                .and_then(|s| s.timeline)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {:<8} | {:<22} | {:<18} | {:<30} | {:>2} | {:>9} |",
                n.name().unwrap_or(""),
                n.node.to_string(),
                role(n),
                state(n),
                tl,
                lag(n)
            );
        }
        for n in &g.nodes {
            for warning in n.state.iter().flat_map(|s| &s.warnings) {
                let _ = writeln!(out, "! {}: {warning}", n.node);
            }
            if let Some(s) = n.state.as_ref().filter(|s| !s.pending_restart.is_empty()) {
                let _ = writeln!(
                    out,
                    "! {}: waiting for a restart: {}",
                    n.node,
                    s.pending_restart.join(", ")
                );
            }
        }
        if g.nodes.is_empty() {
            let _ = writeln!(out, "| (no nodes)");
        }
        if g.lock_unattended {
            let holder = g
                .leader
                .map_or("an unreadable node".to_owned(), |l| l.to_string());
            let _ = writeln!(
                out,
                "! lock left by {holder} at a paused shutdown: its PostgreSQL runs with no deadman, and no failover happens until that deadman is back (zgresctl unlock {} releases it)",
                g.group
            );
        }
        for pending in &g.requests {
            let _ = writeln!(out, "! {}", pending_request(pending));
        }
    }
    out
}

/// One waiting request, e.g. `request to 10.0.0.2:5432: restart at 2026-12-02T03:00:00Z,
/// then 10.0.0.3:5432, 10.0.0.1:5432`.
fn pending_request(pending: &crate::inventory::PendingRequest) -> String {
    let Some(request) = &pending.request else {
        return format!(
            "request to {}: unreadable (its deadman drops it)",
            pending.node
        );
    };
    let action = serde_json::to_value(request.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut text = format!("request to {}: {action}", pending.node);
    if let Some(at) = request.scheduled_at_ms {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
        text.push_str(&format!(" at {}", humantime::format_rfc3339_seconds(at)));
    }
    if !request.then.is_empty() {
        let rest: Vec<String> = request.then.iter().map(ToString::to_string).collect();
        text.push_str(&format!(", then {}", rest.join(", ")));
    }
    text
}

/// The promotion history, after what could not be read.
pub fn history(history: &GroupHistory) -> String {
    let mut out: String = history
        .errors
        .iter()
        .map(|e| format!("! unreadable, kept as found: {e}\n"))
        .collect();
    if history.entries.is_empty() {
        out.push_str("no promotions recorded\n");
        out.push_str(&quiet_release(history));
        return out;
    }
    out += &format!(
        "| {:>2} | {:<12} | {:<15} | {:<22} | {:<22} | {:<20} |\n",
        "TL", "LSN", "Reason", "New primary", "Old primary", "At (UTC)"
    );
    for e in &history.entries {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at_ms);
        let _ = writeln!(
            out,
            "| {:>2} | {:<12} | {:<15} | {:<22} | {:<22} | {:<20} |",
            e.timeline.to_string(),
            e.lsn.to_string(),
            format!("{:?}", e.reason).to_lowercase(),
            e.new_primary.to_string(),
            e.old_primary.map(|n| n.to_string()).unwrap_or_default(),
            humantime::format_rfc3339_seconds(at).to_string()
        );
    }
    out.push_str(&quiet_release(history));
    out
}

/// The line on the last lock given up with nobody writing under it, if any.
fn quiet_release(history: &GroupHistory) -> String {
    let Some(release) = &history.last_quiet_release else {
        return String::new();
    };
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(release.at_ms).unwrap_or_default());
    format!(
        "last lock given up with nobody writing under it: by {} at {} (a node taking it then needed no takeover wait)\n",
        release.node,
        humantime::format_rfc3339_seconds(at)
    )
}

/// Who streams from whom: the primary, then under each node the standbys configured to stream
/// from it (cascading included), with their lag; nodes following no one (or a node not in the
/// group) last.
pub fn topology(group: &GroupView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "+ Group: {}", group.group);
    let upstream_of = |n: &NodeView| n.state.as_ref().and_then(|s| s.upstream);
    let known = |id| group.nodes.iter().any(|n| n.node == id);
    let mut shown = std::collections::BTreeSet::new();
    // Roots: the lock holder first, then any other node that follows no member.
    let mut roots: Vec<&NodeView> = group.nodes.iter().filter(|n| n.leader).collect();
    roots.extend(
        group
            .nodes
            .iter()
            .filter(|n| !n.leader && !upstream_of(n).is_some_and(known)),
    );
    let mut stack: Vec<(&NodeView, usize)> = roots.into_iter().rev().map(|n| (n, 0)).collect();
    while let Some((node, depth)) = stack.pop() {
        if !shown.insert(node.node) {
            continue;
        }
        let indent = "   ".repeat(depth);
        let branch = if depth == 0 { "" } else { "└─ " };
        let lag = match (node.leader, node.lag_bytes) {
            (true, _) => String::new(),
            (false, _) => format!(", lag {}", lag(node)),
        };
        let following = match (depth, upstream_of(node)) {
            (0, Some(up)) if !node.leader => format!(", following {up} (not a member)"),
            (0, None) if !node.leader => ", following no one".to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {indent}{branch}{} {}{lag}{following}",
            node.label(),
            role(node)
        );
        let children = group
            .nodes
            .iter()
            .filter(|n| upstream_of(n) == Some(node.node) && !n.leader);
        stack.extend(children.rev().map(|n| (n, depth + 1)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zgres_schema::documents::NodeState;

    fn member(id: &str, role: &str, upstream: Option<&str>, leader: bool) -> NodeView {
        let upstream = upstream.map_or(String::new(), |u| format!(r#","upstream":"{u}""#));
        let state: NodeState = zgres_schema::decode(
            "/state",
            format!(r#"{{"v":1,"node":"{id}","role":"{role}","updated_at_ms":1{upstream}}}"#)
                .as_bytes(),
        )
        .unwrap();
        NodeView {
            node: state.node,
            leader,
            state: Some(state),
            error: None,
            lag_bytes: (!leader).then_some(0),
            stale_for_ms: None,
        }
    }

    #[test]
    fn topology_shows_who_streams_from_whom() {
        let group = GroupView {
            group: zgres_schema::GroupName::new("main").unwrap(),
            leader: Some("10.0.0.1:5432".parse().unwrap()),
            lock_unattended: false,
            config: None,
            config_error: None,
            requests: vec![],
            nodes: vec![
                member("10.0.0.3:5432", "replica", Some("10.0.0.2:5432"), false),
                member("10.0.0.1:5432", "primary", None, true),
                member("10.0.0.2:5432", "replica", Some("10.0.0.1:5432"), false),
                member("10.0.0.4:5432", "replica", Some("10.9.9.9:5432"), false),
            ],
        };
        let text = topology(&group);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "+ Group: main",
                "  10.0.0.1:5432 primary",
                "     └─ 10.0.0.2:5432 replica, lag 0 B",
                "        └─ 10.0.0.3:5432 replica, lag 0 B",
                "  10.0.0.4:5432 replica, lag 0 B, following 10.9.9.9:5432 (not a member)",
            ],
            "{text}"
        );
    }

    #[test]
    fn a_node_with_settings_waiting_for_a_restart_says_which() {
        let state: NodeState = zgres_schema::decode(
            "/state",
            br#"{"v":1,"node":"10.0.0.1:5432","role":"primary","updated_at_ms":1,
                "pending_restart":["postgresql.max_connections","zookeeper.connect"]}"#,
        )
        .unwrap();
        let group = GroupView {
            group: zgres_schema::GroupName::new("main").unwrap(),
            leader: Some(state.node),
            lock_unattended: false,
            config: None,
            config_error: None,
            requests: vec![],
            nodes: vec![NodeView {
                node: state.node,
                leader: true,
                state: Some(state),
                error: None,
                lag_bytes: None,
                stale_for_ms: None,
            }],
        };
        let text = groups(&[group]);
        assert!(text.contains("running, restart pending"), "{text}");
        assert!(
            text.contains(
                "! 10.0.0.1:5432: waiting for a restart: postgresql.max_connections, zookeeper.connect"
            ),
            "{text}"
        );
    }
}
