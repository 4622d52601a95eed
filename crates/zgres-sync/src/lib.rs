//! zgres-sync: the daemon on application and proxy hosts.
//!
//! It follows ZooKeeper and keeps local configuration (pgbouncer, and anything an executable
//! hook maintains) pointed at the current primary and healthy replicas of every group.
//!
//! - [`config`]: TOML configuration, validated up front.
//! - [`follower`]: one recursive watch, level-triggered re-reads.
//! - [`snapshot`]: the pure snapshot built from the znodes; what plugins get.
//! - [`hooks`]: executable plugins; [`pgbouncer`], [`template`] (and HAProxy, a bundled
//!   template): the built-in plugins.
//! - [`daemon`]: the loop, debouncing, and one task per plugin with retries.
//! - [`metrics`]: plugin runs, failures and propagation latency on `GET /metrics`.
#![forbid(unsafe_code)]

pub mod atomic_file;
pub mod config;
pub mod daemon;
pub mod follower;
pub mod haproxy;
pub mod hooks;
pub mod metrics;
pub mod pgbouncer;
pub mod safe_value;
pub mod snapshot;
pub mod template;

pub use daemon::{load_libraries, run};
