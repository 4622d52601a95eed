//! The ZooKeeper edge shared by `zgres-deadman`, `zgres-sync` and `zgresctl`.
//!
//! - [`settings`]: the `[zookeeper]` config section every program reads, validated into
//!   [`ZkSettings`]; the one place a session's connector is built (authentication, TLS).
//! - [`tls`]: the TLS files ([`ZkTls`]), checked up front, and a direct handshake that says
//!   why a TLS connection fails.
//! - [`auth`]: the digest identity and the ACL policy every created znode gets.
//! - [`session`]: [`ZkSession`], a connected client whose requests are timed and whose
//!   expected answers (not found, already exists, version changed) come back as typed
//!   [`Outcome`]s rather than errors.
//! - [`error`]: [`ZkError`] (retryable, session ended, or refused) and [`ConnectError`].
//! - [`backoff`]: exponential reconnect backoff with jitter.
//!
//! Nothing here decides anything for a daemon: callers choose what an outcome means.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backoff;
pub mod error;
pub mod session;
pub mod settings;
pub mod tls;

pub use auth::{digest_id, DigestAuth, Mechanism};
pub use backoff::Backoff;
pub use error::{ConnectError, ConnectFailure, ZkError};
pub use session::{CreateKind, Outcome, ZkSession};
pub use settings::{BadAclId, ZkSettings, ZookeeperSection};
pub use tls::{TlsFileError, TlsHandshakeError, ZkTls};
/// The ZooKeeper client crate, for its value types (`Stat`, `SessionInfo`, watchers, create
/// options).
pub use zookeeper_client as client;
