//! External executable plugins: every executable in the hooks directory, in name order, with
//! the snapshot file's path as its only argument.
//!
//! Each runs without a shell, in its own process group, with stdin closed and its output
//! captured (first 64 KiB, shown lossily, so garbage output is harmless). A hook that outlives
//! its timeout is killed with its whole group. One failing hook does not stop the ones after it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

/// Output kept per stream.
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// How one hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("hook {hook}: cannot start: {source}")]
    Start {
        /// The hook.
        hook: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("hook {hook}: {status}; output: {output}")]
    Failed {
        /// The hook.
        hook: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed (abbreviated).
        output: String,
    },
    /// It ran past the timeout and was killed.
    #[error("hook {hook}: killed after {timeout:?}")]
    TimedOut {
        /// The hook.
        hook: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// The hooks directory could not be read.
    #[error("hooks directory {dir}: {source}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The executables in `dir`, sorted by file name. Hidden files and non-executables are skipped.
///
/// # Errors
/// [`HookError::Directory`] when the directory cannot be read.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, HookError> {
    let entries = std::fs::read_dir(dir).map_err(|source| HookError::Directory {
        dir: dir.to_owned(),
        source,
    })?;
    let mut hooks: Vec<PathBuf> = entries
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

/// Runs `hook` with `snapshot_file`, killing its process group after `timeout`.
///
/// # Errors
/// [`HookError`] when it cannot start, fails or times out. Cancelling the future kills it.
pub async fn run(hook: &Path, snapshot_file: &Path, timeout: Duration) -> Result<(), HookError> {
    let mut child = tokio::process::Command::new(hook)
        .arg(snapshot_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HookError::Start {
            hook: hook.to_owned(),
            source,
        })?;
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    let capture = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(stream) = stream {
                let _ = stream.take(OUTPUT_LIMIT).read_to_end(&mut buf).await;
            }
            buf
        })
    };
    let stdout = capture(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = capture(child.stderr.take().map(|s| Box::new(s) as _));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|source| HookError::Start {
            hook: hook.to_owned(),
            source,
        })?,
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(HookError::TimedOut {
                hook: hook.to_owned(),
                timeout,
            });
        }
    };
    // Anything the hook left running in its group goes too.
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let grace = Duration::from_secs(1);
    let mut output = tokio::time::timeout(grace, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    output.extend(
        tokio::time::timeout(grace, stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
    );
    let text: String = String::from_utf8_lossy(&output)
        .chars()
        .take(2000)
        .collect();
    if status.success() {
        tracing::debug!(hook = %hook.display(), output = %text.trim(), "hook succeeded");
        Ok(())
    } else {
        Err(HookError::Failed {
            hook: hook.to_owned(),
            status: status.to_string(),
            output: text.trim().to_owned(),
        })
    }
}

/// Runs every hook in `dir` in order; returns the failures (empty when all succeeded).
pub async fn run_all(dir: &Path, snapshot_file: &Path, timeout: Duration) -> Vec<HookError> {
    let hooks = match list(dir) {
        Ok(hooks) => hooks,
        Err(e) => return vec![e],
    };
    let mut failures = Vec::new();
    for hook in hooks {
        if let Err(e) = run(&hook, snapshot_file, timeout).await {
            failures.push(e);
        }
    }
    failures
}
