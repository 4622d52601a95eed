//! Workspace build outputs (binaries, plugin libraries) that a test uses but cargo does not
//! hand it directly: they sit in the target directory, one level above the test binary.

use std::path::PathBuf;

/// The target directory of the running test (`target/debug` or `target/release`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps")
        .to_owned()
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
