//! zgresctl: the operator CLI. It reads and writes ZooKeeper only.
//!
//! - [`credentials`]: the ZooKeeper identity from the options, and digest ACL ids;
//! - [`prompts`]: confirmations, the editor, `--scheduled` times;
//! - [`error`]: why a command failed, typed by what the operator can do about it;
//! - [`group_config_edit`]: `config set`/`unset`/`edit` of `/config`, parameters checked
//!   against what the group's PostgreSQL accepts;
//! - [`inventory`]: reads the groups (locks, node states, config, history) into typed values;
//! - [`node_match`]: finds the node an operator means, by id or configured name;
//! - [`node_requests`]: restarts and reloads carried out by the nodes' deadmen;
//! - [`render`]: turns them into tables for people.
//!
//! Writes (`config set`, `pause`, `resume`) use ZooKeeper's version check, so two operators
//! editing at once cannot silently overwrite each other.
#![forbid(unsafe_code)]

pub mod credentials;
pub mod error;
pub mod group_config_edit;
pub mod inventory;
pub mod node_match;
pub mod node_requests;
pub mod prompts;
pub mod render;
