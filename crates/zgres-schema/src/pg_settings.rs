//! Cluster-wide PostgreSQL settings as `/config/{GROUP}` carries them: parameter names, values
//! and `pg_hba.conf` lines, each checked when decoded. ZooKeeper content is hostile input:
//! whoever can write `/config` must not be able to run programs, load code or name files on
//! the database hosts, nor break a configuration file's syntax, so such parameters are
//! local-only (the deadman's `[postgres] parameters`) and values and lines are single-line text.

mod catalog;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use catalog::{PgSettingsCatalog, SettingSpec, SettingValueError, VarType};

/// Longest value or `pg_hba.conf` line accepted.
const MAX_TEXT: usize = 1024;

/// Parameters that only the node's own configuration may set: they run programs, load
/// libraries, name files or sockets, or zgres manages them itself. `include*` are directives.
pub const LOCAL_ONLY: &[&str] = &[
    "archive_cleanup_command",
    "archive_command",
    "archive_library",
    "cluster_name",
    "config_file",
    "data_directory",
    "dynamic_library_path",
    "external_pid_file",
    "hba_file",
    "hot_standby",
    "ident_file",
    "include",
    "include_dir",
    "include_if_exists",
    "jit_provider",
    "krb_server_keyfile",
    "listen_addresses",
    "local_preload_libraries",
    "log_directory",
    "port",
    "primary_conninfo",
    "primary_slot_name",
    "promote_trigger_file",
    "recovery_end_command",
    "restore_command",
    "session_preload_libraries",
    "shared_preload_libraries",
    "ssl_ca_file",
    "ssl_cert_file",
    "ssl_crl_dir",
    "ssl_crl_file",
    "ssl_dh_params_file",
    "ssl_key_file",
    "ssl_passphrase_command",
    "synchronous_standby_names",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
];

/// Parameters a standby must have at least as high as its primary (PostgreSQL refuses hot
/// standby otherwise): raised on replicas before the primary, lowered on the primary first.
pub const MUST_MATCH: &[&str] = &[
    "max_connections",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "max_wal_senders",
    "max_worker_processes",
];

/// Why a cluster-wide setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterSettingError {
    /// Not a PostgreSQL parameter name.
    #[error("{0:?} is not a parameter name (lower-case letters, digits and '_', with at most one '.' for an extension's)")]
    Name(String),
    /// A parameter only the node's own configuration may set.
    #[error("{0} is local-only: it runs programs, loads code, names files or is managed by zgres; set it in the deadman's [postgres] parameters")]
    LocalOnly(String),
    /// A value or line with control characters or too long.
    #[error("{what} must be one line of at most {MAX_TEXT} characters without control characters")]
    Text {
        /// The parameter or line.
        what: String,
    },
    /// A value that would stop streaming replication.
    #[error("{name} = {value:?} would stop streaming replication, which failover needs")]
    BreaksReplication {
        /// The parameter.
        name: String,
        /// The value.
        value: String,
    },
    /// Not a `pg_hba.conf` record zgres accepts.
    #[error("pg_hba line {line:?}: {reason}")]
    Hba {
        /// The line.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn is_one_line(text: &str) -> bool {
    text.len() <= MAX_TEXT && !text.chars().any(char::is_control)
}

/// A PostgreSQL parameter name allowed in `/config`: lower case, at most 63 bytes, not
/// [`LOCAL_ONLY`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParameterName(String);

impl ParameterName {
    /// Checks `name`.
    ///
    /// # Errors
    /// [`ClusterSettingError::Name`] or [`ClusterSettingError::LocalOnly`].
    pub fn new(name: &str) -> Result<Self, ClusterSettingError> {
        let word = |w: &str| {
            w.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let valid = name.len() <= 63
            && match name.split_once('.') {
                Some((prefix, rest)) => word(prefix) && word(rest),
                None => word(name),
            };
        if !valid {
            return Err(ClusterSettingError::Name(name.chars().take(80).collect()));
        }
        if LOCAL_ONLY.contains(&name) {
            return Err(ClusterSettingError::LocalOnly(name.to_owned()));
        }
        Ok(ParameterName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ParameterName {
    type Error = ClusterSettingError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        ParameterName::new(&name)
    }
}

impl From<ParameterName> for String {
    fn from(name: ParameterName) -> String {
        name.0
    }
}

impl fmt::Display for ParameterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parameter value: one line of text, written quoted into the configuration file. JSON
/// numbers and booleans are taken as their text (`"max_connections": 200`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct ParameterValue(String);

impl ParameterValue {
    /// Checks `value`.
    ///
    /// # Errors
    /// [`ClusterSettingError::Text`] naming `what`.
    pub fn new(what: &str, value: &str) -> Result<Self, ClusterSettingError> {
        if !is_one_line(value) {
            return Err(ClusterSettingError::Text {
                what: what.to_owned(),
            });
        }
        Ok(ParameterValue(value.to_owned()))
    }

    /// The value as PostgreSQL reads it (unquoted).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<ParameterValue> for String {
    fn from(value: ParameterValue) -> String {
        value.0
    }
}

impl<'de> Deserialize<'de> for ParameterValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => if b { "on" } else { "off" }.to_owned(),
            _ => {
                return Err(serde::de::Error::custom(
                    "a parameter value is a string, number or boolean",
                ))
            }
        };
        ParameterValue::new("a parameter value", &text).map_err(serde::de::Error::custom)
    }
}

