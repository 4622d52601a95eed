//! Test fixture: a plugin built for ABI version 999, which hosts must refuse before calling it.

fn handle(_input: &[u8]) -> Result<Vec<u8>, String> {
    Err("must never be called".into())
}

zgres_plugin::__export_plugin_with_abi!("wrong-abi", handle, 999);
