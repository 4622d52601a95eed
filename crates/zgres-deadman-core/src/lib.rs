//! The deadman's pure core: every decision of `zgres-deadman`, with no I/O and no async
//! runtime (this crate does not depend on tokio, a ZooKeeper or a PostgreSQL client).
//! Observations and the current time go in; actions, the state to publish and when to look
//! again come out. The daemon's shell carries the actions out.
//!
//! - [`decision`]: the state machine of the group lock, promotion, restarts, rejoin,
//!   bootstrap and clone, switchover; the published role, problems and warnings; scheduling.
//! - [`synchronous`]: the order of `synchronous_standby_names` and `/sync` changes that keeps
//!   every acknowledged commit promotable.
//! - [`slots`]: which replication slots the primary and the replicas keep.
//! - [`group_config`]: which `/config` is in force when it turns unreadable.
//! - [`fence_deadline`]: when an unconfirmed primary is shut down and killed.
//! - [`callbacks`]: which operator callback a change of the local PostgreSQL calls for.
#![forbid(unsafe_code)]

pub mod callbacks;
pub mod cluster_settings;
pub mod decision;
pub mod fence_deadline;
pub mod group_config;
pub mod slots;
pub mod synchronous;
