//! The sync daemon's TOML configuration, validated up front (every bad key is named).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zgres_config::{ConfigError, LogConfig, Problems};
use zgres_schema::GroupName;
use zgres_zk::{ZkSettings, ZookeeperSection};

use crate::haproxy::ReplicaLag;
use crate::template::{Source, TemplateConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    zookeeper: ZookeeperSection,
    sync: RawSync,
    #[serde(default)]
    pgbouncer: Option<RawPgbouncer>,
    #[serde(default)]
    haproxy: Option<RawHaproxy>,
    #[serde(default)]
    template: Vec<RawTemplate>,
    #[serde(default)]
    plugin: Vec<RawLibraryPlugin>,
    #[serde(default)]
    log: LogConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLibraryPlugin {
    library: PathBuf,
    #[serde(default = "default_command_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    config_file: PathBuf,
    #[serde(default)]
    reload_command: Vec<String>,
    #[serde(default = "default_command_timeout_ms")]
    reload_timeout_ms: u64,
    #[serde(default = "default_reload_min_interval_ms")]
    reload_min_interval_ms: u64,
    #[serde(default)]
    replica_max_lag: Option<String>,
    #[serde(default)]
    master_socket: Option<PathBuf>,
}

fn default_reload_min_interval_ms() -> u64 {
    500
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    source: PathBuf,
    destination: PathBuf,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default = "default_command_timeout_ms")]
    command_timeout_ms: u64,
    #[serde(default)]
    command_min_interval_ms: u64,
}

fn default_command_timeout_ms() -> u64 {
    30_000
}

/// zgres-sync's session timeout unless configured: it fences nothing, so a long one only
/// keeps its watches through longer outages.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default = "default_debounce_ms")]
    debounce_ms: u64,
    snapshot_file: PathBuf,
    #[serde(default)]
    hooks_dir: Option<PathBuf>,
    #[serde(default = "default_hook_timeout_ms")]
    hook_timeout_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    retry_max_ms: u64,
    #[serde(default)]
    metrics_listen: Option<String>,
    #[serde(default)]
    metrics_tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    metrics_tls_key_file: Option<PathBuf>,
}

fn default_debounce_ms() -> u64 {
    20
}
fn default_hook_timeout_ms() -> u64 {
    10_000
}
fn default_retry_max_ms() -> u64 {
    30_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPgbouncer {
    databases_file: PathBuf,
    #[serde(default = "default_dbname")]
    dbname: String,
    #[serde(default = "default_ro_suffix")]
    read_only_suffix: String,
    #[serde(default)]
    admin_conninfo: Option<String>,
    #[serde(default)]
    readers_via: BTreeMap<String, String>,
}

fn default_dbname() -> String {
    "postgres".to_owned()
}
fn default_ro_suffix() -> String {
    "-ro".to_owned()
}

/// How snapshots are made and handed out.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Groups to follow; all when empty.
    pub groups: Vec<GroupName>,
    /// Changes are collected this long before the snapshot is rebuilt.
    pub debounce: Duration,
    /// Where the snapshot JSON is written (atomically) for executable plugins.
    pub snapshot_file: PathBuf,
    /// Executables run, in name order, with the snapshot file's path.
    pub hooks_dir: Option<PathBuf>,
    /// A hook running longer is killed (with its process group).
    pub hook_timeout: Duration,
    /// Longest wait between retries of a failing plugin.
    pub retry_max: Duration,
    /// Where `GET /metrics` is served, if enabled.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// With these files the metrics endpoint speaks HTTPS only.
    pub metrics_tls: Option<zgres_http::TlsFiles>,
}

/// The built-in pgbouncer plugin.
#[derive(Debug, Clone)]
pub struct PgbouncerConfig {
    /// File with the `[databases]` section, included from pgbouncer.ini.
    pub databases_file: PathBuf,
    /// Backend database name, unless a node's connection info names one.
    pub dbname: String,
    /// Appended to the group name for the read-only (replicas) database.
    pub read_only_suffix: String,
    /// libpq connection string to pgbouncer's admin console, to send `RELOAD`.
    pub admin_conninfo: Option<String>,
    /// Per group, a load balancer (e.g. a local HAProxy frontend on `{group}_replicas`) that
    /// `{group}{suffix}` points at instead of the replicas themselves: pgbouncer takes one port
    /// per database, so it cannot spread reads over replicas on different ports.
    pub readers_via: BTreeMap<GroupName, SocketAddr>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// ZooKeeper.
    pub zookeeper: ZkSettings,
    /// Snapshots and hooks.
    pub sync: SyncConfig,
    /// The pgbouncer plugin, if enabled.
    pub pgbouncer: Option<PgbouncerConfig>,
    /// Rendered files: `[[template]]` sections and the HAProxy plugin (a bundled template).
    pub templates: Vec<TemplateConfig>,
    /// In-process plugins (`[[plugin]]`): shared libraries speaking the zgres plugin ABI, and
    /// how long a call may take before it is reported as failed.
    pub libraries: Vec<(PathBuf, Duration)>,
    /// Logging.
    pub log: LogConfig,
}