/// One `pg_hba.conf` record: `local`, `host`, `hostssl`, `hostnossl`, `hostgssenc` or
/// `hostnogssenc` and at least three more fields, one line, no `@file` inclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HbaLine(String);

impl HbaLine {
    /// Checks `line`.
    ///
    /// # Errors
    /// [`ClusterSettingError::Text`] or [`ClusterSettingError::Hba`].
    pub fn new(line: &str) -> Result<Self, ClusterSettingError> {
        if !is_one_line(line) {
            return Err(ClusterSettingError::Text {
                what: "a pg_hba line".into(),
            });
        }
        let refuse = |reason| ClusterSettingError::Hba {
            line: line.to_owned(),
            reason,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let kinds = [
            "local",
            "host",
            "hostssl",
            "hostnossl",
            "hostgssenc",
            "hostnogssenc",
        ];
        match fields.first() {
            Some(kind) if kinds.contains(kind) => {}
            _ => {
                return Err(refuse(
                    "must start with local, host, hostssl, hostnossl, hostgssenc or hostnogssenc",
                ))
            }
        }
        let least = if fields[0] == "local" { 4 } else { 5 };
        if fields.len() < least {
            return Err(refuse("too few fields"));
        }
        if fields
            .iter()
            .any(|f| f.starts_with('@') || f.starts_with("\"@"))
        {
            return Err(refuse("@file inclusion is local-only"));
        }
        Ok(HbaLine(line.trim().to_owned()))
    }

    /// The line.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HbaLine {
    type Error = ClusterSettingError;
    fn try_from(line: String) -> Result<Self, Self::Error> {
        HbaLine::new(&line)
    }
}

impl From<HbaLine> for String {
    fn from(line: HbaLine) -> String {
        line.0
    }
}

/// Values that would stop replication, which zgres needs: PostgreSQL refuses to start with
/// `wal_level = minimal` while `max_wal_senders` is above 0, and standbys cannot stream from a
/// primary without WAL senders.
const BREAKS_REPLICATION: &[(&str, &str)] = &[("wal_level", "minimal"), ("max_wal_senders", "0")];

/// `postgresql` in `/config/{GROUP}`: parameters and `pg_hba.conf` lines every deadman of the
/// group writes for its PostgreSQL. The node's own `[postgres] parameters` override these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "UncheckedClusterPostgres")]
pub struct ClusterPostgres {
    /// Parameters, by name.
    pub parameters: BTreeMap<ParameterName, ParameterValue>,
    /// `pg_hba.conf` records, after the node's own lines.
    pub pg_hba: Vec<HbaLine>,
}

/// [`ClusterPostgres`] as decoded, before the checks across entries.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
struct UncheckedClusterPostgres {
    parameters: BTreeMap<ParameterName, ParameterValue>,
    pg_hba: Vec<HbaLine>,
}

impl TryFrom<UncheckedClusterPostgres> for ClusterPostgres {
    type Error = ClusterSettingError;
    fn try_from(raw: UncheckedClusterPostgres) -> Result<Self, Self::Error> {
        let cluster = ClusterPostgres {
            parameters: raw.parameters,
            pg_hba: raw.pg_hba,
        };
        cluster.check()?;
        Ok(cluster)
    }
}

impl ClusterPostgres {
    /// Checks what no single entry shows: values that would stop replication.
    ///
    /// # Errors
    /// [`ClusterSettingError::BreaksReplication`].
    pub fn check(&self) -> Result<(), ClusterSettingError> {
        for (name, value) in &self.parameters {
            let breaks = BREAKS_REPLICATION
                .iter()
                .any(|(n, v)| *n == name.as_str() && value.as_str().trim().eq_ignore_ascii_case(v));
            if breaks {
                return Err(ClusterSettingError::BreaksReplication {
                    name: name.as_str().to_owned(),
                    value: value.as_str().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.parameters.is_empty() && self.pg_hba.is_empty()
    }
}

#[cfg(test)]
mod tests;
