//! Running an external program for zgres (plugins, reload commands) without a shell: own
//! process group, stdin closed, output captured (bounded), killed with its whole group after a
//! timeout, and whatever it leaves running in its group killed when it exits. Its environment
//! is cleared and rebuilt from [`ALLOWED_ENV`] plus what the caller passes, so no secret the
//! daemon was given in its own environment (`postgres.password_env`) reaches it.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

mod trust;
pub use trust::{check_trusted, UntrustedFile};

/// Output kept per stream.
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// The variables of the daemon's environment a child inherits (with every `LC_*`): what
/// programs need to find tools and speak the locale, nothing else.
pub const ALLOWED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// A command for `program` whose environment is only the allowed part of this process's
/// ([`allowed_env`]): every child zgres starts begins here.
pub fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.env_clear().envs(allowed_env());
    command
}

/// The allowed part of this process's environment ([`ALLOWED_ENV`] and `LC_*`).
pub fn allowed_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(|n| ALLOWED_ENV.contains(&n) || n.starts_with("LC_"))
        })
        .collect()
}

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("{program}: cannot start: {source}")]
    Start {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("{program}: {status}; output: {output}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed (abbreviated, lossy).
        output: String,
    },
    /// It may be written by others, so it was not run.
    #[error(transparent)]
    Untrusted(#[from] UntrustedFile),
    /// It ran past the timeout and was killed.
    #[error("{program}: killed after {timeout:?}")]
    TimedOut {
        /// The program.
        program: String,
        /// The timeout.
        timeout: Duration,
    },
}

/// Runs `program` with `args` to completion or `timeout`, whichever comes first, and returns
/// what it wrote to stdout (at most 64 KiB).
///
/// # Errors
/// [`CommandError`] when it cannot start, fails or times out. Cancelling the future kills it.
pub async fn run<I, S>(program: &Path, args: I, timeout: Duration) -> Result<Vec<u8>, CommandError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_env(program, args, std::iter::empty::<(&str, &str)>(), timeout).await
}

/// As [`run`], with `env` added to the allowed environment ([`allowed_env`]).
///
/// # Errors
/// As [`run`].
pub async fn run_with_env<I, S, E, K, V>(
    program: &Path,
    args: I,
    env: E,
    timeout: Duration,
) -> Result<Vec<u8>, CommandError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    E: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let name = program.display().to_string();
    let mut child = command(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Start {
            program: name.clone(),
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
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // Whatever it left running in its group goes too, finished or not.
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let status = match waited {
        Ok(status) => status.map_err(|source| CommandError::Start {
            program: name.clone(),
            source,
        })?,
        Err(_) => {
            let _ = child.wait().await;
            return Err(CommandError::TimedOut {
                program: name,
                timeout,
            });
        }
    };
    let grace = Duration::from_secs(1);
    let stdout = tokio::time::timeout(grace, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(grace, stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(&[stdout.as_slice(), stderr.as_slice()].concat())
        .chars()
        .take(2000)
        .collect();
    if status.success() {
        tracing::debug!(program = %name, output = %text.trim(), "command succeeded");
        Ok(stdout)
    } else {
        Err(CommandError::Failed {
            program: name,
            status: status.to_string(),
            output: text.trim().to_owned(),
        })
    }
}