impl Config {
    /// What the operator should know about a valid configuration: ZooKeeper without
    /// authentication, HAProxy reloaded by a command that cannot be confirmed.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .zookeeper
            .auth_warning()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let signalled = self
            .templates
            .iter()
            .any(|t| t.name == "haproxy" && t.master_socket.is_none() && !t.command.is_empty());
        if signalled {
            warnings.push(
                "haproxy.reload_command cannot be confirmed: HAProxy 2.6 loses a reload asked \
                 for during the previous one, which can leave it on an old primary; set \
                 haproxy.master_socket instead (docs/sync.md)"
                    .to_owned(),
            );
        }
        warnings
    }

    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and every bad key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &zgres_config::read(path)?)
    }

    /// Validates `text` as the contents of `path`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = zgres_config::parse_toml(path, text)?;
        let mut problems = Problems::default();
        let zookeeper = raw
            .zookeeper
            .settings(DEFAULT_SESSION_TIMEOUT, &mut problems);
        raw.zookeeper
            .reject_fencing_keys("zgres-sync", &mut problems);
        let mut groups = Vec::new();
        for (i, g) in raw.sync.groups.iter().enumerate() {
            match GroupName::new(g) {
                Ok(g) => groups.push(g),
                Err(e) => problems.add(&format!("sync.groups[{i}]"), e.to_string()),
            }
        }
        if raw.sync.debounce_ms > 10_000 {
            problems.add("sync.debounce_ms", "must be at most 10000");
        }
        check_parent("sync.snapshot_file", &raw.sync.snapshot_file, &mut problems);
        if let Some(dir) = &raw.sync.hooks_dir {
            if !dir.is_dir() {
                problems.add(
                    "sync.hooks_dir",
                    format!("{} is not a directory", dir.display()),
                );
            }
        }
        if !(100..=3_600_000).contains(&raw.sync.hook_timeout_ms) {
            problems.add("sync.hook_timeout_ms", "must be between 100 and 3600000");
        }
        if !(100..=3_600_000).contains(&raw.sync.retry_max_ms) {
            problems.add("sync.retry_max_ms", "must be between 100 and 3600000");
        }
        if let Some(p) = &raw.pgbouncer {
            check_parent("pgbouncer.databases_file", &p.databases_file, &mut problems);
            if p.read_only_suffix.is_empty() {
                problems.add("pgbouncer.read_only_suffix", "must not be empty");
            }
        }
        let readers_via = readers_via(raw.pgbouncer.as_ref(), &mut problems);
        let mut templates = Vec::new();
        for (i, t) in raw.template.iter().enumerate() {
            let key = format!("template[{i}]");
            if !t.source.is_file() {
                problems.add(
                    &format!("{key}.source"),
                    format!("{} is not a file", t.source.display()),
                );
            }
            check_parent(&format!("{key}.destination"), &t.destination, &mut problems);
            check_command(
                &format!("{key}.command"),
                &t.command,
                t.command_timeout_ms,
                &mut problems,
            );
            templates.push(TemplateConfig {
                name: t.destination.display().to_string(),
                source: Source::File(t.source.clone()),
                destination: t.destination.clone(),
                command: t.command.clone(),
                master_socket: None,
                command_timeout: Duration::from_millis(t.command_timeout_ms),
                command_min_interval: Duration::from_millis(t.command_min_interval_ms),
            });
        }
        if let Some(h) = &raw.haproxy {
            check_parent("haproxy.config_file", &h.config_file, &mut problems);
            if h.master_socket.is_some() && !h.reload_command.is_empty() {
                problems.add(
                    "haproxy.master_socket",
                    "set either master_socket or reload_command, not both",
                );
            }
            if h.master_socket.as_ref().is_some_and(|s| !s.is_absolute()) {
                problems.add("haproxy.master_socket", "must be an absolute path");
            }
            let replica_max_lag = h.replica_max_lag.as_deref().and_then(|text| {
                let lag = ReplicaLag::parse(text);
                if lag.is_none() {
                    problems.add(
                        "haproxy.replica_max_lag",
                        format!("{text:?} is not bytes, or a number with kB, MB or GB"),
                    );
                }
                lag
            });
            check_command(
                "haproxy.reload_command",
                &h.reload_command,
                h.reload_timeout_ms,
                &mut problems,
            );
            templates.push(TemplateConfig {
                name: "haproxy".into(),
                source: Source::Text(crate::haproxy::template(replica_max_lag.as_ref())),
                destination: h.config_file.clone(),
                command: h.reload_command.clone(),
                master_socket: h.master_socket.clone(),
                command_timeout: Duration::from_millis(h.reload_timeout_ms),
                command_min_interval: Duration::from_millis(h.reload_min_interval_ms),
            });
        }
        let mut libraries = Vec::new();
        for (i, p) in raw.plugin.iter().enumerate() {
            if !p.library.is_file() {
                problems.add(
                    &format!("plugin[{i}].library"),
                    format!("{} is not a file", p.library.display()),
                );
            }
            if !(100..=3_600_000).contains(&p.timeout_ms) {
                problems.add(
                    &format!("plugin[{i}].timeout_ms"),
                    "must be between 100 and 3600000",
                );
            }
            libraries.push((p.library.clone(), Duration::from_millis(p.timeout_ms)));
        }
        let metrics_listen = raw.sync.metrics_listen.as_ref().and_then(|text| {
            text.parse()
                .map_err(|_| {
                    problems.add("sync.metrics_listen", format!("{text:?} is not IP:PORT"))
                })
                .ok()
        });
        let metrics_tls = zgres_http::files_from_settings(
            raw.sync.metrics_tls_cert_file.clone(),
            raw.sync.metrics_tls_key_file.clone(),
        )
        .map_err(|e| problems.add("sync.metrics_tls_cert_file", e.to_string()))
        .ok()
        .flatten();
        raw.log.validate(&mut problems);
        let config = zookeeper.map(|zookeeper| Config {
            zookeeper,
            sync: SyncConfig {
                groups,
                debounce: Duration::from_millis(raw.sync.debounce_ms),
                snapshot_file: raw.sync.snapshot_file,
                hooks_dir: raw.sync.hooks_dir,
                hook_timeout: Duration::from_millis(raw.sync.hook_timeout_ms),
                retry_max: Duration::from_millis(raw.sync.retry_max_ms),
                metrics_listen,
                metrics_tls,
            },
            pgbouncer: raw.pgbouncer.map(|p| PgbouncerConfig {
                databases_file: p.databases_file,
                dbname: p.dbname,
                read_only_suffix: p.read_only_suffix,
                admin_conninfo: p.admin_conninfo,
                readers_via,
            }),
            templates,
            libraries,
            log: raw.log,
        });
        problems.finish(path, config)
    }
}

