//! Example in-process plugin for zgres: answers with a summary of the snapshot it is given.
//! It writes no `unsafe`; [`zgres_plugin::export_plugin!`] does the FFI.
//!
//! - As a zgres-sync plugin, input is the snapshot JSON; output
//!   `{"groups": N, "primaries": {"group": "node"}}`.
//! - As a zgres-deadman plugin, input is `{"v": 1, "group", "node", "state"}`; output adds
//!   metadata: `{"meta": {"example": "checked NODE"}}`.
//!
//! Giving it `{"panic": true}` makes it panic, to show the panic is caught inside the plugin.

fn handle(input: &[u8]) -> Result<Vec<u8>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| format!("input is not JSON: {e}"))?;
    if value["panic"] == true {
        panic!("asked to panic");
    }
    if let Some(node) = value["state"]["node"].as_str() {
        let answer = serde_json::json!({ "meta": { "example": format!("checked {node}") } });
        return Ok(answer.to_string().into_bytes());
    }
    let groups = value["groups"].as_object().cloned().unwrap_or_default();
    let primaries: serde_json::Map<String, serde_json::Value> = groups
        .iter()
        .map(|(name, g)| (name.clone(), g["primary"]["node"].clone()))
        .filter(|(_, node)| !node.is_null())
        .collect();
    let answer = serde_json::json!({ "groups": groups.len(), "primaries": primaries });
    Ok(answer.to_string().into_bytes())
}

zgres_plugin::export_plugin!("example", handle);
