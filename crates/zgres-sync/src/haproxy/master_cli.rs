//! Reloading HAProxy through its master CLI (`haproxy -W -S /run/haproxy-master.sock,...`):
//! zgres-sync needs no privilege over HAProxy's processes, only write access to the socket,
//! which HAProxy can give a group (`mode,660,group,postgres`). `systemctl reload` and signals
//! would need root, which zgres-sync's unit does not have.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Why HAProxy could not be told to reload. Retryable.
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
    /// No answer within the timeout.
    #[error("HAProxy master socket {path}: no answer to reload within {timeout:?}")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// How long it waited.
        timeout: Duration,
    },
    /// HAProxy (2.7 and later report it) could not load the new configuration; it keeps the
    /// old one.
    #[error("HAProxy refused the reload: {answer}")]
    Refused {
        /// HAProxy's answer, with its startup messages.
        answer: String,
    },
}

/// Sends `reload` to the master CLI at `socket` and waits until HAProxy closes the connection.
/// HAProxy 2.6 answers nothing (the master re-executes itself); 2.7 and later answer
/// `Success=1` or `Success=0` with the new workers' startup messages.
///
/// # Errors
/// [`MasterCliError`]. Dropping the future abandons the exchange; HAProxy may still reload.
pub async fn reload(socket: &Path, timeout: Duration) -> Result<(), MasterCliError> {
    let io = |source| MasterCliError::Socket {
        path: socket.to_owned(),
        source,
    };
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await.map_err(io)?;
        stream.write_all(b"reload\n").await.map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(io)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| MasterCliError::Timeout {
            path: socket.to_owned(),
            timeout,
        })??;
    if answer.contains("Success=0") {
        return Err(MasterCliError::Refused {
            answer: answer.chars().take(4096).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A master CLI stand-in that answers `answer` to one command, returning what it got.
    fn fake_master(dir: &Path, answer: &'static str) -> (PathBuf, tokio::task::JoinHandle<String>) {
        let path = dir.join("master.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut line = vec![0; 7];
            stream.read_exact(&mut line).await.unwrap();
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(line).unwrap()
        });
        (path, task)
    }

    #[tokio::test]
    async fn sends_reload_and_takes_silence_or_success_as_done() {
        for answer in ["", "Success=1\n--\n"] {
            let dir = tempfile::tempdir().unwrap();
            let (path, master) = fake_master(dir.path(), answer);
            reload(&path, Duration::from_secs(5)).await.unwrap();
            assert_eq!(master.await.unwrap(), "reload\n");
        }
    }

    #[tokio::test]
    async fn a_failed_reload_and_a_missing_socket_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _master) = fake_master(dir.path(), "Success=0\n--\n[ALERT] parsing error\n");
        let err = reload(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("parsing error"), "{err}");
        let missing = dir.path().join("none.sock");
        let err = reload(&missing, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("none.sock"), "{err}");
    }
}
