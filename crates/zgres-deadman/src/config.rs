//! The deadman's TOML configuration, validated up front.
//!
//! Every problem is reported with the key it concerns (`postgres.port: ...`), all at once, so an
//! operator fixes the file in one go. Secrets come from a file or an environment variable, are
//! held in [`Secret`] (whose `Debug` prints nothing), and are never logged or written to
//! ZooKeeper.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use zgres_schema::documents::Tags;
use zgres_schema::{GroupName, NodeId};

use zgres_config::Problems;
pub use zgres_config::{ConfigError, LogConfig, LogFormat, Secret};

mod raw;
pub mod reload;
mod zookeeper;
pub use zookeeper::ZookeeperConfig;

use raw::RawConfig;

/// The deadman's session timeout unless configured: short, for fast failover.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_millis(4_000);
/// The deadman's fence margin unless configured.
const DEFAULT_FENCE_MARGIN: Duration = Duration::from_millis(1_000);

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where `postgres`, `pg_ctl` and `pg_controldata` are.
    pub bin_dir: PathBuf,
    /// The port PostgreSQL listens on (part of the node id).
    pub port: u16,
    /// OS user to run PostgreSQL as (required when the deadman runs as root).
    pub run_as: Option<String>,
    /// Superuser used for probes, promotion and replication.
    pub user: String,
    /// Database the probes connect to.
    pub dbname: String,
    /// Password of `user`, if any.
    pub password: Option<Secret>,
    /// Host the deadman connects to for probes.
    pub probe_host: IpAddr,
    /// TLS to PostgreSQL servers: this node's and its peers'.
    pub tls: crate::postgres_tls::PostgresTls,
    /// PostgreSQL settings, written to the parameters file PostgreSQL includes
    /// ([`crate::parameters_file`]).
    pub parameters: BTreeMap<String, String>,
}

impl PostgresConfig {
    /// The OS user `run_as` names, when set and known: the owner of the data directory.
    pub fn run_as_user(&self) -> Option<nix::unistd::User> {
        nix::unistd::User::from_name(self.run_as.as_deref()?).ok()?
    }

    /// The user to switch to for PostgreSQL and its tools: [`Self::run_as_user`], unless this
    /// process already runs as it (e.g. the systemd unit's `User=postgres`).
    pub fn user_to_switch_to(&self) -> Option<nix::unistd::User> {
        self.run_as_user()
            .filter(|u| u.uid != nix::unistd::Uid::effective())
    }
}

/// Loop timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingConfig {
    /// How often PostgreSQL is probed and decisions are made.
    pub loop_interval: Duration,
    /// The node's state is republished at least this often even when unchanged.
    pub state_refresh: Duration,
    /// How long an election waits for peers to publish fresh positions.
    pub election_wait: Duration,
    /// How long a fast shutdown may take before it becomes immediate.
    pub stop_timeout: Duration,
    /// How long a crashed primary may take to restart in place before the lock is released.
    pub primary_restart_timeout: Duration,
    /// How often deadman plugins run.
    pub plugin_interval: Duration,
    /// How long a switchover or failover request steers elections once the lock is free.
    pub request_timeout: Duration,
    /// How long a primary handing over waits between withdrawing its `/conn` and its fast
    /// stop, so that zgres-sync can disable the writer entries first (0: no wait).
    pub switchover_drain: Duration,
}

/// How a node gets its data directory: created (initdb) for a new group, cloned from the
/// primary for a new replica, rewound after a failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisioningConfig {
    /// Extra `initdb` arguments (data checksums are always on, for pg_rewind).
    pub initdb_args: Vec<String>,
    /// Lines appended to the new `pg_hba.conf` after initdb.
    pub pg_hba: Vec<String>,
    /// Replaces initdb: program and arguments, run without a shell with `PGDATA` set.
    pub bootstrap_command: Vec<String>,
    /// Replaces pg_basebackup: run with `PGDATA`, `ZGRES_SOURCE_HOST`, `ZGRES_SOURCE_PORT`.
    pub clone_command: Vec<String>,
    /// When pg_rewind fails, delete the data directory and clone it again. Off by default:
    /// zgres deletes no data unless told to.
    pub reclone_on_rewind_failure: bool,
    /// When the WAL a standby needs is gone from the primary, delete the data directory and
    /// clone it again. Off by default, for the same reason.
    pub reclone_on_missing_wal: bool,
    /// How long initdb, a clone or a rewind may take before it is killed.
    pub timeout: Duration,
}

