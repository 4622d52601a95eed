//! zgres-deadman: the daemon beside each PostgreSQL server of a group.
//!
//! It keeps the node's state in ZooKeeper, holds the group's lock while its PostgreSQL is the
//! primary, fences PostgreSQL when it cannot prove its ZooKeeper session alive, and promotes the
//! best replica when the primary is gone.
//!
//! - [`config`]: TOML configuration, validated up front.
//! - [`decision`], [`synchronous`], [`group_config`]: the pure core (crate
//!   `zgres-deadman-core`: observations in, actions out, no I/O).
//! - [`fence`]: the fencing clock, thread and keeper process.
//! - [`handover`]: re-executing the binary (SIGUSR2) without a failover.
//! - [`coordination`]: ZooKeeper reads and writes.
//! - [`postgres_process`], [`postgres_client`], [`data_dir`], [`parameters_file`], [`hba_block`]: PostgreSQL
//!   as a child process, over SQL, on disk, and its `postgres.parameters`.
//! - [`plugins`]: metadata and health vetoes from executables or shared libraries.
//! - [`callbacks`]: the operator's `on_start`/`on_stop`/`on_role_change`/`on_reload` programs
//!   and the `pre_promote` veto.
//! - [`api`]: the Patroni-compatible HTTP health API and metrics.
//! - [`daemon`]: the loop that ties them together.
#![forbid(unsafe_code)]

pub mod api;
pub mod callbacks;
pub mod config;
pub mod conninfo;
pub mod coordination;
pub mod daemon;
pub mod data_dir;
pub mod fence;
pub mod guardian;
pub mod handover;
pub mod hba_block;
pub mod local_wal;
pub mod parameters_file;
pub mod passfile;
pub mod plugins;
pub mod postgres_client;
pub mod postgres_process;
pub mod postgres_tls;
pub mod provisioning;

pub use daemon::{run, DaemonError};
/// The core's choice of operator callback, beside the module that runs them.
pub use zgres_deadman_core::callbacks as callbacks_due;
/// The pure core, re-exported under the paths the shell uses.
pub use zgres_deadman_core::{cluster_settings, decision, group_config, slots, synchronous};
