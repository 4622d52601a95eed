//! Reloading HAProxy through its master CLI (`haproxy -W -S /run/haproxy-master.sock,...`):
//! zgres-sync needs no privilege over HAProxy's processes, only write access to the socket,
//! which HAProxy can give a group (`mode,660,group,postgres`). `systemctl reload` and signals
//! would need root, which zgres-sync's unit does not have.
//!
//! Each reload is confirmed: HAProxy 2.6's master loses a reload requested while it is still
//! carrying out the previous one (measured under CPU load: the backends stayed on the older
//! file), so the master's reload counter is read before `reload` and polled after it, and the
//! next reload is only sent once this one is done.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

/// How often the master is asked whether the reload is done. It refuses connections while it
/// re-executes itself, which takes tens of milliseconds unloaded.
const CONFIRM_POLL: Duration = Duration::from_millis(50);

/// Why HAProxy could not be told to reload, or did not confirm it. Retryable.
#[derive(Debug, thiserror::Error)]
pub enum MasterCliError {
    /// The socket could not be reached or the exchange failed.
    #[error("HAProxy master socket {path}: {source}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The reload was not confirmed within the timeout (HAProxy may have lost it).
    #[error("HAProxy master socket {path}: reload not confirmed within {timeout:?}")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// How long it waited.
        timeout: Duration,
    },
    /// HAProxy could not load the new configuration; it keeps the old one.
    #[error("HAProxy refused the reload: {answer}")]
    Refused {
        /// HAProxy's answer, with its startup messages (2.7 and later), or its process list.
        answer: String,
    },
    /// `show proc` did not list the master with its reload counters.
    #[error("HAProxy master socket {path}: no master in `show proc`: {answer:?}")]
    Unexpected {
        /// The socket.
        path: PathBuf,
        /// The first part of the answer.
        answer: String,
    },
}

/// The master's counters from `show proc`: reloads so far, and failed reloads since the last
/// one that worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReloadCounters {
    reloads: u64,
    failed: u64,
}

/// Reads `<pid> master <reloads> [failed: <n>] ...` from a `show proc` answer.
fn parse_show_proc(answer: &str) -> Option<ReloadCounters> {
    let line = answer
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("master"))?;
    let mut words = line.split_whitespace().skip(2);
    let reloads = words.next()?.parse().ok()?;
    let failed = match (words.next(), words.next()) {
        (Some("[failed:"), Some(n)) => n.trim_end_matches(']').parse().ok()?,
        _ => 0,
    };
    Some(ReloadCounters { reloads, failed })
}