/// Operator callbacks on the database node (`[callbacks]`), each an absolute path called as
/// `PROGRAM ACTION ROLE GROUP` (see [`crate::callbacks`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallbacksConfig {
    /// After PostgreSQL started and answers.
    pub on_start: Option<PathBuf>,
    /// After PostgreSQL stopped (by the deadman, the fence or a crash).
    pub on_stop: Option<PathBuf>,
    /// After PostgreSQL re-read its configuration (a reload changed `postgres.parameters`).
    pub on_reload: Option<PathBuf>,
    /// After PostgreSQL changed between primary and replica.
    pub on_role_change: Option<PathBuf>,
    /// Before this node promotes, holding the lock; a non-zero exit (or a timeout) vetoes the
    /// promotion and the lock is released.
    pub pre_promote: Option<PathBuf>,
    /// How long each call may take before it is killed.
    pub timeout: Duration,
}

/// What the operator plugs into the deadman.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HooksConfig {
    /// Plugins adding metadata and health vetoes.
    pub plugins: Vec<crate::plugins::PluginSpec>,
    /// Callbacks on PostgreSQL's changes, and the promotion veto.
    pub callbacks: CallbacksConfig,
}

/// The health API's address and, optionally, its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// With these files it speaks HTTPS only.
    pub tls: Option<zgres_http::TlsFiles>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// ZooKeeper.
    pub zookeeper: ZookeeperConfig,
    /// The group this node belongs to.
    pub group: GroupName,
    /// This node's id: its connect address and PostgreSQL port.
    pub node: NodeId,
    /// A short name for logs and `application_name`.
    pub node_name: String,
    /// PostgreSQL.
    pub postgres: PostgresConfig,
    /// Operator tags published with the node's state.
    pub tags: Tags,
    /// Timing.
    pub timing: TimingConfig,
    /// What the operator plugs in: plugins and callbacks.
    pub hooks: HooksConfig,
    /// The HTTP health API, if enabled.
    pub api: Option<ApiConfig>,
    /// Creating, cloning and rewinding the data directory.
    pub provisioning: ProvisioningConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Config {
    /// Reads and validates the file at `path`, including reading secrets.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and every bad key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = zgres_config::read(path)?;
        Self::parse(path, &text, |name| std::env::var(name).ok())
    }

    /// Validates `text` as the contents of `path`; `env` looks up environment variables.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = zgres_config::parse_toml(path, text)?;
        let mut problems = Problems::default();

        let zk_settings = raw
            .zookeeper
            .settings(DEFAULT_SESSION_TIMEOUT, &mut problems);
        let fence_margin = raw.zookeeper.fence_margin(
            DEFAULT_FENCE_MARGIN,
            DEFAULT_SESSION_TIMEOUT,
            &mut problems,
        );
        let ensemble = raw.zookeeper.ensemble(&mut problems);

        let group = GroupName::new(&raw.node.group)
            .map_err(|e| problems.add("node.group", e.to_string()))
            .ok();
        let address: Option<IpAddr> = raw
            .node
            .address
            .parse()
            .map_err(|_| {
                problems.add(
                    "node.address",
                    format!(
                        "{:?} is not an IP address (the node id is IP:port)",
                        raw.node.address
                    ),
                )
            })
            .ok();
        let node = address.and_then(|ip| {
            NodeId::new(SocketAddr::new(ip, raw.postgres.port))
                .map_err(|e| problems.add("postgres.port", e.to_string()))
                .ok()
        });
        let node_name = raw.node.name.clone().unwrap_or_else(|| {
            node.map(|n| n.to_string())
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        });
        // A derived name is only checked when there was a node id to derive it from.
        let name_given = raw.node.name.is_some() || node.is_some();
        if name_given
            && (node_name.is_empty()
                || node_name.len() > 63
                || !node_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            problems.add("node.name", "use 1 to 63 characters from A-Z a-z 0-9 _ -");
        }

        if !raw.postgres.data_dir.is_absolute() {
            problems.add("postgres.data_dir", "must be an absolute path");
        }
        if let Some(why) = crate::guardian::socket_does_not_fit(&raw.postgres.data_dir) {
            problems.add("postgres.data_dir", why);
        }
        if !raw.postgres.bin_dir.join("postgres").exists() {
            problems.add(
                "postgres.bin_dir",
                format!("{} has no postgres binary", raw.postgres.bin_dir.display()),
            );
        }
        if nix::unistd::Uid::effective().is_root() && raw.postgres.run_as.is_none() {
            problems.add(
                "postgres.run_as",
                "required when the deadman runs as root (PostgreSQL refuses to run as root)",
            );
        }
        if let Some(user) = &raw.postgres.run_as {
            if !matches!(nix::unistd::User::from_name(user), Ok(Some(_))) {
                problems.add("postgres.run_as", format!("no OS user named {user:?}"));
            }
        }
        for reserved in ["port", "data_directory"] {
            if raw.postgres.parameters.contains_key(reserved) {
                problems.add(
                    &format!("postgres.parameters.{reserved}"),
                    "is managed by zgres; set it elsewhere in this file",
                );
            }
        }
        for (name, value) in &raw.postgres.parameters {
            let key = format!("postgres.parameters.{name}");
            let mut chars = name.chars();
            let well_formed = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !well_formed {
                problems.add(&key, "is not a PostgreSQL parameter name");
            }
            if value.chars().any(|c| c.is_control()) {
                problems.add(&key, "must be one line without control characters");
            }
        }
        let password = zgres_config::secret(
            "postgres",
            raw.postgres.password_file.as_deref(),
            raw.postgres.password_env.as_deref(),
            env,
            &mut problems,
        );
        // libpq reads the client key as the user PostgreSQL and its tools run as.
        let libpq_user = raw
            .postgres
            .run_as
            .as_deref()
            .and_then(|name| nix::unistd::User::from_name(name).ok().flatten())
            .map_or_else(nix::unistd::Uid::effective, |user| user.uid);
        let tls = crate::postgres_tls::TlsSettings {
            sslmode: raw.postgres.sslmode.clone(),
            sslrootcert: raw.postgres.sslrootcert.clone(),
            sslcert: raw.postgres.sslcert.clone(),
            sslkey: raw.postgres.sslkey.clone(),
        }
        .validate(libpq_user, &mut problems);
        let probe_host = match &raw.postgres.probe_host {
            None => address,
            Some(text) => text
                .parse()
                .map_err(|_| {
                    problems.add(
                        "postgres.probe_host",
                        format!("{text:?} is not an IP address"),
                    )
                })
                .ok(),
        };

        let t = &raw.timing;
        for (key, value, min) in [
            ("timing.loop_interval_ms", t.loop_interval_ms, 50),
            ("timing.state_refresh_ms", t.state_refresh_ms, 100),
            ("timing.election_wait_ms", t.election_wait_ms, 0),
            ("timing.stop_timeout_ms", t.stop_timeout_ms, 100),
            ("timing.request_timeout_ms", t.request_timeout_ms, 1_000),
            ("timing.switchover_drain_ms", t.switchover_drain_ms, 0),
            (
                "timing.primary_restart_timeout_ms",
                t.primary_restart_timeout_ms,
                0,
            ),
        ] {
            if value < min || value > 3_600_000 {
                problems.add(key, format!("must be between {min} and 3600000"));
            }
        }
        let mut plugins = Vec::new();
        for (i, p) in raw.plugin.iter().enumerate() {
            let key = format!("plugin[{i}]");
            let timeout = Duration::from_millis(p.timeout_ms);
            if !(100..=600_000).contains(&p.timeout_ms) {
                problems.add(
                    &format!("{key}.timeout_ms"),
                    "must be between 100 and 600000",
                );
            }
            match (p.command.first(), &p.library) {
                (Some(program), None) => {
                    if !Path::new(program).is_absolute() {
                        problems.add(
                            &format!("{key}.command"),
                            "give the program's absolute path",
                        );
                    }
                    plugins.push(crate::plugins::PluginSpec::Command(
                        p.command.clone(),
                        timeout,
                    ));
                }
                (None, Some(library)) => {
                    if !library.is_file() {
                        problems.add(
                            &format!("{key}.library"),
                            format!("{} is not a file", library.display()),
                        );
                    }
                    plugins.push(crate::plugins::PluginSpec::Library(
                        library.clone(),
                        timeout,
                    ));
                }
                _ => problems.add(&key, "set exactly one of command or library"),
            }
        }
        let callbacks = raw.callbacks.validate(&mut problems);
        let api = raw.api.as_ref().and_then(|api| {
            let listen = api
                .listen
                .parse()
                .map_err(|_| problems.add("api.listen", format!("{:?} is not IP:PORT", api.listen)))
                .ok()?;
            let tls = zgres_http::files_from_settings(
                api.tls_cert_file.clone(),
                api.tls_key_file.clone(),
            )
            .map_err(|e| problems.add("api.tls_cert_file", e.to_string()))
            .ok()
            .flatten();
            Some(ApiConfig { listen, tls })
        });
        let pv = &raw.provisioning;
        for (key, command) in [
            ("provisioning.bootstrap_command", &pv.bootstrap_command),
            ("provisioning.clone_command", &pv.clone_command),
        ] {
            if command.first().is_some_and(|p| !Path::new(p).is_absolute()) {
                problems.add(key, "give the program's absolute path");
            }
        }
        let provisioning_timeout = pv.timeout_ms.unwrap_or(3_600_000);
        if !(1_000..=86_400_000).contains(&provisioning_timeout) {
            problems.add(
                "provisioning.timeout_ms",
                "must be between 1000 and 86400000",
            );
        }
        for (i, line) in pv.pg_hba.iter().enumerate() {
            if line.contains('\n') || line.trim().is_empty() {
                problems.add(
                    &format!("provisioning.pg_hba[{i}]"),
                    "must be one non-empty pg_hba.conf line",
                );
            }
        }
        raw.log.validate(&mut problems);

        let config = match (zk_settings, group, node, probe_host, tls) {
            (Some(settings), Some(group), Some(node), Some(probe_host), Some(tls)) => {
                Some(Config {
                    zookeeper: ZookeeperConfig {
                        settings,
                        fence_margin,
                        ensemble,
                    },
                    group,
                    node,
                    node_name,
                    postgres: PostgresConfig {
                        data_dir: raw.postgres.data_dir,
                        bin_dir: raw.postgres.bin_dir,
                        port: raw.postgres.port,
                        run_as: raw.postgres.run_as,
                        user: raw.postgres.user,
                        dbname: raw.postgres.dbname,
                        password,
                        probe_host,
                        tls,
                        parameters: raw.postgres.parameters,
                    },
                    tags: raw.tags,
                    timing: TimingConfig {
                        loop_interval: Duration::from_millis(t.loop_interval_ms),
                        state_refresh: Duration::from_millis(t.state_refresh_ms),
                        election_wait: Duration::from_millis(t.election_wait_ms),
                        stop_timeout: Duration::from_millis(t.stop_timeout_ms),
                        primary_restart_timeout: Duration::from_millis(
                            t.primary_restart_timeout_ms,
                        ),
                        plugin_interval: Duration::from_millis(t.plugin_interval_ms),
                        request_timeout: Duration::from_millis(t.request_timeout_ms),
                        switchover_drain: Duration::from_millis(t.switchover_drain_ms),
                    },
                    provisioning: ProvisioningConfig {
                        initdb_args: raw.provisioning.initdb_args,
                        pg_hba: raw.provisioning.pg_hba,
                        bootstrap_command: raw.provisioning.bootstrap_command,
                        clone_command: raw.provisioning.clone_command,
                        reclone_on_rewind_failure: raw.provisioning.reclone_on_rewind_failure,
                        reclone_on_missing_wal: raw.provisioning.reclone_on_missing_wal,
                        timeout: Duration::from_millis(provisioning_timeout),
                    },
                    hooks: HooksConfig { plugins, callbacks },
                    api,
                    log: raw.log,
                })
            }
            _ => None,
        };
        problems.finish(path, config)
    }
}

#[cfg(test)]
pub(crate) mod test_config;
#[cfg(test)]
mod tests;
