//! External executable plugins: every executable in the hooks directory, in name order, with
//! the snapshot file's path as its only argument.
//!
//! Each runs through [`zgres_process::run`]: without a shell, in its own process group, output
//! captured (garbage is harmless), killed with its group after the timeout. One failing hook
//! does not stop the ones after it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zgres_process::{self as command, CommandError};

/// The executables in `dir`, sorted by file name. Hidden files and non-executables are skipped.
///
/// # Errors
/// When the directory cannot be read.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut hooks: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| {
            std::fs::metadata(e.path())
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|e| e.path())
        .collect();
    hooks.sort();
    Ok(hooks)
}

/// Runs every hook in `dir` in order with `snapshot_file`; returns the failures, described
/// (empty when all succeeded).
pub async fn run_all(dir: &Path, snapshot_file: &Path, timeout: Duration) -> Vec<String> {
    let hooks = match list(dir) {
        Ok(hooks) => hooks,
        Err(e) => return vec![format!("hooks directory {}: {e}", dir.display())],
    };
    let mut failures = Vec::new();
    for hook in hooks {
        let result: Result<Vec<u8>, CommandError> =
            command::run(&hook, [snapshot_file], timeout).await;
        if let Err(e) = result {
            failures.push(format!("hook {e}"));
        }
    }
    failures
}
