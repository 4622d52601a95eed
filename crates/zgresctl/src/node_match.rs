//! Which node an operator means: its id or its configured name.

use crate::inventory::{CtlError, GroupView, NodeView, Usage};

/// How an operator's NODE argument matched a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMatch {
    /// By its id (`IP:PORT`).
    Id,
    /// By its configured name (`node.name`, e.g. `n1`).
    Name,
}

/// Finds the node an operator means by `text`: its id (`127.0.0.1:5442`) or its configured
/// name (`n1`), and says which matched.
///
/// # Errors
/// [`CtlError::UnknownNode`] when nothing matches, [`CtlError::Usage`] when a name is shared.
pub fn resolve_node<'a>(
    group: &'a GroupView,
    text: &str,
) -> Result<(&'a NodeView, NodeMatch), CtlError> {
    if let Some(node) = group.nodes.iter().find(|n| n.node.to_string() == text) {
        return Ok((node, NodeMatch::Id));
    }
    let named: Vec<&NodeView> = group
        .nodes
        .iter()
        .filter(|n| n.name().is_some_and(|name| name == text))
        .collect();
    match named.as_slice() {
        [node] => Ok((node, NodeMatch::Name)),
        [] => Err(CtlError::UnknownNode {
            group: group.group.to_string(),
            node: text.to_owned(),
        }),
        several => Err(Usage::AmbiguousName {
            group: group.group.to_string(),
            name: text.to_owned(),
            nodes: several.iter().map(|n| n.node).collect(),
        }
        .into()),
    }
}

impl NodeView {
    /// The node's configured name, when its state is readable and has one.
    pub fn name(&self) -> Option<&str> {
        self.state.as_ref()?.name.as_ref().map(|n| n.as_str())
    }

    /// The node as an operator knows it: `name (id)`, or its id when it has no name.
    pub fn label(&self) -> String {
        match self.name() {
            Some(name) => format!("{name} ({})", self.node),
            None => self.node.to_string(),
        }
    }
}
