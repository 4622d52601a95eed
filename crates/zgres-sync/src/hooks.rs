//! External executable plugins: every executable in the hooks directory, in name order, with
//! the snapshot file's path as its only argument.
//!
//! Each runs through [`zgres_process::run`]: without a shell, in its own process group, output
//! captured (garbage is harmless), killed with its group after the timeout. One failing hook
//! does not stop the ones after it. A hook its group or others may write, or that belongs to
//! another user than root and the daemon's, is not run.

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

/// Why hooks failed: the directory could not be listed, or these hooks failed (the others ran
/// and succeeded).
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// The hooks directory could not be read; no hook ran.
    #[error("hooks directory {dir}: {source}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Some hooks failed.
    #[error("{}", .0.iter().map(|e| format!("hook {e}")).collect::<Vec<_>>().join("; "))]
    Failed(Vec<CommandError>),
}

/// Runs every hook in `dir` in order with `snapshot_file`. One failing hook does not stop the
/// ones after it.
///
/// # Errors
/// [`HooksError`]: the directory could not be listed, or which hooks failed.
pub async fn run_all(
    dir: &Path,
    snapshot_file: &Path,
    timeout: Duration,
) -> Result<(), HooksError> {
    let hooks = list(dir).map_err(|source| HooksError::Directory {
        dir: dir.to_owned(),
        source,
    })?;
    let mut failures = Vec::new();
    for hook in hooks {
        // A hook others can write is not run (reported with the failures).
        if let Err(e) = command::check_trusted(&hook) {
            failures.push(e.into());
            continue;
        }
        if let Err(e) = command::run(&hook, [snapshot_file], timeout).await {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(HooksError::Failed(failures))
    }
}