/// Sends `command` to the master CLI and reads the answer until HAProxy closes the connection.
async fn exchange(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket).await?;
    stream.write_all(command.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The master's reload counters, from `show proc`.
async fn counters(socket: &Path) -> Result<ReloadCounters, MasterCliError> {
    let answer = exchange(socket, "show proc; quit\n")
        .await
        .map_err(|source| MasterCliError::Socket {
            path: socket.to_owned(),
            source,
        })?;
    parse_show_proc(&answer).ok_or_else(|| MasterCliError::Unexpected {
        path: socket.to_owned(),
        answer: answer.chars().take(512).collect(),
    })
}

/// Sends `reload` to the master CLI at `socket` and waits until the master's reload counter
/// has moved past its value from before, so the new workers run whatever configuration was on
/// disk when this was called. HAProxy 2.6 answers `reload` with nothing (the master
/// re-executes itself); 2.7 and later answer `Success=1` or `Success=0` with the new workers'
/// startup messages; both count a failed load in `show proc`.
///
/// # Errors
/// [`MasterCliError`], all retryable: `Refused` when HAProxy kept its old configuration,
/// `Timeout` when the reload was not confirmed within `timeout` (the whole call is bounded by
/// it). Dropping the future abandons the exchange; HAProxy may still reload.
pub async fn reload(socket: &Path, timeout: Duration) -> Result<(), MasterCliError> {
    let deadline = Instant::now() + timeout;
    let timed_out = || MasterCliError::Timeout {
        path: socket.to_owned(),
        timeout,
    };
    let before = tokio::time::timeout_at(deadline, counters(socket))
        .await
        .map_err(|_| timed_out())??;
    let answer = tokio::time::timeout_at(deadline, exchange(socket, "reload\n"))
        .await
        .map_err(|_| timed_out())?
        .map_err(|source| MasterCliError::Socket {
            path: socket.to_owned(),
            source,
        })?;
    if answer.contains("Success=0") {
        return Err(MasterCliError::Refused {
            answer: answer.chars().take(4096).collect(),
        });
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        // While the master re-executes itself it refuses or stalls connections: not yet.
        let now =
            match tokio::time::timeout(left.min(Duration::from_secs(1)), counters(socket)).await {
                Ok(Ok(now)) => Some(now),
                Ok(Err(MasterCliError::Socket { .. })) | Err(_) => None,
                Ok(Err(other)) => return Err(other),
            };
        match now {
            Some(now) if now.reloads > before.reloads && now.failed > 0 => {
                return Err(MasterCliError::Refused {
                    answer: format!(
                        "the master counts {} failed reload(s) since its last good one and \
                         keeps the previous configuration (HAProxy's log says why)",
                        now.failed
                    ),
                })
            }
            Some(now) if now.reloads > before.reloads => return Ok(()),
            _ => tokio::time::sleep(CONFIRM_POLL.min(left)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncBufReadExt;
    use tokio::net::UnixListener;

    /// `show proc` as HAProxy 2.6 prints it.
    fn show_proc(reloads: u64, failed: u64) -> String {
        format!(
            "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
             26891           master          {reloads} [failed: {failed}]   0d00h00m02s     2.6.12\n\
             # workers\n27029           worker          0               0d00h00m01s     2.6.12\n\
             # programs\n\n"
        )
    }

    /// A master CLI stand-in: one connection per command, answered with the next of `answers`
    /// (the last one again once they run out). Returns the socket and the commands it got.
    fn fake_master(dir: &Path, answers: Vec<String>) -> (PathBuf, Arc<Mutex<Vec<String>>>) {
        let path = dir.join("master.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            for i in 0.. {
                let (stream, _) = listener.accept().await.unwrap();
                let mut stream = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                log.lock().unwrap().push(line.trim_end().to_owned());
                let answer = &answers[i.min(answers.len() - 1)];
                stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (path, received)
    }

    #[test]
    fn show_proc_gives_the_master_counters() {
        assert_eq!(
            parse_show_proc(&show_proc(7, 1)),
            Some(ReloadCounters {
                reloads: 7,
                failed: 1
            })
        );
        assert_eq!(parse_show_proc("Unknown command\n"), None);
    }

    #[tokio::test]
    async fn a_reload_is_done_once_the_master_counts_it() {
        for reply in ["", "Success=1\n--\n"] {
            let dir = tempfile::tempdir().unwrap();
            let answers = vec![
                show_proc(3, 0),
                reply.into(),
                show_proc(3, 0),
                show_proc(4, 0),
            ];
            let (path, received) = fake_master(dir.path(), answers);
            reload(&path, Duration::from_secs(5)).await.unwrap();
            assert_eq!(
                *received.lock().unwrap(),
                [
                    "show proc; quit",
                    "reload",
                    "show proc; quit",
                    "show proc; quit"
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_lost_reload_is_not_taken_as_done() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fake_master(
            dir.path(),
            vec![show_proc(3, 0), String::new(), show_proc(3, 0)],
        );
        let err = reload(&path, Duration::from_millis(400)).await.unwrap_err();
        assert!(matches!(err, MasterCliError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_failed_load_a_missing_socket_and_a_stranger_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let refused = "Success=0\n--\n[ALERT] parsing error\n".to_owned();
        let (path, _) = fake_master(dir.path(), vec![show_proc(3, 0), refused]);
        let err = reload(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("parsing error"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fake_master(
            dir.path(),
            vec![show_proc(3, 0), String::new(), show_proc(4, 1)],
        );
        let err = reload(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("1 failed reload"), "{err}");

        let missing = dir.path().join("none.sock");
        let err = reload(&missing, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("none.sock"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fake_master(dir.path(), vec!["Unknown command.\n".to_owned()]);
        let err = reload(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, MasterCliError::Unexpected { .. }), "{err}");
    }
}