/// `[pgbouncer] readers_via`: group names to `IP:PORT`, each checked.
fn readers_via(
    raw: Option<&RawPgbouncer>,
    problems: &mut Problems,
) -> BTreeMap<GroupName, SocketAddr> {
    let mut via = BTreeMap::new();
    for (group, addr) in raw.map(|p| &p.readers_via).into_iter().flatten() {
        let key = format!("pgbouncer.readers_via.{group}");
        match (GroupName::new(group), addr.parse::<SocketAddr>()) {
            (Ok(group), Ok(addr)) => {
                via.insert(group, addr);
            }
            (Err(e), _) => problems.add(&key, format!("not a group name: {e}")),
            (_, Err(_)) => problems.add(&key, format!("{addr:?} is not IP:PORT")),
        }
    }
    via
}

fn check_command(key: &str, command: &[String], timeout_ms: u64, problems: &mut Problems) {
    if let Some(program) = command.first() {
        if !Path::new(program).is_absolute() {
            problems.add(
                key,
                format!("{program:?}: give the program's absolute path (no shell, no PATH search)"),
            );
        }
    }
    if !(100..=3_600_000).contains(&timeout_ms) {
        problems.add(key, "timeout must be between 100 and 3600000 ms");
    }
}

fn check_parent(key: &str, file: &Path, problems: &mut Problems) {
    if !file.is_absolute() {
        problems.add(key, "must be an absolute path");
    } else if !file.parent().is_some_and(Path::is_dir) {
        problems.add(
            key,
            format!("the directory of {} does not exist", file.display()),
        );
    }
}

#[cfg(test)]
mod tests;
