//! Example in-process plugin for zgres: answers with a summary of the snapshot it is given.
//! It writes no `unsafe`; [`zgres_plugin::export_plugin!`] does the FFI.
//!
//! Input: the sync snapshot JSON. Output: `{"groups": N, "primaries": {"group": "node"}}`.
//! Giving it `{"panic": true}` makes it panic, to show the panic is caught inside the plugin.

fn handle(input: &[u8]) -> Result<Vec<u8>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| format!("input is not JSON: {e}"))?;
    if value["panic"] == true {
        panic!("asked to panic");
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
