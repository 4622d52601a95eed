//! Test harness for zgres: real ZooKeeper, real PostgreSQL and a TCP fault proxy, on loopback
//! ports with temp dirs.
//!
//! - [`zookeeper::ZkCluster`]: a standalone server or an ensemble from the Debian `zookeeper`
//!   package; members can be killed and restarted one by one.
//! - [`postgres::PgNode`]: PostgreSQL 15 instances (initdb, streaming replicas with
//!   pg_basebackup) run as the `postgres` OS user when the tests run as root.
//! - [`pgbouncer::PgBouncer`]: a real pgbouncer reading a databases file zgres-sync writes.
//! - [`znodes`]: conn and lock znodes written directly, for tests without deadmen.
//! - [`group::Group`]: a whole zgres group of real `zgres-deadman` processes, with writers
//!   and checks for end-to-end tests and benchmarks.
//! - [`fault_proxy::FaultProxy`]: a TCP proxy to put between a daemon and ZooKeeper, which can
//!   pass, blackhole, refuse or delay traffic.
//! - [`tls`]: test certificates (`openssl`) and HTTPS requests (`curl`).
//!
//! Every process the harness starts is a [`process::ManagedProcess`]: killed and reaped when
//! dropped (also while a test panics), and killed by the kernel if the test process itself dies
//! (`PR_SET_PDEATHSIG` through `setpriv`). Start processes from the test's own thread or a
//! runtime worker, not from `spawn_blocking`: the kernel signal fires when the spawning *thread*
//! exits.
#![forbid(unsafe_code)]

pub mod artifacts;
pub mod fault_proxy;
pub mod figures;
pub mod freeze;
pub mod group;
pub mod http;
pub mod os_user;
pub mod own_thread;
pub mod pgbouncer;
pub mod poll;
pub mod ports;
pub mod postgres;
pub mod proc_usage;
pub mod process;
pub mod tls;
pub mod zgresctl;
pub mod zk_counter;
pub mod znodes;
pub mod zookeeper;

use std::path::PathBuf;
use std::time::Duration;

/// Why the harness could not set something up. All harness failures are fatal for the test
/// that asked; the message says which process or command failed and shows the end of its log.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An OS operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("{command} failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its combined output.
        output: String,
    },
    /// A process did not become ready, or a condition did not hold, in time.
    #[error("{what} not reached within {waited:?}{}", log_tail(.log))]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// A log file worth showing, if any.
        log: Option<PathBuf>,
    },
    /// A process exited while the harness waited for it.
    #[error("{what} exited early ({status}){}", log_tail(.log))]
    Exited {
        /// The process.
        what: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: Option<PathBuf>,
    },
    /// PostgreSQL rejected a query.
    #[error("query on {node}: {source}")]
    Postgres {
        /// The node queried.
        node: String,
        /// The driver error.
        source: tokio_postgres::Error,
    },
    /// The machine lacks something the harness needs.
    #[error("{0}")]
    Setup(String),
}

impl HarnessError {
    /// Attaches `log` to a timeout, so the message shows why the process was not ready.
    pub fn with_log(self, log: PathBuf) -> Self {
        match self {
            HarnessError::Timeout { what, waited, .. } => HarnessError::Timeout {
                what,
                waited,
                log: Some(log),
            },
            other => other,
        }
    }
}

/// The harness's result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The last lines of a log file, formatted for an error message.
fn log_tail(log: &Option<PathBuf>) -> String {
    let Some(path) = log else {
        return String::new();
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    format!("\n--- last lines of {} ---\n{tail}", path.display())
}
