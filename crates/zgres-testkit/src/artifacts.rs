//! Workspace build outputs (binaries, plugin libraries) that a test uses but cargo does not
//! hand it directly: they sit in the target directory, one level above the test binary.

use std::path::PathBuf;

/// The target directory of the running test (`target/debug` or `target/release`): a test
/// binary lives in its `deps`, a workspace binary (zgres-chaos) in it.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running binary's own path");
    let dir = exe.parent().expect("a binary lives in a directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("deps has a parent").to_owned(),
        _ => dir.to_owned(),
    }
}

/// The workspace binary `name`. Panics with a clear message when it was not built.
pub fn binary(name: &str) -> PathBuf {
    existing(target_dir().join(name))
}

/// The workspace cdylib `name` (crate name with `_`), e.g. `zgres_plugin_example`. Panics with
/// a clear message when it was not built.
pub fn library(name: &str) -> PathBuf {
    existing(target_dir().join(format!("lib{name}.so")))
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} missing: build the whole workspace first (scripts/test does)",
        path.display()
    );
    path
}
