//! The config file as written: serde types, unknown keys rejected; validated in the parent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use zgres_config::LogConfig;
use zgres_schema::documents::Tags;
use zgres_zk::ZookeeperSection;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) zookeeper: ZookeeperSection,
    pub(super) node: RawNode,
    pub(super) postgres: RawPostgres,
    #[serde(default)]
    pub(super) tags: Tags,
    #[serde(default)]
    pub(super) timing: RawTiming,
    #[serde(default)]
    pub(super) plugin: Vec<RawPlugin>,
    #[serde(default)]
    pub(super) callbacks: RawCallbacks,
    #[serde(default)]
    pub(super) api: Option<RawApi>,
    #[serde(default)]
    pub(super) provisioning: RawProvisioning,
    #[serde(default)]
    pub(super) log: LogConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProvisioning {
    pub(super) initdb_args: Vec<String>,
    pub(super) pg_hba: Vec<String>,
    pub(super) bootstrap_command: Vec<String>,
    pub(super) clone_command: Vec<String>,
    pub(super) reclone_on_rewind_failure: bool,
    pub(super) reclone_on_missing_wal: bool,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) group: String,
    pub(super) address: String,
    #[serde(default)]
    pub(super) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    pub(super) data_dir: PathBuf,
    #[serde(default = "default_bin_dir")]
    pub(super) bin_dir: PathBuf,
    pub(super) port: u16,
    #[serde(default)]
    pub(super) run_as: Option<String>,
    #[serde(default = "default_user")]
    pub(super) user: String,
    #[serde(default = "default_user")]
    pub(super) dbname: String,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) password_env: Option<String>,
    #[serde(default)]
    pub(super) probe_host: Option<String>,
    #[serde(default)]
    pub(super) sslmode: Option<String>,
    #[serde(default)]
    pub(super) sslrootcert: Option<PathBuf>,
    #[serde(default)]
    pub(super) sslcert: Option<PathBuf>,
    #[serde(default)]
    pub(super) sslkey: Option<PathBuf>,
    #[serde(default)]
    pub(super) parameters: BTreeMap<String, String>,
}

pub(super) fn default_bin_dir() -> PathBuf {
    PathBuf::from("/usr/lib/postgresql/15/bin")
}
pub(super) fn default_user() -> String {
    "postgres".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) listen: String,
    #[serde(default)]
    pub(super) tls_cert_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub(super) tls_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    #[serde(default)]
    pub(super) command: Vec<String>,
    #[serde(default)]
    pub(super) library: Option<PathBuf>,
    #[serde(default = "default_plugin_timeout_ms")]
    pub(super) timeout_ms: u64,
}

pub(super) fn default_plugin_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTiming {
    pub(super) loop_interval_ms: u64,
    pub(super) state_refresh_ms: u64,
    pub(super) election_wait_ms: u64,
    pub(super) stop_timeout_ms: u64,
    pub(super) primary_restart_timeout_ms: u64,
    pub(super) plugin_interval_ms: u64,
    pub(super) request_timeout_ms: u64,
    pub(super) switchover_drain_ms: u64,
}

impl Default for RawTiming {
    fn default() -> Self {
        RawTiming {
            loop_interval_ms: 2_000,
            state_refresh_ms: 30_000,
            election_wait_ms: 2_000,
            stop_timeout_ms: 30_000,
            primary_restart_timeout_ms: 10_000,
            plugin_interval_ms: 5_000,
            request_timeout_ms: 30_000,
            switchover_drain_ms: 100,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCallbacks {
    pub(super) on_start: Option<PathBuf>,
    pub(super) on_stop: Option<PathBuf>,
    pub(super) on_reload: Option<PathBuf>,
    pub(super) on_role_change: Option<PathBuf>,
    pub(super) pre_promote: Option<PathBuf>,
    pub(super) timeout_ms: u64,
}

impl Default for RawCallbacks {
    fn default() -> Self {
        RawCallbacks {
            on_start: None,
            on_stop: None,
            on_reload: None,
            on_role_change: None,
            pre_promote: None,
            timeout_ms: 10_000,
        }
    }
}

impl RawCallbacks {
    /// Checks every program path is absolute and the timeout in range.
    pub(super) fn validate(self, problems: &mut zgres_config::Problems) -> super::CallbacksConfig {
        for (key, path) in [
            ("callbacks.on_start", &self.on_start),
            ("callbacks.on_stop", &self.on_stop),
            ("callbacks.on_reload", &self.on_reload),
            ("callbacks.on_role_change", &self.on_role_change),
            ("callbacks.pre_promote", &self.pre_promote),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                problems.add(key, "give the program's absolute path");
            }
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            problems.add("callbacks.timeout_ms", "must be between 100 and 600000");
        }
        super::CallbacksConfig {
            on_start: self.on_start,
            on_stop: self.on_stop,
            on_reload: self.on_reload,
            on_role_change: self.on_role_change,
            pre_promote: self.pre_promote,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
        }
    }
}
