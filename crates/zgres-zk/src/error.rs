//! What can go wrong talking to ZooKeeper, sorted by what the caller should do about it.

use zookeeper_client as zk;

/// A request did not get an answer the caller can act on.
///
/// Expected answers (not found, already exists, version changed) are not errors: they come
/// back as [`crate::Outcome`] or `Option`.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    /// The session expired or the client was closed: every ephemeral of this session is gone,
    /// and a new session is needed.
    #[error("ZooKeeper session ended")]
    SessionEnded,
    /// Connection trouble, a timeout or a busy server: the same request may succeed later on
    /// the same session.
    #[error("ZooKeeper: {0}")]
    Retryable(zk::Error),
    /// The server refused the request for a reason retrying does not change (no permission,
    /// bad ACL, a bug in the request). Carries what was asked.
    #[error("ZooKeeper refused {operation} {path}: {error}")]
    Refused {
        /// The request, e.g. `create`.
        operation: &'static str,
        /// The znode.
        path: String,
        /// The server's answer.
        error: zk::Error,
    },
}

impl ZkError {
    /// Sorts a client error for a request `operation` on `path`.
    pub fn classify(error: zk::Error, operation: &'static str, path: &str) -> Self {
        match error {
            zk::Error::SessionExpired | zk::Error::ClientClosed => ZkError::SessionEnded,
            zk::Error::ConnectionLoss
            | zk::Error::Timeout
            | zk::Error::Throttled
            | zk::Error::SessionMoved
            | zk::Error::NotReadOnly
            | zk::Error::NoHosts
            | zk::Error::RuntimeInconsistent => ZkError::Retryable(error),
            error => ZkError::Refused {
                operation,
                path: path.to_owned(),
                error,
            },
        }
    }

    /// Whether a new session is needed.
    pub fn session_ended(&self) -> bool {
        matches!(self, ZkError::SessionEnded)
    }
}

/// No session could be opened or resumed.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach ZooKeeper at {connect}: {failure}")]
pub struct ConnectError {
    /// The connect string tried.
    pub connect: String,
    /// Why.
    pub failure: ConnectFailure,
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// No server answered in time.
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// The session asked to be resumed has expired on the server: open a new one.
    #[error("the session to resume has expired")]
    ResumedSessionExpired,
    /// The client or a server rejected the attempt.
    #[error("{0}")]
    Client(zk::Error),
    /// The TLS handshake with a server fails (checked directly after the attempt timed out).
    #[error("{0}")]
    Tls(crate::tls::TlsHandshakeError),
}

impl ConnectError {
    /// Whether the failure was only that the session to resume is gone (a new session will
    /// do).
    pub fn resumed_session_expired(&self) -> bool {
        matches!(self.failure, ConnectFailure::ResumedSessionExpired)
    }
}
